"""Poly schedule values, parameter groups, weight decay on kernels only."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from deeplab_jax import optim
from deeplab_jax.errors import UserError


def test_poly_schedule_values():
  schedule = optim.poly_schedule(0.01, num_steps=1000, power=0.9)
  assert float(schedule(0)) == pytest.approx(0.01)
  assert float(schedule(500)) == pytest.approx(0.01 * 0.5 ** 0.9, rel=1e-6)
  assert float(schedule(900)) == pytest.approx(0.01 * 0.1 ** 0.9, rel=1e-5)
  assert float(schedule(1000)) == 0.0
  assert float(schedule(1200)) == 0.0


def test_warmup_ramps_linearly_then_follows_poly():
  schedule = optim.poly_schedule(1.0, num_steps=100, power=0.9, warmup_steps=10)
  assert float(schedule(0)) == pytest.approx(0.1 * 1.0)
  assert float(schedule(4)) == pytest.approx(0.5 * 0.96 ** 0.9, rel=1e-6)
  assert float(schedule(20)) == pytest.approx(0.8 ** 0.9, rel=1e-6)


PARAMS = {
    'trunk': {'conv': {'kernel': jnp.ones((3, 3, 2, 2)), 'bias': jnp.ones(2)},
              'bn': {'scale': jnp.ones(2), 'bias': jnp.ones(2)}},
    'head': {'branch0_classifier': {'kernel': jnp.ones((1, 1, 2, 3)),
                                    'bias': jnp.ones(3)}},
}
CLASSIFIERS = ('head/branch0_classifier',)  # As the ASPP head declares it.


def test_param_labels():
  labels = optim.param_labels(PARAMS, classifiers=CLASSIFIERS)
  assert labels['trunk']['conv'] == {'kernel': 'backbone', 'bias': 'backbone_bias'}
  assert labels['trunk']['bn'] == {'scale': 'backbone', 'bias': 'backbone'}
  frozen = optim.param_labels(PARAMS, frozen_batch_norm=True, classifiers=CLASSIFIERS)
  assert frozen['trunk']['bn'] == {'scale': 'frozen', 'bias': 'frozen'}
  assert frozen['trunk']['conv'] == labels['trunk']['conv']
  assert labels['head']['branch0_classifier'] == {
      'kernel': 'classifier_kernel', 'bias': 'classifier_bias'}


def test_the_classifier_group_is_what_the_model_declares_not_a_name():
  # Named like a classifier but not declared: the backbone rates.
  labels = optim.param_labels(PARAMS, classifiers=())
  assert labels['head']['branch0_classifier'] == {'kernel': 'backbone', 'bias': 'backbone_bias'}
  # Declared, whatever its name (VGG's fc8 would be 'head/fc8').
  labels = optim.param_labels(PARAMS, classifiers=('trunk/conv',))
  assert labels['trunk']['conv'] == {'kernel': 'classifier_kernel', 'bias': 'classifier_bias'}
  assert labels['trunk']['bn'] == {'scale': 'backbone', 'bias': 'backbone'}  # Not under trunk/conv.


def test_models_declare_their_classifier_layers():
  from configs import tiny  # pylint: disable=import-outside-toplevel
  from deeplab_jax import models  # pylint: disable=import-outside-toplevel
  assert models.classifier_paths(tiny.get_config('voc_aspp')) == tuple(
      f'head/branch{i}_classifier' for i in range(4))
  assert models.classifier_paths(tiny.get_config('voc_largefov')) == ('head/branch0_classifier',)
  # v1 MSc's _ms layers set their rates by optim.lr_mults, not as classifiers.
  assert models.classifier_paths(tiny.get_config('voc_msc_largefov')) == ('head/branch0_classifier',)


def _config(**kw):
  cfg = dict(base_lr=0.1, power=0.9, warmup_steps=0, momentum=0.9,
             weight_decay=0.0, backbone_bias_lr_mult=2.0, classifier_kernel_lr_mult=10.0,
             classifier_bias_lr_mult=20.0)
  cfg.update(kw)
  return ml_collections.ConfigDict(cfg)


def test_learning_rate_multipliers_per_group():
  tx, _ = optim.create_optimizer(_config(), num_steps=100, classifiers=CLASSIFIERS)
  grads = jax.tree_util.tree_map(jnp.ones_like, PARAMS)
  updates, _ = tx.update(grads, tx.init(PARAMS), PARAMS)
  np.testing.assert_allclose(updates['trunk']['conv']['kernel'], -0.1)
  np.testing.assert_allclose(updates['trunk']['conv']['bias'], -0.2)
  np.testing.assert_allclose(updates['trunk']['bn']['scale'], -0.1)
  np.testing.assert_allclose(updates['trunk']['bn']['bias'], -0.1)
  np.testing.assert_allclose(updates['head']['branch0_classifier']['kernel'], -1.0)
  np.testing.assert_allclose(updates['head']['branch0_classifier']['bias'], -2.0)


def test_weight_decay_applies_to_kernels_only():
  tx, _ = optim.create_optimizer(
      _config(weight_decay=0.5, classifier_kernel_lr_mult=1.0,
              classifier_bias_lr_mult=1.0), num_steps=100, classifiers=CLASSIFIERS)
  zeros = jax.tree_util.tree_map(jnp.zeros_like, PARAMS)
  updates, _ = tx.update(zeros, tx.init(PARAMS), PARAMS)
  np.testing.assert_allclose(updates['trunk']['conv']['kernel'], -0.1 * 0.5)
  np.testing.assert_allclose(updates['head']['branch0_classifier']['kernel'], -0.05)
  np.testing.assert_array_equal(updates['trunk']['conv']['bias'], 0.0)
  np.testing.assert_array_equal(updates['head']['branch0_classifier']['bias'], 0.0)


def test_step_schedule_is_v1s_tenfold_drops():
  config = _config(schedule='step', base_lr=1e-3, step_every=2000, step_gamma=0.1)
  _, schedule = optim.create_optimizer(config, num_steps=6000, classifiers=CLASSIFIERS)
  for step, lr in ((0, 1e-3), (1999, 1e-3), (2000, 1e-4), (4000, 1e-5), (5999, 1e-5)):
    assert float(schedule(step)) == pytest.approx(lr, rel=1e-5), step
  with pytest.raises(UserError, match="optim.schedule='cosine'"):
    optim.create_optimizer(_config(schedule='cosine'), num_steps=10, classifiers=CLASSIFIERS)


def test_momentum_keeps_past_rates_as_caffe_does():
  # Caffe: v = m v + lr_t g, w -= v. After a tenfold drop the buffer still
  # holds the earlier steps at their own rate.
  config = _config(schedule='step', base_lr=1.0, step_every=2, step_gamma=0.1,
                   classifier_kernel_lr_mult=1.0, classifier_bias_lr_mult=1.0,
                   backbone_bias_lr_mult=1.0)
  tx, _ = optim.create_optimizer(config, num_steps=10, classifiers=CLASSIFIERS)
  params = {'w': {'kernel': jnp.zeros(())}}
  state = tx.init(params)
  history, got = 0.0, []
  for step in range(4):
    updates, state = tx.update({'w': {'kernel': jnp.ones(())}}, state, params)
    got.append(float(updates['w']['kernel']))
    history = 0.9 * history + (1.0 if step < 2 else 0.1) * 1.0
    assert got[-1] == pytest.approx(-history, rel=1e-6), step


def test_per_layer_lr_mults_override_groups_and_freeze_at_zero():
  """optim.lr_mults: Caffe's per-layer blobs_lr pairs; 0 = frozen, no state."""
  params = {**PARAMS, 'multilayer': {'data_ms': {'kernel': jnp.ones((1, 1, 2, 3)),
                                                 'bias': jnp.ones(3)}}}
  rows = (('trunk/', 0, 0), ('head/', 0.0, 0.0), ('multilayer/', 1, 2))
  labels = optim.param_labels(params, lr_mults=rows, classifiers=CLASSIFIERS)
  assert labels['trunk']['conv'] == {'kernel': 'frozen', 'bias': 'frozen'}
  assert labels['multilayer']['data_ms'] == {'kernel': 'lr_x1', 'bias': 'lr_x2'}
  config = _config(lr_mults=rows, weight_decay=0.1)
  mults = optim.lr_multipliers(params, config, classifiers=CLASSIFIERS)
  assert mults['head']['branch0_classifier'] == {'kernel': 0.0, 'bias': 0.0}
  assert mults['multilayer']['data_ms'] == {'kernel': 1.0, 'bias': 2.0}
  tx, _ = optim.create_optimizer(config, num_steps=100, classifiers=CLASSIFIERS)
  grads = jax.tree_util.tree_map(jnp.ones_like, params)
  state = tx.init(params)
  updates, _ = tx.update(grads, state, params)
  for leaf in jax.tree_util.tree_leaves(updates['trunk']) + jax.tree_util.tree_leaves(
      updates['head']):
    np.testing.assert_array_equal(leaf, 0)
  np.testing.assert_allclose(updates['multilayer']['data_ms']['kernel'], -0.1 * 1.1)
  np.testing.assert_allclose(updates['multilayer']['data_ms']['bias'], -0.2)
  # Frozen leaves hold no momentum: only the multilayer leaves have traces.
  traced = sum(x.size for x in jax.tree_util.tree_leaves(state) if x.ndim)
  assert traced == 6 + 3


def test_unmatched_params_keep_their_group_and_first_row_wins():
  rows = (('trunk/conv', 0.5, 0.25), ('trunk/', 0, 0))
  mults = optim.lr_multipliers(PARAMS, _config(lr_mults=rows), classifiers=CLASSIFIERS)
  assert mults['trunk']['conv'] == {'kernel': 0.5, 'bias': 0.25}
  assert mults['trunk']['bn'] == {'scale': 0.0, 'bias': 0.0}
  assert mults['head']['branch0_classifier'] == {'kernel': 10.0, 'bias': 20.0}


@pytest.mark.parametrize('rows', [(('trunk/', 1),), (('(', 1, 1),), (('trunk/', -1, 1),)])
def test_bad_lr_mults_rows_are_user_errors(rows):
  with pytest.raises(UserError, match='lr_mults'):
    optim.create_optimizer(_config(lr_mults=rows), num_steps=10, classifiers=CLASSIFIERS)
