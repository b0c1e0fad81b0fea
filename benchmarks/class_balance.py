"""Class weighting on a rare class: the same run with and without weights.

    python -m benchmarks.class_balance --output runs/rare          # ~7 min a rule, 2 cores
    python -m benchmarks.class_balance --output /tmp/r --tiny      # seconds, numbers meaningless

Trains configs/shapes.py (the `make demo` run: 1,400 steps of batch 8) on
`synthetic_shapes/rare_star`, the built-in dataset with stars made rare in
the train split only (0.53% of its labelled pixels, in 108 of 2,000 images;
4.9% and 862 in `default`), once per `loss.class_balance` rule of --rules
('' = unweighted), through train.py's and evaluate.py's code paths in
<output>/<rule>/ (a finished run is not retrained), and writes
<output>/class_balance.md: each rule's class weights, val IoU of every class
and val mIoU. Val keeps every class's share, so the star's IoU shows what
the loss did for the rare class. Same seed, data order and steps for every
rule: only the loss differs. Training is seed-sensitive (configs/shapes.py:
the loss sits on a plateau for a while), so compare rules over several
--seed values, each in its own --output.
"""

from __future__ import annotations

import json
import os
import sys

from absl import app
from absl import flags

from deeplab_jax import xla_flags

DEFAULT_RULES = ('', 'inverse_sqrt', 'inverse', 'median_frequency')


def run(output, rules=DEFAULT_RULES, tiny=False, data_dir=None, seed=None):
  """Trains and evaluates one run per rule; returns the rows (dicts)."""
  # pylint: disable=import-outside-toplevel
  from configs import shapes
  from configs import tiny as tiny_configs
  from deeplab_jax import evaluation
  from deeplab_jax import train_lib
  rows = []
  for rule in rules:
    config = tiny_configs.get_config(shapes) if tiny else shapes.get_config()
    if not tiny:
      config.dataset.builder_config = 'rare_star'
    config.dataset.data_dir = data_dir
    config.loss.class_balance = rule
    if seed is not None:
      config.seed = seed
    workdir = os.path.join(output, rule or 'unweighted')
    train_lib.train_and_evaluate(config, workdir)
    summary = evaluation.evaluate_checkpoint(config, workdir)
    weights_file = os.path.join(workdir, 'class_weights.json')
    weights = None
    if os.path.exists(weights_file):
      with open(weights_file, encoding='utf-8') as f:
        weights = json.load(f)['weights']
    rows.append({'rule': rule or 'none', 'weights': weights,
                 'iou': summary['per_class_iou'], 'mean_iou': summary['mean_iou']})
    _write(output, rows, config.dataset.class_names, tiny)
  return rows


def markdown(rows, class_names):
  """The table: one row per rule, each class's val IoU (and weight)."""
  head = '| class_balance | ' + ' | '.join(class_names) + ' | val mIoU |'
  lines = [head, '|' + '---|' * (len(class_names) + 2)]
  for row in rows:
    cells = []
    for c, name in enumerate(class_names):
      iou = row['iou'][name]  # None: in neither ground truth nor predictions.
      weight = f' (w {row["weights"][c]:.2f})' if row['weights'] else ''
      cells.append(('-' if iou is None else f'{iou:.4f}') + weight)
    lines.append(f'| {row["rule"]} | ' + ' | '.join(cells) + f' | {row["mean_iou"]:.4f} |')
  return '\n'.join(lines)


def _write(output, rows, class_names, tiny):
  text = ['# Class weighting on a rare class (synthetic_shapes/rare_star)', '',
          f'Command: `python -m benchmarks.class_balance {" ".join(sys.argv[1:])}`', '',
          'Val IoU per class (the class weight each rule gave it), configs/shapes.py\'s run.',
          '', markdown(rows, class_names)]
  if tiny:
    text += ['', '--tiny: configs/tiny.py:shapes on the tiny dataset; the numbers mean nothing.']
  with open(os.path.join(output, 'class_balance.md'), 'w', encoding='utf-8') as f:
    f.write('\n'.join(text) + '\n')


def main(argv):
  del argv
  f = flags.FLAGS
  rows = run(f.output, tuple('' if r == 'none' else r for r in f.rules), f.tiny, f.data_dir,
             f.seed)
  from configs import shapes  # pylint: disable=import-outside-toplevel
  print(markdown(rows, shapes.get_config().dataset.class_names))


if __name__ == '__main__':
  xla_flags.set_defaults()
  flags.DEFINE_string('output', None, 'Directory for the runs and the table.')
  flags.DEFINE_list('rules', ['none', 'inverse_sqrt', 'inverse', 'median_frequency'],
                    'loss.class_balance rules; none = unweighted.')
  flags.DEFINE_bool('tiny', False, 'configs/tiny.py:shapes on the tiny dataset (a smoke run).')
  flags.DEFINE_string('data_dir', None, 'TFDS data dir (default ~/tensorflow_datasets).')
  flags.DEFINE_integer('seed', None, 'config.seed of every run (default: configs/shapes.py\'s, 1).')
  flags.mark_flags_as_required(['output'])
  app.run(main)
