"""FCN's head: class scores at stride 32, learned upsampling, skips, crops.

Long, Shelhamer, Darrell, "Fully Convolutional Networks for Semantic
Segmentation" (CVPR 2015, PAMI 2016), as the release defines the nets
(shelhamer/fcn.berkeleyvision.org `voc-fcn32s/net.py`, `voc-fcn16s/net.py`,
`voc-fcn8s/net.py`, `voc-fcn8s-atonce/net.py`), on backbone 'vgg16_fcn'
(models/fcn_vgg.py). `skips` picks the net:

  ()                  FCN-32s: score_fr -> upscore (64x64 /32) -> crop 19
  ('pool4',)          FCN-16s: score_fr -> upscore2 (4x4 /2) + crop(score_pool4, 5)
                      -> upscore16 (32x32 /16) -> crop 27
  ('pool4', 'pool3')  FCN-8s: ... + crop(score_pool4, 5) -> upscore_pool4 (4x4 /2)
                      + crop(score_pool3, 9) -> upscore8 (16x16 /8) -> crop 31

`skip_scales` (one per skip, or () for none) puts Caffe `Scale` layers
before the skip scores: the at-once net's scale_pool4 (0.01) and scale_pool3
(0.0001), "scale pool4 skip for compatibility" (voc-fcn8s-atonce/net.py),
a learned per-channel blob of the pool's width in Caffe, filled with the
constant and trained at lr_mult 0; here the parameter `scale_pool{n}/scale`
(C,), frozen by the config's optim.lr_mults.

Layers (names as the release's, so the caffemodels convert by name):
  score_fr, score_pool4, score_pool3  1x1 convs to the classes with bias;
      zero-initialised, as the release leaves them (no weight_filler:
      Caffe's default filler is constant 0, caffe.proto FillerParameter).
  upscore*  Caffe Deconvolution, kernel 2f, stride f, no bias, classes to
      classes (models/transposed.py's ConvTranspose, kernel (2f, 2f, C, C)),
      set to bilinear interpolation per class by the release's
      `surgery.interp` (solve.py: every layer with 'up' in its name; the
      other channel pairs keep Deconvolution's default filler, 0) and trained
      at lr_mult 0 (`param=[dict(lr_mult=0)]` in all four nets: fixed, README
      "Is learning the interpolation necessary?").
  Crops: Caffe's `Crop` (crop_layer.cpp): bottom 0 cut to bottom 1's height
      and width from `offset` on both axes (axis 2); fuse = upsampled +
      cropped skip scores (Eltwise SUM).

The crop offsets follow from the 100-pixel padding (models/fcn_vgg.py's
ORIGINS, Caffe's coord_map): a deconvolution of kernel k, stride s puts its
output cell y on its input's cell (y - (k - 1) / 2) / s, so upsampling a map
of origin o (input position of cell 0) and stride t gives origin
o - (t / s) (k - 1) / 2. fc7 sits at 12.5 (stride 32):
  FCN-32s  upscore: 12.5 - 31.5 = -19, so the image (origin 0) starts 19 cells in.
  FCN-16s  upscore2: 12.5 - 16 * 1.5 = -11.5; pool4 sits at -91.5 (stride 16):
           score_pool4 is cropped by (91.5 - 11.5) / 16 = 5; upscore16:
           -11.5 - 15.5 = -27, the final crop 27.
  FCN-8s   upscore_pool4: -11.5 - 8 * 1.5 = -23.5; pool3 at -95.5 (stride 8):
           crop (95.5 - 23.5) / 8 = 9; upscore8: -23.5 - 7.5 = -31, crop 31.
These are the offsets in the release's train.prototxt files (19; 5, 27;
5, 9, 31); `crop_offsets` computes them and tests/fcn_test.py checks them.

Output: float32 logits at the input's size (stride 1); the loss and
evaluation resize a map only when its size differs from the labels'.
Registered as head 'fcn' (config.model.head: skips, skip_scales).
"""

from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp

from deeplab_jax.errors import UserError
from deeplab_jax.models import registry
from deeplab_jax.models.fcn_vgg import ORIGINS
from deeplab_jax.models.layers import Layers
from deeplab_jax.models.transposed import bilinear_kernel_init

SKIPS = ('pool4', 'pool3')  # In the order the nets add them (16s, then 8s).


def layer_names(skips) -> dict:
  """The release's names: {'skip': [(score, upscore before it)], 'final': upscore}."""
  ups = ['upscore2'] + [f'upscore_{s}' for s in skips[:-1]]
  final = 'upscore' if not skips else f'upscore{ORIGINS["fc7"][0] >> len(skips)}'
  return {'skip': [(f'score_{s}', up) for s, up in zip(skips, ups)], 'final': final}


