"""FCN-32s / 16s / 8s / 8s at-once against the PyTorch net written from the release's net.py."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from configs import family_parts
from configs import parts
from configs import tiny
from deeplab_jax import models
from deeplab_jax import optim
from deeplab_jax.errors import UserError
from deeplab_jax.models import fcn as fcn_lib
from deeplab_jax.testing import fake_caffe
from deeplab_jax.testing import fake_fcn_caffe
from deeplab_jax.testing import torch_fcn

VARIANTS = {'32s': ((), ()), '16s': (('pool4',), ()), '8s': (('pool4', 'pool3'), ()),
            '8s-atonce': (('pool4', 'pool3'), (0.01, 0.0001))}
SIZES = [(33, 47), (64, 64), (71, 50)]


def fcn_config(variant):
  config = tiny.get_config('voc_fcn8s')
  config.model.head.skips, config.model.head.skip_scales = VARIANTS[variant]
  config.model.pixel_mean, config.model.pixel_std = torch_fcn.MEAN_BGR, (1.0, 1.0, 1.0)
  return config


@pytest.fixture(scope='module', params=list(VARIANTS))
def nets(request):
  """(config, flax model, random variables, the torch net holding the same weights)."""
  variant = request.param
  config = fcn_config(variant)
  variables = fake_caffe.random_variables(config, seed=len(variant))
  if variant == '8s-atonce':  # Scales away from 1 would hide nothing; keep them random.
    head = variables['params']['head']
    for skip in ('pool4', 'pool3'):
      head[f'scale_{skip}']['scale'] = np.random.default_rng(1).uniform(
          0.5, 2, head[f'scale_{skip}']['scale'].shape).astype(np.float32)
  net = torch_fcn.FCN(variant, config.dataset.num_classes, width=8, fc_width=16).eval()
  net.load_caffe(fake_fcn_caffe.layers_from_flax(variables, config))
  model = models.build(config)
  return variant, config, model, variables, net, jax.jit(
      lambda v, x: model.apply(v, x, train=False))


@pytest.mark.parametrize('size', SIZES)
def test_logits_equal_the_pytorch_release_net(nets, size):
  _, config, _, variables, net, apply = nets
  images = np.random.default_rng(size[0]).integers(0, 256, (2,) + size + (3,), np.uint8)
  ours = np.asarray(apply(variables, images))
  with torch.no_grad():
    theirs = net(images).permute(0, 2, 3, 1).numpy()
  assert ours.shape == theirs.shape == (2,) + size + (config.dataset.num_classes,)
  scale = np.abs(theirs).max()
  assert scale > 1e-3
  np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-4 * scale)


@pytest.mark.parametrize('size', [(1, 1), (30, 31), (500, 375), (513, 257)])
def test_output_is_the_input_size(nets, size):
  _, config, model, variables, _, _ = nets
  shape = jax.eval_shape(lambda x: model.apply(variables, x, train=False),
                         jax.ShapeDtypeStruct((1,) + size + (3,), jnp.uint8))
  assert shape.shape == (1,) + size + (config.dataset.num_classes,)


def test_crop_offsets_are_the_release_prototxts():
  for variant, (skips, _) in VARIANTS.items():
    release = {k.rstrip('c'): v for k, v in torch_fcn.OFFSETS[variant.split('-')[0]].items()}
    assert fcn_lib.crop_offsets(skips) == release


def test_initialisation_is_the_releases(nets):
  # surgery.interp: bilinear on the class diagonal, 0 elsewhere; score layers
  # zero (Caffe's default constant filler); at-once scales 0.01 / 0.0001.
  variant, config, model, _, _, _ = nets
  params = model.init(jax.random.key(0), jnp.zeros((1, 40, 40, 3), jnp.uint8),
                      train=False)['params']['head']
  classes = config.dataset.num_classes
  for name, node in params.items():
    if name.startswith('upscore'):
      kernel = np.asarray(node['kernel'])
      expected = np.zeros_like(kernel)
      for c in range(classes):
        expected[:, :, c, c] = torch_fcn.upsample_filt(kernel.shape[0])
      np.testing.assert_allclose(kernel, expected, atol=1e-7)
    elif name.startswith('score'):
      assert not np.any(node['kernel']) and not np.any(node['bias'])
  if variant == '8s-atonce':
    np.testing.assert_allclose(params['scale_pool4']['scale'], 0.01)
    np.testing.assert_allclose(params['scale_pool3']['scale'], 0.0001)


def test_upsampling_and_scales_are_frozen_scores_train_at_1_and_2(nets):
  _, config, model, variables, _, _ = nets
  labels = optim.param_labels(variables['params'], lr_mults=config.optim.lr_mults,
                              classifiers=model.classifier_paths())
  for name, node in labels['head'].items():
    if name.startswith(('upscore', 'scale_')):
      assert set(jax.tree_util.tree_leaves(node)) == {'frozen'}, name
  mults = optim.lr_multipliers(variables['params'], config.optim,
                               classifiers=model.classifier_paths())
  assert mults['head']['score_fr']['kernel'] == 1 and mults['head']['score_fr']['bias'] == 2
  assert mults['trunk']['fc6']['kernel'] == 1 and mults['trunk']['fc6']['bias'] == 2


def test_bad_head_fields_are_user_errors():
  config = fcn_config('8s')
  config.model.head.skips = ('pool3',)
  with pytest.raises(UserError, match='skips'):
    models.build(config)
  config.model.head.skips, config.model.head.skip_scales = ('pool4',), (0.01, 0.1)
  with pytest.raises(UserError, match='skip_scales'):
    models.build(config)
  config = fcn_config('8s')
  config.model.head = family_parts.fcn()
  config.model.backbone = parts.vgg16(base_width=8)
  with pytest.raises(UserError, match='fc7'):
    models.build(config)


@pytest.mark.parametrize('name', ['voc_fcn32s', 'voc_fcn16s', 'voc_fcn8s', 'voc_fcn8s_atonce',
                                  'shapes_fcn8s'])
def test_every_fcn_config_shrinks_and_builds(name):
  config = tiny.get_config(name)
  model = models.build(config)
  shape = jax.eval_shape(lambda x: model.init_with_output(jax.random.key(0), x, train=False)[0],
                         jax.ShapeDtypeStruct((1, 35, 42, 3), jnp.uint8))
  assert shape.shape == (1, 35, 42, config.dataset.num_classes)
