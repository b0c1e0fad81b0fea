"""The permutohedral lattice built on the host, in numpy: `lattice.build`'s twin.

    coords, weights = jax.device_get(lattice.embed(features_NxD, valid_N))
    points = lattice_host.dedup_host(coords)          # None: too wide to pack
    lat = lattice_host.build_host(coords, weights, lattice.bucket(points.num_points),
                                  points=points)
    out_NxC = lattice.filter(lat, values_NxC)

The device embeds the pixels (`lattice.embed`); numpy deduplicates their
simplex vertices with one sort of packed int64 keys and finds each point's
blur neighbours by binary search. The result is `build`'s `Lattice`, array
for array; on a CPU several times faster than XLA's multi-key sorts.
"""

from typing import NamedTuple, Optional

import numpy as np

from deeplab_jax.crf.lattice import Lattice, _SENTINEL  # pylint: disable=protected-access
from deeplab_jax.crf.packing import axis_steps, radices


class HostPoints(NamedTuple):
  """`dedup_host`'s result: one image's distinct lattice points (numpy)."""
  packed_E: np.ndarray  # Each vertex's packed coords, -1 for invalid pixels.
  unique_P: np.ndarray  # The distinct packed coords, sorted.
  inverse_E: np.ndarray  # Each valid vertex's index into unique_P.
  span_D: np.ndarray  # How many values each coord takes in the packing.

  @property
  def num_points(self) -> int:
    return int(self.unique_P.size)


def dedup_host(coords_NxD1xD) -> Optional[HostPoints]:
  """Deduplicates `lattice.embed`'s coords in numpy (one sort of packed int64 keys).

  None where the coords span too wide a range to pack into 62 bits.
  """
  packed = _pack_host(np.asarray(coords_NxD1xD))
  if packed is None:
    return None
  packed_E, span_D = packed
  unique_P, inverse_E = np.unique(packed_E[packed_E >= 0], return_inverse=True)
  return HostPoints(packed_E, unique_P, inverse_E.reshape(-1).astype(np.int32), span_D)


def host_num_points(coords_NxD1xD) -> int:
  """How many lattice points `build_host` makes from `lattice.embed`'s coords (numpy)."""
  points = dedup_host(coords_NxD1xD)
  if points is None:
    raise ValueError('lattice coords too far apart to pack into 62 bits')
  return points.num_points


def _pack_host(coords_NxD1xD):
  """Coords as order-preserving int64 (mixed radix over this image's range,
  room for a neighbour step) and the radices' spans; -1 for invalid entries.
  None where they would not fit in 62 bits."""
  d = coords_NxD1xD.shape[-1]
  coords_ExD = coords_NxD1xD.reshape(-1, d).astype(np.int64)
  real_E = coords_ExD[:, 0] != _SENTINEL
  if not real_E.any():
    return np.full(len(coords_ExD), -1, np.int64), np.ones(d, np.int64)
  low_D = coords_ExD[real_E].min(0) - 1
  span_D = coords_ExD[real_E].max(0) + 1 - low_D + 1
  if np.sum(np.log2(span_D.astype(np.float64))) > 62:
    return None
  packed_E = np.zeros(len(coords_ExD), np.int64)
  for k in range(d):
    packed_E = packed_E * span_D[k] + (coords_ExD[:, k] - low_D[k])
  return np.where(real_E, packed_E, -1), span_D


def build_host(coords_NxD1xD, weights_NxD1, max_points: Optional[int] = None,
               points: Optional[HostPoints] = None) -> Optional[Lattice]:
  """`lattice.build` in numpy on the host, from `lattice.embed`'s output: the
  same Lattice, array for array (slots in the coords' lexicographic order).

  On a CPU this is several times faster than `lattice.build` (XLA:CPU sorts
  several keys with a payload slowly; numpy sorts one packed int64 key, and
  finds each point's blur neighbours by binary search instead of sorting the
  points along every axis). `points`: `dedup_host(coords)` if the caller has
  it already (to choose max_points from its num_points). Returns None where
  the coords span too wide a range to pack into 62 bits (use `lattice.build`
  then).
  """
  coords_NxD1xD = np.asarray(coords_NxD1xD)
  n, d1, _ = coords_NxD1xD.shape
  m = n * d1 if max_points is None else int(max_points)
  points = dedup_host(coords_NxD1xD) if points is None else points
  if points is None:
    return None
  real_E = points.packed_E >= 0
  unique_P, inverse_E = points.unique_P, points.inverse_E
  num_points = unique_P.size
  point_E = np.full(n * d1, m, np.int32)
  point_E[real_E] = np.where(inverse_E < m, inverse_E, m)
  table_P = unique_P[:m]
  nexts = np.full((d1, m + 1), m, np.int32)
  prevs = np.full((d1, m + 1), m, np.int32)
  for j, step in enumerate(axis_steps(radices(points.span_D))):
    for sign, out in ((1, nexts), (-1, prevs)):
      query_P = table_P + sign * step
      at_P = np.minimum(np.searchsorted(unique_P, query_P), max(num_points - 1, 0))
      found_P = unique_P[at_P] == query_P
      found_P &= at_P < m
      out[j, :table_P.size] = np.where(found_P, at_P, m)
  return Lattice(
      point_NxD1=point_E.reshape(n, d1),
      weights_NxD1=np.asarray(weights_NxD1, np.float32),
      next_D1xM1=nexts,
      prev_D1xM1=prevs,
      num_points=np.int32(num_points))
