"""Training: 8-device sharded step == 1-device step; exact resume; train -> eval."""

import json
import os
import re
import shutil

import jax
import numpy as np
import pytest

from configs import tiny
from deeplab_jax import checkpoint
from deeplab_jax import evaluation
from deeplab_jax import models
from deeplab_jax import optim
from deeplab_jax import sharding
from deeplab_jax import train_lib
from deeplab_jax import train_step
from deeplab_jax.data import input_pipeline
from deeplab_jax.errors import UserError

# Summation order differs between 1 and 8 devices (per-device partial sums of
# the loss, gradients and BatchNorm statistics); float32 round-off stays below:
RTOL, ATOL = 2e-5, 2e-6


def _tree_allclose(a, b, rtol=RTOL, atol=ATOL):
  for (path, x), y in zip(jax.tree_util.tree_leaves_with_path(a),
                          jax.tree_util.tree_leaves(b)):
    np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=rtol, atol=atol,
                               err_msg=jax.tree_util.keystr(path))


def _tree_equal(a, b):
  for (path, x), y in zip(jax.tree_util.tree_leaves_with_path(a),
                          jax.tree_util.tree_leaves(b)):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y),
                                  err_msg=jax.tree_util.keystr(path))


def test_sharded_step_equals_single_device_step(tiny_config, tiny_builder):
  model = models.build(tiny_config)
  tx, schedule = optim.create_optimizer(tiny_config.optim, tiny_config.num_train_steps, classifiers=models.classifier_paths(tiny_config))
  batches = iter(input_pipeline.train_iterator(tiny_config, tiny_builder, 8))
  host_batches = [next(batches) for _ in range(2)]
  results = {}
  for n in (1, 8):
    mesh = sharding.make_mesh(jax.devices()[:n])
    state = train_step.create_train_state(tiny_config, model, tx, mesh)
    step_fn = train_step.make_train_step(tiny_config, model, tx, schedule, mesh)
    losses = []
    for batch in host_batches:
      state, metrics = step_fn(state, sharding.to_global(batch, mesh))
      losses.append(float(metrics['loss']))
    assert state.params['trunk']['stage1_down']['conv']['kernel'].sharding.mesh.size == n
    results[n] = (losses, jax.device_get(state))
  np.testing.assert_allclose(results[1][0], results[8][0], rtol=RTOL)
  _tree_allclose(results[1][1], results[8][1])
  # The step really changed the parameters and BatchNorm statistics.
  initial = jax.device_get(train_step.create_train_state(
      tiny_config, model, tx, sharding.make_mesh(jax.devices()[:1])))
  assert not np.allclose(initial.params['head']['branch0_classifier']['kernel'],
                         results[8][1].params['head']['branch0_classifier']['kernel'])
  assert not np.allclose(initial.batch_stats['trunk']['stage1_down']['bn']['mean'],
                         results[8][1].batch_stats['trunk']['stage1_down']['bn']['mean'])


@pytest.fixture(scope='module')
def trained_run(tmp_path_factory, data_dir):
  """A tiny run trained straight through 4 steps, checkpoints at 2 and 4."""
  from configs import shapes as shapes_config  # pylint: disable=import-outside-toplevel
  config = tiny.get_config(shapes_config)
  config.dataset.data_dir = data_dir
  workdir = str(tmp_path_factory.mktemp('run'))
  state = train_lib.train_and_evaluate(config, workdir)
  return config, workdir, jax.device_get(state)


def test_run_writes_checkpoints_and_tensorboard(trained_run):
  config, workdir, state = trained_run
  assert int(state.step) == config.num_train_steps == 4
  mngr = checkpoint.manager(workdir, read_only=True)
  assert sorted(mngr.all_steps()) == [2, 4]
  assert any(name.startswith('events.out.tfevents') for name in os.listdir(workdir))


def test_interrupted_run_resumes_to_identical_parameters(trained_run, tmp_path):
  config, workdir, final = trained_run
  # A copy of the run as it was when killed after the step-2 checkpoint.
  resumed_dir = str(tmp_path / 'resumed')
  shutil.copytree(workdir, resumed_dir)
  shutil.rmtree(os.path.join(checkpoint.checkpoint_dir(resumed_dir), '4'))

  model = models.build(config)
  tx, _ = optim.create_optimizer(config.optim, config.num_train_steps, classifiers=models.classifier_paths(config))
  mesh = sharding.make_mesh()
  mngr = checkpoint.manager(resumed_dir, read_only=True)
  at_2 = checkpoint.restore(mngr, train_step.abstract_train_state(config, model, tx, mesh))
  assert int(at_2.step) == 2
  assert not np.array_equal(at_2.params['head']['branch0_classifier']['kernel'],
                            final.params['head']['branch0_classifier']['kernel'])

  resumed = jax.device_get(train_lib.train_and_evaluate(config, resumed_dir))
  assert int(resumed.step) == 4
  _tree_equal(resumed, final)  # Bit-identical: same batches, same updates.


def test_evaluate_checkpoint_writes_metrics(trained_run, capsys):
  config, workdir, _ = trained_run
  summary = evaluation.evaluate_checkpoint(config, workdir)
  with open(os.path.join(workdir, 'metrics.json')) as f:
    written = json.load(f)
  assert written['step'] == 4 and written['split'] == 'val'
  assert written['mean_iou'] == pytest.approx(summary['mean_iou'])
  assert 0.0 <= summary['mean_iou'] <= 1.0
  assert set(written['per_class_iou']) == set(config.dataset.class_names)
  # Every valid pixel of the 8 val images is scored exactly once.
  builder = input_pipeline.get_builder(config.dataset)
  pixels = sum(int((b['label'][b['valid']] != 255).sum()) for b in
               input_pipeline.eval_iterator(config, builder, 'val', 8))
  assert np.asarray(written['confusion_matrix']).sum() == pixels
  assert '| **mean IoU** |' in capsys.readouterr().out


def test_resuming_with_another_training_state_is_a_user_error(trained_run, tmp_path):
  # E.g. a run with BatchNorm resumed without it: other parameters and
  # optimizer state. The error says how to keep the weights.
  config, workdir, _ = trained_run
  other = config.copy_and_resolve_references()
  other.model.batch_norm = 'none'
  model = models.build(other)
  tx, _ = optim.create_optimizer(other.optim, other.num_train_steps, classifiers=models.classifier_paths(other))
  mngr = checkpoint.manager(workdir, read_only=True)
  with pytest.raises(UserError, match=r'does not fit this config.*--config.init_from=' + re.escape(workdir)):
    checkpoint.restore(mngr, train_step.abstract_train_state(other, model, tx,
                                                             sharding.make_mesh()))
