"""Trains DeepLab.

    python train.py --config configs/shapes.py --workdir runs/shapes
    python train.py --config configs/shapes.py --workdir runs/x --config.batch_size=16

Any config field can be overridden with --config.<field>=<value>; a run
resumes from the latest checkpoint in --workdir by itself.
"""

from absl import flags
from ml_collections import config_flags

from deeplab_jax import cli
from deeplab_jax import train_lib

_CONFIG = config_flags.DEFINE_config_file(
    'config', None, 'Training configuration file (configs/*.py[:variant]).',
    lock_config=True)
_WORKDIR = flags.DEFINE_string('workdir', None, 'Directory for checkpoints and logs.')
flags.mark_flags_as_required(['config', 'workdir'])


def main():
  train_lib.train_and_evaluate(_CONFIG.value, _WORKDIR.value)


if __name__ == '__main__':
  cli.run(main)
