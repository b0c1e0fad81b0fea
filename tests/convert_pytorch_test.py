"""PyTorch checkpoints -> flax variables (deeplab_jax/convert/pytorch/).

The ResNet files are written by `torch.save` from the PyTorch twin
(deeplab_jax/testing/torch_deeplab.py, the port's exact keys) with random weights and
BatchNorm statistics; the converted model must give the twin's logits. The
torchvision VGG-16 layout is built here from torchvision's own recipe (conv +
ReLU per layer, a max pool per 'M'), full size as shapes only and shrunk with
numbers for the decimation path.
"""

import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip('torch')

from deeplab_jax.testing import torch_deeplab  # pylint: disable=g-import-not-at-top
from configs import voc_aspp, voc_largefov, voc_vgg_aspp  # pylint: disable=g-import-not-at-top
from configs import parts
from configs import tiny
from deeplab_jax import models  # pylint: disable=g-import-not-at-top
from deeplab_jax.convert import pytorch  # pylint: disable=g-import-not-at-top
from deeplab_jax.convert.decimate import decimate_fc  # pylint: disable=g-import-not-at-top
from deeplab_jax.errors import UserError  # pylint: disable=g-import-not-at-top

TOL = 1e-4
VGG16_LAYERS = (64, 64, 'M', 128, 128, 'M', 256, 256, 256, 'M', 512, 512, 512, 'M',
                512, 512, 512, 'M')
VGG_NAMES = ('conv1_1', 'conv1_2', 'conv2_1', 'conv2_2', 'conv3_1', 'conv3_2', 'conv3_3',
             'conv4_1', 'conv4_2', 'conv4_3', 'conv5_1', 'conv5_2', 'conv5_3')


def _resnet_config(num_classes=21):
  config = tiny.get_config(voc_aspp)  # Depth 14, base width 8.
  config.model.batch_norm = 'frozen'
  config.model.input_scales = (1.0,)
  config.dataset.num_classes = num_classes
  return config


def _vgg_config(module=voc_largefov, **model_overrides):
  config = tiny.get_config(module)  # Base width 8, head.hidden (16, 16).
  config.dataset.num_classes = 21
  tiny.override(config.model, **model_overrides)
  return config


def _normalised_nchw(images, config):
  """What the twin takes: the flax model's input after its own normalisation."""
  x = images[..., ::-1] if config.model.channel_order == 'bgr' else images
  x = (x - np.asarray(config.model.pixel_mean, np.float32)) / np.asarray(
      config.model.pixel_std, np.float32)
  return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))


def _assert_close(got, expected_nchw):
  expected = expected_nchw.detach().numpy().transpose(0, 2, 3, 1)
  assert np.shape(got) == expected.shape
  scale = np.abs(expected).max()
  np.testing.assert_allclose(np.asarray(got), expected, rtol=TOL, atol=TOL * scale)


def _twin(num_classes, seed):
  """The port's ResNet-14 (width 8) + ASPP with random weights and BN statistics."""
  torch.manual_seed(seed)
  net = torch_deeplab.ResNetASPP(num_classes, depth=14, base_width=8)
  with torch.no_grad():
    for module in net.modules():
      if isinstance(module, torch.nn.BatchNorm2d):
        module.weight.uniform_(0.5, 1.5)
        module.bias.normal_(0, 0.1)
        module.running_mean.normal_(0, 0.1)
        module.running_var.uniform_(0.5, 2.0)
  return net.eval()


def _leaves(tree):
  return {jax.tree_util.keystr(p): np.asarray(v)
          for p, v in jax.tree_util.tree_leaves_with_path(tree)}


def _paths(shapes_tree):
  return {'/'.join(str(k.key) for k in p): tuple(v.shape)
          for p, v in jax.tree_util.tree_leaves_with_path(shapes_tree)}


def _abstract_variables(config):
  model = models.build(config)
  return jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, 33, 33, 3)),
                                           train=False))


# ------------------------------------------------------ ResNet (port) ----

@pytest.fixture(scope='module')
def twin():
  return _twin(21, seed=0)


@pytest.fixture(scope='module')
def pth_files(tmp_path_factory, twin):
  """The twin's weights as the port's files come: plain, MSC, wrapped, DataParallel."""
  folder = tmp_path_factory.mktemp('pth')
  msc = torch_deeplab.MSC(twin)
  contents = {
      'plain': twin.state_dict(),
      'msc': msc.state_dict(),  # 'base.' prefix.
      'state_dict': {'state_dict': msc.state_dict(), 'epoch': 3},
      'model_data_parallel': {'model': torch.nn.DataParallel(msc).state_dict(),
                              'optimizer': {'lr': 0.1}},  # 'module.base.' prefix.
  }
  paths = {}
  for name, content in contents.items():
    paths[name] = str(folder / f'{name}.pth')
    torch.save(content, paths[name])
  return paths


