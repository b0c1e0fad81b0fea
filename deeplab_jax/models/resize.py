"""Bilinear resizing with an explicit corner convention, as a pair of matmuls.

Caffe's `Interp` layer aligns corners (a 41-pixel map zoomed x8 becomes
(41 - 1) * 8 + 1 = 321 pixels); PyTorch's `F.interpolate(..., size=...,
align_corners=False)` and `jax.image.resize` use half-pixel centres. Both are
offered so converted models see exactly what they were trained with. The
interpolation weights are a static (out, in) matrix per axis, so resizing is two
small dense contractions: exact, fast on every backend, never antialiased.
"""

from __future__ import annotations

import functools

import jax.numpy as jnp
import numpy as np


@functools.lru_cache(maxsize=256)
def interpolation_matrix(size_in: int, size_out: int,
                         align_corners: bool) -> np.ndarray:
  """(size_out, size_in) float32 linear-interpolation weights."""
  out = np.arange(size_out, dtype=np.float64)
  if align_corners:
    scale = (size_in - 1) / (size_out - 1) if size_out > 1 else 0.0
    src = out * scale
  else:
    src = (out + 0.5) * (size_in / size_out) - 0.5
    src = np.clip(src, 0.0, size_in - 1)
  lo = np.floor(src).astype(np.int64)
  hi = np.minimum(lo + 1, size_in - 1)
  frac = src - lo
  matrix = np.zeros((size_out, size_in), np.float64)
  np.add.at(matrix, (np.arange(size_out), lo), 1.0 - frac)
  np.add.at(matrix, (np.arange(size_out), hi), frac)
  return matrix.astype(np.float32)


def resize_bilinear(x_BxHxWxC, size, align_corners=False):
  """Bilinear resize of NHWC `x` to `size` = (height, width)."""
  _, h, w, _ = x_BxHxWxC.shape
  out_h, out_w = size
  if (h, w) == (out_h, out_w):
    return x_BxHxWxC
  dtype = x_BxHxWxC.dtype
  mh = jnp.asarray(interpolation_matrix(h, out_h, align_corners), dtype)
  mw = jnp.asarray(interpolation_matrix(w, out_w, align_corners), dtype)
  y = jnp.einsum('oh,bhwc->bowc', mh, x_BxHxWxC)
  return jnp.einsum('pw,bowc->bopc', mw, y)


def resize_nearest_labels(labels_BxHxW, size):
  """Nearest-neighbour label shrinking (source index floor(i * in / out))."""
  _, h, w = labels_BxHxW.shape
  out_h, out_w = size
  rows = np.minimum((np.arange(out_h) * h) // out_h, h - 1)
  cols = np.minimum((np.arange(out_w) * w) // out_w, w - 1)
  return labels_BxHxW[:, rows][:, :, cols]
