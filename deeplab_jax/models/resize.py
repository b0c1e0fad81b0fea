"""Bilinear resizing with an explicit corner convention, as a pair of matmuls.

Caffe's `Interp` layer aligns corners (a 41-pixel map zoomed x8 becomes
(41 - 1) * 8 + 1 = 321 pixels); PyTorch's `F.interpolate(..., size=...,
align_corners=False)` and `jax.image.resize` use half-pixel centres. Both are
offered so converted models see exactly what they were trained with. The
interpolation weights are a static (out, in) matrix per axis, so resizing is two
small dense contractions: exact, fast on every backend, never antialiased.

Sizes may be symbolic (`jax.export` shape polymorphism, deeplab_jax/export):
the matrices are then built in the program from iotas, in float32, the same
weights to within float32 rounding of the source positions (the static ones
are computed in float64 and rounded once).
"""

from __future__ import annotations

import fractions
import functools

import jax
import jax.numpy as jnp
import numpy as np


def is_static(*sizes) -> bool:
  """Whether every size is a plain int (not a `jax.export` symbolic dimension)."""
  return not any(jax.export.is_symbolic_dim(s) for s in sizes)


def _traced_matrix(size_in, size_out, align_corners, step):
  """`interpolation_matrix` for symbolic sizes: built from iotas in float32."""
  out = jax.lax.broadcasted_iota(jnp.float32, (size_out, 1), 0)
  columns = jax.lax.broadcasted_iota(jnp.float32, (1, size_in), 1)
  n_in = jnp.asarray(size_in, jnp.float32)
  if align_corners:
    n_out = jnp.asarray(size_out, jnp.float32)
    src = out * jnp.where(n_out > 1, (n_in - 1) / jnp.maximum(n_out - 1, 1), 0.0)
  else:
    step = n_in / jnp.asarray(size_out, jnp.float32) if step is None else step
    src = jnp.clip((out + 0.5) * step - 0.5, 0.0, n_in - 1)
  lo = jnp.floor(src)
  frac = src - lo
  hi = jnp.minimum(lo + 1, n_in - 1)
  return (columns == lo) * (1.0 - frac) + (columns == hi) * frac


@functools.lru_cache(maxsize=256)
def interpolation_matrix(size_in: int, size_out: int, align_corners: bool,
                         step: float | None = None) -> np.ndarray:
  """(size_out, size_in) float32 linear-interpolation weights.

  Half-pixel sampling (align_corners False) reads source position
  (o + 0.5) * step - 0.5, `step` defaulting to size_in / size_out (PyTorch's
  `interpolate(scale_factor=s)` uses step 1 / s instead).
  """
  out = np.arange(size_out, dtype=np.float64)
  if align_corners:
    scale = (size_in - 1) / (size_out - 1) if size_out > 1 else 0.0
    src = out * scale
  else:
    step = size_in / size_out if step is None else step
    src = (out + 0.5) * step - 0.5
    src = np.clip(src, 0.0, size_in - 1)
  lo = np.floor(src).astype(np.int64)
  hi = np.minimum(lo + 1, size_in - 1)
  frac = src - lo
  matrix = np.zeros((size_out, size_in), np.float64)
  np.add.at(matrix, (np.arange(size_out), lo), 1.0 - frac)
  np.add.at(matrix, (np.arange(size_out), hi), frac)
  return matrix.astype(np.float32)


def resize_bilinear(x_BxHxWxC, size, align_corners=False, step=None):
  """Bilinear resize of NHWC `x` to `size` = (height, width)."""
  _, h, w, _ = x_BxHxWxC.shape
  out_h, out_w = size
  if (h, w) == (out_h, out_w) and step is None:
    return x_BxHxWxC
  dtype = x_BxHxWxC.dtype
  matrix = interpolation_matrix if is_static(h, w, out_h, out_w) else _traced_matrix
  mh = jnp.asarray(matrix(h, out_h, align_corners, step), dtype)
  mw = jnp.asarray(matrix(w, out_w, align_corners, step), dtype)
  y = jnp.einsum('oh,bhwc->bowc', mh, x_BxHxWxC)
  return jnp.einsum('pw,bowc->bopc', mw, y)


@functools.lru_cache(maxsize=256)
def zoom_crop_matrix(size_in: int, size_out: int, zoom: int, offset: int) -> np.ndarray:
  """(size_out, size_in) weights of Caffe's `Interp zoom_factor: zoom` then a
  `Padding pad_beg: -offset` crop: output pixel q reads the score map at
  (q + offset) / zoom, corners aligned, clamped to the map's last cell
  (where the zoomed map is shorter than offset + size_out)."""
  src = np.clip((np.arange(size_out, dtype=np.float64) + offset) / zoom, 0.0, size_in - 1)
  lo = np.floor(src).astype(np.int64)
  hi = np.minimum(lo + 1, size_in - 1)
  frac = src - lo
  matrix = np.zeros((size_out, size_in), np.float64)
  np.add.at(matrix, (np.arange(size_out), lo), 1.0 - frac)
  np.add.at(matrix, (np.arange(size_out), hi), frac)
  return matrix.astype(np.float32)


