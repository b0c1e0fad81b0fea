"""The DeepLab v2 COCO initialisation (`init.caffemodel`): the ResNet trunk and
one 1x1 91-class classifier `fc1_coco` (not the fc1_voc12_c0..c3 ASPP layers).

A small file in that layout (`fake_caffe`'s 'deeplab_v2_coco_init', with the
multi-scale copies) goes through the front end: the trunk is the file's, the
COCO classifier is dropped (or kept for a one-branch 1x1 head with
`keep_init_classifier`), the ASPP head is initialised afresh, and training
starts from it with --config.init_from.
"""

import json
import os

import jax
import numpy as np
import pytest

from configs import voc_aspp
from configs import tiny
from deeplab_jax import checkpoint
from deeplab_jax import convert
from deeplab_jax import train_lib
from deeplab_jax.convert import caffe
from deeplab_jax.testing import fake_caffe
from deeplab_jax.errors import UserError

SCALE_FACTOR = 999.0


def _config(data_dir=None):
  config = tiny.get_config(voc_aspp)
  config.model.input_scales = (1.0,)
  config.model.batch_norm = 'frozen'  # As the paper trains from the init.
  if data_dir:
    config.dataset.data_dir = data_dir
  return config


def _one_branch_coco(config):
  """The network init.caffemodel was trained as: the trunk and one 1x1 91-class layer."""
  config = config.copy_and_resolve_references()
  config.model.head.rates = (1,)
  config.model.head.kernel_size = 1
  config.dataset.num_classes = 91
  return config


@pytest.fixture(scope='module')
def init_file(tmp_path_factory):
  config = _config()
  variables = fake_caffe.random_variables(config, seed=7)
  layers = fake_caffe.layers_from_flax(variables, config, 'deeplab_v2_coco_init',
                                       bn_scale_factor=SCALE_FACTOR,
                                       msc_suffixes=('_res075', '_res05'), seed=8)
  path = str(tmp_path_factory.mktemp('coco') / 'init.caffemodel')
  fake_caffe.write_caffemodel(path, layers)
  return path, {layer.name: layer for layer in layers if layer.blobs}, variables


@pytest.fixture(scope='module')
def converted_dir(tmp_path_factory, init_file, data_dir):
  path, _, _ = init_file
  output = str(tmp_path_factory.mktemp('coco_init'))
  record = convert.convert_to_workdir(path, _config(data_dir), output)
  return output, record


def test_release_is_named_and_fc1_coco_dropped(init_file):
  path, blobs, _ = init_file
  config = _config()
  assert blobs['fc1_coco'].type == 'Convolution'
  assert [b.shape for b in blobs['fc1_coco'].blobs] == [(91, 256, 1, 1), (91,)]
  release = caffe.detect_release(caffe.read_caffemodel(path), config)
  assert release.describe() == 'DeepLab v2 COCO initialisation (Caffe ResNet, 1x1 classifier fc1_coco)'
  # The strict reader says the ASPP classifier has to start afresh.
  with pytest.raises(UserError, match='no DeepLab classifier.*COCO initialisation'):
    caffe.to_flax(caffe.read_caffemodel(path), config)


def test_trunk_from_the_file_head_fresh(converted_dir, init_file):
  output, record = converted_dir
  _, blobs, variables = init_file
  config = _config()
  assert record['source'].startswith('DeepLab v2 COCO initialisation')
  assert record['dropped_from_file'] == ['fc1_coco (Convolution): (91, 256, 1, 1), (91,)']
  assert record['initialised_afresh'] == caffe.classifier_paths(config)
  assert json.load(open(os.path.join(output, 'converted.json'))) == record
  restored = convert.flatten(jax.device_get(checkpoint.restore_variables(output)))
  # The trunk is the file's: straight from two of its blobs, then every leaf.
  np.testing.assert_array_equal(
      restored['params/trunk/layer5/block1/increase/conv/kernel'],
      blobs['res5a_branch2c'].blobs[0].transpose(2, 3, 1, 0))
  np.testing.assert_allclose(
      restored['batch_stats/trunk/layer1/conv1/bn/var'],
      blobs['bn_conv1'].blobs[1] / SCALE_FACTOR, rtol=1e-6)
  file_leaves = convert.flatten(variables)
  assert sorted(restored) == sorted(file_leaves)
  for name, value in restored.items():
    if convert.is_classifier(name, config):  # The ASPP classifiers: fresh (config.seed), not the file's.
      assert value.shape == file_leaves[name].shape and np.all(np.isfinite(value)), name
      assert not np.array_equal(value, file_leaves[name]), name
    else:
      np.testing.assert_allclose(value, file_leaves[name], rtol=1e-6, atol=1e-7, err_msg=name)


def test_keep_init_classifier_for_a_one_branch_1x1_head(init_file):
  path, blobs, variables = init_file
  config = _one_branch_coco(_config())
  converted = convert.read(path, config, keep_init_classifier=True)
  assert converted.dropped == () and converted.absent == frozenset()
  kept = converted.variables
  head = kept['params']['head']['branch0_classifier']
  np.testing.assert_array_equal(head['kernel'], blobs['fc1_coco'].blobs[0].transpose(2, 3, 1, 0))
  np.testing.assert_array_equal(head['bias'], blobs['fc1_coco'].blobs[1])
  np.testing.assert_array_equal(kept['params']['trunk']['layer2']['block1']['reduce']['conv']['kernel'],
                                variables['params']['trunk']['layer2']['block1']['reduce']['conv']['kernel'])
  # Not kept by default, even where it would fit.
  assert convert.read(path, config).dropped == ('fc1_coco (Convolution): (91, 256, 1, 1), (91,)',)
  with pytest.raises(UserError, match='head.rates=1 --config.model.head.kernel_size=1'):
    convert.read(path, _config(), keep_init_classifier=True)


def test_train_from_the_coco_init(converted_dir, data_dir, tmp_path):
  output, _ = converted_dir
  config = _config(data_dir)
  config.init_from = output
  config.num_train_steps = 1
  start = jax.device_get(checkpoint.restore_variables(output))
  state = train_lib.train_and_evaluate(config, str(tmp_path))
  assert int(state.step) == 1
  params = convert.flatten(jax.device_get(state.params))
  before = convert.flatten(start['params'])
  assert all(np.all(np.isfinite(v)) for v in params.values())
  head = 'head/branch0_classifier/kernel'
  assert not np.array_equal(params[head], before[head])  # Trained.
  # Frozen BatchNorm: the statistics stay the file's.
  for name, value in convert.flatten(jax.device_get(state.batch_stats)).items():
    np.testing.assert_array_equal(value, convert.flatten(start['batch_stats'])[name], err_msg=name)