@pytest.fixture(scope='module')
def converted(pth_files):
  return pytorch.to_flax(pytorch.read_state_dict(pth_files['plain']), _resnet_config())


def test_read_state_dict_gives_float32_arrays_without_counters(pth_files, twin):
  state = pytorch.read_state_dict(pth_files['plain'])
  expected = {k: v.numpy() for k, v in twin.state_dict().items()
              if not k.endswith('num_batches_tracked')}
  assert set(state) == set(expected)
  assert 'layer1.conv1.conv.weight' in state and 'aspp.c3.bias' in state
  for key, value in expected.items():
    assert state[key].dtype == np.float32
    np.testing.assert_array_equal(state[key], value)


@pytest.mark.parametrize('name', ['msc', 'state_dict', 'model_data_parallel'])
def test_every_wrapping_converts_to_the_same_variables(pth_files, converted, name):
  other = pytorch.to_flax(pytorch.read_state_dict(pth_files[name]), _resnet_config())
  expected = _leaves(converted.variables)
  got = _leaves(other.variables)
  assert got.keys() == expected.keys()
  for key, value in expected.items():
    np.testing.assert_array_equal(got[key], value)


def test_converted_resnet_matches_the_pytorch_port(converted, twin):
  config = _resnet_config()
  model = models.build(config)
  assert converted.source == pytorch.RESNET
  assert not converted.absent and not converted.classifier_mismatch
  # Exactly the tree and shapes of the model's own init.
  abstract = _abstract_variables(config)
  assert jax.tree_util.tree_structure(converted.variables) == \
      jax.tree_util.tree_structure(abstract)
  assert _paths(converted.variables) == _paths(abstract)
  images = np.random.default_rng(0).uniform(0, 255, (2, 45, 37, 3)).astype(np.float32)
  got = model.apply(converted.variables, images, train=False)
  with torch.no_grad():
    expected = twin(_normalised_nchw(images, config))
  assert got.shape == (2, 6, 5, 21)
  _assert_close(got, expected)


def test_front_end_reads_port_files_through_this_module(pth_files, twin):
  from deeplab_jax import convert  # pylint: disable=import-outside-toplevel
  config = _resnet_config()
  # read() is from_file() without the fresh init it needs only for absent leaves.
  variables = convert.read(pth_files['model_data_parallel'], config).variables
  images = np.random.default_rng(2).uniform(0, 255, (1, 37, 29, 3)).astype(np.float32)
  got = models.build(config).apply(variables, images, train=False)
  with torch.no_grad():
    expected = twin(_normalised_nchw(images, config))
  _assert_close(got, expected)


def test_converted_resnet_with_msc_matches_the_port_msc(converted, twin):
  config = _resnet_config()
  config.model.input_scales = (1.0, 0.75, 0.5)
  config.model.align_corners = False  # The port's interpolate(scale_factor=...).
  images = np.random.default_rng(1).uniform(0, 255, (1, 49, 41, 3)).astype(np.float32)
  got = models.build(config).apply(converted.variables, images, train=False)
  with torch.no_grad():
    expected = torch_deeplab.MSC(twin, (1.0, 0.75, 0.5), False).eval()(
        _normalised_nchw(images, config))
  _assert_close(got, expected)


def test_classifier_of_another_class_count_is_returned_with_a_flag(tmp_path):
  state = {k: v.numpy() for k, v in _twin(7, seed=1).state_dict().items()}
  config = _resnet_config(num_classes=21)
  with pytest.raises(UserError, match=r'scores 7 classes, the config 21'):
    pytorch.to_flax(state, config)
  for got in (pytorch.to_flax(state, config, allow_classifier_mismatch=True),
              pytorch.convert(state, config)):
    assert got.classifier_mismatch and got.file_num_classes == 7
    assert got.classifier_paths == tuple(
        f'params/head/branch{i}_classifier/{leaf}' for i in range(4)
        for leaf in ('bias', 'kernel'))
    head = got.variables['params']['head']
    assert head['branch2_classifier']['kernel'].shape == (3, 3, 256, 7)
    np.testing.assert_array_equal(head['branch2_classifier']['bias'], state['aspp.c2.bias'])
    # Everything else in the model's shapes.
    expected = _paths(_abstract_variables(config))
    for path, shape in _paths(got.variables).items():
      if path not in got.classifier_paths:
        assert expected[path] == shape, path


