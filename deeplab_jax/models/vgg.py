"""VGG-16 in DeepLab's layout (v1 and v2 VGG models).

conv1_1 .. conv5_3 (3x3, ReLU); pool1-3 are 3x3 max pools with stride 2 and
pad 1, pool4 and pool5 keep stride 1 (3x3, pad 1), and conv5_x run at atrous
rate 2, so the output stride is 8. Pooling follows Caffe's ceil-mode size rule,
so a 321x321 input gives 41x41 and 513 gives 65, as the released models do.
The LargeFOV prototxts add `pool5a`, a 3x3 stride-1 average pool (zero padding
counted in the divisor, as Caffe and PyTorch's default do) before fc6.
Layer names are Caffe's, so converted weights map by name.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from deeplab_jax.models.atrous import AtrousConv
from deeplab_jax.models.pooling import max_pool_caffe

# (width, number of convs) per stage.
_STAGES = ((64, 2), (128, 2), (256, 3), (512, 3), (512, 3))


def avg_pool_3x3(x_BxHxWxC):
  """3x3 stride-1 average pool, pad 1, always dividing by 9 (Caffe AVE)."""
  total = jax.lax.reduce_window(x_BxHxWxC, 0.0, jax.lax.add, (1, 3, 3, 1),
                                (1, 1, 1, 1), ((0, 0), (1, 1), (1, 1), (0, 0)))
  return total / 9  # A Python 0.0 init makes this JAX's differentiable window sum.


class VGG16(nn.Module):
  """DeepLab's VGG-16 trunk (no fc layers): output stride 8, 512 channels.

  With `return_skips`, returns (features, [image, pool1, .., pool4]): the
  inputs of v1's multi-layer "MSc" features.
  """
  pool5a: bool = False
  return_skips: bool = False
  base_width: int = 64  # conv1's width; the others scale with it (64: VGG-16).
  atrous_impl: str = 'dilation'
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x_BxHxWx3, train: bool):
    del train  # No BatchNorm or dropout in the trunk.
    x = x_BxHxWx3
    skips = [x]
    for stage, (width, num_convs) in enumerate(_STAGES, start=1):
      rate = 2 if stage == 5 else 1
      width = width * self.base_width // 64
      for i in range(num_convs):
        x = AtrousConv(width, 3, rate=rate, impl=self.atrous_impl,
                       dtype=self.dtype, name=f'conv{stage}_{i + 1}')(x)
        x = nn.relu(x)
      x = max_pool_caffe(x, 3, stride=2 if stage <= 3 else 1, pad=1)
      if stage <= 4:
        skips.append(x)
    if self.pool5a:
      x = avg_pool_3x3(x)
    return (x, skips) if self.return_skips else x
