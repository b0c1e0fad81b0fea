"""Transposed convolution: FCN's learned upsampling and U-Net's up-convolution,
as an input (lhs) dilated convolution or in the sub-pixel (polyphase) form.

Kernel (rhs) dilation is atrous convolution (atrous.py); input (lhs) dilation
is its other half. A transposed convolution with stride s scatters every
input pixel, times the k x k kernel, onto the output at s-pixel steps:

    y[s * i + a - p] += x[i] * kernel[a]        (a = 0 .. k-1, per axis)

which is a plain stride-1 convolution of the input dilated by s (s - 1 zeros
between pixels, `lhs_dilation`), padded by k - 1 - p in front and
k - 1 - p + output_padding behind, with the kernel flipped in space. The
output size is PyTorch's `nn.ConvTranspose2d` rule (torch/nn/modules/conv.py,
dilation 1):

    out = (n - 1) * stride - 2 * padding + kernel_size + output_padding

and Caffe's `Deconvolution` without output_padding (src/caffe/layers/
deconv_layer.cpp, compute_output_shape: stride * (n - 1) + kernel_extent -
2 * pad). A padding above k - 1 pads negatively (crops), as PyTorch allows.

Parameters: `kernel` (k, k, in, out), stored UNflipped, in the scatter
orientation of the formula above (the flip happens in `conv_transpose`), and
`bias` (out,). Weights map on by a transpose, no flip:
  PyTorch  `ConvTranspose2d.weight` is (in, out / groups, k, k)
           (torch/nn/modules/conv.py, _ConvNd with transposed=True):
           kernel = weight.transpose(2, 3, 0, 1).
  Caffe    a Deconvolution blob is (in, out / group, k, k) as well:
           base_conv_layer.cpp's weight_shape is (conv_out_channels_,
           conv_in_channels_ / group_), and for deconvolution
           (reverse_dimensions()) conv_out_channels_ = channels_ (the
           input's) and conv_in_channels_ = num_output_:
           kernel = blob.transpose(2, 3, 0, 1).
Implementations (`impl`; all give the same numbers to float rounding, with
the same parameters):
  'lhs_dilation'    the formula above as XLA's convolution with `lhs_dilation`.
                    On CPU XLA multiplies through the dilation's zeros: s^2
                    times the work (FCN-32s' 64x64 stride-32 upscore: ~15 s
                    forward, PyTorch 0.85 s), and its gradients are slow at
                    every stride.
  'subpixel'        the polyphase form. Output pixel s * q + r (before the
                    crop by `padding`) only sees the taps a = r + s * m,
                    m = 0 .. M - 1 with M = ceil(k / s) (the kernel zero-padded
                    to M * s taps), of inputs q - m. So all s x s output
                    phases are ONE dense stride-1 convolution of the input
                    (padded by M - 1 each side) with an (M, M, in, s * s * out)
                    kernel (the taps k[r::s, r'::s], flipped in m), followed
                    by depth-to-space and the crop [padding, padding + out)
                    (zeros past the end for output_padding). No multiply
                    touches a zero of the dilation. Gradients: those of the
                    same contraction written as M * M shifted matmuls
                    ('subpixel_matmul''s), since XLA's CPU kernel gradient of
                    the dense conv is slow (2.7 s for FCN-32s' upscore).
  'subpixel_matmul' the same phases as M * M shifted (B*H*W, in) x
                    (in, s * s * out) matmuls (M = 2 for FCN's k = 2 s), forward
                    and gradients.
  'auto'            AUTO by backend: 'subpixel' on CPU, measured fastest
                    forward and gradient at every FCN / U-Net shape
                    (benchmarks/README.md, "Depthwise and transposed
                    convolutions"); 'lhs_dilation' elsewhere (not measured).

No groups: FCN's deconvolutions have none (fcn.berkeleyvision.org
voc-fcn*/net.py: num_output 21, bias_term False, no group); its surgery
makes them per-class by the initialisation instead (`bilinear_kernel_init`).
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

_DIMS = ('NHWC', 'HWIO', 'NHWC')

IMPLEMENTATIONS = ('auto', 'lhs_dilation', 'subpixel', 'subpixel_matmul')

# What 'auto' stands for, by backend (others: 'lhs_dilation'). CPU measured
# (benchmarks/README.md); GPU not measured.
AUTO = {'cpu': 'subpixel'}


def output_size(size, kernel_size, stride, padding=0, output_padding=0):
  """PyTorch's ConvTranspose2d output size along one axis (dilation 1)."""
  return (size - 1) * stride - 2 * padding + kernel_size + output_padding


