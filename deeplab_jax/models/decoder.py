"""DeepLab v3+'s head: v3's ASPP on the last map, then a decoder at stride 4.

v3+ (Chen et al. 2018, "Encoder-Decoder with Atrous Separable Convolution",
arXiv 1802.02611, section 3.1 and Fig. 2): the encoder's features (v3's ASPP,
aspp_v3.py, on the output-stride-16 map) are upsampled bilinearly by 4 and
concatenated with the backbone's stride-4 low-level features after a 1x1 conv
that reduces them to 48 channels (Table 1: 48 is best) + BN + ReLU; two 3x3
convs of 256 (Table 2: "[3x3, 256] x 2"), each + BN + ReLU, refine them, and a
1x1 conv scores the classes at stride 4. `separable` makes the ASPP's atrous
branches and both decoder convs depthwise-separable (section 3.2, the paper's
best model; the official code's `aspp_with_separable_conv` and
`decoder_use_separable_conv`).

Sizes: the official code (tensorflow/models research/deeplab/model.py,
`refine_by_decoder`) resizes both maps to the decoder size with
`tf.image.resize_bilinear(..., align_corners=True)`; that size is the low-level
map's for crops of 4 k + 1 (513 -> 129). Here the encoder's map is resized to
the low-level map's size whatever it is (a 65 x 97 image: 17 x 25 from 9 x 13 at
output stride 8, 5 x 7 at 16), so any input size works; `align_corners` picks the
convention (True: the official code's).

Parameters: the ASPP's as aspp_v3's (`branch0`, `branch{i}`, `pool`, `project`),
then `feature_projection`, `decoder_conv0`, `decoder_conv1` (the official
scopes' names) and `classifier`. Registered as head 'deeplabv3plus'
(config.model.head: the ASPP's fields, low_level_width, decoder_width,
align_corners, reads = (low-level, last): ResNet ('layer2', 'out')).
"""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax.numpy as jnp

from deeplab_jax.errors import UserError
from deeplab_jax.models import aspp_v3
from deeplab_jax.models import registry
from deeplab_jax.models.features import OUT
from deeplab_jax.models.layers import Layers
from deeplab_jax.models.resize import resize_bilinear


class DeepLabV3Plus(nn.Module):
  """ASPP (v3) on `reads[1]`, decoded with `reads[0]`; scores at `reads[0]`'s stride."""
  num_classes: int
  rates: Sequence[int] = (6, 12, 18)
  width: int = 256
  image_pooling: bool = True
  dropout: float = 0.1
  separable: bool = False
  low_level_width: int = 48
  decoder_width: int = 256
  align_corners: bool = True
  reads: Sequence[str] = ('layer2', OUT)  # (low-level stride-4 map, ASPP input).
  layers: Layers = Layers()

  def classifier_layers(self) -> tuple[str, ...]:
    return ('classifier',)

  @nn.compact
  def __call__(self, features, train: bool):
    low_name, high_name = self.reads
    low = features[low_name]
    y = aspp_v3.aspp_features(features[high_name], train, layers=self.layers,
                              rates=self.rates, width=self.width,
                              image_pooling=self.image_pooling, dropout=self.dropout,
                              separable=self.separable)
    y = resize_bilinear(y, low.shape[1:3], self.align_corners)
    low = self.layers.conv_bn(self.low_level_width, 1, name='feature_projection')(low, train)
    y = jnp.concatenate([y, low], axis=-1)
    for i in range(2):
      y = aspp_v3.conv3x3_bn(self.layers, self.decoder_width, 1, self.separable,
                             f'decoder_conv{i}')(y, train)
    return self.layers.conv(self.num_classes, 1, kernel_init=nn.initializers.normal(0.01),
                            name='classifier')(y)


@registry.register_head('deeplabv3plus')
def from_config(section, layers: Layers, num_classes: int) -> DeepLabV3Plus:
  """`config.model.head` with name 'deeplabv3plus' (configs/parts.py: deeplabv3plus)."""
  registry.check_fields(section, "head 'deeplabv3plus'",
                        tuple(f for f in aspp_v3.FIELDS if f != 'extra_conv')
                        + ('low_level_width', 'decoder_width', 'align_corners', 'reads'))
  reads = tuple(section.get('reads', DeepLabV3Plus.reads))
  if len(reads) != 2:
    raise UserError(f'model.head.reads {reads}: the v3+ decoder reads two maps, '
                    '(low-level, last), e.g. (layer2, out)')
  widths = {k: int(section.get(k, getattr(DeepLabV3Plus, k)))
            for k in ('low_level_width', 'decoder_width')}
  if min(widths.values()) < 1:
    raise UserError(f'model.head widths {widths} must be positive')
  return DeepLabV3Plus(num_classes=num_classes, reads=reads, layers=layers,
                       align_corners=bool(section.get('align_corners', True)),
                       **widths, **aspp_v3.settings(section))
