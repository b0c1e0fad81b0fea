"""ResNet-50/101/152: DeepLab v2's Caffe layout, and torchvision's (v1.5) by option.

Stem (`layer1`): 7x7/2 conv (64) + BN + ReLU, then a 3x3/2 max pool with pad
1, in Caffe's ceil mode (DeepLab v2's prototxt) or, with `stem_ceil_mode=False`,
PyTorch's floor mode (torchvision/models/resnet.py: `nn.MaxPool2d(kernel_size=3,
stride=2, padding=1)`): 321 -> 81 either way, but 40 -> 11 (ceil) / 10 (floor).
Then bottleneck stages `layer2`..`layer5` with [3, 4, 23, 3] blocks (ResNet-101;
50 and 152 share the code); each block is `reduce` (1x1), `conv3x3` (at the
block's atrous rate), `increase` (1x1, 4x wider), plus a 1x1 conv + BN
`shortcut` in a stage's first block. A stage's stride sits in `reduce` with
`stride_in_1x1=True` (the Caffe layout of the original ResNet, DeepLab v2's
weights) or in `conv3x3` with False (torchvision's "ResNet V1.5", its
Bottleneck's comment); the shortcut carries it in both.

`output_stride` 8 / 16 / 32: layer3 .. layer5 have stride 2 each (layer2
stride 1, after the stem's 4); from the deepest down, a stage's stride is
replaced by atrous rate (torchvision's `replace_stride_with_dilation`, the
DeepLab v3 paper's section 3.1): OS 16 dilates layer5 (rate 2), OS 8 layer4
(rate 2) and layer5 (rate 4): 321 -> 41 at OS 8. How a dilated stage's
blocks take the rate (`dilation_style`):
  'deeplab_v2'   every block at the stage's rate (the v2 prototxt: res4*
                 rate 2, res5* rate 4), the default;
  'torchvision'  the first block keeps the previous stage's rate, the others
                 take the new one (torchvision's `_make_layer`: block 0 gets
                 `previous_dilation`).
`multi_grid` (DeepLab v3 section 3.2, "Multi_Grid = (1, 2, 4)"): unit rates
multiplying the rates of layer5's blocks, one per block; () = all 1.

Names follow the widely used PyTorch port of v2 (`layer2/block1/reduce/conv/
kernel`, `.../bn/{scale,bias,mean,var}`), which maps one-to-one onto the
Caffe names (`res2a_branch2a`, ...) and onto torchvision's (`layer1.0.conv1`,
convert/torchvision/). Convs have no bias; BatchNorm is 'frozen' or 'train'.

Features: `layer1` (the stem, stride 4), `layer2` (4; torchvision's
`layer1`), `layer3` (8), `layer4`, `layer5` and `out` (layer5) at the strides
output_stride gives. Registered as backbone 'resnet' (config.model.backbone:
depth, base_width, stride_in_1x1, output_stride, multi_grid, dilation_style,
stem_ceil_mode; configs/parts.py).
"""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn

from deeplab_jax.errors import UserError
from deeplab_jax.models import registry
from deeplab_jax.models.features import OUT, Features
from deeplab_jax.models.layers import Layers
from deeplab_jax.models.pooling import max_pool_caffe, max_pool_floor

# Bottleneck blocks per stage; 14 (one block a stage) and 26 (two) are for tests.
BLOCKS = {14: (1, 1, 1, 1), 26: (2, 2, 2, 2), 50: (3, 4, 6, 3), 101: (3, 4, 23, 3),
          152: (3, 8, 36, 3)}
# Output widths of layer2..layer5 at base_width 64.
_WIDTHS = (256, 512, 1024, 2048)
OUTPUT_STRIDES = (8, 16, 32)
DILATION_STYLES = ('deeplab_v2', 'torchvision')


def stage_plan(depth: int, output_stride: int = 8, multi_grid: Sequence[int] = (),
               dilation_style: str = 'deeplab_v2'):
  """((stride, (rate of each block)) of layer2..layer5, for these options.

      stage_plan(101)[2:]  # ((1, (2,) * 23), (1, (4, 4, 4))): DeepLab v2
      stage_plan(50, 8, dilation_style='torchvision')[2:]
                           # ((1, (1, 2, 2, 2, 2, 2)), (1, (2, 4, 4))): torchvision OS 8
  """
  if output_stride not in OUTPUT_STRIDES:
    raise ValueError(f'output_stride {output_stride} is not one of {OUTPUT_STRIDES}')
  if dilation_style not in DILATION_STYLES:
    raise ValueError(f'dilation_style {dilation_style!r} is not one of {DILATION_STYLES}')
  blocks = BLOCKS[depth]
  multi_grid = tuple(multi_grid) or (1,) * blocks[3]
  if len(multi_grid) != blocks[3]:
    raise ValueError(f'multi_grid {multi_grid} needs one rate for each of layer5\'s '
                     f'{blocks[3]} blocks')
  plan, stride, rate = [], 4, 1
  for stage, num_blocks in enumerate(blocks):
    s = 1 if stage == 0 else 2
    previous = rate
    if stage > 0 and stride * s > output_stride:  # Stride replaced by dilation.
      rate, s = rate * s, 1
    stride *= s
    rates = [rate] * num_blocks
    if dilation_style == 'torchvision':
      rates[0] = previous
    if stage == 3:
      rates = [r * g for r, g in zip(rates, multi_grid)]
    plan.append((s, tuple(rates)))
  return tuple(plan)