def resolve_impl(impl, backend=None):
  """The implementation `impl` stands for on `backend` (default: JAX's)."""
  if impl not in IMPLEMENTATIONS:
    raise ValueError(f'transposed conv impl {impl!r} is not one of {IMPLEMENTATIONS}')
  if impl != 'auto':
    return impl
  return AUTO.get(backend or jax.default_backend(), 'lhs_dilation')


def conv_transpose(x_BxHxWxC, kernel_KxKxCxO, stride, padding=0, output_padding=0,
                   impl='auto'):
  """Transposed convolution with PyTorch's semantics (see the module docstring)."""
  impl = resolve_impl(impl)
  if impl == 'lhs_dilation':
    return lhs_dilation_conv_transpose(x_BxHxWxC, kernel_KxKxCxO, stride, padding,
                                       output_padding)
  return subpixel_conv_transpose(x_BxHxWxC, kernel_KxKxCxO, stride, padding,
                                 output_padding, matmul=impl == 'subpixel_matmul')


def lhs_dilation_conv_transpose(x_BxHxWxC, kernel_KxKxCxO, stride, padding=0,
                                output_padding=0):
  """Transposed convolution as an lhs-dilated conv."""
  k = kernel_KxKxCxO.shape[0]
  lo = k - 1 - padding
  hi = lo + output_padding
  return jax.lax.conv_general_dilated(
      x_BxHxWxC, kernel_KxKxCxO[::-1, ::-1], window_strides=(1, 1),
      padding=((lo, hi), (lo, hi)), lhs_dilation=(stride, stride),
      dimension_numbers=_DIMS)


def _phases_matmul(xp_BxHxWxC, kernel_MxMxCxP):
  """Valid stride-1 correlation as M * M shifted matmuls."""
  m = kernel_MxMxCxP.shape[0]
  qh, qw = xp_BxHxWxC.shape[1] - m + 1, xp_BxHxWxC.shape[2] - m + 1
  out = None
  for i in range(m):
    for j in range(m):
      term = jnp.einsum('bhwc,cp->bhwp', xp_BxHxWxC[:, i:i + qh, j:j + qw],
                        kernel_MxMxCxP[i, j])
      out = term if out is None else out + term
  return out


@jax.custom_vjp
def _phases_conv(xp_BxHxWxC, kernel_MxMxCxP):
  """Valid stride-1 correlation as XLA's conv; gradients of `_phases_matmul`."""
  return jax.lax.conv_general_dilated(xp_BxHxWxC, kernel_MxMxCxP, (1, 1), 'VALID',
                                      dimension_numbers=_DIMS)


def _phases_conv_fwd(xp, kernel):
  return _phases_conv(xp, kernel), (xp, kernel)


def _phases_conv_bwd(res, g):
  _, vjp = jax.vjp(_phases_matmul, *res)
  return vjp(g)


_phases_conv.defvjp(_phases_conv_fwd, _phases_conv_bwd)


