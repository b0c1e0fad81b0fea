"""Evaluates a trained DeepLab checkpoint: mIoU table + <workdir>/metrics.json.

    python evaluate.py --config configs/shapes.py --workdir runs/shapes
"""

import sys

from absl import app
from absl import flags
from ml_collections import config_flags

from deeplab_jax import eval_lib
from deeplab_jax import logs
from deeplab_jax.errors import UserError

_CONFIG = config_flags.DEFINE_config_file(
    'config', None, 'The configuration the run was trained with.',
    lock_config=True)
_WORKDIR = flags.DEFINE_string('workdir', None, 'The training run directory.')
_STEP = flags.DEFINE_integer('step', None, 'Checkpoint step (default: latest).')
flags.mark_flags_as_required(['config', 'workdir'])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  logs.quiet_libraries()
  try:
    eval_lib.evaluate_checkpoint(_CONFIG.value, _WORKDIR.value, _STEP.value)
  except UserError as e:
    sys.exit(f'error: {e}')


if __name__ == '__main__':
  app.run(main)
