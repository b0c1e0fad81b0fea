"""DeepLab v1's "MSc": class scores from multi-layer features.

Not multi-scale inputs (that is v2's MSC, in `deeplab.py`): DeepLab-MSc and
DeepLab-MSc-LargeFOV (TheLegendAli/DeepLab-Context bd4aac5, voc12/config/
DeepLab-MSc*/train.prototxt, "Direct path to classifier" blocks) put a
two-layer MLP on the input image and on each of pool1-pool4:

  {b}_conv  3x3, pad 1, 128 channels, stride 8 / 4 / 2 / 1 / 1 (b = data,
            pool1 .. pool4: every branch lands on the output-stride-8 grid,
            321 -> 41), ReLU, dropout 0.5
  {b}_fc    1x1, 128 channels, ReLU, dropout 0.5
  {b}_ms    1x1, num_classes scores

and `fc_fusion` (ELTWISE SUM) adds the five score maps to fc8's; the loss is
on that sum. Summing per-branch scores is the paper's "concatenate 5 x 128
channels before the classifier". Our modules carry the Caffe names
(`multilayer/pool3_ms`), so released weights map by name.

At test the release's test.prototxt differs: every {b}_conv has stride 1, and
the score maps are zoomed to the image's size by Caffe `Interp` layers
(pool1 x2, pool2 x4, pool3, pool4 and fc8 x8; the image branch is already
there) before the sum, so the output is at full resolution (513 -> 513), not
output stride 8. `train=False` does that; training keeps the strided sum.
The strided training convs read exactly the dense maps' pixels 8 i (pad 1,
3x3), so the two agree on the coarse grid.

Initialisation follows the prototxt's fillers: Gaussian std 0.001 for {b}_conv
and {b}_fc (pool4_fc 0.005), 0.01 for {b}_ms, biases 0; pool3_ms has no
filler in the release, Caffe's default constant 0.

It reads the backbone's `image` and `pool1` .. `pool4` features (VGG-16's;
`READS`), configured by config.model.multilayer (widths, dropout; widths ()
= none). The `{b}_ms` layers score classes but are not in the optimizer's
classifier group (`classifier_layers()` is empty): the MSc releases set
their rates per layer (optim.lr_mults), and without such a table they train
at the backbone rate, as they always have here.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import flax.linen as nn
import jax.numpy as jnp

from deeplab_jax.models.layers import Layers
from deeplab_jax.models.resize import resize_bilinear


@dataclasses.dataclass(frozen=True)
class Branch:
  """One "direct path to classifier" of the MSc prototxts."""
  name: str  # Caffe prefix: {name}_conv, {name}_fc, {name}_ms.
  stride: int  # {name}_conv's stride in train.prototxt (test: 1).
  zoom: int  # test.prototxt's Interp zoom_factor for {name}_ms (1: none).
  conv_std: float  # weight_filler std of {name}_conv ...
  fc_std: float  # ... {name}_fc ...
  ms_std: float  # ... {name}_ms (0: no filler, Caffe's constant 0).


BRANCHES = (
    Branch('data', 8, 1, 0.001, 0.001, 0.01),
    Branch('pool1', 4, 2, 0.001, 0.001, 0.01),
    Branch('pool2', 2, 4, 0.001, 0.001, 0.01),
    Branch('pool3', 1, 8, 0.001, 0.001, 0.0),
    Branch('pool4', 1, 8, 0.001, 0.005, 0.01),
)
STRIDES = tuple(b.stride for b in BRANCHES)
READS = tuple(b.name if b.name != 'data' else 'image' for b in BRANCHES)  # Backbone features.
FC8_ZOOM = 8  # test.prototxt's fc8_interp.


def fit_to(x_BxHxWxC, size):
  """Zero-pads (bottom/right) or crops to `size`.

  Only needed off the 8k + 1 sizes the prototxt was built for (321, 513):
  there the trunk's three ceil-mode pools round up where a strided conv
  rounds down, and the maps differ by a pixel (Caffe's ELTWISE would refuse).
  """
  h, w = size
  x = x_BxHxWxC[:, :h, :w]
  return jnp.pad(x, ((0, 0), (0, h - x.shape[1]), (0, w - x.shape[2]), (0, 0)))


def zoom(x_BxHxWxC, factor, align_corners=True):
  """Caffe's `Interp` zoom_factor: n -> (n - 1) * factor + 1, corners aligned
  (False: n -> n * factor, half-pixel centres)."""
  if factor == 1:
    return x_BxHxWxC
  _, h, w, _ = x_BxHxWxC.shape
  if align_corners:
    return resize_bilinear(x_BxHxWxC, ((h - 1) * factor + 1, (w - 1) * factor + 1), True)
  return resize_bilinear(x_BxHxWxC, (h * factor, w * factor), False, 1.0 / factor)


def _normal(std):
  return nn.initializers.normal(std) if std else nn.initializers.zeros


class MultiLayerScores(nn.Module):
  """fc8's scores plus every branch's, as the release's `fc_fusion`.

  `features` hold `READS` (image, pool1 .. pool4); `fc8` the head's scores.
  Training: the sum at fc8's size (output stride 8). `train=False`: the
  test prototxt's dense branches and zoomed maps, summed at the image's size.
  Parameters `{data,pool1..pool4}_{conv,fc,ms}`.
  """
  num_classes: int
  widths: Sequence[int] = (128, 128)  # {b}_conv, {b}_fc.
  dropout: float = 0.5
  layers: Layers = Layers()
  reads: Sequence[str] = READS

  def classifier_layers(self) -> tuple[str, ...]:
    return ()  # See the module docstring.

  @nn.compact
  def __call__(self, features, fc8, train: bool, align_corners: bool = True):
    """`align_corners`: the test zooms' convention (the model's; Caffe: True)."""
    if len(tuple(self.widths)) != 2:
      raise ValueError(f'v1 MSc has two layers per branch ({{b}}_conv, {{b}}_fc), '
                       f'not widths {tuple(self.widths)}')
    skips = [features[name] for name in self.reads]
    conv_width, fc_width = self.widths
    maps = []
    for x, b in zip(skips, BRANCHES):
      conv = self.layers.conv
      x = conv(conv_width, 3, stride=b.stride if train else 1,
               kernel_init=_normal(b.conv_std), name=f'{b.name}_conv')(x)
      x = nn.Dropout(self.dropout, deterministic=not train)(nn.relu(x))
      x = conv(fc_width, 1, kernel_init=_normal(b.fc_std), name=f'{b.name}_fc')(x)
      x = nn.Dropout(self.dropout, deterministic=not train)(nn.relu(x))
      y = conv(self.num_classes, 1, kernel_init=_normal(b.ms_std), name=f'{b.name}_ms')(x)
      maps.append(y if train else zoom(y, b.zoom, align_corners))
    total = fc8 if train else zoom(fc8, FC8_ZOOM, align_corners)
    size = total.shape[1:3] if train else maps[0].shape[1:3]
    total = fit_to(total, size)
    for y in maps:
      total = total + fit_to(y, size).astype(total.dtype)
    return total
