"""Trains DeepLab.

    python train.py --config configs/shapes.py --workdir runs/shapes
    python train.py --config configs/shapes.py --workdir runs/x --config.batch_size=16

Any config field can be overridden with --config.<field>=<value>; a run
resumes from the latest checkpoint in --workdir by itself (SIGTERM / Ctrl-C
save a checkpoint first). Several processes (one per host) start JAX's
distributed runtime from SLURM, Open MPI, Cloud TPU or torchrun-style
environment variables, or from the three flags below
(deeplab_jax/distributed.py; README "Training at scale"):

    python train.py ... --coordinator_address=host0:1234 --num_processes=2 --process_id=0
"""

from absl import flags
from absl import logging
from ml_collections import config_flags

from deeplab_jax import cli
from deeplab_jax import distributed

_CONFIG = config_flags.DEFINE_config_file(
    'config', None, 'Training configuration file (configs/*.py[:variant]).',
    lock_config=True)
_WORKDIR = flags.DEFINE_string('workdir', None, 'Directory for checkpoints and logs.')
_COORDINATOR = flags.DEFINE_string(
    'coordinator_address', None, 'Multi-process: HOST:PORT of process 0 (manual launch).')
_NUM_PROCESSES = flags.DEFINE_integer('num_processes', None, 'Multi-process: how many.')
_PROCESS_ID = flags.DEFINE_integer('process_id', None, 'Multi-process: this one, 0..N-1.')
flags.mark_flags_as_required(['config', 'workdir'])


def main():
  distributed.initialize(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value)
  import jax  # pylint: disable=import-outside-toplevel
  from deeplab_jax import train_lib  # pylint: disable=import-outside-toplevel
  if jax.process_index() > 0:
    logging.set_verbosity(logging.WARNING)  # Progress lines from process 0 only.
  train_lib.train_and_evaluate(_CONFIG.value, _WORKDIR.value)


if __name__ == '__main__':
  cli.run(main)
