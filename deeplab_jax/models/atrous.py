"""Atrous (dilated) convolution: one module, interchangeable implementations.

Parameters are always `kernel` (kh, kw, in, out) and `bias` (out,), whatever
implementation runs, so weights convert by path and every implementation gives
the same numbers (to float rounding). Padding keeps the spatial size for
stride 1 ("same" with the dilated kernel's extent, rate * (k - 1) in all, the
extra pixel of an even kernel at the end), as the DeepLab prototxts do (pad =
rate for 3x3, 6 for v1's 4x4 at rate 4).

Implementations (`impl`), for stride 1:
  'dilation'        XLA's convolution with `rhs_dilation` (the kernel spread out).
  'dilation_taps_grad'  the same forward and input gradient; the kernel
                    gradient as per-tap matmuls. XLA's CPU kernel-gradient
                    convolutions were the slowest ops of both train steps:
                    160-200 ms each for ResNet-101's rate-2 3x3s (a third of
                    the step), 4.7 s for VGG's conv1_2 at 321x321.
  'space_to_batch'  the v2 paper's input subsampling (section 3.1): the padded
                    input is split into rate x rate sub-images stacked on the
                    batch axis, convolved densely, and interleaved back.
  'taps'            one matmul of the input against all k*k taps at once
                    (C -> k*k*O), then k*k shifted, clipped adds of O-channel
                    slices; taps falling wholly in the padding are skipped.
                    Fast where the output is narrow (the ASPP classifier convs
                    2048 -> 21 at rates 6-24), where XLA's CPU dilated conv is slow.
  'auto'            per backend and shape, the fastest measured (benchmarks/
                    README.md): on CPU 'taps' when out * 4 <= in, else
                    'dilation_taps_grad'; on GPU 'space_to_batch' (XLA's
                    dilated-conv gradient is slow there); 'dilation' on TPU.
'space_to_batch' runs rate-1 convs as plain ones; strided convs use XLA's
convolution (but a depthwise one under 'taps', so 'auto' on CPU: see below),
and 1x1 convs are a dot (XLA's CPU 1x1 convolution is
20-35% slower than the same contraction as a matmul).

Depthwise convolution (each channel filtered alone, `feature_group_count` =
channels in XLA's terms) runs through every implementation too: a kernel
(k, k, 1, C) on a C-channel input is depthwise (depth multiplier 1, what
DeepLab v3+ uses), told from the kernel's shape (`groups`). 'dilation' and
'space_to_batch' pass `feature_group_count=C` to XLA's convolution; 'taps'
pads the input once and adds the k*k strided slices times their per-channel
tap weights (no matmul: a depthwise tap is a per-channel product), at any
stride, MobileNet's stride-2 depthwise convs included; 'dilation_taps_grad' takes
each tap's kernel gradient as a per-channel sum; a 1x1 depthwise conv is a
per-channel product. 'auto' for depthwise: DEPTHWISE_AUTO by backend (measured
with benchmarks/atrous.py, figures in benchmarks/README.md).
`padding='valid'` (stride 1, rate 1, dense: FCN's fc6, 7x7 over pool5 with
no padding) gives the (H - k + 1) x (W - k + 1) map: 'dilation' and
'space_to_batch' as XLA's convolution, 'taps' and 'dilation_taps_grad' (so
'auto' on CPU) as one im2col matmul (`conv_valid_im2col`), whose gradients
are matmuls too. fc6's gradients (512 -> 4096 at 7x7, batch 2 of 11x11
maps) took 24.5 s as XLA's CPU convolutions, 0.36 s in the im2col form,
0.76 s in PyTorch (`python -m benchmarks.atrous --kind=valid`, 2-core CPU).

`SeparableConv` is the depthwise-separable convolution of v3+ (depthwise at a
rate, then 1x1 pointwise); layers.py's `SeparableConvBN` puts BatchNorm and
ReLU after each, the split form of the official code.
"""

from __future__ import annotations

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

