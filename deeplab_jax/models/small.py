"""A narrow, shallow DeepLab trunk for CPU demos and tests.

Same building blocks as the paper's trunks, scaled down: three stride-2 stages
(3x3 convs, BatchNorm, ReLU) bring the output stride to 8, then atrous stages
keep it there while the field of view grows (as VGG's conv5 at rate 2 and
ResNet's stages 4-5 at rates 2 and 4 do). With `residual=True` the stages after
the first downsampling are ResNet basic blocks (two 3x3 convs + identity). A
size-n input gives a ceil(n / 8) map, as the Caffe models do (321 -> 41).
Features: `stage{i}` after each stride-2 stage (strides 2, 4, 8), `atrous{i}`
after each atrous stage (8), and `out` (the last). Registered as backbone
'small' (config.model.backbone: widths, atrous_widths, atrous_rates, residual).
"""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn

from deeplab_jax.errors import UserError
from deeplab_jax.models import registry
from deeplab_jax.models.features import OUT, Features
from deeplab_jax.models.layers import Layers


class BasicBlock(nn.Module):
  """ResNet basic block at `rate`: relu(x + bn(conv(relu(bn(conv(x))))))."""
  features: int
  rate: int = 1
  layers: Layers = Layers()

  @nn.compact
  def __call__(self, x, train: bool):
    y = self.layers.conv_bn(self.features, rate=self.rate, name='conv1')(x, train)
    y = self.layers.conv_bn(self.features, rate=self.rate, relu=False, name='conv2')(y, train)
    if x.shape[-1] != self.features:
      x = self.layers.conv(self.features, 1, use_bias=False, name='shortcut')(x)
    return nn.relu(x + y)


class SmallTrunk(nn.Module):
  """Output-stride-8 trunk: `widths` at strides 2, 4, 8, then atrous stages."""
  widths: Sequence[int] = (16, 32, 64)
  atrous_widths: Sequence[int] = (64, 64)
  atrous_rates: Sequence[int] = (2, 4)
  residual: bool = False
  layers: Layers = Layers()

  def feature_strides(self) -> dict[str, int]:
    strides = {f'stage{i + 1}': 2 ** (i + 1) for i in range(len(self.widths))}
    last = 2 ** len(self.widths)
    strides.update({f'atrous{i + 1}': last for i in range(len(self.atrous_widths))})
    strides[OUT] = last
    return strides

  @nn.compact
  def __call__(self, x_BxHxWx3, train: bool):
    kw = dict(layers=self.layers)
    x = x_BxHxWx3
    maps = {}
    for i, width in enumerate(self.widths):
      x = self.layers.conv_bn(width, stride=2, name=f'stage{i + 1}_down')(x, train)
      if self.residual and i > 0:
        x = BasicBlock(width, name=f'stage{i + 1}_block', **kw)(x, train)
      else:
        x = self.layers.conv_bn(width, name=f'stage{i + 1}_conv')(x, train)
      maps[f'stage{i + 1}'] = x
    for i, (width, rate) in enumerate(zip(self.atrous_widths, self.atrous_rates)):
      if self.residual:
        x = BasicBlock(width, rate=rate, name=f'atrous{i + 1}', **kw)(x, train)
      else:
        x = self.layers.conv_bn(width, rate=rate, name=f'atrous{i + 1}')(x, train)
      maps[f'atrous{i + 1}'] = x
    maps[OUT] = x
    return Features(maps, self.feature_strides())


@registry.register_backbone('small')
def from_config(section, layers: Layers) -> SmallTrunk:
  """`config.model.backbone` with name 'small'."""
  registry.check_fields(section, "backbone 'small'",
                        ('widths', 'atrous_widths', 'atrous_rates', 'residual'))
  widths = tuple(section.get('widths', SmallTrunk.widths))
  atrous_widths = tuple(section.get('atrous_widths', SmallTrunk.atrous_widths))
  atrous_rates = tuple(section.get('atrous_rates', SmallTrunk.atrous_rates))
  if len(atrous_widths) != len(atrous_rates):
    raise UserError(f'model.backbone.atrous_widths {atrous_widths} and atrous_rates '
                    f'{atrous_rates} need one rate per width')
  return SmallTrunk(widths=widths, atrous_widths=atrous_widths, atrous_rates=atrous_rates,
                    residual=bool(section.get('residual', False)), layers=layers)
