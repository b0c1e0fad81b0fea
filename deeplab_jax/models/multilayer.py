"""DeepLab v1's "MSc": class scores from multi-layer features.

Not multi-scale inputs (that is v2's MSC, in `deeplab.py`): a two-layer MLP
(3x3 conv, 128 channels, strided down to output stride 8; then 1x1, 128) on the
input image and on each of pool1-pool4, each followed by its own 1x1 score
layer, the scores summed with the main network's. Summing per-branch scores is
the paper's "concatenate 5 x 128 channels before the classifier", written the
way the released prototxt does it, so its weights map layer by layer.
"""

from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp

from deeplab_jax.models.atrous import AtrousConv


def stride_to(size, target):
  """The stride s in (1, 2, 4, 8) with ceil(size / s) == target."""
  for s in (1, 2, 4, 8):
    if -(-size // s) == target:
      return s
  raise ValueError(f'no stride maps size {size} onto {target}')


class MultiLayerScores(nn.Module):
  """Sum over skips of score(mlp(skip)); parameters under `msc{i}_*`."""
  num_classes: int
  widths: Sequence[int] = (128, 128)
  dropout: float = 0.5
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, skips, out_size, train: bool):
    total = None
    for i, x in enumerate(skips, start=1):
      stride = stride_to(x.shape[1], out_size[0])
      if stride_to(x.shape[2], out_size[1]) != stride:
        raise ValueError(f'skip {i} of shape {x.shape} does not map onto {out_size}')
      for j, width in enumerate(self.widths):
        first = j == 0
        x = AtrousConv(width, 3 if first else 1, stride=stride if first else 1,
                       dtype=self.dtype,
                       kernel_init=nn.initializers.normal(0.001),
                       name=f'msc{i}_conv{j + 1}')(x)
        x = nn.relu(x)
        x = nn.Dropout(self.dropout, deterministic=not train)(x)
      y = AtrousConv(self.num_classes, 1, dtype=self.dtype,
                     kernel_init=nn.initializers.normal(0.01),
                     name=f'msc{i}_classifier')(x)
      total = y if total is None else total + y
    return total
