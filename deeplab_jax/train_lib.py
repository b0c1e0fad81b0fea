"""Training: data-parallel jitted train step, checkpoints, logs, exact resume.

`python train.py --config ... --workdir DIR` calls `train_and_evaluate`. It
resumes from DIR's latest checkpoint with the same batches and updates an
uninterrupted run would have had: every random key is derived from
`config.seed` and the step (dropout) or the example's stream position
(augmentation), and the checkpoint's `data` item records the input stream's
position, which the pipeline jumps to (see input_pipeline.train_iterator).

SIGTERM / SIGINT: the run saves a checkpoint at the step it is at, logs how to
resume and returns (exit status 0). In a multi-process run SIGTERM goes
through JAX's preemption service, which picks a step every process reaches
(`multihost_utils.reached_preemption_sync_point`); SIGINT is turned into it.

Non-finite loss or gradients: each step returns a device flag; the loop
fetches the flags of all steps since the last check only where it syncs
anyway (log lines) and before every checkpoint, so no step waits for the
host, and no checkpoint ever holds a state after a non-finite step. The run
then stops with a NonFiniteError naming the first bad step; the last
checkpoint written is the last good state.

Every `config.eval_every_steps` steps the run evaluates on the val split
(`evaluation/during_training.py`): TensorBoard scalars and image strips, the
best checkpoint by val mIoU in `<workdir>/best` (`best_checkpoint.py`), and
the progress line's `val mIoU ... (best ... @ step)`.
"""

from __future__ import annotations

import os
import signal
import threading
import time

import jax
import numpy as np
from absl import logging
from clu import metric_writers
from jax.experimental import multihost_utils

from deeplab_jax import checkpoint
from deeplab_jax import losses
from deeplab_jax import models
from deeplab_jax import optim
from deeplab_jax import sharding
from deeplab_jax import train_step as train_step_lib
from deeplab_jax.data import input_pipeline
from deeplab_jax.losses import class_weights
from deeplab_jax.models import crf_layer
from deeplab_jax.errors import UserError


# ---------------------------------------------------------------- setup ----

class NonFiniteError(UserError):
  """The loss or a gradient became NaN or infinite."""

def check_workdir(workdir):
  """Creates `workdir` and checks it is writable, or raises a UserError."""
  if not workdir:
    raise UserError('--workdir is required: the directory for checkpoints and logs.')
  try:
    os.makedirs(workdir, exist_ok=True)
    probe = os.path.join(workdir, f'.write_test.{os.getpid()}')  # One per process.
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


# ---------------------------------------------------------- stop signals --

class StopSignals:
  """SIGTERM / SIGINT -> "stop at the next step" (a context manager).

  One process: a flag set by the handler, read between steps. Several
  processes: JAX's preemption service (started by jax.distributed.initialize)
  catches SIGTERM on any process and makes `requested` true on all of them at
  the same step; SIGINT is forwarded to it as SIGTERM.
  """

  def __init__(self):
    self.received = None
    self._previous = {}

  def __enter__(self):
    if threading.current_thread() is not threading.main_thread():
      return self  # Python only installs handlers in the main thread.
    multi = jax.process_count() > 1
    for signum in (signal.SIGINT,) if multi else (signal.SIGTERM, signal.SIGINT):
      self._previous[signum] = signal.signal(signum, self._handle)
    return self

  def __exit__(self, *exc):
    for signum, handler in self._previous.items():
      signal.signal(signum, handler)
    self._previous = {}

  def _handle(self, signum, frame):
    del frame
    if self.received is not None and signum == signal.SIGINT:
      raise KeyboardInterrupt  # A second Ctrl-C: stop now, no checkpoint.
    self.received = signal.Signals(signum).name
    if jax.process_count() > 1:
      os.kill(os.getpid(), signal.SIGTERM)  # To JAX's preemption notifier.

  def requested(self, step):
    if jax.process_count() > 1:
      try:
        reached = multihost_utils.reached_preemption_sync_point(step)
      except RuntimeError:  # Preemption service off (jax_enable_preemption_service).
        reached = False
      if reached:
        self.received = self.received or 'SIGTERM'
        return True
      return False
    return self.received is not None


