"""Exact resume: the data stream jumps to any step, and a training process
killed (kill -9) or stopped (SIGTERM) and restarted ends with parameters
bit-identical to an uninterrupted run's."""

import os
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from configs import tiny
from deeplab_jax import checkpoint
from deeplab_jax import models
from deeplab_jax import optim
from deeplab_jax import sharding
from deeplab_jax import train_step
from deeplab_jax.data import input_pipeline
from deeplab_jax.testing import processes as processes_lib
from deeplab_jax.testing.trees import assert_trees_equal

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _take(iterator, n):
  return [next(iterator) for _ in range(n)]


@pytest.mark.parametrize('cache', [True, False])
def test_stream_started_at_a_step_is_the_tail_of_the_whole_stream(tiny_config,
                                                                  tiny_builder, cache):
  # Process 1 of 2: a 12-image shard, 3 batches of 4 per epoch; 8 batches
  # cross two epoch boundaries, and the resumed stream starts mid-epoch.
  tiny_config.input.cache = cache
  kwargs = dict(process_index=1, process_count=2)
  whole = _take(iter(input_pipeline.train_iterator(
      tiny_config, tiny_builder, 4, **kwargs)), 8)
  resumed = _take(iter(input_pipeline.train_iterator(
      tiny_config, tiny_builder, 4, start_step=4, **kwargs)), 4)
  for a, b in zip(whole[4:], resumed):
    np.testing.assert_array_equal(a['image'], b['image'])
    np.testing.assert_array_equal(a['label'], b['label'])
  # Every epoch is a new order of the same 12 images (epochs 0 and 1).
  firsts = [tuple(b['image'][:, 16, 16, 0]) for b in whole[:6]]
  assert firsts[:3] != firsts[3:6]


def test_resuming_far_into_a_run_reads_at_most_one_epoch(tiny_config, tiny_builder):
  # 10 million steps in: the old `skip(step * batch)` would read 80 million
  # examples; the epoch-addressed stream starts at once.
  start = time.perf_counter()
  far = next(iter(input_pipeline.train_iterator(
      tiny_config, tiny_builder, 8, start_step=10_000_000)))
  assert time.perf_counter() - start < 30
  # Position 8e7 is position 8e7 mod 24 of epoch 8e7 // 24: the same batch
  # as starting from that epoch's first example and skipping within it.
  epoch_start = 80_000_000 // 24 * 24
  same = next(iter(input_pipeline.train_iterator(
      tiny_config, tiny_builder, 8, start_position=80_000_000)))
  np.testing.assert_array_equal(far['image'], same['image'])
  earlier = _take(iter(input_pipeline.train_iterator(
      tiny_config, tiny_builder, 8, start_position=epoch_start)), 3)
  offset = (80_000_000 - epoch_start) // 8
  np.testing.assert_array_equal(far['image'], earlier[offset]['image'])


# ------------------------------------------- interrupted training processes --

STEPS, EVERY = 24, 4
OVERRIDES = [f'--config.num_train_steps={STEPS}', f'--config.checkpoint_every_steps={EVERY}',
             '--config.log_every_steps=1']


def _config(data_dir):
  from configs import shapes as shapes_config  # pylint: disable=import-outside-toplevel
  config = tiny.get_config(shapes_config)
  config.dataset.data_dir = data_dir
  config.num_train_steps, config.checkpoint_every_steps = STEPS, EVERY
  config.log_every_steps = 1
  return config


def _final_state(config, workdir):
  model = models.build(config)
  tx, _ = optim.create_optimizer(config.optim, config.num_train_steps, classifiers=models.classifier_paths(config))
  mngr = checkpoint.manager(workdir, read_only=True)
  return jax.device_get(checkpoint.restore(
      mngr, train_step.abstract_train_state(config, model, tx, sharding.make_mesh())))


@pytest.fixture(scope='module')
def uninterrupted(tmp_path_factory, data_dir):
  from deeplab_jax import train_lib  # pylint: disable=import-outside-toplevel
  config = _config(data_dir)
  workdir = str(tmp_path_factory.mktemp('uninterrupted'))
  train_lib.train_and_evaluate(config, workdir)
  return config, _final_state(config, workdir)


def _start(workdir, data_dir):
  return subprocess.Popen(
      [sys.executable, '-u', 'train.py', '--config=configs/tiny.py:shapes',
       f'--workdir={workdir}', f'--config.dataset.data_dir={data_dir}', *OVERRIDES],
      cwd=ROOT, stderr=subprocess.PIPE, text=True)


def _run_until(process, step):
  """Reads the progress lines until step `step` is logged; returns the log."""
  lines = []
  for line in process.stderr:
    lines.append(line)
    if f'step {step}/{STEPS}' in line:
      return ''.join(lines)
  raise AssertionError('training ended before step %d:\n%s' % (step, ''.join(lines)))


def _finish(workdir, data_dir):
  _, err = processes_lib.wait_all([_start(workdir, data_dir)])[0]
  return err


def test_killed_run_restarted_ends_bit_identical(uninterrupted, data_dir, tmp_path):
  config, final = uninterrupted
  # Checkpoints are written asynchronously: step 4's may still be in flight
  # at step 7. Orbax finishes the previous save before starting the next, so
  # once step 9 is logged the step-4 checkpoint is committed (step 8's may
  # or may not be: the kill can land in the middle of a save).
  kill_at = int(np.random.default_rng().integers(2 * EVERY + 1, STEPS - 1))
  process = _start(tmp_path, data_dir)
  _run_until(process, kill_at)
  process.kill()  # SIGKILL: no handler, no checkpoint at the kill.
  process.wait(timeout=60)
  assert process.returncode == -signal.SIGKILL
  latest = checkpoint.manager(str(tmp_path), read_only=True).latest_step()
  assert latest is not None and latest < STEPS, f'killed at {kill_at}, latest {latest}'
  err = _finish(tmp_path, data_dir)
  assert f'at step {latest}' in err  # Resumed from the last checkpoint.
  resumed = _final_state(config, str(tmp_path))
  assert int(resumed.step) == STEPS
  assert_trees_equal(resumed, final)


def test_sigterm_saves_at_the_current_step_and_resumes_bit_identical(
    uninterrupted, data_dir, tmp_path):
  config, final = uninterrupted
  process = _start(tmp_path, data_dir)
  _run_until(process, 6)
  process.send_signal(signal.SIGTERM)
  _, err = processes_lib.wait_all([process], timeout=120)[0]
  stopped = int(err.split('SIGTERM received: stopped at step ')[1].split('/')[0])
  assert 6 <= stopped < STEPS
  mngr = checkpoint.manager(str(tmp_path), read_only=True)
  assert mngr.latest_step() == stopped  # Saved at the step it stopped at.
  assert 'run the same command to resume' in err
  _finish(tmp_path, data_dir)
  resumed = _final_state(config, str(tmp_path))
  assert int(resumed.step) == STEPS
  assert_trees_equal(resumed, final)
