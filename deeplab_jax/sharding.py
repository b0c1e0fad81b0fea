"""Data parallelism over every device: a 1-D ('data',) mesh.

The batch is split along its first axis across all devices of all processes
(`NamedSharding(mesh, P('data'))`); parameters and optimizer state are
replicated (`P()`). Under `jax.jit` this is what `pmap` used to do, and
BatchNorm statistics computed over the batch axis are global-batch statistics.
In a multi-host run each process holds its own rows: `local_rows` reads them
back, `sum_over_processes` / `max_over_processes` combine host values.
"""

from __future__ import annotations

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from deeplab_jax.errors import UserError

AXIS = 'data'


def make_mesh(devices=None) -> Mesh:
  devices = jax.devices() if devices is None else devices
  return Mesh(np.asarray(devices), (AXIS,))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def batch_sharded(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P(AXIS))


def check_divisible(batch_size: int, mesh: Mesh, name: str) -> None:
  """Raises a UserError naming sizes that would work for this mesh."""
  n = mesh.size
  if batch_size <= 0 or batch_size % n:
    lower = max(n, batch_size // n * n)
    raise UserError(
        f'{name}={batch_size} cannot be split evenly over {n} devices; use a '
        f'multiple of {n}, for example --config.{name}={lower} or '
        f'--config.{name}={lower + n}.')


def local_batch_size(global_batch_size: int) -> int:
  """The part of the global batch this process loads."""
  return global_batch_size // jax.process_count()


def to_global(batch: dict, mesh: Mesh) -> dict:
  """Assembles each process's numpy batch into one global, sharded jax.Array."""
  sharding = batch_sharded(mesh)
  return {k: jax.make_array_from_process_local_data(sharding, np.asarray(v))
          for k, v in batch.items()}


# Multi-host helpers: each process holds its own rows of a batch-sharded array.

def local_rows(x):
  """This process's rows of a batch-sharded global array, as numpy."""
  if isinstance(x, np.ndarray):
    return x
  shards = sorted(x.addressable_shards, key=lambda s: s.index[0].start or 0)
  rows, seen = [], set()
  for shard in shards:
    start = shard.index[0].start or 0
    if start not in seen:  # Replicated over other axes: one copy.
      seen.add(start)
      rows.append(np.asarray(shard.data))
  return np.concatenate(rows)


def sum_over_processes(x):
  """`x` (numpy) summed over all processes; itself with one process."""
  if jax.process_count() == 1:
    return x
  from jax.experimental import multihost_utils  # pylint: disable=import-outside-toplevel
  return np.asarray(multihost_utils.process_allgather(x)).sum(axis=0)


def max_over_processes(x):
  """The largest element of a (possibly multi-process) global array, an int."""
  if jax.process_count() == 1:
    return int(np.max(np.asarray(x)))
  from jax.experimental import multihost_utils  # pylint: disable=import-outside-toplevel
  return int(np.max(multihost_utils.process_allgather(x, tiled=True)))
