"""Max pooling with Caffe's output-size rule (ceil mode), used by both trunks."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def caffe_pool_size(size, kernel, stride, pad):
  """Caffe's pooling output size: ceil mode, last window must start inside."""
  out = -(-(size + 2 * pad - kernel) // stride) + 1  # Integer ceil: sizes may be symbolic.
  if pad and (out - 1) * stride >= size + pad:
    out -= 1
  return out


def max_pool_caffe(x_BxHxWxC, kernel=3, stride=2, pad=1):
  """Max pooling with Caffe's padding and output size (padding never wins)."""
  pads = [(0, 0)]
  for size in x_BxHxWxC.shape[1:3]:
    out = caffe_pool_size(size, kernel, stride, pad)
    extra = max((out - 1) * stride + kernel - size - 2 * pad, 0)
    pads.append((pad, pad + extra))
  pads.append((0, 0))
  return jax.lax.reduce_window(x_BxHxWxC, -jnp.inf, jax.lax.max,
                               (1, kernel, kernel, 1), (1, stride, stride, 1),
                               pads)


def max_pool_floor(x_BxHxWxC, kernel=3, stride=2, pad=1):
  """PyTorch's `nn.MaxPool2d(kernel, stride, padding=pad)` (floor mode):
  floor((n + 2 pad - kernel) / stride) + 1 outputs, padding never wins
  (torchvision's ResNet stem)."""
  window = (1, kernel, kernel, 1)
  return jax.lax.reduce_window(x_BxHxWxC, -jnp.inf, jax.lax.max, window,
                               (1, stride, stride, 1), ((0, 0), (pad, pad), (pad, pad), (0, 0)))
