"""VGG-16 in DeepLab's layout (v1 and v2 VGG models).

conv1_1 .. conv5_3 (3x3, ReLU); pool1-3 are 3x3 max pools with stride 2 and
pad 1, pool4 and pool5 keep stride 1 (3x3, pad 1), and conv5_x run at atrous
rate 2, so the output stride is 8. Pooling follows Caffe's ceil-mode size rule,
so a 321x321 input gives 41x41 and 513 gives 65, as the released models do.
Layer names are Caffe's, so converted weights map by name.
"""

from __future__ import annotations

import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from deeplab_jax.models.atrous import AtrousConv

# (width, number of convs) per stage.
_STAGES = ((64, 2), (128, 2), (256, 3), (512, 3), (512, 3))


def caffe_pool_size(size, kernel, stride, pad):
  """Caffe's pooling output size: ceil mode, last window must start inside."""
  out = int(math.ceil((size + 2 * pad - kernel) / stride)) + 1
  if pad and (out - 1) * stride >= size + pad:
    out -= 1
  return out


def max_pool_caffe(x_BxHxWxC, kernel=3, stride=2, pad=1):
  """Max pooling with Caffe's padding and output size (padding never wins)."""
  pads = [(0, 0)]
  for size in x_BxHxWxC.shape[1:3]:
    out = caffe_pool_size(size, kernel, stride, pad)
    extra = max((out - 1) * stride + kernel - size - 2 * pad, 0)
    pads.append((pad, pad + extra))
  pads.append((0, 0))
  return jax.lax.reduce_window(x_BxHxWxC, -jnp.inf, jax.lax.max,
                               (1, kernel, kernel, 1), (1, stride, stride, 1),
                               pads)


class VGG16(nn.Module):
  """DeepLab's VGG-16 trunk (no fc layers): output stride 8, 512 channels."""
  atrous_impl: str = 'dilation'
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x_BxHxWx3, train: bool):
    del train  # No BatchNorm or dropout in the trunk.
    x = x_BxHxWx3
    for stage, (width, num_convs) in enumerate(_STAGES, start=1):
      rate = 2 if stage == 5 else 1
      for i in range(num_convs):
        x = AtrousConv(width, 3, rate=rate, impl=self.atrous_impl,
                       dtype=self.dtype, name=f'conv{stage}_{i + 1}')(x)
        x = nn.relu(x)
      x = max_pool_caffe(x, 3, stride=2 if stage <= 3 else 1, pad=1)
    return x
