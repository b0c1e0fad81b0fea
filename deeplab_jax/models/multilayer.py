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


# Strides bringing the image, pool1, pool2, pool3 and pool4 to output stride 8.
STRIDES = (8, 4, 2, 1, 1)


def fit_to(x_BxHxWxC, size):
  """Zero-pads (bottom/right) or crops to `size`.

  Only needed off the 8k + 1 sizes the prototxt was built for (321, 513):
  there the trunk's three ceil-mode pools round up where a strided conv
  rounds down, and the maps differ by a pixel.
  """
  h, w = size
  x = x_BxHxWxC[:, :h, :w]
  return jnp.pad(x, ((0, 0), (0, h - x.shape[1]), (0, w - x.shape[2]), (0, 0)))


class MultiLayerScores(nn.Module):
  """Sum over skips of score(mlp(skip)); parameters under `msc{i}_*`.

  `skips` are [image, pool1, pool2, pool3, pool4]; the first conv of each MLP
  is 3x3 with pad 1 at stride 8, 4, 2, 1, 1 (321 -> 41 from every skip).
  """
  num_classes: int
  widths: Sequence[int] = (128, 128)
  dropout: float = 0.5
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, skips, out_size, train: bool):
    total = None
    for i, (x, stride) in enumerate(zip(skips, STRIDES), start=1):
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
      y = fit_to(y, out_size)
      total = y if total is None else total + y
    return total
