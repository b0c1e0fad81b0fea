"""DeepLab heads: ASPP (parallel atrous branches, SUMMED) and LargeFOV.

Each branch is an atrous conv at its own rate, optionally followed by 1x1 hidden
layers (VGG's fc6 -> fc7 -> fc8 with dropout), ending in a conv to the classes.
LargeFOV is the one-branch case (rate 12). The branch outputs are summed, not
concatenated, as in DeepLab v2. Registered as head 'aspp'
(config.model.head: rates, hidden, kernel_size, dropout, reads).
"""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn

from deeplab_jax.errors import UserError
from deeplab_jax.models import registry
from deeplab_jax.models.features import OUT
from deeplab_jax.models.layers import Layers


class ASPP(nn.Module):
  """Atrous spatial pyramid pooling head returning class scores.

  Parameters live under `branch{i}_hidden{j}` (if any) and `branch{i}_classifier`
  (the layers whose learning rate the paper multiplies by 10 / 20).
  """
  num_classes: int
  rates: Sequence[int] = (6, 12, 18, 24)
  hidden: Sequence[int] = ()  # widths of fc6 (3x3 at rate) and fc7 (1x1)
  kernel_size: int = 3
  dropout: float = 0.0
  reads: Sequence[str] = (OUT,)  # The one feature map the branches read.
  layers: Layers = Layers()

  def classifier_layers(self) -> tuple[str, ...]:
    return tuple(f'branch{i}_classifier' for i in range(len(self.rates)))

  @nn.compact
  def __call__(self, features, train: bool):
    (name,) = self.reads
    total = None
    for i, rate in enumerate(self.rates):
      y = features[name]
      for j, width in enumerate(self.hidden):
        k = self.kernel_size if j == 0 else 1
        y = self.layers.conv(width, k, rate=rate if j == 0 else 1,
                             name=f'branch{i}_hidden{j}')(y)
        y = nn.relu(y)
        y = nn.Dropout(self.dropout, deterministic=not train)(y)
      k = 1 if self.hidden else self.kernel_size
      y = self.layers.conv(self.num_classes, k, rate=1 if self.hidden else rate,
                           kernel_init=nn.initializers.normal(0.01),
                           name=self.classifier_layers()[i])(y)
      total = y if total is None else total + y
    return total


@registry.register_head('aspp')
def from_config(section, layers: Layers, num_classes: int) -> ASPP:
  """`config.model.head` with name 'aspp' (LargeFOV: one rate)."""
  registry.check_fields(section, "head 'aspp'",
                        ('rates', 'hidden', 'kernel_size', 'dropout', 'reads'))
  rates = tuple(int(r) for r in section.get('rates', ASPP.rates))
  if not rates:
    raise UserError('model.head.rates is empty: ASPP needs at least one branch')
  reads = tuple(section.get('reads', (OUT,)))
  if len(reads) != 1:
    raise UserError(f'model.head.reads {reads}: ASPP reads one feature map')
  return ASPP(num_classes=num_classes, rates=rates,
              hidden=tuple(int(w) for w in section.get('hidden', ())),
              kernel_size=int(section.get('kernel_size', 3)),
              dropout=float(section.get('dropout', 0.0)), reads=reads, layers=layers)