class Bottleneck(nn.Module):
  features: int  # Output width; the inner convs are features / 4 wide.
  stride: int = 1
  rate: int = 1
  shortcut: bool = False
  stride_in_1x1: bool = True  # Caffe (True) or torchvision's V1.5 (False, in the 3x3).
  layers: Layers = Layers(batch_norm='frozen')

  @nn.compact
  def __call__(self, x, train: bool):
    conv_bn = self.layers.conv_bn
    mid = self.features // 4
    first, second = (self.stride, 1) if self.stride_in_1x1 else (1, self.stride)
    h = conv_bn(mid, 1, stride=first, name='reduce')(x, train)
    h = conv_bn(mid, 3, stride=second, rate=self.rate, name='conv3x3')(h, train)
    h = conv_bn(self.features, 1, relu=False, name='increase')(h, train)
    if self.shortcut:
      x = conv_bn(self.features, 1, stride=self.stride, relu=False, name='shortcut')(x, train)
    return nn.relu(h + x)


class ResLayer(nn.Module):
  """A stage: a bottleneck per rate, the first with stride and shortcut."""
  rates: Sequence[int]
  features: int
  stride: int = 1
  stride_in_1x1: bool = True
  layers: Layers = Layers(batch_norm='frozen')

  @nn.compact
  def __call__(self, x, train: bool):
    for i, rate in enumerate(self.rates):
      x = Bottleneck(self.features, stride=self.stride if i == 0 else 1, rate=rate,
                     shortcut=i == 0, stride_in_1x1=self.stride_in_1x1,
                     layers=self.layers, name=f'block{i + 1}')(x, train)
    return x


class Stem(nn.Module):
  """7x7/2 conv + BN + ReLU (`conv1`), then the 3x3/2 max pool (ceil or floor mode)."""
  features: int = 64
  ceil_mode: bool = True  # Caffe's pooling size rule; False: PyTorch's.
  layers: Layers = Layers(batch_norm='frozen')

  @nn.compact
  def __call__(self, x, train: bool):
    x = self.layers.conv_bn(self.features, 7, stride=2, name='conv1')(x, train)
    pool = max_pool_caffe if self.ceil_mode else max_pool_floor
    return pool(x, 3, stride=2, pad=1)


class ResNet(nn.Module):
  """ResNet trunk: 2048 channels (at base_width 64) at `output_stride`."""
  depth: int = 101
  base_width: int = 64  # Stem width; stage widths scale with it (64: ResNet).
  stride_in_1x1: bool = True  # DeepLab v2 / Caffe; False: torchvision.
  output_stride: int = 8
  multi_grid: Sequence[int] = ()  # Unit rates of layer5's blocks; () = 1 each.
  dilation_style: str = 'deeplab_v2'  # Or 'torchvision' (see the module docstring).
  stem_ceil_mode: bool = True  # The stem's max pool: Caffe's ceil mode; False: floor.
  layers: Layers = Layers(batch_norm='frozen')

  def plan(self):
    return stage_plan(self.depth, self.output_stride, self.multi_grid, self.dilation_style)

  def feature_strides(self) -> dict[str, int]:
    strides, stride = {'layer1': 4}, 4
    for stage, (s, _) in enumerate(self.plan(), start=2):
      stride *= s
      strides[f'layer{stage}'] = stride
    strides[OUT] = stride
    return strides

  @nn.compact
  def __call__(self, x_BxHxWx3, train: bool):
    if self.depth not in BLOCKS:
      raise ValueError(f'ResNet depth {self.depth} is not one of {sorted(BLOCKS)}')
    x = Stem(self.base_width, ceil_mode=self.stem_ceil_mode, layers=self.layers,
             name='layer1')(x_BxHxWx3, train)
    maps = {'layer1': x}
    for stage, (width, (stride, rates)) in enumerate(zip(_WIDTHS, self.plan()), start=2):
      x = ResLayer(rates, width * self.base_width // 64, stride, self.stride_in_1x1,
                   layers=self.layers, name=f'layer{stage}')(x, train)
      maps[f'layer{stage}'] = x
    maps[OUT] = x
    return Features(maps, self.feature_strides())


FIELDS = ('depth', 'base_width', 'stride_in_1x1', 'output_stride', 'multi_grid',
          'dilation_style', 'stem_ceil_mode')


@registry.register_backbone('resnet')
def from_config(section, layers: Layers) -> ResNet:
  """`config.model.backbone` with name 'resnet'."""
  registry.check_fields(section, "backbone 'resnet'", FIELDS)
  depth = int(section.get('depth', 101))
  if depth not in BLOCKS:
    raise UserError(f'model.backbone.depth {depth} is not one of {sorted(BLOCKS)}')
  if layers.batch_norm == 'none':
    raise UserError("model.batch_norm 'none' is not available for ResNet")
  model = ResNet(depth=depth, base_width=int(section.get('base_width', 64)),
                 stride_in_1x1=bool(section.get('stride_in_1x1', True)),
                 output_stride=int(section.get('output_stride', 8)),
                 multi_grid=tuple(int(g) for g in section.get('multi_grid', ())),
                 dilation_style=str(section.get('dilation_style', 'deeplab_v2')),
                 stem_ceil_mode=bool(section.get('stem_ceil_mode', True)), layers=layers)
  try:
    model.plan()
  except ValueError as e:
    raise UserError(f'model.backbone: {e}') from None
  return model
