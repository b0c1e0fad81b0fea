"""Atrous (dilated) convolution: one module, interchangeable implementations.

Parameters are always `kernel` (kh, kw, in, out) and `bias` (out,), whatever
implementation runs, so weights convert by path and every implementation gives
the same numbers (to float rounding). Padding keeps the spatial size for
stride 1 ("same" with the dilated kernel's extent, rate * (k - 1) in all, the
extra pixel of an even kernel at the end), as the DeepLab prototxts do (pad =
rate for 3x3, 6 for v1's 4x4 at rate 4).

Implementations (`impl`), for rate > 1 at stride 1:
  'dilation'        XLA's convolution with `rhs_dilation` (the kernel spread out).
  'space_to_batch'  the v2 paper's input subsampling (section 3.1): the padded
                    input is split into rate x rate sub-images stacked on the
                    batch axis, convolved densely, and interleaved back.
  'taps'            one matmul of the input against all k*k taps at once
                    (C -> k*k*O), then k*k shifted, clipped adds of O-channel
                    slices; taps falling wholly in the padding are skipped.
                    Fast where the output is narrow (the ASPP classifier convs
                    2048 -> 21 at rates 6-24), where XLA's CPU dilated conv is slow.
  'auto'            per backend and shape, the fastest measured (benchmarks/
                    README.md): 'taps' on CPU when out * 4 <= in, else 'dilation'.
Rate-1 convs always run as a plain convolution and 1x1 convs as a dot (XLA's
CPU 1x1 convolution is 20-35% slower than the same contraction as a matmul).
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

IMPLEMENTATIONS = ('auto', 'dilation', 'space_to_batch', 'taps')

_DIMS = ('NHWC', 'HWIO', 'NHWC')


def same_padding(kernel_size, rate):
  """(before, after) padding that keeps the size at stride 1."""
  total = rate * (kernel_size - 1)
  return total // 2, total - total // 2


def resolve_impl(impl, in_features, out_features, backend=None):
  """The implementation 'auto' stands for on `backend` (default: JAX's)."""
  if impl not in IMPLEMENTATIONS:
    raise ValueError(f'atrous impl {impl!r} is not one of {IMPLEMENTATIONS}')
  if impl != 'auto':
    return impl
  backend = backend or jax.default_backend()
  if backend == 'cpu' and out_features * 4 <= in_features:
    return 'taps'
  return 'dilation'


def conv_dilation(x_BxHxWxC, kernel, rate=1, stride=1):
  """XLA convolution with kernel dilation and 'same' padding."""
  pad = same_padding(kernel.shape[0], rate)
  return jax.lax.conv_general_dilated(
      x_BxHxWxC, kernel, window_strides=(stride, stride), padding=(pad, pad),
      rhs_dilation=(rate, rate), dimension_numbers=_DIMS)


def conv_pointwise(x_BxHxWxC, kernel, stride=1):
  """1x1 convolution (stride keeps pixels 0, s, 2s, ...) as a dot."""
  if stride > 1:
    x_BxHxWxC = x_BxHxWxC[:, ::stride, ::stride]
  return jnp.einsum('bhwc,co->bhwo', x_BxHxWxC, kernel[0, 0])


def conv_space_to_batch(x_BxHxWxC, kernel, rate):
  """Stride-1 atrous conv by input subsampling (v2 paper, section 3.1).

  With the input padded by `lo` in front, output pixel y = rate * a + b reads
  padded rows y + rate * i = rate * (a + i) + b: sub-image b (every rate-th row
  from b) convolved densely. The padding at the end makes every sub-image
  ceil(H / rate) + k - 1 rows long.
  """
  b, h, w, c = x_BxHxWxC.shape
  k = kernel.shape[0]
  lo, _ = same_padding(k, rate)
  ha, wa = -(-h // rate), -(-w // rate)
  hs, ws = ha + k - 1, wa + k - 1
  x = jnp.pad(x_BxHxWxC, ((0, 0), (lo, rate * hs - h - lo),
                          (lo, rate * ws - w - lo), (0, 0)))
  x = x.reshape(b, hs, rate, ws, rate, c).transpose(0, 2, 4, 1, 3, 5)
  x = x.reshape(b * rate * rate, hs, ws, c)
  y = jax.lax.conv_general_dilated(x, kernel, (1, 1), 'VALID',
                                   dimension_numbers=_DIMS)
  o = kernel.shape[-1]
  y = y.reshape(b, rate, rate, ha, wa, o).transpose(0, 3, 1, 4, 2, 5)
  return y.reshape(b, ha * rate, wa * rate, o)[:, :h, :w]


def conv_taps(x_BxHxWxC, kernel, rate):
  """Stride-1 atrous conv as one matmul against all taps plus shifted adds.

  The k*k taps are one (C, k*k, O) matrix; each tap's O-channel slice of the
  product is shifted by the tap's offset, clipped to the image and added.
  (Fusing an ASPP head's branches into one matmul measured slower on CPU.)
  """
  _, h, w, _ = x_BxHxWxC.shape
  k = kernel.shape[0]
  lo, _ = same_padding(k, rate)
  taps = [(i, j) for i in range(k) for j in range(k)
          if abs(rate * i - lo) < h and abs(rate * j - lo) < w]  # Else all padding.
  columns = jnp.stack([kernel[i, j] for i, j in taps], axis=1)
  z = jnp.einsum('bhwc,cto->bhwto', x_BxHxWxC, columns)
  total = None
  for t, (i, j) in enumerate(taps):
    dy, dx = rate * i - lo, rate * j - lo
    y0, y1 = max(0, -dy), min(h, h - dy)
    x0, x1 = max(0, -dx), min(w, w - dx)
    part = z[:, y0 + dy:y1 + dy, x0 + dx:x1 + dx, t]
    part = jnp.pad(part, ((0, 0), (y0, h - y1), (x0, w - x1), (0, 0)))
    total = part if total is None else total + part
  return total


def atrous_conv(x_BxHxWxC, kernel, rate=1, stride=1, impl='dilation'):
  """Dispatches one convolution to `impl` (see the module docstring)."""
  k, _, in_features, out_features = kernel.shape
  if k == 1:
    return conv_pointwise(x_BxHxWxC, kernel, stride)
  impl = resolve_impl(impl, in_features, out_features)
  if rate == 1 or stride > 1 or impl == 'dilation':
    return conv_dilation(x_BxHxWxC, kernel, rate, stride)
  if impl == 'space_to_batch':
    return conv_space_to_batch(x_BxHxWxC, kernel, rate)
  return conv_taps(x_BxHxWxC, kernel, rate)


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
    if self.stride > 1 and self.rate > 1:
      raise ValueError('atrous conv with both stride and rate > 1 is not supported')
    k = self.kernel_size
    kernel = self.param('kernel', self.kernel_init,
                        (k, k, x_BxHxWxC.shape[-1], self.features), jnp.float32)
    y = atrous_conv(x_BxHxWxC.astype(self.dtype), kernel.astype(self.dtype),
                    self.rate, self.stride, self.impl)
    if self.use_bias:
      bias = self.param('bias', self.bias_init, (self.features,), jnp.float32)
      y = y + bias.astype(self.dtype)
    return y