IMPLEMENTATIONS = ('auto', 'dilation', 'space_to_batch', 'taps', 'dilation_taps_grad')

# What 'auto' picks for depthwise convs, by backend (others: 'dilation').
# CPU: 'taps', measured (benchmarks/README.md: v3+'s 2048-channel rate-6
# depthwise 3x3, forward 177 ms / gradient 0.8 s, against XLA's grouped conv's
# 455 ms / 13.1 s). GPU: 'dilation' (cuDNN's grouped conv), NOT yet measured.
DEPTHWISE_AUTO = {'cpu': 'taps', 'gpu': 'dilation'}

_DIMS = ('NHWC', 'HWIO', 'NHWC')


def same_padding(kernel_size, rate):
  """(before, after) padding that keeps the size at stride 1."""
  total = rate * (kernel_size - 1)
  return total // 2, total - total // 2


def groups(in_features, kernel_shape):
  """XLA's feature_group_count of `kernel_shape` (k, k, in / groups, out) on
  `in_features` channels: 1 (dense) or in_features (depthwise: (k, k, 1, C))."""
  kernel_in, out = kernel_shape[2], kernel_shape[3]
  if kernel_in == in_features:
    return 1
  if kernel_in == 1 and out == in_features:
    return in_features
  raise ValueError(f'kernel {tuple(kernel_shape)} on {in_features} channels is neither '
                   f'dense (k, k, {in_features}, out) nor depthwise (k, k, 1, {in_features})')


def resolve_impl(impl, in_features, out_features, backend=None, depthwise=False):
  """The implementation 'auto' stands for on `backend` (default: JAX's)."""
  if impl not in IMPLEMENTATIONS:
    raise ValueError(f'atrous impl {impl!r} is not one of {IMPLEMENTATIONS}')
  if impl != 'auto':
    return impl
  backend = backend or jax.default_backend()
  if depthwise:
    return DEPTHWISE_AUTO.get(backend, 'dilation')
  if backend == 'gpu':  # XLA's dilated-conv gradients are slow there (H100 figures).
    return 'space_to_batch'
  if backend != 'cpu':
    return 'dilation'
  return 'taps' if out_features * 4 <= in_features else 'dilation_taps_grad'


def conv_dilation(x_BxHxWxC, kernel, rate=1, stride=1):
  """XLA convolution with kernel dilation and 'same' padding (dense or depthwise)."""
  pad = same_padding(kernel.shape[0], rate)
  return jax.lax.conv_general_dilated(
      x_BxHxWxC, kernel, window_strides=(stride, stride), padding=(pad, pad),
      rhs_dilation=(rate, rate), dimension_numbers=_DIMS,
      feature_group_count=groups(x_BxHxWxC.shape[-1], kernel.shape))


def conv_pointwise(x_BxHxWxC, kernel, stride=1):
  """1x1 convolution (stride keeps pixels 0, s, 2s, ...) as a dot; depthwise,
  a per-channel product."""
  if stride > 1:
    x_BxHxWxC = x_BxHxWxC[:, ::stride, ::stride]
  if groups(x_BxHxWxC.shape[-1], kernel.shape) > 1:
    return x_BxHxWxC * kernel[0, 0, 0]
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
  y = jax.lax.conv_general_dilated(x, kernel, (1, 1), 'VALID', dimension_numbers=_DIMS,
                                   feature_group_count=groups(c, kernel.shape))
  o = kernel.shape[-1]
  y = y.reshape(b, rate, rate, ha, wa, o).transpose(0, 3, 1, 4, 2, 5)
  return y.reshape(b, ha * rate, wa * rate, o)[:, :h, :w]


def _tap_offsets(k, rate, h, w):
  """[(i, j, dy, dx)]: tap (i, j) reads input pixel p + (dy, dx) for output p.

  Taps that read only padding (|offset| >= size) are left out.
  """
  lo, _ = same_padding(k, rate)
  return [(i, j, rate * i - lo, rate * j - lo) for i in range(k) for j in range(k)
          if abs(rate * i - lo) < h and abs(rate * j - lo) < w]


