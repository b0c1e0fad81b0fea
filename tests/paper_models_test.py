"""The paper's networks against an independent PyTorch implementation.

deeplab_jax/testing/torch_deeplab.py writes the same networks in PyTorch (the port's
module names); given the same weights, outputs must agree within 1e-4
relative in float32, on odd, non-square sizes. Tiny widths / depths keep this
fast; the layer types and wiring are the full models'.
"""

import copy

import jax
import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip('torch')

from deeplab_jax.testing import torch_deeplab  # pylint: disable=g-import-not-at-top
from configs import voc_aspp, voc_largefov, voc_vgg_aspp
from configs import parts
from configs import tiny
from deeplab_jax import models
from deeplab_jax.models.resize import resize_bilinear

RTOL = 1e-4


def _perturbed(variables, seed):
  """Random weights and BN statistics (init has mean 0, var 1, scale 1)."""
  rng = np.random.default_rng(seed)
  params = jax.tree_util.tree_map(
      lambda a: np.asarray(a) + 0.05 * rng.normal(size=a.shape).astype(np.float32),
      variables['params'])
  stats = jax.tree_util.tree_map(
      lambda a: np.abs(np.asarray(a) + 0.3 * rng.normal(size=a.shape)).astype(np.float32),
      variables.get('batch_stats', {}))
  return {'params': params, 'batch_stats': stats}


def _normalised_nchw(images, config):
  x = images[..., ::-1] if config.model.channel_order == 'bgr' else images
  x = (x - np.asarray(config.model.pixel_mean, np.float32)) / np.asarray(
      config.model.pixel_std, np.float32)
  return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))


def _nhwc(t):
  return t.detach().numpy().transpose(0, 2, 3, 1)


def _rel_err(got, expected):
  return float(np.abs(np.asarray(got) - expected).max() / np.abs(expected).max())


def _images(shape, seed=0):
  return np.random.default_rng(seed).uniform(0, 255, shape).astype(np.float32)


def _tiny(config_module, **model_overrides):
  config = tiny.get_config(config_module)
  config.dataset.num_classes = 21
  config.model.input_scales = (1.0,)
  tiny.override(config.model, **model_overrides)
  return config


# ------------------------------------------------------------ ResNet ----

@pytest.fixture(scope='module')
def resnet():
  config = _tiny(voc_aspp, batch_norm='frozen')
  model = models.build(config)
  images = _images((2, 45, 37, 3))
  variables = _perturbed(model.init(jax.random.key(0), images, train=False), 1)
  reference = torch_deeplab.ResNetASPP(21, depth=14, base_width=8)
  torch_deeplab.load_flax_variables(reference, variables)
  return config, model, variables, reference, images


def test_resnet_aspp_matches_pytorch_at_test_time(resnet):
  config, model, variables, reference, images = resnet
  got = model.apply(variables, images, train=False)
  with torch.no_grad():
    expected = _nhwc(reference.eval()(_normalised_nchw(images, config)))
  assert got.shape == expected.shape == (2, 6, 5, 21)
  assert _rel_err(got, expected) < RTOL


def test_resnet_trained_batch_norm_matches_pytorch_train_mode(resnet):
  config, _, variables, reference, images = resnet
  config = config.copy_and_resolve_references()
  config.model.batch_norm = 'train'
  model = models.build(config)
  got, updates = model.apply(variables, images, train=True, mutable=['batch_stats'])
  training = copy.deepcopy(reference).train()  # Would move the shared one's statistics.
  with torch.no_grad():
    expected = _nhwc(training(_normalised_nchw(images, config)))
  assert _rel_err(got, expected) < RTOL
  # The statistics moved towards this batch's (flax momentum 0.9).
  before = variables['batch_stats']['trunk']['layer1']['conv1']['bn']['mean']
  after = updates['batch_stats']['trunk']['layer1']['conv1']['bn']['mean']
  assert not np.allclose(before, after)


def test_msc_matches_pytorch_in_both_resize_conventions(resnet):
  config, _, variables, reference, _ = resnet
  images = _images((1, 49, 41, 3), seed=3)  # 0.75 * 49 is not whole.
  for align_corners in (False, True):
    cfg = config.copy_and_resolve_references()
    cfg.model.input_scales = (1.0, 0.75, 0.5)
    cfg.model.align_corners = align_corners
    model = models.build(cfg)
    msc = torch_deeplab.MSC(reference, (1.0, 0.75, 0.5), align_corners).eval()
    with torch.no_grad():
      expected = _nhwc(msc(_normalised_nchw(images, cfg)))
    got = model.apply(variables, images, train=False)
    assert _rel_err(got, expected) < RTOL, align_corners


# --------------------------------------------------------------- VGG ----

