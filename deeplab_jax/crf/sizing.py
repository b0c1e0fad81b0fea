"""How many slots the bilateral lattices get: as few as the batch needs, few compiles.

The lattice filter's cost is proportional to its static number of slots
(`max_points`), so the JAX CRF does not use the always-enough N * 6: it
reads back how many lattice points the batch's images need and runs
mean-field compiled for `lattice.bucket` of the largest (a short ladder of
sizes: one compile per bucket). The count comes from

- the device (`on_device`): the bilateral vertices are sorted there
  (`dense_crf.sort_bilateral_vertices`), `num_points` is read back (with
  `across_processes`, a maximum over processes, so that every process of a
  multi-host batch compiles the same program) and the rest of the build
  runs inside the jitted mean-field; or
- the host (`host_lattices`, on a CPU): the device embeds the pixels and
  numpy builds the lattices themselves (`lattice_host.py`), several times
  faster there than XLA's sorts.

`crf.refine` (prediction, the parameter search, evaluation on a CPU) and
evaluation's device CRF step (`evaluation/crf_step.py`) size their lattices
here.
"""

from __future__ import annotations

import concurrent.futures
import functools
import os

import jax
import numpy as np

from deeplab_jax import sharding
from deeplab_jax import xla_flags
from deeplab_jax.crf import dense_crf
from deeplab_jax.crf import lattice
from deeplab_jax.crf import lattice_host
from deeplab_jax.crf.params import CRFParams


def max_points(num_points, across_processes=False) -> int:
  """The static lattice size for images needing `num_points` lattice points
  (one per image): `lattice.bucket` of the largest, over all processes with
  `across_processes` (`num_points` then a global array)."""
  needed = (sharding.max_over_processes(num_points) if across_processes
            else int(np.max(np.asarray(num_points))))
  return lattice.bucket(needed)


def on_device(sort, compile_for, across_processes=False):
  """`sized(images, valid) -> (run, sorted_vertices)`: the lattices sized on the device.

      sized = on_device(sort, compile_for)
      run, sorted_vertices = sized(images, valid)
      out = run(..., sorted_vertices)

  sort(images, valid): the batch's `lattice.SortedVertices` (e.g. jitted
  `dense_crf.sort_bilateral_vertices`); compile_for(max_points): the jitted
  program for that lattice size, called once per bucket.
  """
  compiled = {}

  def sized(images, valid):
    sorted_vertices = sort(images, valid)
    size = max_points(sorted_vertices.num_points, across_processes)
    if size not in compiled:
      compiled[size] = compile_for(size)
    return compiled[size], sorted_vertices
  return sized


@functools.lru_cache(maxsize=8)
def _jax_embed(params: CRFParams):
  embed = lambda features, valid, pack: lattice.embed(features, valid)
  return jax.jit(lambda images, valid: dense_crf.per_image_bilateral(embed, images, valid, params),
                 compiler_options=xla_flags.without_cpu_flags())


def host_lattices(images, valid, params: CRFParams):
  """The batch's bilateral lattices built in numpy (`lattice_host.build_host`),
  stacked, all of one bucketed size; None if one cannot be packed.

  The embedding runs jitted; deduplication and the neighbour tables run in
  numpy, one thread per image (numpy's sorts release the GIL).
  """
  keys, weights = jax.device_get(_jax_embed(params)(images, valid))
  with _threads(len(keys)) as pool:
    points = list(pool.map(lattice_host.dedup_host, keys))
    if any(p is None for p in points):
      return None
    m = max_points([p.num_points for p in points])
    built = list(pool.map(lambda a: lattice_host.build_host(a[0], a[1], m, points=a[2]),
                          zip(keys, weights, points)))
  return jax.tree_util.tree_map(lambda *xs: np.stack(xs), *built)


def _threads(count):
  return concurrent.futures.ThreadPoolExecutor(max(1, min(count, os.cpu_count() or 1)))
