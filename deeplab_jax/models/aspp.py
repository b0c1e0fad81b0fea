"""DeepLab heads: ASPP (parallel atrous branches, SUMMED) and LargeFOV.

Each branch is an atrous conv at its own rate, optionally followed by 1x1 hidden
layers (VGG's fc6 -> fc7 -> fc8 with dropout), ending in a conv to the classes.
LargeFOV is the one-branch case (rate 12). The branch outputs are summed, not
concatenated, as in DeepLab v2.
"""

from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp

from deeplab_jax.models.atrous import AtrousConv


class ASPP(nn.Module):
  """Atrous spatial pyramid pooling head returning class scores.

  Parameters live under `branch{i}/` with `hidden{j}` (if any) and `classifier`
  (the layer whose learning rate the paper multiplies by 10 / 20).
  """
  num_classes: int
  rates: Sequence[int] = (6, 12, 18, 24)
  hidden: Sequence[int] = ()  # widths of fc6 (3x3 at rate) and fc7 (1x1)
  kernel_size: int = 3
  dropout: float = 0.0
  atrous_impl: str = 'dilation'
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x_BxHxWxC, train: bool):
    total = None
    for i, rate in enumerate(self.rates):
      y = x_BxHxWxC
      for j, width in enumerate(self.hidden):
        k = self.kernel_size if j == 0 else 1
        y = AtrousConv(width, k, rate=rate if j == 0 else 1,
                       impl=self.atrous_impl, dtype=self.dtype,
                       name=f'branch{i}_hidden{j}')(y)
        y = nn.relu(y)
        y = nn.Dropout(self.dropout, deterministic=not train)(y)
      k = 1 if self.hidden else self.kernel_size
      y = AtrousConv(self.num_classes, k, rate=1 if self.hidden else rate,
                     impl=self.atrous_impl, dtype=self.dtype,
                     kernel_init=nn.initializers.normal(0.01),
                     name=f'branch{i}_classifier')(y)
      total = y if total is None else total + y
    return total
