"""The Caffe importer: schema, official names, layouts, parity, errors.

Files are written by `fake_caffe` with the official layer names and blob
layouts (BatchNorm blobs pre-multiplied by a scale factor, V1 legacy shapes
for VGG) from random variables of the tiny configs; the full-size name tables
come from shapes only. Parity: the PyTorch twin (deeplab_jax/testing/torch_deeplab.py)
loads the Caffe blobs by Caffe name through a mapping written here, and its
logits must equal those of our model with `caffe.to_flax`'s variables.
"""

import re
import struct
from collections import Counter

import jax
import numpy as np
import pytest

from configs import voc_aspp, voc_largefov, voc_vgg_aspp
from configs import tiny
from deeplab_jax import models
from deeplab_jax.convert import caffe
from deeplab_jax.convert.caffe import schema as caffe_schema
from deeplab_jax.testing import fake_caffe
from deeplab_jax.convert.decimate import decimate_fc
from deeplab_jax.errors import UserError

RTOL = 1e-4


def _tiny(config_module, **model):
  config = tiny.get_config(config_module)
  config.model.input_scales = (1.0,)
  tiny.override(config.model, **model)
  return config


def _flat(tree):
  return {jax.tree_util.keystr(k): np.asarray(v)
          for k, v in jax.tree_util.tree_leaves_with_path(tree)}


def _roundtrip(tmp_path, layers, config, legacy=False, **kwargs):
  path = str(tmp_path / f'net{"_v1" if legacy else ""}.caffemodel')
  fake_caffe.write_caffemodel(path, layers, legacy=legacy)
  return caffe.to_flax(caffe.read_caffemodel(path), config, source=path, **kwargs)


def _assert_same_tree(got, expected, exact=True):
  got, expected = _flat(got), _flat(expected)
  assert sorted(got) == sorted(expected)
  for key, value in expected.items():
    assert got[key].shape == value.shape and got[key].dtype == np.float32, key
    if exact:
      np.testing.assert_array_equal(got[key], value, err_msg=key)
    else:
      np.testing.assert_allclose(got[key], value, rtol=2e-6, atol=1e-7, err_msg=key)


@pytest.fixture(scope='module')
def resnet():
  config = _tiny(voc_aspp, batch_norm='frozen')
  return config, fake_caffe.random_variables(config, seed=1)


@pytest.fixture(scope='module')
def largefov():
  config = _tiny(voc_largefov)
  return config, fake_caffe.random_variables(config, seed=2)


@pytest.fixture(scope='module')
def vgg_aspp():
  config = _tiny(voc_vgg_aspp)
  return config, fake_caffe.random_variables(config, seed=3)


# ----------------------------------------------------------------- schema ----

def _varint(n):
  out = b''
  while True:
    byte, n = n & 0x7f, n >> 7
    out += bytes([byte | (0x80 if n else 0)])
    if not n:
      return out


def _field(number, payload):  # Length-delimited (wire type 2).
  return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def test_schema_uses_caffe_proto_field_numbers():
  """Bytes written by hand from caffe.proto's numbers parse, and ours serialise so."""
  floats = struct.pack('<2f', 1.5, -2.0)
  new_blob = _field(5, floats) + _field(7, _field(1, _varint(2)))  # data, shape{dim packed}
  new = _field(100, _field(1, b'conv1') + _field(2, b'Convolution') + _field(7, new_blob))
  legacy_blob = (_varint(1 << 3) + _varint(1) + _varint(2 << 3) + _varint(1)
                 + _varint(3 << 3) + _varint(1) + _varint(4 << 3) + _varint(2)
                 + _field(5, floats))  # num, channels, height, width; data
  v1 = _field(2, _field(4, b'fc8') + _varint(5 << 3) + _varint(14) + _field(6, legacy_blob))
  layers = caffe.parse_caffemodel(_field(1, b'net') + new + v1)
  assert [(l.name, l.type) for l in layers] == [('conv1', 'Convolution'), ('fc8', 'InnerProduct')]
  assert layers[0].blobs[0].shape == (2,) and layers[1].blobs[0].shape == (1, 1, 1, 2)
  np.testing.assert_array_equal(layers[1].blobs[0].ravel(), [1.5, -2.0])
  ours = fake_caffe.to_proto([caffe.Layer('conv1', 'Convolution', [np.array([1.5, -2.0])])],
                             name='net').SerializeToString()
  assert ours == _field(1, b'net') + new  # Fields in number order: data (5), shape (7).
  assert caffe_schema.v1_type_name(4) == 'Convolution'
  assert caffe_schema.v1_type_name(999) == 'V1_LAYER_TYPE_999'  # A fork's type survives.


