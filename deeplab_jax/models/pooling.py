"""Max pooling with Caffe's output-size rule (ceil mode), used by both trunks.

Every max pool goes through `max_pool`: XLA's `reduce_window` normally, or,
inside `with as_slices():`, the maximum of the window's strided slices, the
same numbers in ops every converter knows (the ONNX export uses it:
jax2onnx 0.13 turns an NHWC `reduce_window` into a 4-D MaxPool that
onnxruntime misreads).
"""

from __future__ import annotations

import contextlib
import threading

import jax
import jax.numpy as jnp


_FORM = threading.local()


@contextlib.contextmanager
def as_slices():
  """Max pools traced inside this block are maxima of strided slices."""
  previous = getattr(_FORM, 'slices', False)
  _FORM.slices = True
  try:
    yield
  finally:
    _FORM.slices = previous


def max_pool(x_BxHxWxC, kernel, stride, pads):
  """Max over (kernel x kernel) windows every `stride` pixels; `pads` (before,
  after) per spatial axis, padding never wins."""
  pads = [(0, 0)] + [tuple(p) for p in pads] + [(0, 0)]
  if not getattr(_FORM, 'slices', False):
    return jax.lax.reduce_window(x_BxHxWxC, -jnp.inf, jax.lax.max, (1, kernel, kernel, 1),
                                 (1, stride, stride, 1), pads)
  x = x_BxHxWxC
  for axis, (lo, hi) in ((1, pads[1]), (2, pads[2])):  # -inf borders, by concatenation.
    parts = []
    for size in (lo, hi):  # Borders shaped from x itself: the batch may be symbolic.
      edge = jax.lax.slice_in_dim(x, 0, size, axis=axis) if size else None
      parts.append(None if edge is None else jnp.full_like(edge, -jnp.inf))
    x = jnp.concatenate([p for p in (parts[0], x, parts[1]) if p is not None], axis=axis)
  b, h, w, c = x.shape
  out_h, out_w = (h - kernel) // stride + 1, (w - kernel) // stride + 1
  result = None
  for i in range(kernel):
    for j in range(kernel):
      window = jax.lax.slice(x, (0, i, j, 0),
                             (b, i + (out_h - 1) * stride + 1, j + (out_w - 1) * stride + 1, c),
                             (1, stride, stride, 1))
      result = window if result is None else jnp.maximum(result, window)
  return result


def caffe_pool_size(size, kernel, stride, pad):
  """Caffe's pooling output size: ceil mode, last window must start inside."""
  out = -(-(size + 2 * pad - kernel) // stride) + 1  # Integer ceil: sizes may be symbolic.
  if pad and (out - 1) * stride >= size + pad:
    out -= 1
  return out


def max_pool_caffe(x_BxHxWxC, kernel=3, stride=2, pad=1):
  """Max pooling with Caffe's padding and output size (padding never wins)."""
  pads = []
  for size in x_BxHxWxC.shape[1:3]:
    out = caffe_pool_size(size, kernel, stride, pad)
    extra = max((out - 1) * stride + kernel - size - 2 * pad, 0)
    pads.append((pad, pad + extra))
  return max_pool(x_BxHxWxC, kernel, stride, pads)


def max_pool_floor(x_BxHxWxC, kernel=3, stride=2, pad=1):
  """PyTorch's `nn.MaxPool2d(kernel, stride, padding=pad)` (floor mode):
  floor((n + 2 pad - kernel) / stride) + 1 outputs, padding never wins
  (torchvision's ResNet stem)."""
  return max_pool(x_BxHxWxC, kernel, stride, ((pad, pad), (pad, pad)))