def test_resnet101_key_table_is_the_ports_state_dict():
  with torch.device('meta'):  # Shapes only, no 170 MB of weights.
    net = torch_deeplab.ResNetASPP(21, 101)
  port = {k: tuple(v.shape) for k, v in net.state_dict().items()
          if not k.endswith('num_batches_tracked')}
  config = voc_aspp.get_config()
  table = pytorch.expected_keys(config)
  # 104 conv + BN units (stem, 33 bottlenecks of 3, 4 shortcuts) x 5 keys, 4 ASPP x 2.
  assert len(table) == len(port) == 528
  assert {k: t.shape for k, t in table.items()} == port
  single_scale = voc_aspp.get_config()
  single_scale.model.input_scales = (1.0,)  # MSC adds no variables; traces 3x faster.
  ours = _paths(_abstract_variables(single_scale))
  covered = [p for t in table.values() for p in t.paths]
  assert sorted(covered) == sorted(ours)  # Every variable once, nothing else.
  for key, target in table.items():
    (path,) = target.paths
    shape = ours[path]
    assert target.shape == ((shape[3], shape[2], shape[0], shape[1]) if len(shape) == 4
                            else shape), key
  assert table['layer4.block23.conv3x3.bn.running_var'].paths == (
      'batch_stats/trunk/layer4/block23/conv3x3/bn/var',)
  assert table['layer2.block1.shortcut.conv.weight'].paths == (
      'params/trunk/layer2/block1/shortcut/conv/kernel',)
  assert table['aspp.c3.weight'] == (('params/head/branch3_classifier/kernel',),
                                     (21, 2048, 3, 3))


# ------------------------------------------------- torchvision VGG-16 ----

def torchvision_vgg16_shapes(width=64, fc=4096, classes=1000):
  """torchvision's vgg16 state_dict shapes: features (conv + ReLU, 'M' pools), classifier."""
  shapes, index, channels = {}, 0, 3
  for layer in VGG16_LAYERS:
    if layer == 'M':
      index += 1
      continue
    out = layer * width // 64
    shapes[f'features.{index}.weight'] = (out, channels, 3, 3)
    shapes[f'features.{index}.bias'] = (out,)
    channels, index = out, index + 2  # The conv, then its ReLU.
  # Linear, ReLU, Dropout, Linear, ReLU, Dropout, Linear over the 7x7 pool.
  for index, (out, inputs) in zip((0, 3, 6), ((fc, channels * 49), (fc, fc), (classes, fc))):
    shapes[f'classifier.{index}.weight'] = (out, inputs)
    shapes[f'classifier.{index}.bias'] = (out,)
  return shapes


@pytest.fixture(scope='module')
def tiny_vgg_state():
  """torchvision's layout at width 8 (fc 512 = 4096 / 8), random numbers."""
  rng = np.random.default_rng(2)
  return {k: rng.normal(size=s).astype(np.float32)
          for k, s in torchvision_vgg16_shapes(width=8, fc=512).items()}


@pytest.mark.parametrize('module,branches', [(voc_largefov, 1), (voc_vgg_aspp, 4)])
def test_vgg16_full_size_key_table(module, branches):
  config = module.get_config()
  table = pytorch.expected_keys(config)
  shapes = torchvision_vgg16_shapes()
  assert shapes['classifier.0.weight'] == (4096, 25088)
  assert len(shapes) == 32
  used = {k: s for k, s in shapes.items() if not k.startswith('classifier.6.')}
  assert {k: t.shape for k, t in table.items()} == used
  assert table['features.28.weight'].paths == ('params/trunk/conv5_3/kernel',)
  assert table['features.0.bias'].paths == ('params/trunk/conv1_1/bias',)
  assert table['classifier.0.weight'].paths == tuple(
      f'params/head/branch{i}_hidden0/kernel' for i in range(branches))
  assert table['classifier.3.bias'].paths == tuple(
      f'params/head/branch{i}_hidden1/bias' for i in range(branches))


