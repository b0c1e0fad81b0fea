"""Evaluates a trained DeepLab checkpoint: mIoU table + <workdir>/metrics.json.

    python evaluate.py --config configs/shapes.py --workdir runs/shapes
    python evaluate.py --config configs/shapes.py --workdir runs/shapes --step 800
"""

from absl import flags
from ml_collections import config_flags

from deeplab_jax import cli
from deeplab_jax import eval_lib

_CONFIG = config_flags.DEFINE_config_file(
    'config', None, 'The configuration the run was trained with.',
    lock_config=True)
_WORKDIR = flags.DEFINE_string('workdir', None, 'The training run directory.')
_STEP = flags.DEFINE_integer('step', None, 'Checkpoint step (default: latest).')
flags.mark_flags_as_required(['config', 'workdir'])


def main():
  eval_lib.evaluate_checkpoint(_CONFIG.value, _WORKDIR.value, _STEP.value)


if __name__ == '__main__':
  cli.run(main)