@pytest.mark.parametrize('name,config_module,overrides,torch_kwargs', [
    ('LargeFOV', voc_largefov, {}, dict(rates=(12,), hidden=(16, 16), pool5a=True)),
    ('ASPP-L', voc_vgg_aspp, {}, dict(rates=(6, 12, 18, 24), hidden=(16, 16), pool5a=False)),
    ('v1 DeepLab 4x4', voc_largefov,
     dict(head__kernel_size=4, head__rates=(4,), backbone__pool5a=False),
     dict(rates=(4,), kernel_size=4, hidden=(16, 16), pool5a=False)),
])
def test_vgg_models_match_pytorch(name, config_module, overrides, torch_kwargs):
  config = _tiny(config_module, **overrides)
  model = models.build(config)
  images = _images((1, 43, 30, 3), seed=5)
  variables = _perturbed(model.init(jax.random.key(0), images, train=False), 2)
  reference = torch_deeplab.VGGHead(21, base_width=8, **torch_kwargs).eval()
  torch_deeplab.load_flax_variables(reference, variables)
  got = model.apply(variables, images, train=False)
  with torch.no_grad():
    expected = _nhwc(reference(_normalised_nchw(images, config)))
  assert got.shape == expected.shape == (1, 7, 5, 21), name  # Three ceil-mode pools: 43 -> 22 -> 12 -> 7.
  assert _rel_err(got, expected) < RTOL, name


@pytest.mark.parametrize('config_module', [voc_largefov, voc_vgg_aspp])
def test_vgg_models_are_differentiable(config_module):
  config = _tiny(config_module, multilayer=parts.multilayer((8, 8)))
  model = models.build(config)
  images = _images((2, 33, 33, 3))
  variables = model.init(jax.random.key(0), images, train=False)

  def loss(params):
    logits = model.apply({'params': params}, images, train=True,
                         rngs={'dropout': jax.random.key(1)})
    return jnp.mean(logits ** 2)

  grads = jax.grad(loss)(variables['params'])
  assert all(np.isfinite(g).all() for g in jax.tree_util.tree_leaves(grads))
  assert np.abs(grads['trunk']['conv1_1']['kernel']).max() > 0


def test_v1_msc_multilayer_scores_add_five_branches():
  config = _tiny(voc_largefov, multilayer=parts.multilayer((8, 8)))
  model = models.build(config)
  images = _images((1, 43, 30, 3))
  variables = model.init(jax.random.key(0), images, train=False)
  branches = sorted(k for k in variables['params']['multilayer'] if k.endswith('_ms'))
  assert branches == ['data_ms'] + [f'pool{i}_ms' for i in range(1, 5)]
  # Image (stride 8), pool1 (4), pool2 (2), pool3 and pool4 (1) all land on 7x5.
  strides = [variables['params']['multilayer'][f'{b}_conv']['kernel'].shape
             for b in ('data', 'pool1', 'pool2', 'pool3', 'pool4')]
  assert [s[2] for s in strides] == [3, 8, 16, 32, 64]
  without = variables['params'].copy()
  multilayer = without.pop('multilayer')
  zeroed = jax.tree_util.tree_map(jnp.zeros_like, multilayer)
  plain = models.build(_tiny(voc_largefov))
  rngs = {'dropout': jax.random.key(1)}
  base = plain.apply({'params': without}, images, train=True, rngs=rngs)
  # With every MSc layer at zero the training scores are the plain model's ...
  got = model.apply({'params': {**without, 'multilayer': zeroed}}, images, train=True, rngs=rngs)
  assert got.shape == (1, 7, 5, 21)
  np.testing.assert_allclose(got, base, rtol=1e-6, atol=1e-6)
  # ... and at test fc8 zoomed x8 (Caffe's Interp: 7 -> 49, cropped to 43).
  base = plain.apply({'params': without}, images, train=False)
  got = model.apply({'params': {**without, 'multilayer': zeroed}}, images, train=False)
  assert got.shape == (1, 43, 30, 21)
  np.testing.assert_allclose(got, resize_bilinear(base, (49, 33), True)[:, :43, :30],
                             rtol=1e-5, atol=1e-5)
  assert not np.allclose(model.apply(variables, images, train=False), got)


# --------------------------------------------------- structure, counts ----

def _abstract_variables(config):
  model = models.build(config)
  return model, jax.eval_shape(lambda: model.init(
      jax.random.key(0), jnp.zeros((1, 33, 33, 3)), train=False))


def _count(tree):
  return sum(int(np.prod(x.shape)) for x in jax.tree_util.tree_leaves(tree))