# ---------------------------------------------------------------- loop -----

def data_state(config, step, position, local_batch_size):
  """The checkpoint's `data` item: where each process's input stream stands
  (`position`: examples it has taken from its stream, the same on all)."""
  return {'step': step, 'position': position,
          'local_batch_size': local_batch_size,
          'process_count': jax.process_count(), 'seed': config.seed}


def _start_position(config, saved, step, local_batch_size):
  """The stream position to resume at: the saved one where it applies."""
  if saved is None:
    return step * local_batch_size
  if saved['process_count'] != jax.process_count() or saved['seed'] != config.seed:
    logging.warning(
        'The checkpoint was written by %d process(es) with seed %d, this run has '
        '%d with seed %d: each process reads another shard or order, so the '
        'batches after this resume differ from an uninterrupted run\'s.',
        saved['process_count'], saved['seed'], jax.process_count(), config.seed)
  return int(saved['position'])


def _first_bad(pending):
  """(step, loss) of the first non-finite step in `pending`, or None."""
  steps = [s for s, _, _ in pending]
  losses, finite = jax.device_get(([l for _, l, _ in pending],
                                   [f for _, _, f in pending]))
  for step, loss, ok in zip(steps, losses, finite):
    if not ok:
      return step, float(loss)
  return None


def train_and_evaluate(config, workdir, mesh=None):
  """Trains `config` in `workdir`, resuming from its latest checkpoint.

  Returns the final TrainState (replicated over the mesh); after a stop
  signal, the state of the step it stopped at (checkpointed). Raises
  NonFiniteError (after keeping the last good checkpoint) and
  checkpoint.CheckpointWriteError (the previous checkpoint stays readable).
  """
  check_workdir(workdir)
  mesh = sharding.make_mesh() if mesh is None else mesh
  sharding.check_divisible(config.batch_size, mesh, 'batch_size')
  train_step_lib.check_grad_accum(config, mesh)
  model = models.build(config)
  tx, schedule = optim.from_config(config, model)
  local_batch_size = sharding.local_batch_size(config.batch_size)
  # Data (prepared and checked on first use) and loss first: a mistake in
  # either stops the run before anything compiles or is written.
  builder = input_pipeline.get_builder(config.dataset)
  objective = losses.from_config(config, class_weights.resolve(config, builder, workdir))

  mngr = checkpoint.manager(workdir, config.max_checkpoints_to_keep)
  saved_data = None
  if mngr.latest_step() is not None:
    state = checkpoint.restore(
        mngr, train_step_lib.abstract_train_state(config, model, tx, mesh))
    saved_data = checkpoint.restore_data(mngr)
    logging.info('Resumed from %s at step %d.', mngr.directory, int(state.step))
  else:
    state = train_step_lib.create_train_state(config, model, tx, mesh)
    if config.get('init_from'):
      # A run without the CRF layer can start one with it: the layer's
      # weights then come from config.crf (the fresh state's).
      initial = crf_layer.with_fresh_layer(
          checkpoint.restore_variables(config.init_from), state.variables())
      state = train_step_lib.with_variables(state, initial, mesh)
      logging.info('Initial weights from %s.', config.init_from)
  start_step = int(state.step)
  if start_step >= config.num_train_steps:
    logging.info('Already trained to step %d (num_train_steps=%d); nothing to do.',
                 start_step, config.num_train_steps)
    mngr.close()
    return state

  start_position = _start_position(config, saved_data, start_step, local_batch_size)
  batches = iter(input_pipeline.train_iterator(
      config, builder, local_batch_size, start_position=start_position))
  train_step = train_step_lib.make_train_step(config, model, tx, schedule, mesh, objective)
  writer = metric_writers.create_default_writer(
      workdir, just_logging=jax.process_index() > 0)
  if start_step == 0:
    writer.write_hparams(_flatten(config.to_dict()))

  watch = None  # Evaluation during training: TensorBoard, the best checkpoint.
  if config.eval_every_steps:
    from deeplab_jax.evaluation import during_training  # pylint: disable=import-outside-toplevel
    watch = during_training.Watch(config, model, mesh, builder, workdir, writer)

  logging.info('Training %d -> %d steps, global batch %d (%d x %d) on %d device(s), '
               '%d process(es).', start_step, config.num_train_steps, config.batch_size,
               config.get('grad_accum_steps', 1),
               config.batch_size // config.get('grad_accum_steps', 1), mesh.size,
               jax.process_count())
  last_time, last_step = time.perf_counter(), start_step
  last_saved = mngr.latest_step()
  # (step, loss, finite) on device until the next log line or checkpoint:
  # no host sync every step.
  pending = []

  def check_finite():
    bad = _first_bad(pending)
    if bad is not None:
      checkpoint.wait(mngr, last_saved)  # The last good checkpoint completes.
      mngr.close()
      if watch:
        watch.close()
      kept = (f'the checkpoint of step {last_saved} is the last good state and '
              f'running the same command again resumes from it'
              if last_saved is not None else 'no checkpoint was written')
      raise NonFiniteError(
          f'the loss or a gradient is not finite at step {bad[0]} (loss {bad[1]}); '
          f'training stopped and nothing after it was saved: {kept}. Lower '
          f'--config.optim.base_lr (or add warm-up: --config.optim.warmup_steps) '
          f'or check the data.')

  def save(step):
    nonlocal last_saved
    check_finite()
    position = start_position + (step - start_step) * local_batch_size
    checkpoint.save(mngr, step, state,
                    data_state(config, step, position, local_batch_size))
    last_saved = step

  step = start_step
  with StopSignals() as stop:
    for step in range(start_step + 1, config.num_train_steps + 1):
      batch = sharding.to_global(next(batches), mesh)
      state, metrics = train_step(state, batch)
      pending.append((step, metrics['loss'], metrics['finite']))
      if step % config.log_every_steps == 0 or step == config.num_train_steps:
        check_finite()
        loss = float(np.mean(jax.device_get([l for _, l, _ in pending])))
        learning_rate = float(metrics['learning_rate'])
        now = time.perf_counter()
        steps_per_sec = (step - last_step) / (now - last_time)
        images_per_sec = steps_per_sec * config.batch_size
        eta = (config.num_train_steps - step) / steps_per_sec
        logging.info('step %d/%d  loss %.4f  lr %.5f  %.1f img/s  ETA %s%s', step,
                     config.num_train_steps, loss, learning_rate, images_per_sec,
                     _format_eta(eta), watch.progress() if watch else '')
        writer.write_scalars(step, {'train/loss': loss,
                                    'train/learning_rate': learning_rate,
                                    'train/images_per_sec': images_per_sec,
                                    'train/steps_per_sec': steps_per_sec})
        last_time, last_step = now, step
        pending = []
      if step % config.checkpoint_every_steps == 0 or step == config.num_train_steps:
        save(step)
        pending = []
      if watch and step % config.eval_every_steps == 0:
        check_finite()  # No best checkpoint of a non-finite state.
        watch.evaluate(step, state.variables())
      if stop.requested(step):
        if last_saved != step:
          save(step)
        checkpoint.wait(mngr, step)
        logging.warning('%s received: stopped at step %d/%d and saved a checkpoint '
                        'there; run the same command to resume.', stop.received,
                        step, config.num_train_steps)
        break
  checkpoint.wait(mngr, last_saved)
  mngr.close()
  if watch:
    watch.close()
  writer.flush()
  return state