@pytest.mark.parametrize('module', [voc_largefov, voc_vgg_aspp])
def test_vgg16_convs_exact_fc_decimated_classifier_absent(tiny_vgg_state, module):
  state = tiny_vgg_state
  config = _vgg_config(module)
  got = pytorch.to_flax(state, config)
  params = got.variables['params']
  assert set(got.variables) == {'params'}  # VGG has no BatchNorm statistics.
  assert got.source == pytorch.VGG16
  conv_indices = sorted({int(k.split('.')[1]) for k in state if k.startswith('features.')})
  for name, index in zip(VGG_NAMES, conv_indices, strict=True):
    np.testing.assert_array_equal(params['trunk'][name]['kernel'],
                                  state[f'features.{index}.weight'].transpose(2, 3, 1, 0))
    np.testing.assert_array_equal(params['trunk'][name]['bias'], state[f'features.{index}.bias'])
  fc6 = decimate_fc(state['classifier.0.weight'].reshape(512, 64, 7, 7),
                    state['classifier.0.bias'], out_channels=16, kernel_size=3)
  fc7 = decimate_fc(state['classifier.3.weight'].reshape(512, 512, 1, 1),
                    state['classifier.3.bias'], out_channels=16, kernel_size=1, in_channels=16)
  branches = len(config.model.head.rates)
  for i in range(branches):
    for layer, (kernel, bias) in (('hidden0', fc6), ('hidden1', fc7)):
      np.testing.assert_array_equal(params['head'][f'branch{i}_{layer}']['kernel'], kernel)
      np.testing.assert_array_equal(params['head'][f'branch{i}_{layer}']['bias'], bias)
  # Every 32nd of 512 outputs, spatial taps 0, 3, 6 of 7.
  k6 = params['head']['branch0_hidden0']['kernel']
  assert k6.shape == (3, 3, 64, 16)
  assert k6[1, 2, 5, 3] == state['classifier.0.weight'].reshape(512, 64, 7, 7)[96, 5, 3, 6]
  assert params['head']['branch0_hidden1']['kernel'][0, 0, 2, 1] == \
      state['classifier.3.weight'][32, 64]
  assert got.absent == frozenset(f'params/head/branch{i}_classifier/{leaf}'
                                 for i in range(branches) for leaf in ('kernel', 'bias'))
  assert got.dropped == ('classifier.6.weight', 'classifier.6.bias')
  # With the classifier initialised, the model's whole tree in its shapes.
  fresh = models.build(config).init(jax.random.key(0), jnp.zeros((1, 33, 33, 3)), train=False)
  params['head'].update({k: v for k, v in fresh['params']['head'].items()
                         if k.endswith('classifier')})
  assert _paths(got.variables) == _paths(fresh)


def test_vgg16_v1_deeplab_and_msc_from_a_pth_file(tmp_path, tiny_vgg_state):
  path = str(tmp_path / 'vgg16.pth')
  torch.save({k: torch.from_numpy(v) for k, v in tiny_vgg_state.items()}, path)
  state = pytorch.read_state_dict(path)
  # v1 DeepLab: fc6 4x4 at rate 4 keeping all of its (here 512) outputs.
  config = _vgg_config(head__kernel_size=4, head__rates=(4,), head__hidden=(512, 512),
                       backbone__pool5a=False)
  got = pytorch.to_flax(state, config)
  kernel = got.variables['params']['head']['branch0_hidden0']['kernel']
  assert kernel.shape == (4, 4, 64, 512)
  np.testing.assert_array_equal(  # Taps 0, 2, 4, 6.
      kernel[3, 1], tiny_vgg_state['classifier.0.weight'].reshape(512, 64, 7, 7)[:, :, 6, 2].T)
  np.testing.assert_array_equal(got.variables['params']['head']['branch0_hidden1']['kernel'][0, 0],
                                tiny_vgg_state['classifier.3.weight'].T)
  # v1 MSc: the multi-layer score branches are new layers, reported absent.
  msc = pytorch.to_flax(state, _vgg_config(multilayer=parts.multilayer((8, 8))))
  assert 'multilayer' not in msc.variables['params']
  assert 'params/multilayer/data_conv/kernel' in msc.absent
  assert len(msc.absent) == 2 + 5 * 3 * 2  # fc8; 5 branches x (conv1, conv2, classifier).


