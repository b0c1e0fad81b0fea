"""One family of the comparison: train, evaluate (with and without the CRF), measure.

`benchmarks/compare.py` calls `run_family` for each row of its FAMILIES
table. Nothing here is a second training or evaluation loop: training is
`train_lib.train_and_evaluate` (what train.py runs), evaluation
`evaluation.evaluate_checkpoint` (what evaluate.py runs, here with
`config.eval.crf` on, so one pass scores the network's labels and the dense
CRF's, `config.crf`'s parameters), and the speeds come from the benchmarks'
own timers, measured after compilation:

  train images/s  `benchmarks/train_step.measure`: the jitted data-parallel
                  train step (loss, gradients, SGD update) at the config's
                  batch and crop, random inputs, median of the timed steps
  eval images/s   `benchmarks/evaluate.measure` 'single': the network,
                  bilinear upsampling to the padded eval size and argmax
                  (no CRF), batch `config.eval_batch_size`, random images
  GFLOP / image   XLA's cost analysis of the compiled forward (`train=False`)
                  of one image at `input.eval_size`; XLA counts a multiply-add
                  as 2 FLOPs and leaves out the taps that fall in the zero
                  padding (tests/compare_test.py checks both on one conv)
  parameters      the elements of the checkpoint's `params` (BatchNorm
                  statistics, which are not trained by gradient, left out)
"""

from __future__ import annotations

import importlib
import math
import os
import time

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import evaluate as evaluate_benchmark
from benchmarks import train_step as train_step_benchmark
from deeplab_jax import checkpoint
from deeplab_jax import evaluation
from deeplab_jax import inference
from deeplab_jax import models
from deeplab_jax import sharding
from deeplab_jax import train_lib
from deeplab_jax.data import input_pipeline


def family_config(name, tiny=False, steps=None, data_dir=None):
  """configs/{name}.py's config (configs/tiny.py's shrunk one with `tiny`),
  trained for `steps` steps (None: the config's own), with the CRF scored."""
  if tiny:
    from configs import tiny as tiny_configs  # pylint: disable=import-outside-toplevel
    config = tiny_configs.get_config(name)
  else:
    config = importlib.import_module(f'configs.{name}').get_config()
  if steps is not None:
    config.num_train_steps = int(steps)
  if data_dir:
    config.dataset.data_dir = data_dir
  config.eval.crf = True
  return config


def count_params(params):
  """Elements of every leaf of a params tree."""
  return int(sum(np.size(leaf) for leaf in jax.tree_util.tree_leaves(params)))


def forward_flops(model, variables, eval_size):
  """FLOPs of the compiled forward of one image at `eval_size` (XLA's count)."""
  height, width = inference.eval_hw(eval_size)
  images = jnp.zeros((1, height, width, 3), jnp.uint8)
  forward = jax.jit(lambda v, x: model.apply(v, x, train=False))
  cost = forward.lower(jax.device_get(variables), images).compile().cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  return float(cost['flops'])


def train(config, workdir):
  """Trains (or resumes) the family's run; (seconds, step it started at)."""
  start_step = 0
  if os.path.isdir(checkpoint.checkpoint_dir(workdir)):
    start_step = checkpoint.manager(workdir, read_only=True).latest_step() or 0
  start = time.perf_counter()
  train_lib.train_and_evaluate(config, workdir)
  return time.perf_counter() - start, int(start_step)


def first_predictions(config, model, variables, mesh, num_images):
  """{image id: (image, ground truth, prediction)} of the first `num_images`
  val images, each cropped to its size, from the eval step evaluation runs."""
  builder = input_pipeline.get_builder(config.dataset)
  split = config.dataset.eval_split
  step_fn = evaluation.make_eval_step(config, model, mesh)
  local = sharding.local_batch_size(evaluation.eval_batch_size(config, mesh))
  out = {}
  for batch in input_pipeline.eval_iterator(config, builder, split, local):
    preds = sharding.local_rows(step_fn(variables, sharding.to_global(
        {k: batch[k] for k in ('image', 'label', 'valid')}, mesh))['preds'])
    for i, (h, w) in enumerate(batch['size']):
      if len(out) < num_images and batch['valid'][i].any():
        out[batch['id'][i].decode()] = (batch['image'][i, :h, :w], batch['label'][i, :h, :w],
                                        np.asarray(preds[i, :h, :w]))
    if len(out) >= num_images:
      break
  return out


def run_family(family, config_name, config, workdir, timed_steps=5, num_images=4):
  """Trains, evaluates and measures one family; returns (row, predictions).

  `row` holds the table's figures (see the module docstring); `predictions`
  is `first_predictions` for the picture.
  """
  train_seconds, resumed_from = train(config, workdir)
  summary = evaluation.evaluate_checkpoint(config, workdir)
  mesh = sharding.make_mesh()
  model = models.build(config)
  variables, step = checkpoint.load_variables(config, workdir, mesh=mesh)
  predictions = first_predictions(config, model, variables, mesh, num_images)
  flops = forward_flops(model, variables, config.input.eval_size)
  seconds, _, _, _ = train_step_benchmark.measure(config, timed_steps)
  eval_line = next(evaluate_benchmark.measure(config, ['single'], timed_steps))
  height, width = inference.eval_hw(config.input.eval_size)
  row = {
      'family': family, 'config': config_name,
      'backbone': config.model.backbone.name, 'head': config.model.head.name,
      'steps': int(step), 'batch_size': int(config.batch_size),
      'val_miou': float(summary['mean_iou']),
      'val_miou_crf': float(summary['crf']['mean_iou']),
      'val_images': int(summary['num_images']),
      'params': count_params(variables['params']),
      'eval_size': [height, width],
      'gflop_per_image': flops / 1e9,
      'train_images_per_sec': config.batch_size / seconds,
      'eval_images_per_sec': float(eval_line['images_per_sec']),
      'train_seconds': train_seconds, 'resumed_from_step': resumed_from,
      'eval_seconds': float(summary['seconds']),
      'workdir': summary['workdir'],
  }
  if not math.isfinite(row['val_miou']):
    row['val_miou'] = None
  return row, predictions
