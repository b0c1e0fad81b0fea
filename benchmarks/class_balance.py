"""Class weighting on a rare class: the same run with and without weights.

    python -m benchmarks.class_balance --output runs/rare          # ~4 min a rule, 2 cores
    python -m benchmarks.class_balance --output runs/rare_s0 --config.seed=0
    python -m benchmarks.class_balance --output /tmp/r --config=configs/tiny.py:shapes \
        --norare_star --rules=none,inverse                      # seconds, numbers meaningless

Trains --config (default configs/shapes.py, the `make demo` run: 1,400 steps
of batch 8; any field can be overridden, `--config.optim.base_lr=0.03`) on
`synthetic_shapes/rare_star`, the built-in dataset with stars made rare in
the train split only (0.53% of its labelled pixels, in 108 of 2,000 images;
4.9% and 862 in `default`), once per `loss.class_balance` rule of --rules
(none = unweighted), through train.py's and evaluate.py's code paths in
<output>/<rule>/ (a finished run is not retrained), and writes
<output>/class_balance.md: each rule's class weights, val IoU of every class
and val mIoU. Val keeps every class's share, so the star's IoU shows what
the loss did for the rare class. Same seed, data order and steps for every
rule: only the loss differs. Training is seed-sensitive (configs/shapes.py:
the loss sits on a plateau for a while), so compare rules over several
--config.seed values, each in its own --output; figures in
benchmarks/README.md ("Class weights on a rare class").
"""

from __future__ import annotations

import copy
import json
import os
import sys

from absl import app
from absl import flags
from ml_collections import config_flags

from deeplab_jax import xla_flags

DEFAULT_RULES = ('', 'inverse_sqrt', 'inverse', 'median_frequency')


def run(output, config, rules=DEFAULT_RULES):
  """Trains and evaluates `config` once per rule (loss.class_balance); returns the rows."""
  # pylint: disable=import-outside-toplevel
  from deeplab_jax import evaluation
  from deeplab_jax import train_lib
  rows = []
  for rule in rules:
    rule_config = copy.deepcopy(config)
    rule_config.loss.class_balance = rule
    workdir = os.path.join(output, rule or 'unweighted')
    train_lib.train_and_evaluate(rule_config, workdir)
    summary = evaluation.evaluate_checkpoint(rule_config, workdir)
    weights_file = os.path.join(workdir, 'class_weights.json')
    weights = None
    if os.path.exists(weights_file):
      with open(weights_file, encoding='utf-8') as f:
        weights = json.load(f)['weights']
    rows.append({'rule': rule or 'none', 'weights': weights,
                 'iou': summary['per_class_iou'], 'mean_iou': summary['mean_iou']})
    _write(output, rows, config)
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


def _write(output, rows, config):
  dataset = f'{config.dataset.name}/{config.dataset.builder_config}'
  text = [f'# Class weighting on a rare class ({dataset})', '',
          f'Command: `python -m benchmarks.class_balance {" ".join(sys.argv[1:])}`', '',
          f'Val IoU per class (the class weight each rule gave it); seed {config.seed}, '
          f'{config.num_train_steps} steps, base lr {config.optim.base_lr:g}.',
          '', markdown(rows, config.dataset.class_names)]
  if config.dataset.builder_config != 'rare_star':
    text += ['', 'Not on rare_star: a smoke run, the comparison means nothing.']
  with open(os.path.join(output, 'class_balance.md'), 'w', encoding='utf-8') as f:
    f.write('\n'.join(text) + '\n')


def main(argv):
  del argv
  f = flags.FLAGS
  config = f.config
  if f.rare_star:
    config.dataset.builder_config = 'rare_star'
  rows = run(f.output, config, tuple('' if r == 'none' else r for r in f.rules))
  print(markdown(rows, config.dataset.class_names))


if __name__ == '__main__':
  xla_flags.set_defaults()
  flags.DEFINE_string('output', None, 'Directory for the runs and the table.')
  config_flags.DEFINE_config_file('config', 'configs/shapes.py', 'Config file.',
                                  lock_config=True)
  flags.DEFINE_list('rules', ['none', 'inverse_sqrt', 'inverse', 'median_frequency'],
                    'loss.class_balance rules; none = unweighted.')
  flags.DEFINE_bool('rare_star', True, "Train on synthetic_shapes/rare_star (--norare_star: "
                    "the config's own dataset, for smoke runs).")
  flags.mark_flags_as_required(['output'])
  app.run(main)
