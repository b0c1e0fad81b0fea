"""MobileNetV3-Large / Small (Howard et al. 2019, arXiv 1905.02244) in torchvision's layout.

The backbone of torchvision's `deeplabv3_mobilenet_v3_large` and
`lraspp_mobilenet_v3_large` (torchvision/models/mobilenetv3.py, 0.28.0):

  stem       3x3/2 conv, 16, BN, hard-swish                 (features.0)
  block1..n  inverted residuals, the paper's Tables 1 (Large, 15 blocks) and
             2 (Small, 11): `expand` 1x1 to the expanded width (absent where
             that equals the input width), BN, act; `depthwise` k x k at the
             block's stride or rate, BN, act; `se` squeeze-and-excitation
             (global mean -> 1x1 `fc1` to make_divisible(expanded / 4, 8) +
             ReLU -> 1x1 `fc2` + hard-sigmoid -> channel scale); `project` 1x1,
             BN, no activation; + the input where stride 1 and widths agree
                                                            (features.1 .. n)
  last       1x1 conv to 6x the last block's width, BN, hard-swish
                                                            (features.n+1)

act is ReLU or hard-swish per block (the tables' RE / HS); BatchNorm has
eps 1e-3 and PyTorch momentum 0.01 (flax 0.99) as torchvision's `norm_layer`;
convs have no bias except the SE's. `width_mult` scales every width through
`make_divisible(c * width_mult, 8)` (the slim code's rounding, torchvision's
`_make_divisible`); `reduced_tail` halves the last stage's widths.

`output_stride` 32 (ImageNet) or 16: torchvision's `dilated=True` (what its
segmentation models build): the last stage's stride-2 block keeps stride 1
and that stage's depthwise convs take rate 2 (its first block included,
unlike ResNet's torchvision dilation style).

Features: `stem` (stride 2), `block1` .. `blockN` (one map per block, the
names matching torchvision's `features.<i>` indices), `last` and `out`.
torchvision's heads read `block4` (Large; `block2` Small: the strided first
block of the stride-8 stage, its `stage_indices[-4]`) and `out`. Registered
as backbone 'mobilenet_v3' (config.model.backbone: variant, width_mult,
reduced_tail, output_stride; configs/parts.py mobilenet_v3).
"""

from __future__ import annotations

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp

from deeplab_jax.errors import UserError
from deeplab_jax.models import registry
from deeplab_jax.models.features import OUT, Features
from deeplab_jax.models.layers import Layers

# (input, kernel, expanded, output, SE, activation, stride) of each inverted
# residual before width_mult: torchvision's `_mobilenet_v3_conf` (the
# paper's Tables 1 and 2); the marked rows start the last stage (C4).
LARGE = (
    (16, 3, 16, 16, False, 'relu', 1),
    (16, 3, 64, 24, False, 'relu', 2),
    (24, 3, 72, 24, False, 'relu', 1),
    (24, 5, 72, 40, True, 'relu', 2),
    (40, 5, 120, 40, True, 'relu', 1),
    (40, 5, 120, 40, True, 'relu', 1),
    (40, 3, 240, 80, False, 'hardswish', 2),
    (80, 3, 200, 80, False, 'hardswish', 1),
    (80, 3, 184, 80, False, 'hardswish', 1),
    (80, 3, 184, 80, False, 'hardswish', 1),
    (80, 3, 480, 112, True, 'hardswish', 1),
    (112, 3, 672, 112, True, 'hardswish', 1),
    (112, 5, 672, 160, True, 'hardswish', 2),  # C4.
    (160, 5, 960, 160, True, 'hardswish', 1),
    (160, 5, 960, 160, True, 'hardswish', 1),
)
SMALL = (
    (16, 3, 16, 16, True, 'relu', 2),
    (16, 3, 72, 24, False, 'relu', 2),
    (24, 3, 88, 24, False, 'relu', 1),
    (24, 5, 96, 40, True, 'hardswish', 2),
    (40, 5, 240, 40, True, 'hardswish', 1),
    (40, 5, 240, 40, True, 'hardswish', 1),
    (40, 5, 120, 48, True, 'hardswish', 1),
    (48, 5, 144, 48, True, 'hardswish', 1),
    (48, 5, 288, 96, True, 'hardswish', 2),  # C4.
    (96, 5, 576, 96, True, 'hardswish', 1),
    (96, 5, 576, 96, True, 'hardswish', 1),
)
VARIANTS = {'large': LARGE, 'small': SMALL}
OUTPUT_STRIDES = (16, 32)
ACTIVATIONS = {'relu': nn.relu, 'hardswish': jax.nn.hard_swish}
BN = dict(bn_momentum=0.99, bn_epsilon=1e-3)  # torchvision: BatchNorm2d(eps=0.001, momentum=0.01).


def make_divisible(value: float, divisor: int = 8) -> int:
  """The nearest multiple of `divisor` to `value`, at least `divisor`, and not
  more than 10% below `value` (torchvision's `_make_divisible`, from the slim
  MobileNet code)."""
  rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
  return rounded + divisor if rounded < 0.9 * value else rounded