def _in_image(dy, dx, h, w):
  """(y0, y1, x0, x1): the output pixels p whose p + (dy, dx) is in the image."""
  return max(0, -dy), min(h, h - dy), max(0, -dx), min(w, w - dx)


def _shifted_sum(z_BxHxWxTxO, offsets):
  """sum_t z[p + offsets[t], t] over in-image p + offset (zero outside)."""
  _, h, w, _, _ = z_BxHxWxTxO.shape
  total = None
  for t, (dy, dx) in enumerate(offsets):
    y0, y1, x0, x1 = _in_image(dy, dx, h, w)
    part = z_BxHxWxTxO[:, y0 + dy:y1 + dy, x0 + dx:x1 + dx, t]
    part = jnp.pad(part, ((0, 0), (y0, h - y1), (x0, w - x1), (0, 0)))
    total = part if total is None else total + part
  return total


def depthwise_taps(x_BxHxWxC, kernel, rate=1, stride=1):
  """Depthwise atrous conv at any stride: the input padded once ('same', as
  `conv_dilation`), then per tap a strided slice times the tap's C weights,
  summed; taps whose samples all fall in the padding are left out. Its
  gradients are pads and products, which XLA's CPU backend runs 3-10x faster
  than its grouped-convolution gradients (benchmarks/README.md, MobileNetV3).
  """
  b, h, w, c = x_BxHxWxC.shape
  k = kernel.shape[0]
  (top, bottom), (left, right) = same_padding(k, rate), same_padding(k, rate)
  x = jnp.pad(x_BxHxWxC, ((0, 0), (top, bottom), (left, right), (0, 0)))
  ho = (h + top + bottom - rate * (k - 1) - 1) // stride + 1
  wo = (w + left + right - rate * (k - 1) - 1) // stride + 1

  def reaches_image(offset, before, size, out):  # Any of offset + stride * t in the image?
    return offset + stride * (out - 1) >= before and offset < before + size

  total = None
  for i in range(k):
    for j in range(k):
      dy, dx = i * rate, j * rate
      if not (reaches_image(dy, top, h, ho) and reaches_image(dx, left, w, wo)):
        continue
      part = jax.lax.slice(x, (0, dy, dx, 0),
                           (b, dy + stride * (ho - 1) + 1, dx + stride * (wo - 1) + 1, c),
                           (1, stride, stride, 1)) * kernel[i, j, 0]
      total = part if total is None else total + part
  return total


def conv_taps(x_BxHxWxC, kernel, rate):
  """Stride-1 atrous conv as one matmul against all taps plus shifted adds.

  The k*k taps are one (C, k*k, O) matrix; each tap's O-channel slice of the
  product is shifted by the tap's offset, clipped to the image and added.
  (Fusing an ASPP head's branches into one matmul measured slower on CPU.)
  Depthwise kernels take `depthwise_taps`.
  """
  _, h, w, c = x_BxHxWxC.shape
  if groups(c, kernel.shape) > 1:
    return depthwise_taps(x_BxHxWxC, kernel, rate)
  taps = _tap_offsets(kernel.shape[0], rate, h, w)
  columns = jnp.stack([kernel[i, j] for i, j, _, _ in taps], axis=1)
  z = jnp.einsum('bhwc,cto->bhwto', x_BxHxWxC, columns)
  return _shifted_sum(z, [(dy, dx) for _, _, dy, dx in taps])


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def conv_dilation_taps_grad(x_BxHxWxC, kernel, rate):
  """Stride-1 conv: XLA's convolution forward and input gradient; the kernel
  gradient as one matmul per tap (the shifted input window contracted with
  the output gradient over batch and pixels), where XLA's CPU kernel-gradient
  convolution was up to 30x slower than the forward (VGG conv1_2, 321x321).
  """
  return conv_dilation(x_BxHxWxC, kernel, rate)


