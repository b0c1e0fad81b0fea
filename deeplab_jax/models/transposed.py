"""Transposed convolution as input (lhs) dilation: FCN's learned upsampling
and U-Net's up-convolution.

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


def output_size(size, kernel_size, stride, padding=0, output_padding=0):
  """PyTorch's ConvTranspose2d output size along one axis (dilation 1)."""
  return (size - 1) * stride - 2 * padding + kernel_size + output_padding


def conv_transpose(x_BxHxWxC, kernel_KxKxCxO, stride, padding=0, output_padding=0):
  """Transposed convolution (PyTorch's semantics) as an lhs-dilated conv."""
  k = kernel_KxKxCxO.shape[0]
  lo = k - 1 - padding
  hi = lo + output_padding
  return jax.lax.conv_general_dilated(
      x_BxHxWxC, kernel_KxKxCxO[::-1, ::-1], window_strides=(1, 1),
      padding=((lo, hi), (lo, hi)), lhs_dilation=(stride, stride),
      dimension_numbers=_DIMS)


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
  output_padding, bias=use_bias)` in NHWC; see the module docstring."""
  features: int
  kernel_size: int
  stride: int = 1
  padding: int = 0
  output_padding: int = 0
  use_bias: bool = True
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
                       self.stride, self.padding, self.output_padding)
    if self.use_bias:
      bias = self.param('bias', self.bias_init, (self.features,), jnp.float32)
      y = y + bias.astype(self.dtype)
    return y
