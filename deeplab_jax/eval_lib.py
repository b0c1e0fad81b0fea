"""Evaluation: one confusion matrix over the whole split, then mIoU & co."""

from __future__ import annotations

import json
import math
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

from deeplab_jax import checkpoint
from deeplab_jax import metrics
from deeplab_jax import models
from deeplab_jax import optim
from deeplab_jax import sharding
from deeplab_jax import train_step
from deeplab_jax.data import input_pipeline
from deeplab_jax.models.resize import resize_bilinear


def eval_batch_size(config, mesh):
  """config.eval_batch_size rounded up to a multiple of the device count."""
  return math.ceil(config.eval_batch_size / mesh.size) * mesh.size


def make_eval_step(config, model, mesh):
  """Jitted `step(variables, batch) -> (C, C) confusion counts` for one batch."""
  num_classes = config.dataset.num_classes

  def eval_step(variables, batch):
    logits = model.apply(variables, batch['image'], train=False)
    logits = resize_bilinear(logits, batch['label'].shape[1:3],
                             config.model.align_corners)
    preds = jnp.argmax(logits, axis=-1).astype(jnp.int32)
    return metrics.confusion_matrix(batch['label'], preds, num_classes,
                                    batch['valid'], config.dataset.ignore_label)

  repl = sharding.replicated(mesh)
  return jax.jit(eval_step, in_shardings=(repl, sharding.batch_sharded(mesh)),
                 out_shardings=repl)


def evaluate(config, model, variables, mesh, builder=None, split=None,
             step_fn=None):
  """Scores `variables` on `split` (default config.dataset.eval_split).

  Pass `step_fn` from `make_eval_step` when evaluating repeatedly (during
  training) so the step is traced and compiled once.
  """
  builder = builder or input_pipeline.get_builder(config.dataset)
  split = split or config.dataset.eval_split
  batch_size = eval_batch_size(config, mesh)
  local = sharding.local_batch_size(batch_size)
  num_batches = input_pipeline.eval_num_batches(builder, split, local)
  step_fn = step_fn or make_eval_step(config, model, mesh)
  confusion = np.zeros((config.dataset.num_classes,) * 2, np.int64)
  start = time.perf_counter()
  for i, batch in enumerate(input_pipeline.eval_iterator(config, builder, split, local)):
    batch = sharding.to_global(
        {k: batch[k] for k in ('image', 'label', 'valid')}, mesh)
    confusion += np.asarray(jax.device_get(step_fn(variables, batch)), np.int64)
    if (i + 1) % 10 == 0 or i + 1 == num_batches:
      rate = (i + 1) / (time.perf_counter() - start)
      logging.info('eval %s: batch %d/%d  %.1f img/s  ETA %.0fs', split, i + 1,
                   num_batches, rate * batch_size, (num_batches - i - 1) / rate)
  summary = metrics.summarize(confusion, config.dataset.class_names)
  summary['confusion_matrix'] = confusion.tolist()
  summary['split'] = split
  return summary


def evaluate_checkpoint(config, workdir, step=None, mesh=None):
  """Restores the latest (or `step`) checkpoint of `workdir` and evaluates it.

  Prints a Markdown table and writes `<workdir>/metrics.json`.
  """
  mesh = sharding.make_mesh() if mesh is None else mesh
  model = models.build(config)
  tx, _ = optim.create_optimizer(
      config.optim, config.num_train_steps, config.model.batch_norm == 'frozen')
  mngr = checkpoint.manager(workdir, read_only=True)
  state = checkpoint.restore(
      mngr, train_step.abstract_train_state(config, model, tx, mesh), step)
  mngr.close()
  summary = evaluate(config, model, state.variables(), mesh)
  summary['step'] = int(state.step)
  summary['workdir'] = os.path.abspath(workdir)
  if jax.process_index() == 0:
    print(f'\n{config.dataset.name} {summary["split"]}, step {summary["step"]}:\n')
    print(metrics.format_table(summary))
    path = os.path.join(workdir, 'metrics.json')
    with open(path, 'w') as f:
      json.dump(summary, f, indent=2)
    print(f'\nmean IoU {summary["mean_iou"]:.4f}, written to {path}')
  return summary
