"""Packing a permutohedral lattice point's D integer coords into one uint32.

Where the features' range is known (it is for a CRF: pixel positions and
colours are bounded), a point's coords take few enough values that they pack
into one order-preserving uint32, and the lattice (`lattice.py`) deduplicates
its points with one sort of uint32 keys and finds each blur axis' neighbours
by binary search; `lattice_host.py` uses the same radices and steps.
"""

from typing import NamedTuple, Optional

import jax.numpy as jnp
import numpy as np


def coords_matrix(d: int) -> np.ndarray:
  """G (D x D): a feature vector f's continuous lattice coords are G f.

  Its simplex vertices' integer coords (`embed`) lie within 1 of them; this
  is what bounds them for `packing`.
  """
  inv_std_dev = np.sqrt(2.0 / 3.0) * (d + 1)
  scale_D = inv_std_dev / np.sqrt((np.arange(d) + 1.0) * (np.arange(d) + 2.0))
  elevate_D1xD = np.zeros((d + 1, d))
  elevate_D1xD[0] = 1.0
  for j in range(1, d + 1):
    elevate_D1xD[j, j:] = 1.0
    elevate_D1xD[j, j - 1] = -j
  return (elevate_D1xD[:-1] - elevate_D1xD[1:]) * scale_D / (d + 1)


class Packing(NamedTuple):
  """How a point's D coords pack into one order-preserving uint32 (static).

  packed = sum_k (coord_k - low_k) radix_k, coord 0 most significant, for
  features clipped to [feature_low, feature_high]; all-ones (2^32 - 1) marks
  invalid vertices and unused slots.
  """
  feature_low: tuple
  feature_high: tuple
  low: tuple  # Each coord's lowest value (a neighbour step below the lowest vertex).
  span: tuple  # How many values each coord takes.

  @property
  def radix(self) -> tuple:
    return radices(self.span)

  def steps(self) -> np.ndarray:
    """`axis_steps` as uint32 (modulo 2^32)."""
    return np.array([v % 2**32 for v in axis_steps(self.radix)], np.uint32)


def radices(span_D) -> tuple:
  """Mixed-radix place values (coord 0 most significant) for coords taking
  span_D[k] values each."""
  radix = [1] * len(span_D)
  for k in range(len(span_D) - 2, -1, -1):
    radix[k] = radix[k + 1] * int(span_D[k + 1])
  return tuple(radix)


def axis_steps(radix_D) -> list:
  """The packed difference to the next point along each blur axis j = 0..D
  (coord j-1 + 1, coord j - 1), as Python ints."""
  d = len(radix_D)
  return [(radix_D[j - 1] if j > 0 else 0) - (radix_D[j] if j < d else 0)
          for j in range(d + 1)]


INVALID_PACKED = np.uint32(2**32 - 1)


def packing(feature_low, feature_high) -> Optional[Packing]:
  """The uint32 `Packing` for features within [feature_low, feature_high]
  (per dimension, already divided by the kernel's sigmas); None where their
  coords span more than 2^32 - 1 values (the lattice then sorts D int32
  keys instead: correct, slower on GPUs).

  With it, deduplication is one sort of uint32 keys with an int32 payload,
  which XLA on GPUs runs as a CUB radix sort, and the blur neighbours are
  binary searches; without it every sort has D or more keys, which XLA runs
  as a bitonic sort. E.g. the bilateral kernel of the ResNet-101 parameters
  needs 29.1 bits on a 500x375 image, 31.8 on a 2048x1024 one.
  """
  low_D = np.asarray(feature_low, np.float64)
  high_D = np.asarray(feature_high, np.float64)
  g_DxD = coords_matrix(low_D.size)
  ends = np.stack([g_DxD * low_D, g_DxD * high_D])
  # Vertices lie within 1 of the continuous coords, neighbours 1 further,
  # and 1 more for float rounding.
  low = np.floor(ends.min(0).sum(1)).astype(np.int64) - 3
  high = np.ceil(ends.max(0).sum(1)).astype(np.int64) + 3
  span = tuple(int(v) for v in high - low + 1)
  if np.prod(np.array(span, np.float64)) >= 2**32 - 1:
    return None
  return Packing(tuple(float(v) for v in low_D), tuple(float(v) for v in high_D),
                 tuple(int(v) for v in low), span)


def pack_coords(coords_ExD, real_E, pack: Packing):
  """uint32 keys of coords (see `Packing`); invalid where not real_E."""
  packed_E = jnp.zeros(coords_ExD.shape[:1], jnp.uint32)
  for k, (low, radix) in enumerate(zip(pack.low, pack.radix)):
    packed_E = packed_E + (coords_ExD[:, k] - low).astype(jnp.uint32) * np.uint32(radix)
  return jnp.where(real_E, packed_E, INVALID_PACKED)