def _taps_grad_fwd(x, kernel, rate):
  return conv_dilation(x, kernel, rate), (x, kernel)


def _taps_grad_bwd(rate, residuals, g_BxHxWxO):
  x, kernel = residuals
  _, h, w, c = x.shape
  _, input_vjp = jax.vjp(lambda x: conv_dilation(x, kernel, rate), x)
  dx, = input_vjp(g_BxHxWxO)
  # Dense: (C, O) per tap; depthwise: (1, C), each channel's own sum.
  contract = 'bhwc,bhwo->co' if groups(c, kernel.shape) == 1 else 'bhwc,bhwc->c'
  dkernel = jnp.zeros(kernel.shape, kernel.dtype)
  for i, j, dy, dx_ in _tap_offsets(kernel.shape[0], rate, h, w):
    y0, y1, x0, x1 = _in_image(dy, dx_, h, w)
    window = x[:, y0 + dy:y1 + dy, x0 + dx_:x1 + dx_]
    tap = jnp.einsum(contract, window, g_BxHxWxO[:, y0:y1, x0:x1])
    dkernel = dkernel.at[i, j].set(tap.reshape(kernel.shape[2:]).astype(kernel.dtype))
  return dx, dkernel


conv_dilation_taps_grad.defvjp(_taps_grad_fwd, _taps_grad_bwd)


def atrous_conv(x_BxHxWxC, kernel, rate=1, stride=1, impl='dilation'):
  """Dispatches one convolution (dense, or depthwise for a (k, k, 1, C)
  kernel) to `impl` (see the module docstring)."""
  k, _, _, out_features = kernel.shape
  in_features = x_BxHxWxC.shape[-1]
  depthwise = groups(in_features, kernel.shape) > 1
  if k == 1:
    return conv_pointwise(x_BxHxWxC, kernel, stride)
  impl = resolve_impl(impl, in_features, out_features, depthwise=depthwise)
  if depthwise and impl == 'taps':  # Any stride (MobileNet's strided depthwise convs).
    return depthwise_taps(x_BxHxWxC, kernel, rate, stride)
  if stride > 1 or impl == 'dilation':
    return conv_dilation(x_BxHxWxC, kernel, rate, stride)
  if impl == 'dilation_taps_grad':
    return conv_dilation_taps_grad(x_BxHxWxC, kernel, rate)
  if impl == 'space_to_batch' and rate > 1:
    return conv_space_to_batch(x_BxHxWxC, kernel, rate)
  if impl == 'taps':
    return conv_taps(x_BxHxWxC, kernel, rate)
  return conv_dilation(x_BxHxWxC, kernel, rate)


def conv_valid_im2col(x_BxHxWxC, kernel):
  """Stride-1 'valid' conv as one matmul: the k*k shifted windows side by
  side on the channel axis (tap-major, as `kernel.reshape(k * k * C, O)`
  lays its rows out) against the flattened kernel."""
  k = kernel.shape[0]
  _, h, w, _ = x_BxHxWxC.shape
  ho, wo = h - k + 1, w - k + 1
  windows = jnp.concatenate([x_BxHxWxC[:, i:i + ho, j:j + wo]
                             for i in range(k) for j in range(k)], axis=-1)
  return jnp.einsum('bhwk,ko->bhwo', windows, kernel.reshape(-1, kernel.shape[-1]))


def conv_valid(x_BxHxWxC, kernel, impl='dilation'):
  """Stride-1, rate-1 dense convolution without padding (see the module docstring)."""
  k, _, in_features, out_features = kernel.shape
  _, h, w, c = x_BxHxWxC.shape
  if c != in_features:
    raise ValueError(f'a valid conv is dense: kernel {tuple(kernel.shape)} on {c} channels')
  if h < k or w < k:
    raise ValueError(f'a {k}x{k} valid conv needs a map of at least {k}x{k}, not {h}x{w}')
  if k == 1:
    return conv_pointwise(x_BxHxWxC, kernel)
  if resolve_impl(impl, in_features, out_features) in ('taps', 'dilation_taps_grad'):
    return conv_valid_im2col(x_BxHxWxC, kernel)
  return jax.lax.conv_general_dilated(x_BxHxWxC, kernel, (1, 1), 'VALID', dimension_numbers=_DIMS)