# ------------------------------------------------------------- round trip ----

def test_resnet_round_trip_with_msc_copies(tmp_path, resnet):
  config, variables = resnet
  layers = fake_caffe.layers_from_flax(variables, config, 'deeplab_v2_resnet',
                                       bn_scale_factor=1024.0,  # A power of two: exact.
                                       msc_suffixes=('_res075', '_res05'))
  names = [l.name for l in layers]
  assert {'bn_conv1', 'scale2a_branch1', 'res5a_branch2c', 'fc1_voc12_c3',
          'conv1_res075', 'fc1_voc12_c0_res05', 'data', 'loss'} <= set(names)
  _assert_same_tree(_roundtrip(tmp_path, layers, config), variables)


def test_batch_norm_scale_factor_and_eps(tmp_path, resnet):
  config, variables = resnet
  layers = fake_caffe.layers_from_flax(variables, config, 'deeplab_v2_resnet',
                                       bn_scale_factor=999.0, bn_eps=1e-3)
  bn = next(l for l in layers if l.name == 'bn_conv1')
  stats = variables['batch_stats']['trunk']['layer1']['conv1']['bn']
  np.testing.assert_allclose(bn.blobs[0], stats['mean'] * 999, rtol=1e-6)
  assert bn.blobs[2].tolist() == [999.0] and bn.bn_eps == 1e-3
  # Caffe divides by the factor; the eps difference moves into the variance.
  _assert_same_tree(_roundtrip(tmp_path, layers, config), variables, exact=False)


@pytest.mark.parametrize('legacy', [False, True])
@pytest.mark.parametrize('which', ['largefov', 'vgg_aspp'])
def test_vgg_round_trip(tmp_path, request, which, legacy):
  config, variables = request.getfixturevalue(which)
  layers = fake_caffe.layers_from_flax(variables, config, 'deeplab_v2_vgg')
  names = {l.name for l in layers}
  head = {'fc6', 'fc7', 'fc8_voc12'} if which == 'largefov' else {
      f'{n}_{k}' for n in ('fc6', 'fc7', 'fc8_voc12') for k in range(1, 5)}
  assert head <= names
  _assert_same_tree(_roundtrip(tmp_path, layers, config, legacy=legacy), variables)


# ---------------------------------------------------------------- parity ----

def _torch_resnet_state(layers):
  """Caffe ResNet layers -> the twin's state_dict, by Caffe name (written here)."""
  units = {'1': 'shortcut', '2a': 'reduce', '2b': 'conv3x3', '2c': 'increase'}
  state, eps = {}, {}
  for layer in layers:
    if not layer.blobs:
      continue
    name = layer.name
    match = re.fullmatch(r'(res|bn|scale)(\d)([a-z])(\d*)_branch(1|2[abc])', name)
    if name in ('conv1', 'bn_conv1', 'scale_conv1'):
      kind, module = name.split('_')[0].replace('conv1', 'res'), 'layer1.conv1'
    elif match:
      kind, stage, letter, number, branch = match.groups()
      block = int(number) + 1 if number else ord(letter) - ord('a') + 1
      module = f'layer{stage}.block{block}.{units[branch]}'
    else:
      k = re.fullmatch(r'fc1_voc12_c(\d)', name).group(1)
      state[f'aspp.c{k}.weight'], state[f'aspp.c{k}.bias'] = layer.blobs
      continue
    if kind == 'res':
      state[f'{module}.conv.weight'] = layer.blobs[0]
    elif kind == 'bn':
      factor = layer.blobs[2][0]
      state[f'{module}.bn.running_mean'] = layer.blobs[0] / factor
      state[f'{module}.bn.running_var'] = layer.blobs[1] / factor
      eps[f'{module}.bn'] = layer.bn_eps
    else:
      state[f'{module}.bn.weight'], state[f'{module}.bn.bias'] = layer.blobs
  return state, eps


