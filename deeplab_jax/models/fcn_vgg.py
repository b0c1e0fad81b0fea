"""VGG-16 as FCN builds it: 100-pixel padding, five 2x2/2 pools, fc6 / fc7 as convs.

The layers of the release's `voc-fcn{32s,16s,8s}/net.py` and
`voc-fcn8s-atonce/net.py` (shelhamer/fcn.berkeleyvision.org), the same in all
four:

  conv1_1            3x3, pad 100 (`conv_relu(n.data, 64, pad=100)`), ReLU
  conv1_2 .. conv5_3 3x3, pad 1, ReLU (widths 64, 128, 256, 512, 512;
                     2, 2, 3, 3, 3 convs a stage)
  pool1 .. pool5     MAX 2x2 stride 2, no pad (`max_pool(ks=2, stride=2)`),
                     Caffe's ceil-mode size (`pooling.max_pool_caffe`)
  fc6                7x7, pad 0 (VALID), 4096, ReLU, Dropout 0.5
  fc7                1x1, 4096, ReLU, Dropout 0.5

No atrous rate anywhere (this is not DeepLab's VGG: models/vgg.py keeps
that one, unchanged). Output stride 32; the 100 pixels of padding make
fc7 at least 1x1 for any input (a 1-pixel image gives 199 -> 100 -> 50 ->
25 -> 13 -> 7 -> fc6 1) and let the head's crops align every map with the
image (models/fcn.py derives the crops from `ORIGINS`).

Features (names as Caffe's): `image` (the normalised input, stride 1: the
head crops its scores to its size), `pool3` (stride 8), `pool4` (16), `fc7`
and `out` (the same map, 32). Parameters `trunk/conv{s}_{i}` and
`trunk/fc6`, `trunk/fc7`, each `kernel` (kh, kw, in, out) and `bias`, so the
release's blobs convert by name. Registered as backbone 'vgg16_fcn'
(config.model.backbone: base_width, fc_width, dropout).
"""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp

from deeplab_jax.models import registry
from deeplab_jax.models.features import OUT, Features
from deeplab_jax.models.layers import Layers
from deeplab_jax.models.pooling import max_pool_caffe

# (width, number of 3x3 convs) per stage: net.py's conv_relu calls.
STAGES = ((64, 2), (128, 2), (256, 3), (512, 3), (512, 3))
CONV1_PAD = 100  # net.py: conv_relu(n.data, 64, pad=100).
FC6_KERNEL = 7  # net.py: conv_relu(n.pool5, 4096, ks=7, pad=0).
STRIDES = {'image': 1, 'pool3': 8, 'pool4': 16, 'fc7': 32, OUT: 32}


def _origins():
  """Input coordinate of cell 0 of each feature, and its stride (Caffe's coord_map).

  A conv or pool of kernel k, stride s, pad p puts its output cell j at
  its input's position s j + (k - 1) / 2 - p (the window's centre):
  conv1_1 puts cell 0 at 1 - 100 = -99 (the 3x3 pad-1 convs keep that);
  each 2x2/2 pool at s_in * 0.5 + o_in: pool1 -98.5, pool2 -97.5,
  pool3 -95.5, pool4 -91.5, pool5 -83.5; fc6 (7x7 valid) at
  32 * 3 - 83.5 = 12.5, which fc7 keeps.
  """
  stride, origin, out = 1, 1.0 - CONV1_PAD, {'image': (1, 0.0)}
  for stage in range(1, 6):
    origin, stride = origin + stride * 0.5, stride * 2  # 2x2/2: (k - 1) / 2 = 0.5.
    if stage in (3, 4):
      out[f'pool{stage}'] = (stride, origin)
  origin += stride * (FC6_KERNEL - 1) / 2
  out['fc7'] = out[OUT] = (stride, origin)
  return out


# name -> (stride, input position of cell 0): pool3 (8, -95.5), pool4
# (16, -91.5), fc7 (32, 12.5). tests/fcn_test.py checks the crops they give
# against the release's prototxts.
ORIGINS = _origins()


class VGG16FCN(nn.Module):
  """FCN's VGG-16 trunk through fc7 (4096 channels at stride 32)."""
  base_width: int = 64  # conv1's width; the others scale with it (64: VGG-16).
  fc_width: int = 4096  # fc6 / fc7 channels (release: 4096).
  dropout: float = 0.5  # After fc6 and fc7 (release: dropout_ratio 0.5).
  layers: Layers = Layers()  # Its atrous_impl and dtype (no BatchNorm in VGG).

  def feature_strides(self) -> dict[str, int]:
    return dict(STRIDES)

  @nn.compact
  def __call__(self, x_BxHxWx3, train: bool):
    maps = {'image': x_BxHxWx3}
    pad = CONV1_PAD - 1  # The 3x3 'same' conv pads 1 more: 100 in all.
    x = jnp.pad(x_BxHxWx3, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    for stage, (width, num_convs) in enumerate(STAGES, start=1):
      width = width * self.base_width // 64
      for i in range(num_convs):
        x = nn.relu(self.layers.conv(width, 3, name=f'conv{stage}_{i + 1}')(x))
      x = max_pool_caffe(x, 2, stride=2, pad=0)
      if stage in (3, 4):
        maps[f'pool{stage}'] = x
    # Valid (no padding); on CPU an im2col matmul (atrous.conv_valid).
    x = self.layers.conv(self.fc_width, FC6_KERNEL, padding='valid', name='fc6')(x)
    x = nn.Dropout(self.dropout, deterministic=not train)(nn.relu(x))
    x = nn.relu(self.layers.conv(self.fc_width, 1, name='fc7')(x))
    x = nn.Dropout(self.dropout, deterministic=not train)(x)
    maps['fc7'] = maps[OUT] = x
    return Features(maps, STRIDES)


@registry.register_backbone('vgg16_fcn')
def from_config(section, layers: Layers) -> VGG16FCN:
  """`config.model.backbone` with name 'vgg16_fcn'."""
  registry.check_fields(section, "backbone 'vgg16_fcn'", ('base_width', 'fc_width', 'dropout'))
  return VGG16FCN(base_width=int(section.get('base_width', 64)),
                  fc_width=int(section.get('fc_width', 4096)),
                  dropout=float(section.get('dropout', 0.5)), layers=layers)
