"""Lite R-ASPP (LR-ASPP), the MobileNetV3 paper's segmentation head (arXiv 1905.02244, 6.4).

As torchvision's `LRASPPHead` (torchvision/models/segmentation/lraspp.py,
0.28.0), on a low (stride 8) and a high (stride 16) map:

  cbr              1x1 conv high -> `width` (128), no bias, BN, ReLU
  scale            global mean of high -> 1x1 conv -> `width`, no bias, sigmoid
  (cbr * scale), bilinearly resized to the low map's size (align_corners=False)
  high_classifier  1x1 conv with bias -> classes, of that
  low_classifier   1x1 conv with bias -> classes, of the low map; the two summed

at the low map's stride (8); the logits go to the image outside the head
(torchvision: F.interpolate, bilinear, align_corners=False; here inference
with `model.align_corners=False`). The paper's head pools with a 49x49 kernel
at stride (16, 20); torchvision's (and this) pools globally.

`reads` = (low, high) feature names: ('block4', 'out') on MobileNetV3-Large
(torchvision's `stage_indices[-4]` and `[-1]`), ('block2', 'out') on Small.
Parameters `cbr/{conv,bn}`, `scale/kernel`, `{low,high}_classifier/{kernel,
bias}` (both score classes: `classifier_layers()`). Registered as head
'lraspp' (config.model.head: width, reads; configs/parts.py lraspp).
"""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax.numpy as jnp

from deeplab_jax.errors import UserError
from deeplab_jax.models import registry
from deeplab_jax.models.features import OUT
from deeplab_jax.models.layers import Layers
from deeplab_jax.models.resize import resize_bilinear


class LRASPP(nn.Module):
  num_classes: int
  width: int = 128  # torchvision's inter_channels.
  reads: Sequence[str] = ('block4', OUT)  # (low, high).
  layers: Layers = Layers()

  def classifier_layers(self) -> tuple[str, ...]:
    return ('low_classifier', 'high_classifier')

  @nn.compact
  def __call__(self, features, train: bool):
    low_name, high_name = self.reads
    low, high = features[low_name], features[high_name]
    x = self.layers.conv_bn(self.width, 1, name='cbr')(high, train)
    s = jnp.mean(high, axis=(1, 2), keepdims=True)
    s = nn.sigmoid(self.layers.conv(self.width, 1, use_bias=False, name='scale')(s))
    x = resize_bilinear(x * s, low.shape[1:3], align_corners=False)
    return (self.layers.conv(self.num_classes, 1, name='low_classifier')(low)
            + self.layers.conv(self.num_classes, 1, name='high_classifier')(x))


@registry.register_head('lraspp')
def from_config(section, layers: Layers, num_classes: int) -> LRASPP:
  """`config.model.head` with name 'lraspp'."""
  registry.check_fields(section, "head 'lraspp'", ('width', 'reads'))
  reads = tuple(section.get('reads', LRASPP.reads))
  if len(reads) != 2:
    raise UserError(f'model.head.reads {reads}: LR-ASPP reads two maps, (low, high)')
  width = int(section.get('width', LRASPP.width))
  if width < 1:
    raise UserError(f'model.head.width {width} must be positive')
  return LRASPP(num_classes, width=width, reads=reads, layers=layers)
