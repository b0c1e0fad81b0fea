"""Trains DeepLab.

    python train.py --config configs/shapes.py --workdir runs/shapes
    python train.py --config configs/shapes.py --workdir runs/x --config.batch_size=8

Any config field can be overridden with --config.<field>=<value>; a run
resumes from the latest checkpoint in --workdir by itself.
"""

import sys

from absl import app
from absl import flags
from ml_collections import config_flags

from deeplab_jax import train_lib
from deeplab_jax import logs
from deeplab_jax.errors import UserError

_CONFIG = config_flags.DEFINE_config_file(
    'config', None, 'Training configuration file (configs/*.py[:variant]).',
    lock_config=True)
_WORKDIR = flags.DEFINE_string('workdir', None, 'Directory for checkpoints and logs.')
flags.mark_flags_as_required(['config', 'workdir'])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  logs.quiet_libraries()
  try:
    train_lib.train_and_evaluate(_CONFIG.value, _WORKDIR.value)
  except UserError as e:
    sys.exit(f'error: {e}')


if __name__ == '__main__':
  app.run(main)
