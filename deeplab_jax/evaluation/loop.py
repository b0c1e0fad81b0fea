"""Evaluation the way the papers computed it: one confusion matrix per split.

`evaluate` runs the eval step (`step.py`) over the split's batches and, with
`eval.crf`, the CRF step (`crf_step.py`) on the same logits; with
`eval.trimap_widths` a confusion matrix per trimap band width (boundary
accuracy). Everything is summed over the split (and over processes: each
process scores its own shard), then turned into mIoU and friends once
(`metrics.py`). The input pipeline (TensorFlow) is imported only here, when
`evaluate` runs.
"""

from __future__ import annotations

import dataclasses
import time

import jax
import numpy as np
from absl import logging

from deeplab_jax import crf
from deeplab_jax import inference
from deeplab_jax import metrics
from deeplab_jax import sharding
from deeplab_jax.evaluation.crf_step import make_crf_step
from deeplab_jax.evaluation.report import trimap_entry
from deeplab_jax.evaluation.step import eval_batch_size, make_eval_step
from deeplab_jax.evaluation.writer import Writer


@dataclasses.dataclass
class Totals:
  """What is summed over the split."""
  confusion: np.ndarray
  crf_confusion: np.ndarray | None
  trimap: np.ndarray | None
  crf_trimap: np.ndarray | None
  images: int = 0


def evaluate(config, model, variables, mesh, builder=None, split=None,
             step_fn=None, crf_step=None, output_dir=None, pictures=None):
  """Scores `variables` on `split` (default config.dataset.eval_split).

  Pass `step_fn` from `make_eval_step` (and `crf_step` from `make_crf_step`)
  when evaluating repeatedly, during training, so they compile once. With
  `config.eval.crf` the summary holds a 'crf' entry (the same metrics after
  the CRF); with `eval.trimap_widths` a 'trimap' entry. `output_dir`: where
  per-image files go (None: none written). `pictures`: a `writer.Pictures`
  to fill with this process's first images' strips (TensorBoard's).
  """
  from deeplab_jax.data import input_pipeline  # pylint: disable=import-outside-toplevel
  builder = builder or input_pipeline.get_builder(config.dataset)
  split = split or config.dataset.eval_split
  batch_size = eval_batch_size(config, mesh)
  local = sharding.local_batch_size(batch_size)
  num_batches = input_pipeline.eval_num_batches(builder, split, local)
  step_fn = step_fn or make_eval_step(config, model, mesh)
  use_crf = bool(config.eval.crf)
  if use_crf and crf_step is None:
    crf_step = make_crf_step(config, mesh)
  num_classes = config.dataset.num_classes
  widths = tuple(config.eval.trimap_widths)
  empty_trimap = np.zeros((len(widths), num_classes, num_classes), np.int64) if widths else None
  totals = Totals(np.zeros((num_classes,) * 2, np.int64),
                  np.zeros((num_classes,) * 2, np.int64) if use_crf else None,
                  empty_trimap, None if empty_trimap is None or not use_crf
                  else empty_trimap.copy())
  writer = Writer(config, output_dir, pictures)
  start = time.perf_counter()
  for i, batch in enumerate(input_pipeline.eval_iterator(config, builder, split, local)):
    global_batch = sharding.to_global(
        {k: batch[k] for k in ('image', 'label', 'valid')}, mesh)
    out = step_fn(variables, global_batch)
    totals.confusion += np.asarray(jax.device_get(out['confusion']), np.int64)
    totals.images += int(batch['valid'].any(axis=(1, 2)).sum())
    crf_preds = None
    if use_crf:
      crf_preds, crf_confusion = crf_step(global_batch['image'], out['logits'],
                                          global_batch['label'], global_batch['valid'])
      totals.crf_confusion += np.asarray(jax.device_get(crf_confusion), np.int64)
      crf_preds = sharding.local_rows(crf_preds)
    if widths or writer.enabled:
      preds = sharding.local_rows(out['preds'])
      if widths:
        ignore = config.dataset.ignore_label
        distance = metrics.boundary_distance(batch['label'], ignore,
                                             config.eval.trimap_boundary, batch['valid'])
        kwargs = dict(valid_BxHxW=batch['valid'], ignore_label=ignore,
                      distance_BxHxW=distance)
        totals.trimap += metrics.trimap_confusion(batch['label'], preds, num_classes,
                                                  widths, **kwargs)
        if use_crf:
          totals.crf_trimap += metrics.trimap_confusion(batch['label'], crf_preds,
                                                        num_classes, widths, **kwargs)
      if writer.enabled:
        logits = out['logits']
        writer.add(batch['image'], batch['label'], batch['valid'], batch['size'],
                   batch['id'], preds, crf_preds,
                   lambda j, logits=logits: sharding.local_rows(logits)[j])
    if (i + 1) % 10 == 0 or i + 1 == num_batches:
      rate = (i + 1) / (time.perf_counter() - start)
      logging.info('eval %s: batch %d/%d  %.1f img/s  ETA %.0fs', split, i + 1,
                   num_batches, rate * batch_size, (num_batches - i - 1) / rate)
  seconds = time.perf_counter() - start
  names = config.dataset.class_names
  summary = metrics.summarize(totals.confusion, names)
  summary['confusion_matrix'] = totals.confusion.tolist()
  summary['split'] = split
  summary['num_images'] = int(sharding.sum_over_processes(np.asarray(totals.images)))
  summary['seconds'] = seconds
  summary['inference'] = dataclasses.asdict(inference.options_from_config(config))
  if use_crf:
    params, backend = crf.settings(config)
    summary['crf'] = metrics.summarize(totals.crf_confusion, names)
    summary['crf']['confusion_matrix'] = totals.crf_confusion.tolist()
    summary['crf']['params'] = dataclasses.asdict(params)
    summary['crf']['backend'] = backend
  if widths:
    summary['trimap'] = {'before': trimap_entry(totals.trimap, widths, names)}
    if use_crf:
      summary['trimap']['after'] = trimap_entry(totals.crf_trimap, widths, names)
  return summary
