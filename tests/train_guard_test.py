"""The training loop's guards: a non-finite loss stops the run without saving
the bad state; a checkpoint that cannot be written is a clear error and the
previous one stays readable; SIGTERM / SIGINT save at the current step."""

import errno
import os
import signal

import jax
import numpy as np
import pytest
from orbax.checkpoint._src.path import async_path

from deeplab_jax import checkpoint
from deeplab_jax import models
from deeplab_jax import optim
from deeplab_jax import sharding
from deeplab_jax import train_lib
from deeplab_jax import train_step


def _restore(config, workdir, step=None):
  model = models.build(config)
  tx, _ = optim.create_optimizer(config.optim, config.num_train_steps, classifiers=models.classifier_paths(config))
  mngr = checkpoint.manager(workdir, read_only=True)
  return jax.device_get(checkpoint.restore(
      mngr, train_step.abstract_train_state(config, model, tx, sharding.make_mesh()), step))


def _all_finite(tree):
  return all(np.all(np.isfinite(x)) for x in jax.tree_util.tree_leaves(tree))


def test_non_finite_loss_stops_the_run_and_keeps_the_last_good_checkpoint(
    tiny_config, tmp_path):
  # A learning rate of 1e8 blows the tiny model up at step 3 (measured); the
  # flags are only fetched at step 4 (log line and checkpoint).
  tiny_config.optim.base_lr = 1e8
  tiny_config.num_train_steps = 8
  tiny_config.log_every_steps = 4
  tiny_config.checkpoint_every_steps = 2
  with pytest.raises(train_lib.NonFiniteError,
                     match=r'not finite at step 3 .*checkpoint of step 2 is the last good'):
    train_lib.train_and_evaluate(tiny_config, str(tmp_path))
  mngr = checkpoint.manager(str(tmp_path), read_only=True)
  assert sorted(mngr.all_steps()) == [2]  # Step 4's non-finite state never saved.
  state = _restore(tiny_config, str(tmp_path))
  assert int(state.step) == 2 and _all_finite(state)


def test_unwritable_checkpoint_is_an_error_and_the_previous_one_stays(
    tiny_config, tmp_path, monkeypatch):
  # The disk "fills up" while step 4's checkpoint is committed: orbax's last
  # act (the rename of the finished temporary directory into place) fails.
  rename = async_path.rename

  async def full_disk(src, dst, *args, **kwargs):
    if os.path.basename(str(dst)) == '4':
      raise OSError(errno.ENOSPC, 'No space left on device', str(src))
    return await rename(src, dst, *args, **kwargs)

  monkeypatch.setattr(async_path, 'rename', full_disk)
  with pytest.raises(checkpoint.CheckpointWriteError) as info:
    train_lib.train_and_evaluate(tiny_config, str(tmp_path))
  message = str(info.value)
  assert 'could not write the checkpoint of step 4' in message
  assert 'No space left on device' in message and 'Free disk space' in message
  assert 'step 2 is complete and untouched' in message
  monkeypatch.undo()
  mngr = checkpoint.manager(str(tmp_path), read_only=True)
  assert mngr.latest_step() == 2
  state = _restore(tiny_config, str(tmp_path))
  assert int(state.step) == 2 and _all_finite(state)
  # And the run resumes from it once the disk has room again.
  resumed = train_lib.train_and_evaluate(tiny_config, str(tmp_path))
  assert int(resumed.step) == 4
  assert checkpoint.manager(str(tmp_path), read_only=True).latest_step() == 4


@pytest.mark.parametrize('signum', [signal.SIGTERM, signal.SIGINT])
def test_stop_signal_saves_at_the_current_step(tiny_config, tmp_path, monkeypatch,
                                               caplog, signum):
  tiny_config.num_train_steps = 8
  tiny_config.checkpoint_every_steps = 4
  make = train_step.make_train_step

  def make_signalling_step(*args):
    step_fn = make(*args)

    def step(state, batch):
      if int(state.step) == 2:  # While step 3 runs.
        os.kill(os.getpid(), signum)
      return step_fn(state, batch)
    return step

  monkeypatch.setattr(train_step, 'make_train_step', make_signalling_step)
  previous = signal.getsignal(signum)
  state = train_lib.train_and_evaluate(tiny_config, str(tmp_path))
  assert int(state.step) == 3
  assert sorted(checkpoint.manager(str(tmp_path), read_only=True).all_steps()) == [3]
  assert f'{signal.Signals(signum).name} received: stopped at step 3/8' in caplog.text
  assert signal.getsignal(signum) is previous  # Handlers restored.
  saved = checkpoint.restore_data(checkpoint.manager(str(tmp_path), read_only=True))
  assert saved['position'] == 3 * 8 and saved['step'] == 3
