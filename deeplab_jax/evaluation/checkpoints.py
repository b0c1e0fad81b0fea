"""Evaluating a run's checkpoint: the report and files of `evaluate.py`.

    python evaluate.py --config configs/voc_aspp.py --workdir runs/x [--crf]

`evaluate_checkpoint` loads `<workdir>`'s checkpoint (`checkpoint.load_variables`,
which predict.py uses too; `--step` an integer, 'latest' or 'best', see
`checkpoint.resolve_step`), evaluates it (`loop.evaluate`) and writes, into
the output directory (default `<workdir>/eval/<split>_step<step>/`, the
best checkpoint's step number for 'best': the same weights as that step's):
metrics.json, report.md, confusion.png, trimap.png, overlays/ (first
`eval.num_overlays` images), predictions/ (every mask as a VOC palette PNG,
with `eval.save_predictions`) and logits/ (`eval.save_logits` images, for
`python -m deeplab_jax.crf.search`).
"""

from __future__ import annotations

import json
import os

import jax

from deeplab_jax import checkpoint
from deeplab_jax import models
from deeplab_jax import sharding
from deeplab_jax.evaluation import loop
from deeplab_jax.evaluation.report import format_report
from deeplab_jax.evaluation.writer import write_outputs


def default_output_dir(workdir, split, step):
  """`<workdir>/eval/<split>_step<step>`: where evaluate.py writes by default."""
  return os.path.join(workdir, 'eval', f'{split}_step{step}')


def evaluate_checkpoint(config, workdir, step=None, mesh=None, split=None,
                        output_dir=None):
  """Evaluates `workdir`'s checkpoint `step` (None / 'latest', an integer or
  'best': `checkpoint.resolve_step`) on `split`.

  Prints a Markdown report; writes metrics.json (also to
  `<workdir>/metrics.json`), report.md, PNGs and per-image files to
  `output_dir` (default `<workdir>/eval/<split>_step<step>`).
  """
  mesh = sharding.make_mesh() if mesh is None else mesh
  split = split or config.dataset.eval_split
  model = models.build(config)
  directory, step = checkpoint.resolve_step(workdir, step)
  variables, step = checkpoint.load_variables(config, directory, step, mesh)
  output_dir = output_dir or default_output_dir(workdir, split, step)
  summary = loop.evaluate(config, model, variables, mesh, split=split,
                          output_dir=output_dir)
  summary['step'] = int(step)
  summary['workdir'] = os.path.abspath(workdir)
  summary['checkpoint_dir'] = checkpoint.checkpoint_dir(directory)
  summary['output_dir'] = os.path.abspath(output_dir)
  if jax.process_index() == 0:
    write_outputs(summary, output_dir, config.dataset.class_names)
    with open(os.path.join(workdir, 'metrics.json'), 'w') as f:
      json.dump(summary, f, indent=2)
    best = ' (the best checkpoint)' if directory != workdir else ''
    print(f'\n{config.dataset.name} {split}, step {step}{best}, '
          f'{summary["num_images"]} images:\n')
    print(format_report(summary))
    after = (f', {summary["crf"]["mean_iou"]:.4f} after CRF'
             if 'crf' in summary else '')
    print(f'\nmean IoU {summary["mean_iou"]:.4f}{after}; '
          f'report in {output_dir} (and {os.path.join(workdir, "metrics.json")})')
  return summary