def test_input_conventions():
  vgg = pytorch.input_convention(pytorch.VGG16)
  assert vgg == {'channel_order': 'rgb', 'pixel_mean': (123.675, 116.28, 103.53),
                 'pixel_std': (58.395, 57.12, 57.375)}
  np.testing.assert_allclose(np.array(vgg['pixel_mean']) / 255, (0.485, 0.456, 0.406))
  np.testing.assert_allclose(np.array(vgg['pixel_std']) / 255, (0.229, 0.224, 0.225))
  config = voc_largefov.get_config()  # Caffe's BGR convention.
  lines = pytorch.convention_differences(config, pytorch.VGG16)
  assert len(lines) == 3 and '--config.model.channel_order=rgb' in lines[0]
  for key, value in vgg.items():
    config.model[key] = value
  assert pytorch.convention_differences(config, pytorch.VGG16) == []
  # The port resizes without corner alignment; voc_aspp is Caffe's convention.
  config = voc_aspp.get_config()
  assert pytorch.convention_differences(config, pytorch.RESNET) == [
      "model.align_corners is True; DeepLab v2 ResNet (PyTorch port, kazuto1011/deeplab-pytorch) "
      "weights take --config.model.align_corners=False"]
  config.model.align_corners = False
  assert pytorch.convention_differences(config, pytorch.RESNET) == []


# ------------------------------------------------------------- errors ----

def test_reading_without_torch_says_how_to_install_it(pth_files, monkeypatch):
  monkeypatch.setitem(sys.modules, 'torch', None)  # `import torch` raises ImportError.
  with pytest.raises(UserError, match=r'needs PyTorch: pip install torch.*plain\.pth'):
    pytorch.read_state_dict(pth_files['plain'])


def test_files_without_a_state_dict(tmp_path):
  path = str(tmp_path / 'optimizer_only.pth')
  torch.save({'optimizer': {'lr': 0.1}, 'epoch': 3}, path)
  with pytest.raises(UserError, match=r"\['state_dict', 'model', 'model_state'\]"):
    pytorch.read_state_dict(path)
  garbage = tmp_path / 'garbage.pth'
  garbage.write_bytes(b'not a checkpoint')
  with pytest.raises(UserError, match='garbage.pth'):
    pytorch.read_state_dict(str(garbage))
  with pytest.raises(UserError, match='no such file'):
    pytorch.read_state_dict(str(tmp_path / 'nowhere.pth'))


def test_unknown_and_torchvision_resnet_layouts():
  config = _resnet_config()
  with pytest.raises(UserError, match='unknown checkpoint layout'):
    pytorch.to_flax({'encoder.weight': np.zeros(3)}, config)
  torchvision_resnet = {'conv1.weight': np.zeros((64, 3, 7, 7)), 'bn1.weight': np.zeros(64),
                        'bn1.running_mean': np.zeros(64),
                        'layer1.0.conv1.weight': np.zeros((64, 64, 1, 1)),
                        'fc.weight': np.zeros((1000, 2048))}
  with pytest.raises(UserError, match=r'torchvision ResNet(.|\n)*init\.caffemodel'):
    pytorch.to_flax(torchvision_resnet, config)


def test_a_resnet_file_for_a_vgg_config(converted, twin):
  state = {k: v.numpy() for k, v in twin.state_dict().items()}
  with pytest.raises(UserError, match="model.backbone.name is 'vgg16'"):
    pytorch.to_flax(state, _vgg_config())


@pytest.mark.parametrize('change,expected', [
    ('missing', r'layer3\.block1\.reduce\.bn\.running_var \(16,\) -> '
                r'batch_stats/trunk/layer3/block1/reduce/bn/var'),
    ('shape', r'layer2\.block1\.conv3x3\.conv\.weight -> '
              r'params/trunk/layer2/block1/conv3x3/conv/kernel: \(8, 8, 1, 1\) / \(8, 8, 3, 3\)'),
    ('unexpected', r'in the file, not in the model:\s+layer6\.block1\.reduce\.conv\.weight'),
    ('depth', r'depth 50(.|\n)*missing from the file(.|\n)*layer2\.block2\.'),
])
def test_resnet_mismatches_name_the_keys(twin, change, expected):
  state = {k: v.numpy() for k, v in twin.state_dict().items()}
  config = _resnet_config()
  if change == 'missing':
    del state['layer3.block1.reduce.bn.running_var']
  elif change == 'shape':
    state['layer2.block1.conv3x3.conv.weight'] = np.zeros((8, 8, 1, 1), np.float32)
  elif change == 'unexpected':
    state['layer6.block1.reduce.conv.weight'] = np.zeros((8, 8, 1, 1), np.float32)
  else:
    config.model.backbone.depth = 50
  with pytest.raises(UserError, match=expected):
    pytorch.to_flax(state, config)