def upsample_scores(x_BxhxwxC, size, align_corners=False, offset=0, zoom=8):
  """Stride-`zoom` scores to `size` pixels: `resize_bilinear`, or, with an
  `offset`, zoomed x`zoom` (corners aligned) and cropped by `offset` pixels at
  the top and left, as v1 DeepLab's test prototxt (fc8_interp zoom 8, fc8_crop
  pad_beg -7). Offset 0 at size zoom * (n - 1) + 1 is the aligned resize."""
  if offset == 0:
    return resize_bilinear(x_BxhxwxC, size, align_corners)
  _, h, w, _ = x_BxhxwxC.shape
  dtype = x_BxhxwxC.dtype
  mh = jnp.asarray(zoom_crop_matrix(h, size[0], zoom, offset), dtype)
  mw = jnp.asarray(zoom_crop_matrix(w, size[1], zoom, offset), dtype)
  y = jnp.einsum('oh,bhwc->bowc', mh, x_BxhxwxC)
  return jnp.einsum('pw,bowc->bopc', mw, y)


def scaled_size(size, scale, align_corners):
  """A side's length after resizing by `scale` (see `resize_by_scale`).

  align_corners=True is Caffe's `Interp` with scale = zoom_factor /
  shrink_factor (0.75 = 3 / 4, 0.5 = 1 / 2): shrink, then zoom, each corner-
  aligned, ((n - 1) // shrink) * zoom + 1. 321 -> 241 and 513 -> 385 at
  0.75, as floor((n - 1) s) + 1 gives too, but 324 -> 241 where that gives 243.
  """
  if scale == 1.0:
    return size
  ratio = fractions.Fraction(scale).limit_denominator(64)
  if align_corners:
    return (size - 1) // ratio.denominator * ratio.numerator + 1
  if not is_static(size):  # floor(size * p / q), exact in integers.
    if ratio != scale:
      raise ValueError(f'scale {scale} is not a ratio of small integers: the size it '
                       'gives cannot be symbolic; export with fixed sizes')
    return size * ratio.numerator // ratio.denominator
  return int(np.floor(size * scale + 1e-9))


def resize_by_scale(x_BxHxWxC, scale, align_corners=False):
  """Resizes by a factor, the way the two reference implementations do.

  align_corners=True (Caffe's `Interp` with shrink/zoom factors): a side n
  becomes ((n - 1) // shrink) * zoom + 1, corners aligned (321 -> 241 at 0.75).
  False (PyTorch's `interpolate(scale_factor=scale)`): floor(n * scale), the
  source sampled every 1 / scale pixels (321 -> 240 at 0.75).
  """
  if scale == 1.0:
    return x_BxHxWxC
  _, h, w, _ = x_BxHxWxC.shape
  size = (scaled_size(h, scale, align_corners), scaled_size(w, scale, align_corners))
  return resize_bilinear(x_BxHxWxC, size, align_corners,
                         None if align_corners else 1.0 / scale)


def nearest_source_indices(in_size, out_size, align_corners=False):
  """For each of `out_size` output positions, the input index nearest-
  neighbour shrinking (or growing) reads, with the same grid as the bilinear
  resize of the logits:

  align_corners=True (Caffe's `Interp`, corners aligned): output i sits on
  input i (in - 1) / (out - 1), rounded; 321 -> 41 reads every 8th pixel,
  0, 8, ..., 320, where output cell i of an output-stride-8 network sits.
  False (half-pixel centres, as PIL's and OpenCV's NEAREST, which the PyTorch
  port uses for its labels): floor((i + 0.5) in / out).
  """
  out = np.arange(out_size)
  if align_corners:
    if out_size == 1:
      return np.zeros(1, np.int64)
    # Exact rational rounding, half up: floor((2 i (in-1) + (out-1)) / (2 (out-1))).
    rows = (2 * out * (in_size - 1) + (out_size - 1)) // (2 * (out_size - 1))
  else:
    rows = ((2 * out + 1) * in_size) // (2 * out_size)
  return np.minimum(rows, in_size - 1)


def resize_nearest_labels(labels_BxHxW, size, align_corners=False):
  """Nearest-neighbour label resizing on the logits' grid
  (`nearest_source_indices`), as the paper shrinks labels to the score map."""
  _, h, w = labels_BxHxW.shape
  out_h, out_w = size
  rows = nearest_source_indices(h, out_h, align_corners)
  cols = nearest_source_indices(w, out_w, align_corners)
  return labels_BxHxW[:, rows][:, :, cols]