def _torch_vgg_state(layers):
  """Caffe VGG layers -> the twin's VGGHead state_dict (Sequential indices 1, 5, 8)."""
  state = {}
  for layer in layers:
    if not layer.blobs:
      continue
    match = re.fullmatch(r'(fc6|fc7|fc8_voc12)(?:_(\d))?', layer.name)
    if match:
      branch = int(match.group(2) or 1) - 1
      index = {'fc6': 1, 'fc7': 5, 'fc8_voc12': 8}[match.group(1)]
      prefix = f'head.branch{branch}.{index}'
    else:
      prefix = layer.name
    state[f'{prefix}.weight'], state[f'{prefix}.bias'] = layer.blobs
  return state


def _load_torch(model, state, torch):
  own = model.state_dict()
  assert set(own) - {k for k in own if k.endswith('num_batches_tracked')} == set(state)
  for key, value in state.items():
    value = np.asarray(value, np.float32).reshape(tuple(own[key].shape))  # Legacy shapes.
    own[key] = torch.from_numpy(value.copy())
  model.load_state_dict(own)
  return model.eval()


def _images(shape, seed=0):
  return np.random.default_rng(seed).uniform(0, 255, shape).astype(np.float32)


def _torch_logits(model, images, config, torch):
  x = images[..., ::-1] - np.asarray(config.model.pixel_mean, np.float32)
  x = x / np.asarray(config.model.pixel_std, np.float32)
  with torch.no_grad():
    out = model(torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2))))
  return out.numpy().transpose(0, 2, 3, 1)


def _rel_err(got, expected):
  return float(np.abs(np.asarray(got) - expected).max() / np.abs(expected).max())


def test_resnet_logits_equal_pytorch_loaded_from_caffe_names(tmp_path, resnet):
  torch = pytest.importorskip('torch')
  from deeplab_jax.testing import torch_deeplab  # pylint: disable=import-outside-toplevel
  config, variables = resnet
  layers = fake_caffe.layers_from_flax(variables, config, 'deeplab_v2_resnet',
                                       bn_scale_factor=999.0, bn_eps=1e-3)
  path = str(tmp_path / 'resnet.caffemodel')
  fake_caffe.write_caffemodel(path, layers)
  layers = caffe.read_caffemodel(path)
  state, eps = _torch_resnet_state(layers)
  reference = torch_deeplab.ResNetASPP(5, depth=14, base_width=8)
  for name, module in reference.named_modules():
    if name in eps:
      module.eps = eps[name]
  reference = _load_torch(reference, state, torch)
  images = _images((3, 45, 37, 3))  # Several inputs.
  got = models.build(config).apply(caffe.to_flax(layers, config), images, train=False)
  expected = _torch_logits(reference, images, config, torch)
  assert got.shape == expected.shape == (3, 6, 5, 5)
  assert _rel_err(got, expected) < RTOL


@pytest.mark.parametrize('which,kwargs', [
    ('largefov', dict(rates=(12,), pool5a=True)),
    ('vgg_aspp', dict(rates=(6, 12, 18, 24), pool5a=False))])
def test_vgg_logits_equal_pytorch_loaded_from_caffe_names(tmp_path, request, which, kwargs):
  torch = pytest.importorskip('torch')
  from deeplab_jax.testing import torch_deeplab  # pylint: disable=import-outside-toplevel
  config, variables = request.getfixturevalue(which)
  path = str(tmp_path / 'vgg.caffemodel')
  fake_caffe.write_caffemodel(
      path, fake_caffe.layers_from_flax(variables, config, 'deeplab_v2_vgg'), legacy=True)
  layers = caffe.read_caffemodel(path)
  reference = _load_torch(torch_deeplab.VGGHead(5, hidden=(16, 16), base_width=8, **kwargs),
                          _torch_vgg_state(layers), torch)
  images = _images((3, 43, 30, 3), seed=5)  # Several inputs.
  got = models.build(config).apply(caffe.to_flax(layers, config), images, train=False)
  expected = _torch_logits(reference, images, config, torch)
  assert got.shape == expected.shape == (3, 7, 5, 5)
  assert _rel_err(got, expected) < RTOL


# ------------------------------------------------------- full-size tables ----

