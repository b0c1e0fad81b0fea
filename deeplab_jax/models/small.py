"""A narrow, shallow DeepLab trunk for CPU demos and tests.

Same building blocks as the paper's trunks, scaled down: three stride-2 stages
(3x3 convs, BatchNorm, ReLU) bring the output stride to 8, then atrous stages
keep it there while the field of view grows (as VGG's conv5 at rate 2 and
ResNet's stages 4-5 at rates 2 and 4 do). With `residual=True` the stages after
the first downsampling are ResNet basic blocks (two 3x3 convs + identity). A
size-n input gives a ceil(n / 8) map, as the Caffe models do (321 -> 41).
"""

from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp

from deeplab_jax.models.atrous import AtrousConv
from deeplab_jax.models.conv_bn import ConvBN


class BasicBlock(nn.Module):
  """ResNet basic block at `rate`: relu(x + bn(conv(relu(bn(conv(x))))))."""
  features: int
  rate: int = 1
  batch_norm: str = 'train'
  atrous_impl: str = 'dilation'
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool):
    kw = dict(rate=self.rate, batch_norm=self.batch_norm,
              atrous_impl=self.atrous_impl, dtype=self.dtype)
    y = ConvBN(self.features, name='conv1', **kw)(x, train)
    y = ConvBN(self.features, relu=False, name='conv2', **kw)(y, train)
    if x.shape[-1] != self.features:
      x = AtrousConv(self.features, 1, use_bias=False, impl=self.atrous_impl,
                     dtype=self.dtype, name='shortcut')(x)
    return nn.relu(x + y)


class SmallTrunk(nn.Module):
  """Output-stride-8 trunk: `widths` at strides 2, 4, 8, then atrous stages."""
  widths: Sequence[int] = (16, 32, 64)
  atrous_widths: Sequence[int] = (64, 64)
  atrous_rates: Sequence[int] = (2, 4)
  residual: bool = False
  batch_norm: str = 'train'
  atrous_impl: str = 'dilation'
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x_BxHxWx3, train: bool):
    kw = dict(batch_norm=self.batch_norm, atrous_impl=self.atrous_impl,
              dtype=self.dtype)
    x = x_BxHxWx3
    for i, width in enumerate(self.widths):
      x = ConvBN(width, stride=2, name=f'stage{i + 1}_down', **kw)(x, train)
      if self.residual and i > 0:
        x = BasicBlock(width, name=f'stage{i + 1}_block', **kw)(x, train)
      else:
        x = ConvBN(width, name=f'stage{i + 1}_conv', **kw)(x, train)
    for i, (width, rate) in enumerate(zip(self.atrous_widths, self.atrous_rates)):
      block = BasicBlock if self.residual else ConvBN
      x = block(width, rate=rate, name=f'atrous{i + 1}', **kw)(x, train)
    return x
