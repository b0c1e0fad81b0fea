"""Gradient accumulation (config.grad_accum_steps) equals the whole batch.

Without train-mode BatchNorm (whose statistics are per micro-batch), K
micro-batches of batch_size / K give the whole batch's loss and gradients up
to float summation order; two SGD-momentum updates are compared.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import tiny
from deeplab_jax import models
from deeplab_jax import optim
from deeplab_jax import sharding
from deeplab_jax import train_step
from deeplab_jax.data import input_pipeline
from deeplab_jax.errors import UserError

# Measured largest parameter differences after two updates (float32 sums in
# another order): 1.5e-8 absolute (2 x 4) and 7.5e-9 (4 x 2); tolerance:
RTOL, ATOL = 1e-5, 1e-6


def _train(config, host_batches, num_devices):
  mesh = sharding.make_mesh(jax.devices()[:num_devices])
  model = models.build(config)
  tx, schedule = optim.create_optimizer(config.optim, config.num_train_steps, classifiers=models.classifier_paths(config))
  state = train_step.create_train_state(config, model, tx, mesh)
  step_fn = train_step.make_train_step(config, model, tx, schedule, mesh)
  losses = []
  for batch in host_batches:
    state, metrics = step_fn(state, sharding.to_global(batch, mesh))
    assert bool(metrics['finite'])
    losses.append(float(metrics['loss']))
  return losses, jax.device_get(state)


def _assert_tree_close(a, b):
  for (path, x), y in zip(jax.tree_util.tree_leaves_with_path(a),
                          jax.tree_util.tree_leaves(b)):
    np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=RTOL, atol=ATOL,
                               err_msg=jax.tree_util.keystr(path))


@pytest.fixture(scope='module')
def host_batches(data_dir):
  from configs import shapes as shapes_config  # pylint: disable=import-outside-toplevel
  config = tiny.get_config(shapes_config)
  config.dataset.data_dir = data_dir
  builder = input_pipeline.get_builder(config.dataset)
  batches = iter(input_pipeline.train_iterator(config, builder, 8))
  return [next(batches) for _ in range(2)]


def test_two_micro_batches_of_four_equal_the_batch_of_eight(tiny_config, host_batches):
  # Frozen BatchNorm, and the paper's loss: labels shrunk to each map, MSC's
  # per-scale terms summed (each normalised by its own valid pixels).
  tiny_config.model.batch_norm = 'frozen'
  tiny_config.loss.upsample_logits = False
  tiny_config.model.input_scales = (1.0, 0.5)
  # Micro-batches hold different numbers of void pixels: plain averaging of
  # micro-batch means would not give the whole batch's loss.
  valid = [(b['label'][k::2] != 255).sum() for b in host_batches[:1] for k in (0, 1)]
  assert valid[0] != valid[1]
  whole_losses, whole = _train(tiny_config, host_batches, num_devices=4)
  tiny_config.grad_accum_steps = 2  # 2 micro-batches x 4 images, 4 devices.
  accum_losses, accum = _train(tiny_config, host_batches, num_devices=4)
  np.testing.assert_allclose(accum_losses, whole_losses, rtol=RTOL)
  _assert_tree_close(accum.params, whole.params)
  _assert_tree_close(accum.opt_state, whole.opt_state)
  assert int(accum.step) == 2  # One update per call, not per micro-batch.
  # Non-zero momentum: the updates moved the parameters (not a vacuous match).
  traces = [x for path, x in jax.tree_util.tree_leaves_with_path(accum.opt_state)
            if 'trace' in jax.tree_util.keystr(path)]
  assert traces and max(float(np.abs(x).max()) for x in traces) > 0


@pytest.mark.parametrize('normalize', ['batch', 'image', 'sum'])
def test_four_micro_batches_of_two_on_two_devices(tiny_config, host_batches, normalize):
  tiny_config.model.batch_norm = 'none'
  tiny_config.loss.normalize = normalize  # 'image': each micro-batch weighs 1/4; 'sum': 1.
  if normalize == 'sum':  # The summed loss takes a learning rate smaller by ~the pixel count.
    tiny_config.optim.base_lr /= tiny_config.batch_size * tiny_config.input.crop_size ** 2
  whole_losses, whole = _train(tiny_config, host_batches, num_devices=2)
  tiny_config.grad_accum_steps = 4
  accum_losses, accum = _train(tiny_config, host_batches, num_devices=2)
  np.testing.assert_allclose(accum_losses, whole_losses, rtol=RTOL)
  _assert_tree_close(accum.params, whole.params)


# The loss options (tests/loss_options_test.py) through the real step: OHEM
# and Dice with 'batch' take the statistics pass first, the others weigh the
# micro-batches by label-only sums; MSC's two maps each with their own sums.
@pytest.mark.parametrize('normalize, fields', [
    ('batch', dict(class_weights=(0.5, 1.0, 3.0, 2.0, 1.5), ohem=True, ohem_threshold=0.8,
                   ohem_min_kept=300, dice_weight=0.5)),
    ('image', dict(ohem=True, ohem_threshold=0.8, ohem_min_kept=300, lovasz_weight=0.5)),
])
def test_loss_options_accumulate_to_the_whole_batch(tiny_config, host_batches, normalize,
                                                    fields):
  tiny_config.model.batch_norm = 'frozen'
  tiny_config.model.input_scales = (1.0, 0.5)
  tiny_config.loss.normalize = normalize
  tiny_config.loss.update(fields)
  whole_losses, whole = _train(tiny_config, host_batches, num_devices=2)
  tiny_config.grad_accum_steps = 4
  accum_losses, accum = _train(tiny_config, host_batches, num_devices=2)
  np.testing.assert_allclose(accum_losses, whole_losses, rtol=RTOL)
  _assert_tree_close(accum.params, whole.params)


def test_micro_batches_that_do_not_split_over_devices_are_a_user_error(tiny_config):
  tiny_config.grad_accum_steps = 2  # 2 x 4 images cannot spread over 8 devices.
  mesh = sharding.make_mesh()
  with pytest.raises(UserError, match=r'grad_accum_steps=2 .* multiple of 16'):
    train_step.check_grad_accum(tiny_config, mesh)
  tiny_config.grad_accum_steps = 0
  with pytest.raises(UserError, match='use 1'):
    train_step.check_grad_accum(tiny_config, mesh)


def test_step_reports_non_finite_gradients(tiny_config, host_batches):
  mesh = sharding.make_mesh(jax.devices()[:1])
  model = models.build(tiny_config)
  tx, schedule = optim.create_optimizer(tiny_config.optim, tiny_config.num_train_steps, classifiers=models.classifier_paths(tiny_config))
  state = train_step.create_train_state(tiny_config, model, tx, mesh)
  step_fn = train_step.make_train_step(tiny_config, model, tx, schedule, mesh)
  batch = sharding.to_global(host_batches[0], mesh)
  state, metrics = step_fn(state, batch)
  assert bool(metrics['finite'])
  kernel = state.params['head']['branch0_classifier']['kernel']
  params = jax.tree_util.tree_map(lambda x: x, state.params)
  params['head']['branch0_classifier']['kernel'] = kernel.at[0, 0, 0, 0].set(jnp.inf)
  _, metrics = step_fn(state.replace(params=params), batch)
  assert not bool(metrics['finite'])
