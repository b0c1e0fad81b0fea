"""Generated caffemodels in the FCN releases' layout convert and give the PyTorch net's logits."""

import json

import jax
import numpy as np
import pytest
import torch

from deeplab_jax import convert
from deeplab_jax import models
from deeplab_jax.errors import UserError
from deeplab_jax.testing import fake_caffe
from deeplab_jax.testing import fake_fcn_caffe
from deeplab_jax.testing import torch_fcn
from tests.fcn_test import fcn_config

IMAGES = np.random.default_rng(0).integers(0, 256, (1, 37, 52, 3), np.uint8)


@pytest.fixture(scope='module')
def release_files(tmp_path_factory):
  """variant -> (config, path of its generated caffemodel, its layers)."""
  out = {}
  for variant in ('32s', '16s', '8s', '8s-atonce'):
    config = fcn_config(variant)
    variables = fake_caffe.random_variables(config, seed=3)
    layers = fake_fcn_caffe.layers_from_flax(variables, config)
    path = str(tmp_path_factory.mktemp('fcn') / f'fcn{variant}-pascal.caffemodel')
    fake_caffe.write_caffemodel(path, layers)
    out[variant] = config, path, layers
  return out


def _logits(config, variables):
  return np.asarray(models.build(config).apply(variables, IMAGES, train=False))


@pytest.mark.parametrize('variant', ['32s', '16s', '8s', '8s-atonce'])
def test_a_release_converts_to_the_pytorch_nets_logits(release_files, variant):
  config, path, layers = release_files[variant]
  variables = convert.from_file(path, config)
  net = torch_fcn.FCN(variant, config.dataset.num_classes, width=8, fc_width=16).eval()
  net.load_caffe(layers)
  with torch.no_grad():
    theirs = net(IMAGES).permute(0, 2, 3, 1).numpy()
  ours = _logits(config, variables)
  assert np.abs(theirs).max() > 1e-3
  np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-4 * np.abs(theirs).max())


def test_a_coarser_net_starts_a_finer_one_as_the_staged_recipe(release_files):
  # FCN-16s from FCN-32s (voc-fcn16s/solve.py copy_from): score_pool4 zero,
  # upscore2 / upscore16 bilinear; the 32s file's upscore is dropped.
  config16 = fcn_config('16s')
  _, path32, _ = release_files['32s']
  converted = convert.read(path32, config16)
  assert converted.absent == {'params/head/score_pool4/kernel', 'params/head/score_pool4/bias',
                              'params/head/upscore2/kernel', 'params/head/upscore16/kernel'}
  assert [d.split(' ')[0] for d in converted.dropped] == ['upscore']
  variables, reinit = convert.assemble(converted, config16, path=path32)
  assert not np.any(variables['params']['head']['score_pool4']['kernel'])
  assert len(reinit) == 4


def test_imagenet_vgg_fills_the_trunk_and_drops_fc8(release_files, tmp_path):
  config = fcn_config('32s')
  variables = fake_caffe.random_variables(config, seed=4)
  path = fake_caffe.write_caffemodel(
      str(tmp_path / 'VGG_ILSVRC_16_layers.caffemodel'),
      fake_fcn_caffe.layers_from_flax(variables, config, imagenet=True))
  converted = convert.read(path, config)
  assert converted.dropped and converted.dropped[0].startswith('fc8 (InnerProduct)')
  fc6 = converted.variables['params']['trunk']['fc6']['kernel']
  np.testing.assert_array_equal(fc6, variables['params']['trunk']['fc6']['kernel'])
  assert 'head' not in converted.variables['params']


def test_mismatched_files_are_user_errors_naming_the_layers(release_files, tmp_path):
  config, path, layers = release_files['8s']
  with pytest.raises(UserError, match=r'score_pool3 \(Convolution\): in the file, not in the model'):
    convert.read(path, fcn_config('16s'))
  no_conv = [layer for layer in layers if layer.name != 'conv3_2']
  broken = fake_caffe.write_caffemodel(str(tmp_path / 'broken.caffemodel'), no_conv)
  with pytest.raises(UserError, match=r'missing from the file: conv3_2 -> params/trunk/conv3_2'):
    convert.read(broken, config)
  other = fcn_config('8s')
  other.dataset.num_classes = 3
  with pytest.raises(UserError, match='reinit_classifier'):
    convert.from_file(path, other)
  variables = convert.from_file(path, other, reinit_classifier=True)
  assert variables['params']['head']['upscore8']['kernel'].shape == (16, 16, 3, 3)


def test_command_line_conversion_writes_a_checkpoint(release_files, tmp_path):
  config, path, _ = release_files['8s-atonce']
  record = convert.convert_to_workdir(path, config, str(tmp_path / 'w'))
  assert record['initialised_afresh'] == [] and record['input_warnings'] == []
  json.loads((tmp_path / 'w' / 'converted.json').read_text())
  assert jax.tree_util.tree_leaves(record)