def test_resnet101_name_table_from_shapes():
  rows = caffe.name_table(voc_aspp.get_config())  # No weights: jax.eval_shape.
  layers = Counter(r.caffe_type for r in rows if r.blob == 0)
  # conv1 + 33 blocks x 3 + 4 projection shortcuts = 104 convs, each with BN + Scale;
  # 4 ASPP classifier convs (weight + bias).
  assert layers == {'Convolution': 104 + 4, 'BatchNorm': 104, 'Scale': 104}
  assert len(rows) == 104 + 3 * 104 + 2 * 104 + 2 * 4 == 632
  by_name = {(r.caffe, r.blob): r for r in rows}
  expected = {
      ('conv1', 0): ((64, 3, 7, 7), 'params/trunk/layer1/conv1/conv/kernel'),
      ('bn_conv1', 1): ((64,), 'batch_stats/trunk/layer1/conv1/bn/var'),
      ('scale_conv1', 0): ((64,), 'params/trunk/layer1/conv1/bn/scale'),
      ('res2a_branch1', 0): ((256, 64, 1, 1), 'params/trunk/layer2/block1/shortcut/conv/kernel'),
      ('res3a_branch2a', 0): ((128, 256, 1, 1), 'params/trunk/layer3/block1/reduce/conv/kernel'),
      ('res3b3_branch2b', 0): ((128, 128, 3, 3), 'params/trunk/layer3/block4/conv3x3/conv/kernel'),
      ('res4b22_branch2c', 0): ((1024, 256, 1, 1),
                                'params/trunk/layer4/block23/increase/conv/kernel'),
      ('bn4b22_branch2c', 0): ((1024,), 'batch_stats/trunk/layer4/block23/increase/bn/mean'),
      ('scale5c_branch2c', 1): ((2048,), 'params/trunk/layer5/block3/increase/bn/bias'),
      ('res5a_branch1', 0): ((2048, 1024, 1, 1), 'params/trunk/layer5/block1/shortcut/conv/kernel'),
      ('fc1_voc12_c3', 0): ((21, 2048, 3, 3), 'params/head/branch3_classifier/kernel'),
      ('fc1_voc12_c3', 1): ((21,), 'params/head/branch3_classifier/bias'),
  }
  for key, (shape, path) in expected.items():
    assert (by_name[key].caffe_shape, by_name[key].path) == (shape, path), key
  assert by_name[('bn_conv1', 2)].path is None  # The scale factor has no leaf.
  names = {r.caffe for r in rows}
  assert 'res4b23_branch2a' not in names and 'res3d_branch2a' not in names
  assert 'res3b1_branch2a' in names and 'res5c_branch2a' in names
  # Every variable of the model, once: 44,048,532 parameters + 105,344 statistics.
  assert sum(int(np.prod(r.shape)) for r in rows if r.path) == 44_048_532 + 105_344
  assert len({r.path for r in rows if r.path}) == len(caffe.target_shapes(voc_aspp.get_config()))


def test_resnet_block_names_follow_the_official_prototxts():
  names = {d: [[caffe.resnet_block_name(d, s, i) for i in range(n)]
               for s, n in zip(range(2, 6), blocks)]
           for d, blocks in ((50, (3, 4, 6, 3)), (101, (3, 4, 23, 3)), (152, (3, 8, 36, 3)))}
  assert names[101][1] == ['a', 'b1', 'b2', 'b3']
  assert names[101][2] == ['a'] + [f'b{i}' for i in range(1, 23)]
  assert names[101][0] == names[101][3] == ['a', 'b', 'c']
  assert names[152][2][-1] == 'b35' and names[152][1][-1] == 'b7'
  assert names[50][2] == list('abcdef') and names[50][1] == list('abcd')


@pytest.mark.parametrize('config_module,head', [
    (voc_largefov, {'fc6': (1024, 512, 3, 3), 'fc7': (1024, 1024, 1, 1),
                    'fc8_voc12': (21, 1024, 1, 1)}),
    (voc_vgg_aspp, {f'{n}_{k}': s for k in range(1, 5) for n, s in (
        ('fc6', (1024, 512, 3, 3)), ('fc7', (1024, 1024, 1, 1)), ('fc8_voc12', (21, 1024, 1, 1)))}),
])
def test_vgg_name_tables_from_shapes(config_module, head):
  rows = caffe.name_table(config_module.get_config())
  weights = {r.caffe: r.caffe_shape for r in rows if r.blob == 0}
  trunk = {n: s for n, s in weights.items() if n.startswith('conv')}
  assert len(trunk) == 13 and trunk['conv1_1'] == (64, 3, 3, 3)
  assert trunk['conv5_3'] == (512, 512, 3, 3)
  assert {n: s for n, s in weights.items() if n.startswith('fc')} == head


