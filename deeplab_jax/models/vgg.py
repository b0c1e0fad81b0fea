"""VGG-16 in DeepLab's layout (v1 and v2 VGG models).

conv1_1 .. conv5_3 (3x3, ReLU), conv5_x at atrous rate 2, and five max pools
whose (kernel, stride, pad) differ by release (`pools`, one triple per pool):

  LARGEFOV_POOLS  3x3/2 pad 1 (pool1-3), 3x3/1 pad 1 (pool4, pool5): the
                  LargeFOV, MSc and v2 VGG prototxts; 321 -> 41, 513 -> 65.
  V1_POOLS        v1 "DeepLab" (`vgg128_noup`): 2x2/2 pad 1 (pool1-3),
                  2x2/1 no pad (pool4), 3x3/1 pad 1 (pool5); 306 -> 39.
                  Its test prototxt pads pool4 by 1 (`eval_pools` =
                  V1_EVAL_POOLS): 514 -> 67, one more cell in front, which
                  its fc8_crop layer crops after the x8 zoom.

Output stride 8 in every case. Pooling follows Caffe's ceil-mode size rule
(`pooling.caffe_pool_size`). The LargeFOV prototxts add `pool5a`, a 3x3
stride-1 average pool (zero padding counted in the divisor, as Caffe and
PyTorch's default do) before fc6. Layer names are Caffe's, so converted
weights map by name.

Features: `image` (the normalised input, stride 1), `pool1` .. `pool4` (the
inputs of v1's MSc branches) and `out` (after pool5 / pool5a), strides from
the pools. Registered as backbone 'vgg16' (config.model.backbone: pools,
eval_pools, pool5a, base_width).
"""

from __future__ import annotations

from typing import Optional, Sequence

import flax.linen as nn
import jax

from deeplab_jax.errors import UserError
from deeplab_jax.models import registry
from deeplab_jax.models.features import OUT, Features
from deeplab_jax.models.layers import Layers
from deeplab_jax.models.pooling import max_pool_caffe

# (width, number of convs) per stage.
_STAGES = ((64, 2), (128, 2), (256, 3), (512, 3), (512, 3))

# (kernel, stride, pad) of pool1 .. pool5, from the release prototxts:
# corenel/deeplab-public exper/voc12/config/deeplab_largeFOV/train.prototxt
# (pool1-5 layers at lines 90, 144, 219, 294, 375; pool5a 390);
# TheLegendAli/DeepLab-Context voc12/vgg128_noup/train.prototxt (lines 106,
# 160, 235: kernel_size 2 / stride 2 / pad 1; 310: pool4 kernel_size 2,
# stride 1, "#pad: 1" commented out; 392: pool5 3 / 1 / 1) and its
# test.prototxt, whose pool4 (line 289) has "pad: 1".
# tests/release_architecture_test.py holds the models to these lines.
LARGEFOV_POOLS = ((3, 2, 1), (3, 2, 1), (3, 2, 1), (3, 1, 1), (3, 1, 1))
V1_POOLS = ((2, 2, 1), (2, 2, 1), (2, 2, 1), (2, 1, 0), (3, 1, 1))
V1_EVAL_POOLS = ((2, 2, 1), (2, 2, 1), (2, 2, 1), (2, 1, 1), (3, 1, 1))


def check_pools(pools, name='model.backbone.pools'):
  """`pools` as five (kernel, stride, pad) int triples, else a UserError."""
  try:
    pools = tuple(tuple(int(v) for v in p) for p in pools)
  except (TypeError, ValueError):
    pools = None
  if (pools is None or len(pools) != 5 or any(len(p) != 3 for p in pools)
      or any(k < 1 or s < 1 or not 0 <= pad < k for k, s, pad in pools)):
    raise UserError(f'{name} must be five (kernel, stride, pad) triples, pool1 .. pool5, '
                    f'with kernel, stride >= 1 and 0 <= pad < kernel; e.g. '
                    f'{LARGEFOV_POOLS} (LargeFOV)')
  stride = 1
  for _, s, _ in pools:
    stride *= s
  if stride != 8:
    raise UserError(f'{name}: the pools\' strides multiply to {stride}; DeepLab\'s '
                    'heads and label shrinking assume output stride 8')
  return pools


def avg_pool_3x3(x_BxHxWxC):
  """3x3 stride-1 average pool, pad 1, always dividing by 9 (Caffe AVE)."""
  total = jax.lax.reduce_window(x_BxHxWxC, 0.0, jax.lax.add, (1, 3, 3, 1),
                                (1, 1, 1, 1), ((0, 0), (1, 1), (1, 1), (0, 0)))
  return total / 9  # A Python 0.0 init makes this JAX's differentiable window sum.


class VGG16(nn.Module):
  """DeepLab's VGG-16 trunk (no fc layers): output stride 8, 512 channels."""
  pools: Sequence[Sequence[int]] = LARGEFOV_POOLS  # pool1..5 (kernel, stride, pad).
  eval_pools: Optional[Sequence[Sequence[int]]] = None  # At test (train=False); None: `pools`.
  pool5a: bool = False
  base_width: int = 64  # conv1's width; the others scale with it (64: VGG-16).
  layers: Layers = Layers()  # Its atrous_impl and dtype (VGG has no BatchNorm).

  def feature_strides(self) -> dict[str, int]:
    strides, stride = {'image': 1}, 1
    for stage, (_, s, _) in enumerate(self.pools, start=1):
      stride *= s
      if stage <= 4:
        strides[f'pool{stage}'] = stride
    strides[OUT] = stride
    return strides

  @nn.compact
  def __call__(self, x_BxHxWx3, train: bool):
    # No BatchNorm or dropout in the trunk; `train` only picks the pools.
    pools = self.pools if train or self.eval_pools is None else self.eval_pools
    x = x_BxHxWx3
    maps = {'image': x}
    for stage, (width, num_convs) in enumerate(_STAGES, start=1):
      rate = 2 if stage == 5 else 1
      width = width * self.base_width // 64
      for i in range(num_convs):
        x = self.layers.conv(width, 3, rate=rate, name=f'conv{stage}_{i + 1}')(x)
        x = nn.relu(x)
      kernel, stride, pad = pools[stage - 1]
      x = max_pool_caffe(x, kernel, stride=stride, pad=pad)
      if stage <= 4:
        maps[f'pool{stage}'] = x
    if self.pool5a:
      x = avg_pool_3x3(x)
    maps[OUT] = x
    return Features(maps, self.feature_strides())


@registry.register_backbone('vgg16')
def from_config(section, layers: Layers) -> VGG16:
  """`config.model.backbone` with name 'vgg16'."""
  registry.check_fields(section, "backbone 'vgg16'",
                        ('pools', 'eval_pools', 'pool5a', 'base_width'))
  eval_pools = section.get('eval_pools', ())
  return VGG16(pools=check_pools(section.get('pools', LARGEFOV_POOLS)),
               eval_pools=(check_pools(eval_pools, 'model.backbone.eval_pools')
                           if eval_pools else None),
               pool5a=bool(section.get('pool5a', False)),
               base_width=int(section.get('base_width', 64)), layers=layers)
