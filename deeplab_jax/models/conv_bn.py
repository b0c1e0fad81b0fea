"""Conv -> BatchNorm -> optional ReLU, the unit of the ResNet and small trunks.

Parameters: `conv/kernel` and `bn/{scale,bias}` (+ `bn/{mean,var}` statistics),
or `conv/{kernel,bias}` with `batch_norm='none'`.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from deeplab_jax.models.atrous import AtrousConv
from deeplab_jax.models.batch_norm import batch_norm as make_batch_norm


class ConvBN(nn.Module):
  features: int
  kernel_size: int = 3
  stride: int = 1
  rate: int = 1
  relu: bool = True
  batch_norm: str = 'train'  # 'train' | 'frozen' | 'none'
  bn_momentum: float = 0.9
  atrous_impl: str = 'dilation'
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool):
    use_bn = self.batch_norm != 'none'
    x = AtrousConv(self.features, self.kernel_size, rate=self.rate,
                   stride=self.stride, use_bias=not use_bn,
                   impl=self.atrous_impl, dtype=self.dtype, name='conv')(x)
    if use_bn:
      x = make_batch_norm(self.batch_norm, train, momentum=self.bn_momentum,
                          dtype=self.dtype)(x)
    return nn.relu(x) if self.relu else x
