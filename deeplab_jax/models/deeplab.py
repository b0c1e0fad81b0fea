"""DeepLab = input normalisation -> backbone -> head, over scales: the segmenter.

Every model is this module over registered parts (registry.py): `trunk` is
the backbone (returning `features.Features`; the attribute keeps the name
of the parameters' top scope, `params/trunk/...`), `head` scores classes
from the features it `reads`, the optional `multilayer` (v1 MSc) adds scores
from other features, and the optional `crf` layer refines the result.

Input convention (every model): NHWC images, RGB channel order, values 0-255
(uint8 or float). The model itself reorders channels (`channel_order='bgr'` for
Caffe weights), subtracts `pixel_mean` and divides by `pixel_std`, both given in
the model's channel order (`normalize`). An optional `valid` (BxHxW bool) sets
the normalised input to exactly 0 where it is False: padding as Caffe's data
layer makes it (padded with the mean in float, so 0 after subtraction; a uint8
mean colour is off by up to 0.5), what `input.resize='caffe'` asks for.
`apply(variables, images, train=False)` returns
float32 logits at output stride 8: a size-n side gives ceil(n / 8) (321 -> 41),
except v1 MSc (`multilayer`) at test, which returns its release's full-size
fused map (513 -> 513; models/multilayer.py).

Multi-scale inputs (v2's MSC): with `input_scales` = (1, 0.75, 0.5) the same
network (shared parameters) runs on the normalised input resized bilinearly by
each factor; the score maps are resized to the scale-1 map and fused by
per-pixel max. In training the model returns [map at each scale..., fused] so
the loss can sum them all, as the paper trains; at test, the fused map.
With a CRF layer (`crf`, see crf_layer.py; `config.model.crf_layer`) the
(fused) map is replaced by the CRF's log Q at the input's full size; MSC's
per-scale training maps are returned unchanged.
Resizing follows `align_corners`: True is Caffe's `Interp` (a side n becomes
floor((n - 1) * s) + 1, corners aligned: 321 -> 241, 161), False is the
PyTorch port's `interpolate(scale_factor=s)` (floor(n * s), samples 1 / s
apart: 321 -> 240, 160).
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

import flax.linen as nn
import jax.numpy as jnp

from deeplab_jax.models.resize import resize_bilinear, resize_by_scale


class DeepLab(nn.Module):
  trunk: nn.Module  # The backbone: x -> Features.
  head: nn.Module  # Features -> class scores.
  multilayer: Optional[nn.Module] = None  # v1 "MSc" scores from trunk features.
  input_scales: Sequence[float] = (1.0,)
  align_corners: bool = False
  pixel_mean: Sequence[float] = (123.675, 116.28, 103.53)
  pixel_std: Sequence[float] = (58.395, 57.12, 57.375)
  channel_order: str = 'rgb'
  dtype: Any = jnp.float32
  crf: Optional[nn.Module] = None  # CRF-as-a-layer on the (fused) map: crf_layer.py.

  def scores(self, x, train):
    """Class scores (float32) of the network at one scale."""
    features = self.trunk(x.astype(self.dtype), train=train)
    logits = self.head(features, train=train)
    if self.multilayer is not None:  # Its fc_fusion; at test full size (multilayer.py).
      logits = self.multilayer(features, logits, train=train,
                               align_corners=self.align_corners)
    return logits.astype(jnp.float32)

  def classifier_paths(self) -> tuple[str, ...]:
    """Module paths ('head/branch0_classifier') of the layers that score
    classes, as the parts declare them (callable before init)."""
    paths = [f'head/{name}' for name in self.head.classifier_layers()]
    if self.multilayer is not None:
      paths += [f'multilayer/{name}' for name in self.multilayer.classifier_layers()]
    return tuple(paths)

  def normalize(self, images_BxHxWx3, valid_BxHxW=None):
    """float32 network input: channels reordered, (x - mean) / std, and 0
    where `valid_BxHxW` is False (None: nowhere). Uses no parameters."""
    x = images_BxHxWx3.astype(jnp.float32)
    if self.channel_order == 'bgr':
      x = x[..., ::-1]
    x = (x - jnp.asarray(self.pixel_mean, jnp.float32)) / jnp.asarray(
        self.pixel_std, jnp.float32)
    if valid_BxHxW is not None:
      x = jnp.where(jnp.asarray(valid_BxHxW, bool)[..., None], x, 0.0)
    return x

  @nn.compact
  def __call__(self, images_BxHxWx3, train: bool = False, valid=None):
    x = self.normalize(images_BxHxWx3, valid)  # MSC resizes this (zeroed) input.
    scales = tuple(self.input_scales)
    if scales == (1.0,):
      logits = self.scores(x, train)
      return logits if self.crf is None else self.crf(images_BxHxWx3, logits)
    if 1.0 not in scales:
      raise ValueError(f'input_scales {scales} must include 1.0')
    maps = [self.scores(resize_by_scale(x, s, self.align_corners), train)
            for s in scales]
    size = maps[scales.index(1.0)].shape[1:3]
    fused = resize_bilinear(maps[0], size, self.align_corners)
    for m in maps[1:]:
      fused = jnp.maximum(fused, resize_bilinear(m, size, self.align_corners))
    if self.crf is not None:
      fused = self.crf(images_BxHxWx3, fused)
    return maps + [fused] if train else fused