def crop_offsets(skips) -> dict:
  """{layer: offset} of the Caffe crops: each skip's score map, and 'score'
  (the final map cropped to the image), from fcn_vgg.ORIGINS (see above)."""
  stride, origin = ORIGINS['fc7']
  out = {}
  for skip in skips:
    stride //= 2
    origin -= stride * (4 - 1) / 2  # upscore2 / upscore_pool4: 4x4 stride 2.
    skip_stride, skip_origin = ORIGINS[skip]
    offset = (origin - skip_origin) / skip_stride
    if skip_stride != stride or offset != int(offset) or offset < 0:
      raise ValueError(f'{skip} (stride {skip_stride}, origin {skip_origin}) does not align '
                       f'with the upsampled scores (stride {stride}, origin {origin})')
    out[f'score_{skip}'] = int(offset)
  origin -= (2 * stride - 1) / 2  # The last: kernel 2 * stride, stride `stride`: 1 cell a pixel.
  out['score'] = int(-origin)
  return out


def crop(x_BxHxWxC, offset, size, what):
  """Caffe's Crop: `size` = (h, w) cells from `offset` on both axes."""
  h, w = size
  if offset + h > x_BxHxWxC.shape[1] or offset + w > x_BxHxWxC.shape[2]:
    raise ValueError(f'{what}: a {x_BxHxWxC.shape[1]}x{x_BxHxWxC.shape[2]} map cannot give '
                     f'{h}x{w} from offset {offset}')
  return x_BxHxWxC[:, offset:offset + h, offset:offset + w]


class Scale(nn.Module):
  """Caffe's Scale layer on one bottom (axis 1, num_axes 1, no bias): a
  per-channel factor, `scale` (C,), filled with `value`."""
  value: float

  @nn.compact
  def __call__(self, x_BxHxWxC):
    scale = self.param('scale', nn.initializers.constant(self.value), (x_BxHxWxC.shape[-1],),
                       jnp.float32)
    return x_BxHxWxC * scale.astype(x_BxHxWxC.dtype)


class FCNHead(nn.Module):
  """FCN-32s / 16s / 8s scores at the image's size (see the module docstring)."""
  num_classes: int
  skips: Sequence[str] = ()  # () 32s, ('pool4',) 16s, ('pool4', 'pool3') 8s.
  skip_scales: Sequence[float] = ()  # At-once: (0.01, 0.0001); () none.
  layers: Layers = Layers()
  score_init: Any = nn.initializers.zeros  # The release's (Caffe's default filler).

  @property
  def reads(self) -> tuple[str, ...]:
    return ('image', 'fc7') + tuple(self.skips)

  def classifier_layers(self) -> tuple[str, ...]:
    """The score convs and the class-to-class upsampling layers: the layers
    sized by the class count (re-initialised together for another dataset)."""
    names = layer_names(tuple(self.skips))
    return (('score_fr',) + tuple(n for pair in names['skip'] for n in pair)
            + (names['final'],))

  def _score(self, x, name):
    return self.layers.conv(self.num_classes, 1, kernel_init=self.score_init, name=name)(x)

  def _upscore(self, x, factor, name):
    return self.layers.conv_transpose(self.num_classes, 2 * factor, stride=factor,
                                      use_bias=False, kernel_init=bilinear_kernel_init,
                                      name=name)(x)

  @nn.compact
  def __call__(self, features, train: bool):
    skips = tuple(self.skips)
    names, offsets = layer_names(skips), crop_offsets(skips)
    scales = tuple(self.skip_scales) or (None,) * len(skips)
    x = self._score(features['fc7'], 'score_fr')
    for skip, scale, (score_name, up_name) in zip(skips, scales, names['skip']):
      x = self._upscore(x, 2, up_name)
      y = features[skip]
      if scale is not None:
        y = Scale(scale, name=f'scale_{skip}')(y)
      y = crop(self._score(y, score_name), offsets[score_name], x.shape[1:3],
               f'{score_name}c')
      x = x + y
    x = self._upscore(x, ORIGINS['fc7'][0] >> len(skips), names['final'])
    return crop(x, offsets['score'], features['image'].shape[1:3], 'score')


@registry.register_head('fcn')
def from_config(section, layers: Layers, num_classes: int) -> FCNHead:
  """`config.model.head` with name 'fcn'."""
  registry.check_fields(section, "head 'fcn'", ('skips', 'skip_scales'))
  skips = tuple(section.get('skips', ()))
  if skips != SKIPS[:len(skips)]:
    raise UserError(f'model.head.skips {skips} must be (), {SKIPS[:1]} or {SKIPS} '
                    '(FCN-32s, 16s, 8s)')
  scales = tuple(float(s) for s in section.get('skip_scales', ()))
  if scales and len(scales) != len(skips):
    raise UserError(f'model.head.skip_scales {scales}: one per skip {skips}, or () for none '
                    '(FCN-8s at-once: 0.01, 0.0001)')
  return FCNHead(num_classes=num_classes, skips=skips, skip_scales=scales, layers=layers)
