"""Atrous (dilated) convolution: one module, interchangeable implementations.

Parameters are always `kernel` (kh, kw, in, out) and `bias` (out,), whatever
implementation runs, so weights convert by path and every implementation gives
the same numbers. Padding keeps the spatial size for stride 1 ("same" with the
dilated kernel's extent), as in the DeepLab prototxts (pad = rate for 3x3).
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

IMPLEMENTATIONS = ('dilation',)


class AtrousConv(nn.Module):
  """2-D convolution with `rate` (dilation), NHWC, 'same' padding."""
  features: int
  kernel_size: int = 3
  rate: int = 1
  stride: int = 1
  use_bias: bool = True
  impl: str = 'dilation'
  dtype: Any = jnp.float32
  kernel_init: Any = nn.initializers.he_normal()
  bias_init: Any = nn.initializers.zeros

  @nn.compact
  def __call__(self, x_BxHxWxC):
    if self.impl not in IMPLEMENTATIONS:
      raise ValueError(f'atrous impl {self.impl!r} is not one of {IMPLEMENTATIONS}')
    in_features = x_BxHxWxC.shape[-1]
    k = self.kernel_size
    kernel = self.param('kernel', self.kernel_init,
                        (k, k, in_features, self.features), jnp.float32)
    x = x_BxHxWxC.astype(self.dtype)
    pad_total = self.rate * (k - 1)
    pad = (pad_total // 2, pad_total - pad_total // 2)
    y = jax.lax.conv_general_dilated(
        x, kernel.astype(self.dtype),
        window_strides=(self.stride, self.stride),
        padding=(pad, pad),
        rhs_dilation=(self.rate, self.rate),
        dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
    if self.use_bias:
      bias = self.param('bias', self.bias_init, (self.features,), jnp.float32)
      y = y + bias.astype(self.dtype)
    return y