# -------------------------------------------------------- ImageNet VGG-16 ----

@pytest.mark.parametrize('which', ['largefov', 'vgg_aspp'])
def test_imagenet_vgg_fc6_fc7_decimated_and_no_classifier(tmp_path, request, which):
  config, variables = request.getfixturevalue(which)
  layers = fake_caffe.layers_from_flax(variables, config, 'imagenet_vgg')
  path = str(tmp_path / 'VGG_ILSVRC_16_layers.caffemodel')
  fake_caffe.write_caffemodel(path, layers, legacy=True)  # The 2014 release is V1.
  read = {l.name: l for l in caffe.read_caffemodel(path)}
  assert read['fc6'].type == 'InnerProduct'
  assert read['fc6'].blobs[0].shape == (1, 1, 512, 64 * 7 * 7)  # Legacy 4-D shape.
  with pytest.raises(UserError, match='allow_missing_classifier'):
    caffe.to_flax(list(read.values()), config)
  got = caffe.to_flax(list(read.values()), config, allow_missing_classifier=True)
  params = got['params']
  assert not [k for k in params['head'] if 'classifier' in k]
  _assert_same_tree(params['trunk'], variables['params']['trunk'])
  kernel6, bias6 = decimate_fc(read['fc6'].blobs[0].reshape(512, 64, 7, 7),
                               read['fc6'].blobs[1].ravel(), out_channels=16, kernel_size=3)
  kernel7, bias7 = decimate_fc(read['fc7'].blobs[0].reshape(512, 512, 1, 1),
                               read['fc7'].blobs[1].ravel(), out_channels=16, kernel_size=1,
                               in_channels=16)
  original = variables['params']['head']
  for branch in range(len(config.model.head.rates)):  # Every branch the same.
    for j, (kernel, bias) in enumerate(((kernel6, bias6), (kernel7, bias7))):
      leaf = params['head'][f'branch{branch}_hidden{j}']
      np.testing.assert_array_equal(leaf['kernel'], kernel)
      np.testing.assert_array_equal(leaf['bias'], bias)
      np.testing.assert_array_equal(leaf['kernel'], original[f'branch0_hidden{j}']['kernel'])


def test_imagenet_resnet_has_trunk_and_no_classifier(resnet):
  config, variables = resnet
  layers = fake_caffe.layers_from_flax(variables, config, 'imagenet_resnet')
  assert 'fc1000' in {l.name for l in layers}
  got = caffe.to_flax(layers, config, allow_missing_classifier=True)
  assert 'head' not in got['params']  # The ResNet head is the classifiers alone.
  _assert_same_tree(got['params']['trunk'], variables['params']['trunk'])
  _assert_same_tree(got['batch_stats'], variables['batch_stats'], exact=False)


# ---------------------------------------------------------------- errors ----

@pytest.mark.parametrize('content', [
    b'', b'\xff\xfe\x00garbage' * 10,
    b'name: "deeplab"\nlayer {\n  name: "conv1"\n  type: "Convolution"\n}\n'])
def test_not_a_caffemodel_names_the_file(tmp_path, content):
  path = tmp_path / 'weights.caffemodel'
  path.write_bytes(content)
  with pytest.raises(UserError, match=re.escape(str(path))):
    caffe.read_caffemodel(str(path))
  with pytest.raises(UserError, match='cannot read'):
    caffe.read_caffemodel(str(tmp_path / 'nonexistent.caffemodel'))


def test_missing_layer_is_named_with_our_path(resnet):
  config, variables = resnet
  layers = [l for l in fake_caffe.layers_from_flax(variables, config, 'deeplab_v2_resnet')
            if l.name != 'res3a_branch2b']
  with pytest.raises(UserError, match=r'(?s)missing.*res3a_branch2b \(Convolution\) -> '
                                      r'params/trunk/layer3/block1/conv3x3/conv/kernel'):
    caffe.to_flax(layers, config, source='x.caffemodel')


