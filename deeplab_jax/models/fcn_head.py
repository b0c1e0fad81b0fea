"""torchvision's FCNHead: the head of its fcn_resnet50 / fcn_resnet101.

    3x3 conv in -> in / 4, no bias  ->  BN  ->  ReLU  ->  Dropout(0.1)  ->  1x1 conv to classes

as `torchvision/models/segmentation/fcn.py`'s `FCNHead(in_channels,
channels)` (an `nn.Sequential`: indices 0 conv, 1 BN, 2 ReLU, 3 Dropout, 4
conv; `inter_channels = in_channels // 4`, so 2048 -> 512 on ResNet's
layer4). It reads one map (`out`, ResNet's last stage at output stride 8 in
torchvision's segmentation models); the logits are upsampled to the image
outside the head (`F.interpolate(..., mode="bilinear", align_corners=False)`
in torchvision's `_SimpleSegmentationModel`; here by inference with
`model.align_corners=False`). Despite its name it is not FCN-8s' skip
architecture (models/fcn.py): one 3x3 conv and a classifier.

Parameters: `head/conv3x3/{conv,bn}` (a `ConvBN`: `conv/kernel`,
`bn/{scale,bias}` + `bn/{mean,var}`), `head/classifier/{kernel,bias}` (the
layer `classifier_layers()` names). Registered as head 'fcn_head'
(config.model.head: width, dropout, reads; configs/parts.py).
"""

from __future__ import annotations

from typing import Optional, Sequence

import flax.linen as nn

from deeplab_jax.errors import UserError
from deeplab_jax.models import registry
from deeplab_jax.models.features import OUT
from deeplab_jax.models.layers import Layers


class FCNHead(nn.Module):
  num_classes: int
  width: Optional[int] = None  # The 3x3 conv's width; None = input channels // 4.
  dropout: float = 0.1  # torchvision's nn.Dropout(0.1).
  reads: Sequence[str] = (OUT,)
  layers: Layers = Layers()

  def classifier_layers(self) -> tuple[str, ...]:
    return ('classifier',)

  @nn.compact
  def __call__(self, features, train: bool):
    (name,) = self.reads
    x = features[name]
    width = self.width or x.shape[-1] // 4
    x = self.layers.conv_bn(width, 3, name='conv3x3')(x, train)
    x = nn.Dropout(self.dropout, deterministic=not train)(x)
    return self.layers.conv(self.num_classes, 1, name='classifier')(x)


@registry.register_head('fcn_head')
def from_config(section, layers: Layers, num_classes: int) -> FCNHead:
  """`config.model.head` with name 'fcn_head'."""
  registry.check_fields(section, "head 'fcn_head'", ('width', 'dropout', 'reads'))
  reads = tuple(section.get('reads', (OUT,)))
  if len(reads) != 1:
    raise UserError(f'model.head.reads {reads}: fcn_head reads one feature map')
  width = section.get('width', None)
  return FCNHead(num_classes, width=int(width) if width else None,
                 dropout=float(section.get('dropout', 0.1)), reads=reads, layers=layers)