@pytest.mark.parametrize('config_module', [voc_largefov, voc_vgg_aspp, voc_aspp])
@pytest.mark.parametrize('size,expected', [((321, 321), (41, 41)), ((513, 513), (65, 65))])
def test_full_models_output_sizes(config_module, size, expected):
  model, variables = _abstract_variables(config_module.get_config())
  out = jax.eval_shape(lambda v, x: model.apply(v, x, train=False), variables,
                       jax.ShapeDtypeStruct((1,) + size + (3,), jnp.uint8))
  assert out.shape == (1,) + expected + (21,)


@pytest.mark.parametrize('size,expected', [((224, 256), (29, 33)), ((193, 225), (25, 29)),
                                           ((320, 250), (41, 32))])
def test_resnet_odd_and_non_square_sizes(size, expected):
  model, variables = _abstract_variables(tiny.get_config(voc_aspp))
  out = jax.eval_shape(lambda v, x: model.apply(v, x, train=False), variables,
                       jax.ShapeDtypeStruct((1,) + size + (3,), jnp.uint8))
  assert out.shape[1:3] == expected


def test_parameter_counts_of_the_paper_models():
  _, resnet = _abstract_variables(voc_aspp.get_config())
  _, vgg = _abstract_variables(voc_largefov.get_config())
  counts = {
      'ResNet-101 ASPP-L params': _count(resnet['params']),
      'ResNet-101 BN statistics': _count(resnet['batch_stats']),
      'VGG-16 LargeFOV params': _count(vgg['params']),
  }
  print(counts)
  assert 43.9e6 < counts['ResNet-101 ASPP-L params'] < 44.1e6  # Paper: 44.0M.
  assert counts['VGG-16 LargeFOV params'] == 20_505_429  # Paper: 20.5M.
  aspp = resnet['params']['head']
  assert _count(aspp) == 4 * (3 * 3 * 2048 * 21 + 21)
  # torchvision's resnet101 (44,549,160) minus its 1000-way fc (2,049,000).
  assert _count(resnet['params']['trunk']) == 42_500_160


def test_msc_returns_every_scale_and_the_fused_map_in_training():
  config = tiny.get_config(voc_aspp)
  assert config.model.input_scales == (1.0, 0.75, 0.5)
  model = models.build(config)
  images = _images((1, 33, 41, 3))
  variables = model.init(jax.random.key(0), images, train=False)
  maps, _ = model.apply(variables, images, train=True, mutable=['batch_stats'])
  # Caffe resizing: 33x41 -> 25x31 -> 4x5 and 17x21 -> 3x3.
  assert [m.shape[1:3] for m in maps] == [(5, 6), (4, 5), (3, 3), (5, 6)]
  # At test: the fused map only, the max of the resized maps.
  fused = model.apply(variables, images, train=False)
  assert fused.shape == (1, 5, 6, 5)
  single = config.copy_and_resolve_references()
  single.model.input_scales = (1.0,)
  full_scale = models.build(single).apply(variables, images, train=False)
  assert np.all(np.asarray(fused) >= np.asarray(full_scale) - 1e-6)


def test_training_step_sums_the_four_msc_losses_and_never_moves_frozen_bn():
  from deeplab_jax import losses, optim, sharding, train_step  # pylint: disable=import-outside-toplevel
  config = tiny.get_config(voc_aspp)
  config.model.batch_norm = 'frozen'
  mesh = sharding.make_mesh()
  model = models.build(config)
  tx, schedule = optim.create_optimizer(config.optim, 100, frozen_batch_norm=True,
                                          classifiers=model.classifier_paths())
  state = train_step.create_train_state(config, model, tx, mesh)
  before = jax.device_get(state)
  rng = np.random.default_rng(0)
  batch = {'image': rng.integers(0, 256, (8, 33, 33, 3), np.uint8),
           'label': rng.integers(0, 5, (8, 33, 33)).astype(np.int32)}
  maps = model.apply(before.variables(), batch['image'], train=True, mutable=['batch_stats'])[0]
  expected, _ = losses.total_loss(maps, batch['label'], config.loss.upsample_logits,
                                  config.model.align_corners)
  step = train_step.make_train_step(config, model, tx, schedule, mesh)
  state, metrics = step(state, sharding.to_global(batch, mesh))
  after = jax.device_get(state)
  assert len(maps) == 4
  np.testing.assert_allclose(metrics['loss'], expected, rtol=1e-5)
  labels = optim.param_labels(after.params, frozen_batch_norm=True,
                              classifiers=model.classifier_paths())
  moved = jax.tree_util.tree_map(lambda a, b: bool(np.any(a != b)), before.params, after.params)
  for label, changed in zip(jax.tree_util.tree_leaves(labels), jax.tree_util.tree_leaves(moved)):
    assert changed == (label != 'frozen'), label
  assert 'frozen' in jax.tree_util.tree_leaves(labels)
  jax.tree_util.tree_map(np.testing.assert_array_equal, before.batch_stats, after.batch_stats)
