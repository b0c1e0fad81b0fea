"""The dense CRF as a trainable last layer (models/crf_layer.py, config.model.crf_layer).

Training through it lowers the loss and moves its kernel weights; with zero
weights it is the upsampled logits' log-softmax; its output fits the loss and
the eval step (MSC lists in training); converted official weights get it
initialised from the config. Layer-level checks use the exact O(N^2) kernels
on 16x16 images (fast to compile); the train step uses the lattice, as
training does.
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import shapes
from configs import voc_largefov
from configs import tiny
from deeplab_jax import convert
from deeplab_jax import evaluation
from deeplab_jax import losses
from deeplab_jax import models
from deeplab_jax import optim
from deeplab_jax import sharding
from deeplab_jax import train_step
from deeplab_jax.testing import fake_caffe
from deeplab_jax.crf import dense_crf
from deeplab_jax.crf import params as crf_params
from deeplab_jax.data import input_pipeline
from deeplab_jax.models import crf_layer
from deeplab_jax.models.resize import resize_bilinear

ITERATIONS = 2  # Mean-field steps in the tests' layer (config default: 5).
STEPS = 5
PRETRAIN_STEPS = 40  # Without the layer, before the STEPS through it.


def _with_crf_layer(config, iterations=ITERATIONS):
  config.model.crf_layer = True
  config.model.crf_layer_iterations = iterations
  return config


def _softplus(x):
  return float(jax.nn.softplus(jnp.float32(x)))


# ------------------------------------------------------------ the layer ----

@pytest.fixture(scope='module')
def layer_inputs():
  rng = np.random.RandomState(0)
  images = rng.randint(0, 256, (2, 16, 16, 3)).astype(np.uint8)
  images[:, :, 8:] = (200, 30, 30)  # Two colour regions, so the bilateral kernel has edges.
  logits = rng.normal(0, 2, (2, 2, 2, 4)).astype(np.float32)
  return images, logits


@pytest.fixture(scope='module')
def exact_layer():
  params = crf_params.CRFParams(w1=4, sigma_alpha=5, sigma_beta=20, w2=3, sigma_gamma=1,
                                iterations=3, normalization='after')
  layer = crf_layer.CRFLayer(crf=params, align_corners=False, method='exact')
  return layer, jax.jit(layer.apply)


def test_weights_start_at_the_configured_values(exact_layer, layer_inputs):
  layer, _ = exact_layer
  variables = layer.init(jax.random.key(0), *layer_inputs)
  raw = variables['params']
  assert set(raw) == {'raw_w1', 'raw_w2'}
  assert _softplus(raw['raw_w1']) == pytest.approx(4, rel=1e-6)
  assert _softplus(raw['raw_w2']) == pytest.approx(3, rel=1e-6)
  assert crf_layer.inverse_softplus(0.0) < -13  # A configured 0 starts (almost) off.


def test_zero_weights_give_the_upsampled_log_softmax(exact_layer, layer_inputs):
  _, apply = exact_layer
  images, logits = layer_inputs
  off = {'params': {'raw_w1': jnp.float32(-1e4), 'raw_w2': jnp.float32(-1e4)}}  # softplus: 0.
  out = apply(off, images, logits)
  upsampled = resize_bilinear(jnp.asarray(logits), (16, 16), align_corners=False)
  assert out.shape == (2, 16, 16, 4) and out.dtype == jnp.float32
  np.testing.assert_allclose(out, jax.nn.log_softmax(upsampled, -1), atol=2e-6)


def test_layer_is_log_q_of_mean_field_with_its_weights(exact_layer, layer_inputs):
  layer, apply = exact_layer
  images, logits = layer_inputs
  variables = layer.init(jax.random.key(0), images, logits)
  out = apply(variables, images, logits)
  upsampled = resize_bilinear(jnp.asarray(logits), (16, 16), align_corners=False)
  q = dense_crf.mean_field(jnp.asarray(images, jnp.float32), -upsampled,
                           jnp.ones((2, 16, 16), bool), layer.crf, method='exact')
  np.testing.assert_allclose(jnp.exp(out), q, atol=1e-5)
  np.testing.assert_allclose(jax.nn.logsumexp(out, -1), 0.0, atol=1e-5)
  # The CRF really changed the scores (not the unary's softmax).
  assert float(jnp.abs(out - jax.nn.log_softmax(upsampled, -1)).max()) > 0.05


def test_gradients_reach_the_weights_and_the_logits(exact_layer, layer_inputs):
  layer, apply = exact_layer
  images, logits = layer_inputs
  variables = layer.init(jax.random.key(0), images, logits)
  labels = jnp.asarray(np.random.RandomState(1).randint(0, 4, (2, 16, 16)))

  def loss(params, scores):
    out = apply({'params': params}, images, scores)
    return -jnp.take_along_axis(out, labels[..., None], -1).mean()

  g_params, g_logits = jax.jit(jax.grad(loss, argnums=(0, 1)))(variables['params'], logits)
  assert abs(float(g_params['raw_w1'])) > 1e-6 and abs(float(g_params['raw_w2'])) > 1e-6
  assert float(jnp.abs(g_logits).max()) > 1e-4


# --------------------------------------------------------- in the model ----

def test_config_default_is_off_and_build_adds_the_layer(tiny_config):
  for config in (shapes.get_config(), voc_largefov.get_config()):
    assert config.model.crf_layer is False and config.model.crf_layer_iterations == 5
  assert models.build(tiny_config).crf is None
  model = models.build(_with_crf_layer(tiny_config))
  assert isinstance(model.crf, crf_layer.CRFLayer)
  assert model.crf.crf == dataclasses.replace(crf_params.from_config(tiny_config.crf),
                                             iterations=ITERATIONS)
  no_section = _with_crf_layer(tiny.get_config(shapes))
  del no_section['crf']  # Configs without a crf section get the v2 ResNet preset.
  assert crf_layer.crf_params_of(no_section) == dataclasses.replace(
      crf_params.RESNET_V2, iterations=ITERATIONS)
  shapes_ = models.variable_shapes(tiny_config)
  assert shapes_['params/crf/raw_w1'] == () and shapes_['params/crf/raw_w2'] == ()
  assert [k for k in shapes_ if crf_layer.is_layer_variable(k)] == [
      'params/crf/raw_w1', 'params/crf/raw_w2']


def test_output_shapes_in_train_msc_and_eval(tiny_config):
  config = _with_crf_layer(tiny_config)
  config.model.input_scales = (1.0, 0.75, 0.5)
  model = models.build(config)
  c = config.dataset.num_classes
  images = jax.ShapeDtypeStruct((8, 32, 32, 3), jnp.uint8)
  labels = jax.ShapeDtypeStruct((8, 32, 32), jnp.int32)
  variables = jax.eval_shape(lambda x: model.init(jax.random.key(0), x, train=False), images)

  def train_loss(v, x, y):
    outputs, _ = model.apply(v, x, train=True, mutable=['batch_stats'],
                             rngs={'dropout': jax.random.key(0)})
    return outputs, losses.total_loss(outputs, y, False, config.model.align_corners)[0]

  outputs, loss = jax.eval_shape(train_loss, variables, images, labels)
  # Per-scale maps at stride 8 pass through; the fused map is the CRF's, image size.
  assert [o.shape for o in outputs] == [(8, 4, 4, c), (8, 3, 3, c), (8, 2, 2, c),
                                        (8, 32, 32, c)]
  assert loss.shape == ()
  out = jax.eval_shape(lambda v, x: model.apply(v, x, train=False), variables, images)
  assert out.shape == (8, 32, 32, c) and out.dtype == jnp.float32
  # The eval step takes it unchanged (labels at the padded eval size).
  mesh = sharding.make_mesh()
  step = evaluation.make_eval_step(config, model, mesh)
  batch = {'image': jax.ShapeDtypeStruct((8, 64, 64, 3), jnp.uint8),
           'label': jax.ShapeDtypeStruct((8, 64, 64), jnp.int32),
           'valid': jax.ShapeDtypeStruct((8, 64, 64), bool)}
  scored = jax.eval_shape(step, variables, batch)
  assert scored['logits'].shape == (8, 64, 64, c) and scored['confusion'].shape == (c, c)


@pytest.fixture(scope='module')
def trained(data_dir):
  """The tiny model trained PRETRAIN_STEPS without the layer, then STEPS through
  it (lattice) on one fixed batch: fine-tuning through the CRF, as it is meant
  to be used. (From random init the CRF's messages, up to w1 + w2, swamp the
  near-zero logits and the loss climbs at this learning rate.)"""
  plain = tiny.get_config(shapes)
  plain.dataset.data_dir = data_dir
  plain.num_train_steps = 100  # The poly schedule stays near base_lr for the few steps.
  config = _with_crf_layer(plain.copy_and_resolve_references())
  builder = input_pipeline.get_builder(plain.dataset)
  batches = iter(input_pipeline.train_iterator(plain, builder, 8))
  tx, schedule = optim.create_optimizer(plain.optim, plain.num_train_steps, classifiers=models.classifier_paths(plain))
  mesh = sharding.make_mesh()
  model = models.build(plain)
  state = train_step.create_train_state(plain, model, tx, mesh)
  step_fn = train_step.make_train_step(plain, model, tx, schedule, mesh)
  for _ in range(PRETRAIN_STEPS):
    state, _ = step_fn(state, sharding.to_global(next(batches), mesh))

  model = models.build(config)
  crf_state = train_step.create_train_state(config, model, tx, mesh)
  network = {'params': state.params, 'batch_stats': state.batch_stats}
  variables = crf_layer.with_fresh_layer(network, crf_state.variables())
  assert set(variables['params']) == set(network['params']) | {'crf'}
  assert crf_layer.with_fresh_layer(variables, network) is variables
  crf_state = train_step.with_variables(crf_state, variables, mesh)
  step_fn = train_step.make_train_step(config, model, tx, schedule, mesh)
  batch = sharding.to_global(next(batches), mesh)
  weights = [jax.device_get(crf_state.params['crf'])]
  losses_ = []
  for _ in range(STEPS):
    crf_state, metrics = step_fn(crf_state, batch)
    losses_.append(float(metrics['loss']))
    weights.append(jax.device_get(crf_state.params['crf']))
  return config, schedule, losses_, weights


def test_train_steps_through_the_layer_reduce_the_loss(trained):
  _, _, losses_, _ = trained
  assert np.all(np.isfinite(losses_))
  # losses_[k]: the loss after k updates through the layer.
  assert np.all(np.diff(losses_) < 0) and losses_[-1] < 0.95 * losses_[0], losses_


def test_train_steps_move_the_crf_weights(trained):
  config, schedule, _, weights = trained
  assert _softplus(weights[0]['raw_w1']) == pytest.approx(config.crf.w1, rel=1e-6)
  assert _softplus(weights[0]['raw_w2']) == pytest.approx(config.crf.w2, rel=1e-6)
  lr = float(schedule(0))
  for name in ('raw_w1', 'raw_w2'):
    # The first SGD update (momentum trace starting at 0, no weight decay on
    # these) is -lr * gradient: the gradient was non-zero.
    gradient = (float(weights[0][name]) - float(weights[1][name])) / lr
    assert abs(gradient) > 1e-6, (name, gradient)
    assert float(weights[-1][name]) != float(weights[0][name])


# ------------------------------------------------------------ conversion ----

def test_assemble_starts_the_layer_from_the_config():
  config = _with_crf_layer(tiny.get_config(shapes))
  fresh = convert.init_variables(config)
  # A file holding the network without the layer (values unlike the fresh ones).
  network = convert.unflatten({k: v + 1.0 for k, v in convert.flatten(fresh).items()
                               if not crf_layer.is_layer_variable(k)})
  variables, reinit = convert.assemble(convert.Converted(network), config,
                                       fresh_variables=fresh)
  assert reinit == ['params/crf/raw_w1', 'params/crf/raw_w2']
  assert _softplus(variables['params']['crf']['raw_w1']) == pytest.approx(config.crf.w1, rel=1e-6)
  assert _softplus(variables['params']['crf']['raw_w2']) == pytest.approx(config.crf.w2, rel=1e-6)
  flat = convert.flatten(variables)
  for name, value in convert.flatten(network).items():
    np.testing.assert_array_equal(flat[name], value, err_msg=name)


def test_official_weights_convert_into_a_crf_layer_config(tmp_path):
  plain = tiny.get_config(voc_largefov)
  variables = fake_caffe.random_variables(plain, seed=3)
  path = str(tmp_path / 'train_iter_20000.caffemodel')
  fake_caffe.write_caffemodel(path, fake_caffe.layers_from_flax(
      variables, plain, 'deeplab_v2_vgg', classifier_tag='voc12'))
  config = _with_crf_layer(tiny.get_config(voc_largefov))
  converted = convert.from_file(path, config)
  assert convert.without_crf_layer(config).model.crf_layer is False
  assert config.model.crf_layer is True  # The caller's config is not changed.
  flat = convert.flatten(converted)
  assert _softplus(flat['params/crf/raw_w1']) == pytest.approx(config.crf.w1, rel=1e-6)
  for name, value in convert.flatten(variables).items():
    np.testing.assert_allclose(flat[name], value, rtol=1e-6, err_msg=name)


def test_init_from_a_run_without_the_layer_starts_the_layer_from_the_config(
    data_dir, tmp_path):
  """`train.py --config.init_from=RUN --config.model.crf_layer=True`: the
  network's weights from RUN, the layer's from config.crf."""
  from deeplab_jax import checkpoint  # pylint: disable=import-outside-toplevel
  from deeplab_jax import train_lib  # pylint: disable=import-outside-toplevel
  plain = tiny.get_config(shapes)
  plain.dataset.data_dir = data_dir
  tx, _ = optim.create_optimizer(plain.optim, plain.num_train_steps, classifiers=models.classifier_paths(plain))
  mesh = sharding.make_mesh()
  source = train_step.create_train_state(plain, models.build(plain), tx, mesh)
  mngr = checkpoint.manager(str(tmp_path / 'plain'))
  checkpoint.save(mngr, 0, source)
  mngr.wait_until_finished()
  mngr.close()

  config = _with_crf_layer(plain.copy_and_resolve_references())
  config.init_from = str(tmp_path / 'plain')
  config.num_train_steps = 1
  config.optim.base_lr = 0.0  # Keeps the weights where they started.
  state = jax.device_get(train_lib.train_and_evaluate(config, str(tmp_path / 'crf')))
  assert _softplus(state.params['crf']['raw_w1']) == pytest.approx(config.crf.w1, rel=1e-5)
  assert _softplus(state.params['crf']['raw_w2']) == pytest.approx(config.crf.w2, rel=1e-5)
  np.testing.assert_array_equal(state.params['head']['branch0_classifier']['kernel'],
                                jax.device_get(source.params)['head']['branch0_classifier']['kernel'])
