"""Multi-process (multi-host) start-up: one process per host, JAX's own runtime.

`train.py` calls `initialize(...)` before anything touches a device. When the
flags or the environment say there are several processes it calls
`jax.distributed.initialize`, after which `jax.devices()` lists every host's
devices, the ('data',) mesh spans them, each process reads its own shard of
the data (`tfds.split_for_jax_process`) and the global batch is assembled
with `jax.make_array_from_process_local_data`; XLA's collectives (NCCL on
GPUs, ICI/DCN on TPUs, gloo between CPU processes) do the rest.

Where the process layout comes from, first match wins:

1. flags `--coordinator_address=HOST:PORT --num_processes=N --process_id=I`;
2. a torchrun-style environment: MASTER_ADDR, MASTER_PORT, WORLD_SIZE, RANK
   (with LOCAL_WORLD_SIZE > 1, i.e. one process per GPU, each process keeps
   the GPU LOCAL_RANK);
3. SLURM (inside `srun`, SLURM_NTASKS > 1), Open MPI (`mpirun`,
   OMPI_COMM_WORLD_SIZE > 1) or a Cloud TPU pod slice (TPU_WORKER_HOSTNAMES
   lists several hosts): JAX detects the layout itself;
4. otherwise a single process: nothing to do.
"""

from __future__ import annotations

import os

import jax

from deeplab_jax.errors import UserError


def _int(environ, name):
  try:
    return int(environ[name])
  except ValueError:
    raise UserError(f'environment variable {name}={environ[name]!r} is not an '
                    'integer; fix the launcher settings.') from None


def process_layout(coordinator_address=None, num_processes=None, process_id=None,
                   environ=None):
  """The `jax.distributed.initialize` keyword arguments for this launch, or
  None for a single process. Raises UserError for incomplete flags."""
  environ = os.environ if environ is None else environ
  given = {'--coordinator_address': coordinator_address,
           '--num_processes': num_processes, '--process_id': process_id}
  if any(v is not None for v in given.values()):
    missing = [name for name, value in given.items() if value is None]
    if missing:
      raise UserError(f'a manual multi-process launch needs all three of '
                      f'--coordinator_address, --num_processes and --process_id; '
                      f'missing {", ".join(missing)}.')
    if not 0 <= process_id < num_processes:
      raise UserError(f'--process_id={process_id} must be in 0..{num_processes - 1} '
                      f'(--num_processes={num_processes}).')
    if num_processes == 1:
      return None
    return {'coordinator_address': coordinator_address,
            'num_processes': num_processes, 'process_id': process_id}
  if all(k in environ for k in ('MASTER_ADDR', 'MASTER_PORT', 'WORLD_SIZE', 'RANK')):
    world = _int(environ, 'WORLD_SIZE')
    if world <= 1:
      return None
    layout = {'coordinator_address': f'{environ["MASTER_ADDR"]}:{environ["MASTER_PORT"]}',
              'num_processes': world, 'process_id': _int(environ, 'RANK')}
    if 'LOCAL_WORLD_SIZE' in environ and _int(environ, 'LOCAL_WORLD_SIZE') > 1:
      layout['local_device_ids'] = [_int(environ, 'LOCAL_RANK')]
    return layout
  if 'SLURM_JOB_ID' in environ and 'SLURM_PROCID' in environ and \
      'SLURM_NTASKS' in environ and _int(environ, 'SLURM_NTASKS') > 1:
    return {}
  if 'OMPI_COMM_WORLD_SIZE' in environ and _int(environ, 'OMPI_COMM_WORLD_SIZE') > 1:
    return {}
  if len(environ.get('TPU_WORKER_HOSTNAMES', '').split(',')) > 1:
    return {}
  return None


def initialize(coordinator_address=None, num_processes=None, process_id=None,
               environ=None):
  """Starts JAX's distributed runtime when there are several processes.

  Returns the number of processes. Call before any JAX computation.
  """
  layout = process_layout(coordinator_address, num_processes, process_id, environ)
  if layout is None:
    return 1
  if not jax.distributed.is_initialized():
    jax.distributed.initialize(**layout)
  return jax.process_count()