def subpixel_conv_transpose(x_BxHxWxC, kernel_KxKxCxO, stride, padding=0,
                            output_padding=0, matmul=False):
  """Transposed convolution in the sub-pixel (polyphase) form: the s x s output
  phases as one dense conv (or, `matmul`, shifted matmuls) of ceil(k / s)
  taps per axis, then depth-to-space and the crop."""
  s = stride
  b, n_h, n_w, c = x_BxHxWxC.shape
  k, k_w, _, o = kernel_KxKxCxO.shape
  m = -(-max(k, k_w) // s)
  # Tap a = m_ * s + r, zero-padded to M * s taps; phase r's taps flipped in m_.
  kernel = jnp.pad(kernel_KxKxCxO, ((0, m * s - k), (0, m * s - k_w), (0, 0), (0, 0)))
  kernel = kernel.reshape(m, s, m, s, c, o)[::-1, :, ::-1]
  kernel = kernel.transpose(0, 2, 4, 1, 3, 5).reshape(m, m, c, s * s * o)
  xp = jnp.pad(x_BxHxWxC, ((0, 0), (m - 1, m - 1), (m - 1, m - 1), (0, 0)))
  z = (_phases_matmul if matmul else _phases_conv)(xp, kernel)
  qh, qw = n_h + m - 1, n_w + m - 1
  y = z.reshape(b, qh, qw, s, s, o).transpose(0, 1, 3, 2, 4, 5).reshape(b, qh * s, qw * s, o)
  out_h = output_size(n_h, k, s, padding, output_padding)
  out_w = output_size(n_w, k_w, s, padding, output_padding)
  # Past the scattered extent (output_padding beyond padding) the output is 0.
  y = jnp.pad(y, ((0, 0), (0, max(0, padding + out_h - qh * s)),
                  (0, max(0, padding + out_w - qw * s)), (0, 0)))
  return y[:, padding:padding + out_h, padding:padding + out_w]


def bilinear_filter(size):
  """The k x k bilinear upsampling filter, (1 - |x - c| / f) * (1 - |y - c| / f)
  with f = ceil(k / 2), c = (k - 1) / 2.

  FCN's `surgery.upsample_filt` (factor = (size + 1) // 2, center = factor - 1
  for odd sizes, factor - 0.5 for even ones) and Caffe's "bilinear" filler
  (include/caffe/filler.hpp BilinearFiller: f = ceil(k / 2), c = (k - 1) /
  (2 f), value 1 - |x / f - c|) are both this. With stride f and
  k = 2 f (FCN's 4/2, 16/8, 64/32) it is bilinear interpolation by f.
  """
  f = (size + 1) // 2
  c = (size - 1) / 2
  axis = 1 - np.abs(np.arange(size) - c) / f
  return np.outer(axis, axis)


def bilinear_kernel_init(key, shape, dtype=jnp.float32):
  """FCN's initialisation of its upsampling layers (surgery.interp): channel i
  upsamples itself by `bilinear_filter`, zeros elsewhere; with one output
  channel every input feeds it. `shape` is (k, k, in, out); `key` unused.
  (Caffe's "bilinear" filler fills every (in, out) pair; with group = C, the
  blob (C, 1, k, k) it is meant for, that is the same per-channel filter.)
  """
  del key
  k, kw, cin, cout = shape
  if k != kw:
    raise ValueError(f'bilinear init needs a square kernel, got {shape}')
  if cin != cout and cout != 1:
    raise ValueError(f'bilinear init needs in == out channels or out == 1, got {shape}')
  kernel = np.zeros(shape, np.float32)
  filt = bilinear_filter(k)
  for i in range(cin):
    kernel[:, :, i, i if cout > 1 else 0] = filt
  return jnp.asarray(kernel, dtype)


class ConvTranspose(nn.Module):
  """`nn.ConvTranspose2d(in, features, kernel_size, stride, padding,
  output_padding, bias=use_bias)` in NHWC; see the module docstring
  (`impl`: IMPLEMENTATIONS, the same parameters and numbers for each)."""
  features: int
  kernel_size: int
  stride: int = 1
  padding: int = 0
  output_padding: int = 0
  use_bias: bool = True
  impl: str = 'auto'
  dtype: Any = jnp.float32
  kernel_init: Any = nn.initializers.he_normal()
  bias_init: Any = nn.initializers.zeros

  @nn.compact
  def __call__(self, x_BxHxWxC):
    if not 0 <= self.output_padding < self.stride:
      raise ValueError(f'output_padding {self.output_padding} must be in [0, stride '
                       f'{self.stride}) (PyTorch\'s rule)')
    k = self.kernel_size
    kernel = self.param('kernel', self.kernel_init,
                        (k, k, x_BxHxWxC.shape[-1], self.features), jnp.float32)
    y = conv_transpose(x_BxHxWxC.astype(self.dtype), kernel.astype(self.dtype),
                       self.stride, self.padding, self.output_padding, self.impl)
    if self.use_bias:
      bias = self.param('bias', self.bias_init, (self.features,), jnp.float32)
      y = y + bias.astype(self.dtype)
    return y
