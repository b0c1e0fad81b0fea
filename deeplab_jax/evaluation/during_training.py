"""Evaluation during training: what a run you watch shows and keeps.

Every `config.eval_every_steps` steps, `Watch.evaluate` scores the
variables on `dataset.eval_split` (`loop.evaluate`, steps compiled once) and
- writes TensorBoard scalars (process 0; `tensorboard --logdir <workdir>`):
  `eval/mean_iou`, `eval/pixel_accuracy`, ..., `eval/iou/<class>` and, with
  `eval.crf`, the same after the CRF under `eval/crf/`;
- writes `eval.num_tensorboard_images` val images as image | prediction |
  ground truth strips (`eval/images/<image id>`, `eval/crf_images/<id>`),
  taken from the same pass;
- keeps the best checkpoint by val mIoU (`best_checkpoint.py`);
- logs a line; `progress` gives the training progress line's tail.
"""

from __future__ import annotations

import re

import jax
from absl import logging

from deeplab_jax import best_checkpoint


def _tag(name):
  """A class or image name as a TensorBoard tag component."""
  return re.sub(r'[^A-Za-z0-9_.\-]', '_', str(name)) or '_'


def scalars(summary, prefix='eval/'):
  """{tag: float} of an evaluation summary: its float entries, per-class IoU
  (`<prefix>iou/<class>`, classes never seen nor predicted left out) and the
  CRF's (`<prefix>crf/...`)."""
  out = {f'{prefix}{k}': v for k, v in summary.items() if isinstance(v, float)}
  for name, value in summary.get('per_class_iou', {}).items():
    if value is not None:
      out[f'{prefix}iou/{_tag(name)}'] = float(value)
  if isinstance(summary.get('crf'), dict):
    out.update(scalars({k: v for k, v in summary['crf'].items() if k != 'params'},
                       f'{prefix}crf/'))
  return out


class Watch:
  """The evaluations of one training run (see the module docstring)."""

  def __init__(self, config, model, mesh, builder, workdir, writer):
    """Compiles nothing yet; opens `<workdir>/best` (resuming its record)."""
    from deeplab_jax import evaluation  # pylint: disable=import-outside-toplevel
    self.config = config
    self.model = model
    self.mesh = mesh
    self.builder = builder
    self.writer = writer
    self.split = config.dataset.eval_split
    self.step_fn = evaluation.make_eval_step(config, model, mesh)
    self.crf_step = evaluation.make_crf_step(config, mesh) if config.eval.crf else None
    self.best = best_checkpoint.BestCheckpoint(workdir, self.split)
    self.last = None  # (step, mIoU) of this run's latest evaluation.

  def evaluate(self, step, variables):
    """Scores `variables` (the state at `step`), writes, keeps the best;
    returns the summary. Every process calls it."""
    from deeplab_jax import evaluation  # pylint: disable=import-outside-toplevel
    from deeplab_jax.evaluation import writer as writer_lib  # pylint: disable=import-outside-toplevel
    num = self.config.eval.num_tensorboard_images
    pictures = writer_lib.Pictures(num) if num and jax.process_index() == 0 else None
    summary = evaluation.evaluate(
        self.config, self.model, variables, self.mesh, builder=self.builder,
        split=self.split, step_fn=self.step_fn, crf_step=self.crf_step,
        pictures=pictures)
    self.writer.write_scalars(step, scalars(summary))
    if pictures is not None:
      images = {f'eval/images/{_tag(k)}': v for k, v in pictures.strips.items()}
      images.update({f'eval/crf_images/{_tag(k)}': v for k, v in pictures.crf_strips.items()})
      if images:
        self.writer.write_images(step, images)
    self.writer.flush()
    value = summary[best_checkpoint.METRIC]
    saved = self.best.update(step, summary, variables)
    self.last = (step, value)
    after = f' ({summary["crf"]["mean_iou"]:.4f} after CRF)' if 'crf' in summary else ''
    if saved:
      kept = f'new best, saved to {self.best.directory}'
    elif self.best.step is not None:
      kept = f'best {self.best.mean_iou:.4f} @ {self.best.step}'
    else:
      kept = 'no best yet'
    logging.info('eval at step %d: %s mIoU %.4f%s on %d images; %s', step, self.split,
                 value, after, summary['num_images'], kept)
    return summary

  def progress(self):
    """The progress line's tail: '  val mIoU 0.8123 (best 0.8200 @ 400)', ''
    before any evaluation; writes best.json once its checkpoint is complete."""
    self.best.flush()
    if self.best.step is None:
      return ''
    best = f'best {self.best.mean_iou:.4f} @ {self.best.step}'
    if self.last is None:
      return f'  {self.split} {best}'
    return f'  {self.split} mIoU {self.last[1]:.4f} ({best})'

  def close(self):
    """Finishes the best checkpoint's pending save and best.json."""
    self.best.close()
