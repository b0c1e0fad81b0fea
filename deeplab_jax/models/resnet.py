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

Features: `layer1` (the stem, stride 4), `layer2` .. `layer5` (4, 8, 8, 8)
and `out` (layer5). Registered as backbone 'resnet' (config.model.backbone:
depth, base_width).
"""

from __future__ import annotations

import flax.linen as nn

from deeplab_jax.errors import UserError
from deeplab_jax.models import registry
from deeplab_jax.models.features import OUT, Features
from deeplab_jax.models.layers import Layers
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
  layers: Layers = Layers(batch_norm='frozen')

  @nn.compact
  def __call__(self, x, train: bool):
    conv_bn = self.layers.conv_bn
    mid = self.features // 4
    h = conv_bn(mid, 1, stride=self.stride, name='reduce')(x, train)
    h = conv_bn(mid, 3, rate=self.rate, name='conv3x3')(h, train)
    h = conv_bn(self.features, 1, relu=False, name='increase')(h, train)
    if self.shortcut:
      x = conv_bn(self.features, 1, stride=self.stride, relu=False, name='shortcut')(x, train)
    return nn.relu(h + x)


class ResLayer(nn.Module):
  """A stage: `num_blocks` bottlenecks, the first with stride and shortcut."""
  num_blocks: int
  features: int
  stride: int = 1
  rate: int = 1
  layers: Layers = Layers(batch_norm='frozen')

  @nn.compact
  def __call__(self, x, train: bool):
    for i in range(self.num_blocks):
      x = Bottleneck(self.features, stride=self.stride if i == 0 else 1,
                     rate=self.rate, shortcut=i == 0, layers=self.layers,
                     name=f'block{i + 1}')(x, train)
    return x


class Stem(nn.Module):
  """7x7/2 conv + BN + ReLU (`conv1`), then the ceil-mode 3x3/2 max pool."""
  features: int = 64
  layers: Layers = Layers(batch_norm='frozen')

  @nn.compact
  def __call__(self, x, train: bool):
    x = self.layers.conv_bn(self.features, 7, stride=2, name='conv1')(x, train)
    return max_pool_caffe(x, 3, stride=2, pad=1)


class ResNet(nn.Module):
  """DeepLab v2's ResNet trunk: 2048 channels at output stride 8."""
  depth: int = 101
  base_width: int = 64  # Stem width; stage widths scale with it (64: ResNet).
  layers: Layers = Layers(batch_norm='frozen')

  def feature_strides(self) -> dict[str, int]:
    strides, stride = {'layer1': 4}, 4
    for stage, (_, s, _) in enumerate(_STAGES, start=2):
      stride *= s
      strides[f'layer{stage}'] = stride
    strides[OUT] = stride
    return strides

  @nn.compact
  def __call__(self, x_BxHxWx3, train: bool):
    if self.depth not in BLOCKS:
      raise ValueError(f'ResNet depth {self.depth} is not one of {sorted(BLOCKS)}')
    x = Stem(self.base_width, layers=self.layers, name='layer1')(x_BxHxWx3, train)
    maps = {'layer1': x}
    for stage, (num_blocks, (width, stride, rate)) in enumerate(
        zip(BLOCKS[self.depth], _STAGES), start=2):
      x = ResLayer(num_blocks, width * self.base_width // 64, stride, rate,
                   layers=self.layers, name=f'layer{stage}')(x, train)
      maps[f'layer{stage}'] = x
    maps[OUT] = x
    return Features(maps, self.feature_strides())


@registry.register_backbone('resnet')
def from_config(section, layers: Layers) -> ResNet:
  """`config.model.backbone` with name 'resnet'."""
  registry.check_fields(section, "backbone 'resnet'", ('depth', 'base_width'))
  depth = int(section.get('depth', 101))
  if depth not in BLOCKS:
    raise UserError(f'model.backbone.depth {depth} is not one of {sorted(BLOCKS)}')
  if layers.batch_norm == 'none':
    raise UserError("model.batch_norm 'none' is not available for ResNet")
  return ResNet(depth=depth, base_width=int(section.get('base_width', 64)), layers=layers)
