"""Inspects the dataset a config names: sizes, class shares, void and label mistakes.

    python -m deeplab_jax.data.inspect --config configs/tiny.py:shapes
    python -m deeplab_jax.data.inspect --config configs/voc_aspp.py \\
        --config.dataset.name=segmentation_folder --config.dataset.builder_config=mine \\
        --config.dataset.folder=~/my_data --config.dataset.num_classes=3 \\
        "--config.dataset.class_names=('background','cat','dog')" \\
        --config.dataset.train_split=train --config.dataset.eval_split=val

Prints a Markdown report (images and sizes per split, each class's share of
the pixels and the images it occurs in, void, then the warnings and errors
with their fixes) and writes report.md, statistics.json and grid.png (a few
images with their masks overlaid) to --output_dir (default
inspect/<dataset>[_<builder_config>] under the current directory). Exits
with status 1 when there are errors (data training cannot use as it is).
A segmentation_folder not prepared yet is read from its files, so a folder
the builder refuses is reported on too. See docs/datasets.md, "Inspecting a
dataset and the label mistakes it catches".
"""

import sys

from absl import flags
from ml_collections import config_flags

from deeplab_jax import cli

_CONFIG = config_flags.DEFINE_config_file(
    'config', None, 'Configuration naming the dataset (configs/*.py[:variant]).',
    lock_config=True)
_SPLIT = flags.DEFINE_multi_string(
    'split', None, 'Split to read; repeat for several (default: the config\'s '
    'train_split and eval_split).')
_OUTPUT_DIR = flags.DEFINE_string(
    'output_dir', None, 'Where report.md, statistics.json and grid.png go '
    '(default: inspect/<dataset>[_<builder_config>]).')
flags.mark_flags_as_required(['config'])


def main():
  from deeplab_jax.data import dataset_report  # pylint: disable=import-outside-toplevel
  config = _CONFIG.value
  output_dir = _OUTPUT_DIR.value or dataset_report.default_output_dir(config.dataset)
  result = dataset_report.inspect_dataset(config, _SPLIT.value, output_dir)
  print(result.markdown)
  print(f'Wrote report.md, statistics.json and grid.png to {output_dir}.')
  if result.errors:
    sys.exit(f'error: label errors: {len(result.errors)} (see the findings above); '
             'fix the files they name')


if __name__ == '__main__':
  cli.run(main)