class AtrousConv(nn.Module):
  """2-D convolution with `rate` (dilation), NHWC, 'same' padding (or 'valid').

  With `depthwise`, each channel has its own k x k filter: `kernel`
  (k, k, 1, C) and `features` == C; PyTorch's `Conv2d(C, C, k, groups=C,
  dilation=rate, padding=rate * (k - 1) // 2)` (its weight (C, 1, k, k):
  kernel = weight.transpose(2, 3, 1, 0)); TensorFlow's depthwise_weights
  (k, k, C, 1): kernel = w.reshape(k, k, 1, C).
  """
  features: int
  kernel_size: int = 3
  rate: int = 1
  stride: int = 1
  use_bias: bool = True
  impl: str = 'dilation'
  dtype: Any = jnp.float32
  kernel_init: Any = nn.initializers.he_normal()
  bias_init: Any = nn.initializers.zeros
  depthwise: bool = False  # Per-channel filters: kernel (k, k, 1, C), features == C.
  padding: str = 'same'  # Or 'valid' (stride 1, rate 1, dense): `conv_valid`.

  @nn.compact
  def __call__(self, x_BxHxWxC):
    if self.padding not in ('same', 'valid'):
      raise ValueError(f"padding {self.padding!r} is not 'same' or 'valid'")
    if self.padding == 'valid' and (self.stride, self.rate, self.depthwise) != (1, 1, False):
      raise ValueError("padding 'valid' is for dense stride-1, rate-1 convs")
    if self.depthwise and self.features != x_BxHxWxC.shape[-1]:
      raise ValueError(f'a depthwise conv keeps the {x_BxHxWxC.shape[-1]} channels; '
                       f'features {self.features} differs')
    if self.impl not in IMPLEMENTATIONS:
      raise ValueError(f'atrous impl {self.impl!r} is not one of {IMPLEMENTATIONS}')
    if self.stride > 1 and self.rate > 1:
      raise ValueError('atrous conv with both stride and rate > 1 is not supported')
    k = self.kernel_size
    kernel_in = 1 if self.depthwise else x_BxHxWxC.shape[-1]
    kernel = self.param('kernel', self.kernel_init, (k, k, kernel_in, self.features),
                        jnp.float32)
    x, kernel = x_BxHxWxC.astype(self.dtype), kernel.astype(self.dtype)
    if self.padding == 'valid':
      y = conv_valid(x, kernel, self.impl)
    else:
      y = atrous_conv(x, kernel, self.rate, self.stride, self.impl)
    if self.use_bias:
      bias = self.param('bias', self.bias_init, (self.features,), jnp.float32)
      y = y + bias.astype(self.dtype)
    return y


class SeparableConv(nn.Module):
  """Depthwise-separable conv: `depthwise` (k x k at `rate`, per channel) then
  `pointwise` (1x1 to `features`), no normalisation or activation between
  (tf.nn.separable_conv2d's form; layers.SeparableConvBN is v3+'s split form).
  Parameters `depthwise/kernel` (k, k, 1, C), `pointwise/{kernel, bias}`
  (1, 1, C, features), (features,)."""
  features: int
  kernel_size: int = 3
  rate: int = 1
  stride: int = 1
  use_bias: bool = True
  impl: str = 'dilation'
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x_BxHxWxC):
    y = AtrousConv(x_BxHxWxC.shape[-1], self.kernel_size, self.rate, self.stride,
                   use_bias=False, impl=self.impl, dtype=self.dtype, depthwise=True,
                   name='depthwise')(x_BxHxWxC)
    return AtrousConv(self.features, 1, use_bias=self.use_bias, impl=self.impl,
                      dtype=self.dtype, name='pointwise')(y)