@dataclasses.dataclass(frozen=True)
class Block:
  """One inverted residual, widths after width_mult."""
  inputs: int
  kernel: int
  expanded: int
  outputs: int
  se: bool
  activation: str
  stride: int  # 1 where the stage is dilated.
  rate: int
  strided: bool = False  # The table's stride was 2 (torchvision's `_is_cn`).

  @property
  def expands(self) -> bool:
    return self.expanded != self.inputs

  @property
  def squeezed(self) -> int:
    return make_divisible(self.expanded // 4)

  @property
  def residual(self) -> bool:
    """The input is added (torchvision: table stride 1 and equal widths)."""
    return not self.strided and self.inputs == self.outputs


def plan(variant: str = 'large', width_mult: float = 1.0, reduced_tail: bool = False,
         output_stride: int = 16) -> tuple[Block, ...]:
  """The blocks of a MobileNetV3 for these options.

      plan()[12]  # Block(112, 5, 672, 160, True, 'hardswish', stride=1, rate=2, strided=True)
  """
  if variant not in VARIANTS:
    raise ValueError(f'MobileNetV3 variant {variant!r} is not one of {sorted(VARIANTS)}')
  if output_stride not in OUTPUT_STRIDES:
    raise ValueError(f'output_stride {output_stride} is not one of {OUTPUT_STRIDES}')
  rows = VARIANTS[variant]
  tail = len(rows) - 3  # The last stage: its three blocks.
  blocks = []
  for i, (inputs, kernel, expanded, outputs, se, activation, stride) in enumerate(rows):
    in_tail, out_tail = i > tail, i >= tail
    divider = 2 if reduced_tail else 1
    inputs = inputs // divider if in_tail else inputs
    expanded = expanded // divider if in_tail else expanded
    outputs = outputs // divider if out_tail else outputs
    dilated = out_tail and output_stride == 16
    blocks.append(Block(make_divisible(inputs * width_mult), kernel,
                        make_divisible(expanded * width_mult),
                        make_divisible(outputs * width_mult), se, activation,
                        stride=1 if dilated else stride, rate=2 if dilated else 1,
                        strided=stride > 1))
  return tuple(blocks)


class SqueezeExcitation(nn.Module):
  """x * hard_sigmoid(fc2(relu(fc1(mean(x))))) (torchvision's SqueezeExcitation
  with scale_activation Hardsigmoid: relu6(x + 3) / 6)."""
  squeezed: int
  layers: Layers = Layers()

  @nn.compact
  def __call__(self, x_BxHxWxC):
    s = jnp.mean(x_BxHxWxC, axis=(1, 2), keepdims=True)
    s = nn.relu(self.layers.conv(self.squeezed, 1, name='fc1')(s))
    s = self.layers.conv(x_BxHxWxC.shape[-1], 1, name='fc2')(s)
    return x_BxHxWxC * jax.nn.hard_sigmoid(s)


class InvertedResidual(nn.Module):
  block: Block
  layers: Layers = Layers()

  @nn.compact
  def __call__(self, x, train: bool):
    b, conv_bn = self.block, self.layers.conv_bn
    act = ACTIVATIONS[b.activation]
    y = x
    if b.expands:
      y = act(conv_bn(b.expanded, 1, relu=False, name='expand', **BN)(y, train))
    y = act(conv_bn(b.expanded, b.kernel, stride=b.stride, rate=b.rate, depthwise=True,
                    relu=False, name='depthwise', **BN)(y, train))
    if b.se:
      y = SqueezeExcitation(b.squeezed, layers=self.layers, name='se')(y)
    y = conv_bn(b.outputs, 1, relu=False, name='project', **BN)(y, train)
    if b.residual:
      y = y + x
    return y


class MobileNetV3(nn.Module):
  """MobileNetV3 features at `output_stride` (16: torchvision's segmentation trunk)."""
  variant: str = 'large'
  width_mult: float = 1.0
  reduced_tail: bool = False
  output_stride: int = 16
  layers: Layers = Layers()

  def plan(self) -> tuple[Block, ...]:
    return plan(self.variant, self.width_mult, self.reduced_tail, self.output_stride)

  def feature_strides(self) -> dict[str, int]:
    strides, stride = {'stem': 2}, 2
    for i, block in enumerate(self.plan(), start=1):
      stride *= block.stride
      strides[f'block{i}'] = stride
    strides['last'] = strides[OUT] = stride
    return strides

  @nn.compact
  def __call__(self, x_BxHxWx3, train: bool):
    blocks = self.plan()
    conv_bn = self.layers.conv_bn
    x = jax.nn.hard_swish(conv_bn(blocks[0].inputs, 3, stride=2, relu=False, name='stem',
                                  **BN)(x_BxHxWx3, train))
    maps = {'stem': x}
    for i, block in enumerate(blocks, start=1):
      x = InvertedResidual(block, layers=self.layers, name=f'block{i}')(x, train)
      maps[f'block{i}'] = x
    x = jax.nn.hard_swish(conv_bn(6 * blocks[-1].outputs, 1, relu=False, name='last',
                                  **BN)(x, train))
    maps['last'] = maps[OUT] = x
    return Features(maps, self.feature_strides())


FIELDS = ('variant', 'width_mult', 'reduced_tail', 'output_stride')


@registry.register_backbone('mobilenet_v3')
def from_config(section, layers: Layers) -> MobileNetV3:
  """`config.model.backbone` with name 'mobilenet_v3'."""
  registry.check_fields(section, "backbone 'mobilenet_v3'", FIELDS)
  model = MobileNetV3(variant=str(section.get('variant', 'large')),
                      width_mult=float(section.get('width_mult', 1.0)),
                      reduced_tail=bool(section.get('reduced_tail', False)),
                      output_stride=int(section.get('output_stride', 16)), layers=layers)
  if model.width_mult <= 0:
    raise UserError(f'model.backbone.width_mult {model.width_mult} must be positive')
  try:
    model.plan()
  except ValueError as e:
    raise UserError(f'model.backbone: {e}') from None
  return model
