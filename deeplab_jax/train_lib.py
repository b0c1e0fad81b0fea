"""Training: data-parallel jitted train step, checkpoints, logs, resume."""

from __future__ import annotations

import functools
import os
import time

import jax
import numpy as np
from absl import logging
from clu import metric_writers

from deeplab_jax import checkpoint
from deeplab_jax import models
from deeplab_jax import optim
from deeplab_jax import sharding
from deeplab_jax import train_step as train_step_lib
from deeplab_jax.data import input_pipeline
from deeplab_jax.errors import UserError


# ---------------------------------------------------------------- setup ----

def check_workdir(workdir):
  """Creates `workdir` and checks it is writable, or raises a UserError."""
  if not workdir:
    raise UserError('--workdir is required: the directory for checkpoints and logs.')
  try:
    os.makedirs(workdir, exist_ok=True)
    probe = os.path.join(workdir, '.write_test')
    with open(probe, 'w') as f:
      f.write('ok')
    os.remove(probe)
  except OSError as e:
    raise UserError(f'cannot write to workdir {workdir!r} ({e.strerror}); choose '
                    'a directory you can write to with --workdir.') from e


def _format_eta(seconds):
  seconds = int(seconds)
  return f'{seconds // 3600}h{seconds % 3600 // 60:02d}m' if seconds >= 3600 \
      else f'{seconds // 60}m{seconds % 60:02d}s'


def _flatten(tree, prefix=''):
  """{'a': {'b': 1}} -> {'a.b': 1}; non-scalars as strings (for hparams)."""
  flat = {}
  for key, value in tree.items():
    name = f'{prefix}{key}'
    if isinstance(value, dict):
      flat.update(_flatten(value, f'{name}.'))
    else:
      flat[name] = value if isinstance(value, (int, float, str, bool)) else str(value)
  return flat


# ---------------------------------------------------------------- loop -----

def train_and_evaluate(config, workdir, mesh=None):
  """Trains `config` in `workdir`, resuming from its latest checkpoint.

  Returns the final TrainState (replicated over the mesh).
  """
  check_workdir(workdir)
  mesh = sharding.make_mesh() if mesh is None else mesh
  sharding.check_divisible(config.batch_size, mesh, 'batch_size')
  model = models.build(config)
  tx, schedule = optim.create_optimizer(
      config.optim, config.num_train_steps, config.model.batch_norm == 'frozen')

  mngr = checkpoint.manager(workdir, config.max_checkpoints_to_keep)
  if mngr.latest_step() is not None:
    state = checkpoint.restore(
        mngr, train_step_lib.abstract_train_state(config, model, tx, mesh))
    logging.info('Resumed from %s at step %d.', mngr.directory, int(state.step))
  else:
    state = train_step_lib.create_train_state(config, model, tx, mesh)
    if config.get('init_from'):
      state = train_step_lib.with_variables(
          state, checkpoint.restore_variables(config.init_from), mesh)
      logging.info('Initial weights from %s.', config.init_from)
  start_step = int(state.step)
  if start_step >= config.num_train_steps:
    logging.info('Already trained to step %d (num_train_steps=%d); nothing to do.',
                 start_step, config.num_train_steps)
    mngr.close()
    return state

  builder = input_pipeline.get_builder(config.dataset)
  batches = iter(input_pipeline.train_iterator(
      config, builder, sharding.local_batch_size(config.batch_size), start_step))
  train_step = train_step_lib.make_train_step(config, model, tx, schedule, mesh)
  writer = metric_writers.create_default_writer(
      workdir, just_logging=jax.process_index() > 0)
  if start_step == 0:
    writer.write_hparams(_flatten(config.to_dict()))

  evaluator = None
  if config.eval_every_steps:
    from deeplab_jax import eval_lib  # pylint: disable=import-outside-toplevel
    evaluator = functools.partial(
        eval_lib.evaluate, config, model, mesh=mesh, builder=builder,
        step_fn=eval_lib.make_eval_step(config, model, mesh))

  logging.info('Training %d -> %d steps, global batch %d on %d device(s).',
               start_step, config.num_train_steps, config.batch_size, mesh.size)
  last_time, last_step = time.perf_counter(), start_step
  window_losses = []  # On device until logged: no host sync every step.
  for step in range(start_step + 1, config.num_train_steps + 1):
    batch = sharding.to_global(next(batches), mesh)
    state, metrics = train_step(state, batch)
    window_losses.append(metrics['loss'])
    if step % config.log_every_steps == 0 or step == config.num_train_steps:
      loss = float(np.mean(jax.device_get(window_losses)))
      learning_rate = float(metrics['learning_rate'])
      window_losses = []
      now = time.perf_counter()
      steps_per_sec = (step - last_step) / (now - last_time)
      images_per_sec = steps_per_sec * config.batch_size
      eta = (config.num_train_steps - step) / steps_per_sec
      logging.info('step %d/%d  loss %.4f  lr %.5f  %.1f img/s  ETA %s', step,
                   config.num_train_steps, loss, learning_rate, images_per_sec,
                   _format_eta(eta))
      writer.write_scalars(step, {'train/loss': loss,
                                  'train/learning_rate': learning_rate,
                                  'train/images_per_sec': images_per_sec,
                                  'train/steps_per_sec': steps_per_sec})
      last_time, last_step = now, step
    if step % config.checkpoint_every_steps == 0 or step == config.num_train_steps:
      checkpoint.save(mngr, step, state)
    if evaluator and step % config.eval_every_steps == 0:
      summary = evaluator(state.variables())
      writer.write_scalars(step, {f'eval/{k}': v for k, v in summary.items()
                                  if isinstance(v, float)})
  mngr.wait_until_finished()
  mngr.close()
  writer.flush()
  return state
