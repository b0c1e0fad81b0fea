"""The model families side by side on the built-in dataset: one table, one picture.

    python -m benchmarks.compare --output runs/compare                  # every family
    python -m benchmarks.compare --output runs/compare --families shapes,shapes_largefov
    python -m benchmarks.compare --output /tmp/c --tiny --families shapes,voc_largefov  # seconds

For each family of FAMILIES (or --families, config names): its own config
(configs/<config>.py; with --tiny configs/tiny.py's shrunk one) trains on
`synthetic_shapes` through train.py's code path in <output>/<config>/ (a
run there resumes; a finished one is not retrained), is evaluated on val
through evaluate.py's with the dense CRF on (before and after in one pass,
`config.crf`'s parameters), and is measured (benchmarks/compare_run.py).
Writes <output>/compare.md and compare.json (val mIoU with and without the
CRF, parameters, GFLOP per image at the eval size, train and eval images/s
after compilation, steps, wall times) and <output>/compare.png (the first
--images val images: image | ground truth | each family, class legend).

The budget is the SAME NUMBER OF STEPS for every family (--steps, default
1,400 of each config's batch, configs/shapes.py's run), not the same wall
clock: the machines this runs on are shared, so a wall-clock budget would
make the table depend on the other tenants' load, while the steps give the
same numbers on every run (training is deterministic on a given machine).
Each family sees the same number of images (when the batches agree: the
table says); a slower family gets more compute, which its wall time shows.
"""

from __future__ import annotations

import os
import sys

from absl import app
from absl import flags
from absl import logging

from deeplab_jax import xla_flags

# One row per family: (name in the table and picture, configs/<config>.py).
# A new family is one line here; its config trains on synthetic_shapes and
# its configs/tiny.py:<config> variant is the --tiny one.
FAMILIES = (
    ('DeepLab v2 ASPP-S', 'shapes'),
    ('DeepLab LargeFOV', 'shapes_largefov'),
    ('DeepLab v3+', 'shapes_deeplabv3plus'),
    ('FCN-8s', 'shapes_fcn8s'),
    ('U-Net', 'shapes_unet'),
    ('MobileNetV3 LR-ASPP', 'shapes_lraspp'),
)
DEFAULT_STEPS = 1400  # configs/shapes.py's num_train_steps.

NOTES = (
    'Same number of steps for every family (not the same wall clock: a shared machine).',
    'val mIoU: evaluate.py on the 300 val images (the tiny dataset\'s 8 with --tiny); '
    '+ CRF: the same logits refined by the dense CRF (config.crf).',
    'GFLOP: XLA\'s cost analysis of the compiled forward of one image at the eval size; '
    'a multiply-add counts as 2 FLOPs.',
    'train img/s: the jitted train step at the config\'s batch and crop; eval img/s: network, '
    'upsampling and argmax at the eval size, batch config.eval_batch_size, no CRF; both '
    'medians after compilation (benchmarks/train_step.py, benchmarks/evaluate.py).',
    'train wall: train.py\'s run (data, compilation and checkpoints included); eval wall: '
    'evaluate.py --crf over val.',
)


def compare(output, families=None, steps=None, tiny=False, data_dir=None, timed_steps=5,
            num_images=4, command=''):
  """Runs every family (config names; None: FAMILIES) and writes the table
  and the picture into `output`; returns the rows."""
  from benchmarks import compare_run  # pylint: disable=import-outside-toplevel
  names = dict((config, family) for family, config in FAMILIES)
  configs = list(families) if families else [config for _, config in FAMILIES]
  if steps is None and not tiny:
    steps = DEFAULT_STEPS
  rows, predictions = [], {}
  for config_name in configs:
    family = names.get(config_name, config_name)
    config = compare_run.family_config(config_name, tiny, steps, data_dir)
    logging.info('compare: %s (%s), %d steps', family, config_name, config.num_train_steps)
    row, predictions[family] = compare_run.run_family(
        family, config_name, config, os.path.join(output, config_name), timed_steps, num_images)
    rows.append(row)
    # After each family, so that a stopped comparison keeps the rows it has.
    _write(output, rows, predictions, config, command, tiny)
  from benchmarks import compare_report  # pylint: disable=import-outside-toplevel
  print(compare_report.markdown(rows))
  return rows


def _write(output, rows, predictions, config, command, tiny):
  from benchmarks import compare_report  # pylint: disable=import-outside-toplevel
  notes = NOTES + (('--tiny: configs/tiny.py\'s shrunk configs; the numbers mean nothing.',)
                   if tiny else ())
  compare_report.write_table(rows, output, command, notes)
  first = next(iter(predictions.values()))
  compare_report.write_picture(os.path.join(output, 'compare.png'), list(first), first,
                               predictions, config.dataset.class_names,
                               {row['family']: row['config'] for row in rows})


def main(argv):
  del argv
  f = flags.FLAGS
  compare(f.output, f.families or None, f.steps, f.tiny, f.data_dir, f.timed_steps, f.images,
          command='python -m benchmarks.compare ' + ' '.join(sys.argv[1:]))


if __name__ == '__main__':
  xla_flags.set_defaults()
  flags.DEFINE_string('output', None, 'Directory for the runs, the table and the picture.')
  flags.DEFINE_list('families', [], 'Config names (default: every family of FAMILIES).')
  flags.DEFINE_integer('steps', None, f'Training steps of every family (default '
                       f'{DEFAULT_STEPS}; --tiny: the tiny configs\' own).')
  flags.DEFINE_bool('tiny', False, 'configs/tiny.py\'s shrunk configs (a smoke run).')
  flags.DEFINE_string('data_dir', None, 'TFDS data dir (default ~/tensorflow_datasets).')
  flags.DEFINE_integer('timed_steps', 5, 'Timed calls per speed (after a warm-up call).')
  flags.DEFINE_integer('images', 4, 'Val images in the picture.')
  flags.mark_flags_as_required(['output'])
  app.run(main)
