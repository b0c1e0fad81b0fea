"""DeepLab v3's ASPP head: parallel branches CONCATENATED, image pooling, BatchNorm.

v3 (Chen et al. 2017, arXiv 1706.05587, section 3.3 "Atrous Spatial Pyramid
Pooling") changes v2's ASPP (aspp.py: branches scoring classes, summed) into a
feature module:

  branch0           1x1 conv, `width` (256) filters, BN, ReLU
  branch1..n        3x3 atrous convs at `rates`, 256, BN, ReLU ((6, 12, 18) at
                    output stride 16, doubled at 8: section 3.3 and Table 4)
  pool              image-level features: global average pooling of the map,
                    1x1 conv 256, BN, ReLU, bilinearly upsampled to the map's
                    size (a 1x1 map upsampled bilinearly is constant in either
                    corner convention, so it is broadcast)
  project           the concatenation (branch0, branch1..n, pool) -> 1x1 conv
                    256, BN, ReLU, dropout
  conv3x3           (`extra_conv`) a 3x3 conv 256 + BN + ReLU: torchvision's
                    `DeepLabHead` (torchvision/models/segmentation/deeplabv3.py)
                    has it after its ASPP; the paper and the official code
                    (tensorflow/models research/deeplab/model.py) do not
  classifier        1x1 conv with bias to the classes

Dropout after the projection: the official code's `concat_projection_dropout`
keeps 0.9 (dropout 0.1, model.py `_extract_features`); torchvision's ASPP uses
0.5. The official code concatenates the pooled branch FIRST; the order here is
torchvision's (pool last), so its checkpoints convert by index
(deeplab_jax/convert/torchvision/); the official order is a permutation of
`project`'s input rows. `separable` (v3+, arXiv 1802.02611 section 3.2) makes
the atrous branches depthwise-separable (`Layers.separable_conv_bn`).

`aspp_features` builds the module's layers inside its caller, so v3+'s
decoder (decoder.py) has the same layers under the same names without a copy.
Registered as head 'aspp_v3' (config.model.head: rates, width, image_pooling,
dropout, extra_conv, separable, reads).
"""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax.numpy as jnp

from deeplab_jax.errors import UserError
from deeplab_jax.models import registry
from deeplab_jax.models.features import OUT
from deeplab_jax.models.layers import Layers

FIELDS = ('rates', 'width', 'image_pooling', 'dropout', 'extra_conv', 'separable')


def conv3x3_bn(layers: Layers, width, rate, separable, name):
  """A 3x3 unit at `rate`: conv -> BN -> ReLU, or its depthwise-separable form
  (depthwise -> BN -> ReLU -> pointwise -> BN -> ReLU, v3+ section 3.2)."""
  if separable:
    return layers.separable_conv_bn(width, 3, rate=rate, name=name)
  return layers.conv_bn(width, 3, rate=rate, name=name)


def aspp_features(x_BxHxWxC, train: bool, *, layers: Layers, rates: Sequence[int],
                  width: int = 256, image_pooling: bool = True, dropout: float = 0.1,
                  separable: bool = False):
  """v3's ASPP on one map -> B x H x W x `width` features (`project`'s output).

  Called inside a compact module's method: its layers (branch0, branch1..n,
  pool, project) become that module's children.
  """
  branches = [layers.conv_bn(width, 1, name='branch0')(x_BxHxWxC, train)]
  for i, rate in enumerate(rates, start=1):
    branches.append(conv3x3_bn(layers, width, rate, separable, f'branch{i}')(
        x_BxHxWxC, train))
  if image_pooling:
    pooled = jnp.mean(x_BxHxWxC, axis=(1, 2), keepdims=True)  # Any H x W, odd included.
    pooled = layers.conv_bn(width, 1, name='pool')(pooled, train)
    branches.append(jnp.broadcast_to(pooled, branches[0].shape))
  y = layers.conv_bn(width, 1, name='project')(jnp.concatenate(branches, axis=-1), train)
  return nn.Dropout(dropout, deterministic=not train)(y)


class ASPPv3(nn.Module):
  """DeepLab v3 head: ASPP features, optional 3x3 conv, 1x1 classifier.

  Output at the stride of the map it reads (16 or 8 on the v3 ResNet).
  """
  num_classes: int
  rates: Sequence[int] = (6, 12, 18)
  width: int = 256
  image_pooling: bool = True
  dropout: float = 0.1
  extra_conv: bool = False
  separable: bool = False
  reads: Sequence[str] = (OUT,)  # The one feature map the ASPP reads.
  layers: Layers = Layers()

  def classifier_layers(self) -> tuple[str, ...]:
    return ('classifier',)

  @nn.compact
  def __call__(self, features, train: bool):
    (name,) = self.reads
    y = aspp_features(features[name], train, layers=self.layers, rates=self.rates,
                      width=self.width, image_pooling=self.image_pooling,
                      dropout=self.dropout, separable=self.separable)
    if self.extra_conv:
      y = self.layers.conv_bn(self.width, 3, name='conv3x3')(y, train)
    return self.layers.conv(self.num_classes, 1, kernel_init=nn.initializers.normal(0.01),
                            name='classifier')(y)


def settings(section) -> dict:
  """The ASPP fields of a head `section` (aspp_v3's or the decoder's), checked."""
  rates = tuple(int(r) for r in section.get('rates', ASPPv3.rates))
  width = int(section.get('width', ASPPv3.width))
  dropout = float(section.get('dropout', ASPPv3.dropout))
  if width < 1:
    raise UserError(f'model.head.width {width} must be positive')
  if not 0.0 <= dropout < 1.0:
    raise UserError(f'model.head.dropout {dropout} must be in [0, 1)')
  if any(r < 1 for r in rates):
    raise UserError(f'model.head.rates {rates} must be positive')
  return dict(rates=rates, width=width,
              image_pooling=bool(section.get('image_pooling', ASPPv3.image_pooling)),
              dropout=dropout, separable=bool(section.get('separable', ASPPv3.separable)))


@registry.register_head('aspp_v3')
def from_config(section, layers: Layers, num_classes: int) -> ASPPv3:
  """`config.model.head` with name 'aspp_v3' (configs/parts.py: aspp_v3)."""
  registry.check_fields(section, "head 'aspp_v3'", FIELDS + ('reads',))
  reads = tuple(section.get('reads', (OUT,)))
  if len(reads) != 1:
    raise UserError(f'model.head.reads {reads}: ASPP v3 reads one feature map')
  return ASPPv3(num_classes=num_classes, extra_conv=bool(section.get('extra_conv', False)),
                reads=reads, layers=layers, **settings(section))