def test_wrong_shape_is_named(largefov):
  config, variables = largefov
  layers = fake_caffe.layers_from_flax(variables, config, 'deeplab_v2_vgg')
  conv = next(l for l in layers if l.name == 'conv3_2')
  conv.blobs[0] = np.zeros((32, 16, 3, 3), np.float32)
  with pytest.raises(UserError, match=r'conv3_2, blob 0: \(32, 16, 3, 3\) -> '
                                      r'params/trunk/conv3_2/kernel: \(32, 32, 3, 3\)'):
    caffe.to_flax(layers, config)


def test_unexpected_layers_and_deeper_files_are_errors(resnet):
  config, variables = resnet
  layers = fake_caffe.layers_from_flax(variables, config, 'deeplab_v2_resnet')
  extra = caffe.Layer('res4b1_branch2a', 'Convolution', [np.zeros((32, 128, 1, 1), np.float32)])
  with pytest.raises(UserError, match=r'not in the model.*\n.*res4b1_branch2a'):
    caffe.to_flax(layers + [extra], config)


def test_other_depth_or_trunk_gets_a_hint(resnet, largefov):
  config, _ = resnet
  deeper = _tiny(voc_aspp, batch_norm='frozen', backbone__depth=50)
  layers = fake_caffe.layers_from_flax(fake_caffe.random_variables(deeper), deeper,
                                       'deeplab_v2_resnet')
  with pytest.raises(UserError, match=r'res4 has 6 blocks, a ResNet-50: '
                                      r'--config.model.backbone.depth=50'):
    caffe.to_flax(layers, config)
  vgg_config, vgg_variables = largefov
  with pytest.raises(UserError, match='the file is a VGG-16'):
    caffe.to_flax(fake_caffe.layers_from_flax(vgg_variables, vgg_config, 'deeplab_v2_vgg'),
                  config)


def test_msc_copies_are_dropped_for_the_plain_layers(resnet, caplog):
  config, variables = resnet
  layers = fake_caffe.layers_from_flax(variables, config, 'deeplab_v2_resnet',
                                       msc_suffixes=('_res075',))
  copy = next(l for l in layers if l.name == 'res2a_branch2a_res075')
  copy.blobs[0] = copy.blobs[0] + 0.5  # Differing values: a warning, scale 1's used.
  with caplog.at_level('WARNING'):
    converted = caffe.to_flax(layers, config)
  assert "'res2a_branch2a_res075' differs from 'res2a_branch2a'" in caplog.text
  assert 'by up to 0.5' in caplog.text
  plain = caffe.to_flax(fake_caffe.layers_from_flax(variables, config, 'deeplab_v2_resnet'),
                        config)
  for a, b in zip(jax.tree_util.tree_leaves(converted), jax.tree_util.tree_leaves(plain)):
    np.testing.assert_array_equal(a, b)
  copy.blobs[0] = copy.blobs[0][:1]  # Another shape: not a copy, an error.
  with pytest.raises(UserError, match="'res2a_branch2a_res075' should hold the same weights"):
    caffe.to_flax(layers, config)


def test_classifier_for_other_classes(resnet):
  config, variables = resnet
  layers = fake_caffe.layers_from_flax(variables, config, 'deeplab_v2_resnet')
  for layer in layers:
    if layer.name.startswith('fc1_voc12_c'):
      layer.blobs = [np.zeros((7,) + layer.blobs[0].shape[1:], np.float32),
                     np.zeros((7,), np.float32)]
  with pytest.raises(UserError, match=r'fc1_voc12_c0, blob 0: \(7, 256, 3, 3\)'):
    caffe.to_flax(layers, config)
  got = caffe.to_flax(layers, config, allow_classifier_mismatch=True)
  assert got['params']['head']['branch2_classifier']['kernel'].shape == (3, 3, 256, 7)
  assert got['params']['head']['branch2_classifier']['bias'].shape == (7,)


def test_front_end_entry_point(resnet):
  convert = pytest.importorskip('deeplab_jax.convert')
  if not hasattr(convert, 'Converted'):
    pytest.skip('the front end (deeplab_jax/convert/__init__.py) is not there yet')
  config, variables = resnet
  converted = caffe.convert(
      fake_caffe.layers_from_flax(variables, config, 'imagenet_resnet'), config)
  assert converted.absent == frozenset(caffe.classifier_paths(config))
  assert 'params/head/branch0_classifier/kernel' in converted.absent
  assert 'without a DeepLab classifier' in converted.source
