"""ResNet-50/101/152 in the Caffe layout DeepLab v2 uses (output stride 8).

Stem (`layer1`): 7x7/2 conv (64) + BN + ReLU, 3x3/2 max pool in Caffe's ceil
mode with pad 1. Then bottleneck stages `layer2`..`layer5` with [3, 4, 23, 3]
blocks (ResNet-101; 50 and 152 share the code); each block is `reduce` (1x1, carrying the stage's stride,
the Caffe layout, not the 3x3), `conv3x3` (at the stage's atrous rate),
`increase` (1x1, 4x wider), plus a 1x1 conv + BN `shortcut` in a stage's first
block. layer3 has stride 2; layer4 and layer5 keep stride 1 at rates 2 and 4,
so the output stride is 8: 321 -> 41, 513 -> 65, 224x256 -> 29x33.

Names follow the widely used PyTorch port (`layer2/block1/reduce/conv/kernel`,
`.../bn/{scale,bias,mean,var}`), which maps one-to-one onto the Caffe names
(`res2a_branch2a`, `bn2a_branch2a`, `scale2a_branch2a`, ...). Convs have no
bias; BatchNorm is 'frozen' (the paper) or 'train', by config.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from deeplab_jax.models.conv_bn import ConvBN
from deeplab_jax.models.pooling import max_pool_caffe

# Bottleneck blocks per stage; 14 (one block a stage) is for tests.
BLOCKS = {14: (1, 1, 1, 1), 50: (3, 4, 6, 3), 101: (3, 4, 23, 3),
          152: (3, 8, 36, 3)}
# (output width, stride, atrous rate) of layer2..layer5.
_STAGES = ((256, 1, 1), (512, 2, 1), (1024, 1, 2), (2048, 1, 4))


class Bottleneck(nn.Module):
  features: int  # Output width; the inner convs are features / 4 wide.
  stride: int = 1
  rate: int = 1
  shortcut: bool = False
  batch_norm: str = 'frozen'
  atrous_impl: str = 'dilation'
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool):
    kw = dict(batch_norm=self.batch_norm, atrous_impl=self.atrous_impl,
              dtype=self.dtype)
    mid = self.features // 4
    h = ConvBN(mid, 1, stride=self.stride, name='reduce', **kw)(x, train)
    h = ConvBN(mid, 3, rate=self.rate, name='conv3x3', **kw)(h, train)
    h = ConvBN(self.features, 1, relu=False, name='increase', **kw)(h, train)
    if self.shortcut:
      x = ConvBN(self.features, 1, stride=self.stride, relu=False,
                 name='shortcut', **kw)(x, train)
    return nn.relu(h + x)


class ResLayer(nn.Module):
  """A stage: `num_blocks` bottlenecks, the first with stride and shortcut."""
  num_blocks: int
  features: int
  stride: int = 1
  rate: int = 1
  batch_norm: str = 'frozen'
  atrous_impl: str = 'dilation'
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool):
    for i in range(self.num_blocks):
      x = Bottleneck(self.features, stride=self.stride if i == 0 else 1,
                     rate=self.rate, shortcut=i == 0,
                     batch_norm=self.batch_norm, atrous_impl=self.atrous_impl,
                     dtype=self.dtype, name=f'block{i + 1}')(x, train)
    return x


class Stem(nn.Module):
  """7x7/2 conv + BN + ReLU (`conv1`), then the ceil-mode 3x3/2 max pool."""
  features: int = 64
  batch_norm: str = 'frozen'
  atrous_impl: str = 'dilation'
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool):
    x = ConvBN(self.features, 7, stride=2, batch_norm=self.batch_norm,
               atrous_impl=self.atrous_impl, dtype=self.dtype,
               name='conv1')(x, train)
    return max_pool_caffe(x, 3, stride=2, pad=1)


class ResNet(nn.Module):
  """DeepLab v2's ResNet trunk: 2048 channels at output stride 8."""
  depth: int = 101
  base_width: int = 64  # Stem width; stage widths scale with it (64: ResNet).
  batch_norm: str = 'frozen'
  atrous_impl: str = 'dilation'
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x_BxHxWx3, train: bool):
    if self.depth not in BLOCKS:
      raise ValueError(f'ResNet depth {self.depth} is not one of {sorted(BLOCKS)}')
    kw = dict(batch_norm=self.batch_norm, atrous_impl=self.atrous_impl,
              dtype=self.dtype)
    x = Stem(self.base_width, name='layer1', **kw)(x_BxHxWx3, train)
    for stage, (num_blocks, (width, stride, rate)) in enumerate(
        zip(BLOCKS[self.depth], _STAGES), start=2):
      x = ResLayer(num_blocks, width * self.base_width // 64, stride, rate, name=f'layer{stage}',
                   **kw)(x, train)
    return x
