"""DeepLab = input normalisation -> trunk (output stride 8) -> head.

Input convention (every model): NHWC images, RGB channel order, values 0-255
(uint8 or float). The model itself reorders channels (`channel_order='bgr'` for
Caffe weights), subtracts `pixel_mean` and divides by `pixel_std`, both given in
the model's channel order. `apply(variables, images, train=False)` returns
float32 logits at output stride 8: a size-n side gives ceil(n / 8) (321 -> 41).
"""

from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp


class DeepLab(nn.Module):
  trunk: nn.Module
  head: nn.Module
  pixel_mean: Sequence[float] = (123.675, 116.28, 103.53)
  pixel_std: Sequence[float] = (58.395, 57.12, 57.375)
  channel_order: str = 'rgb'
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, images_BxHxWx3, train: bool = False):
    x = images_BxHxWx3.astype(jnp.float32)
    if self.channel_order == 'bgr':
      x = x[..., ::-1]
    x = (x - jnp.asarray(self.pixel_mean, jnp.float32)) / jnp.asarray(
        self.pixel_std, jnp.float32)
    features = self.trunk(x.astype(self.dtype), train=train)
    logits = self.head(features, train=train)
    return logits.astype(jnp.float32)
