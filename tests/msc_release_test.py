"""v1 DeepLab-MSc-LargeFOV and DeepLab-MSc held to their released prototxts.

The tables are the releases' own numbers: TheLegendAli/DeepLab-Context
bd4aac5, config/DeepLab-MSc-LargeFOV/train.prototxt and
config/DeepLab-MSc/train.prototxt. Each row: (Caffe layer, its bottom, kernel_size,
stride, pad, hole (dilation), num_output, blobs_lr (weight, bias),
weight_decay (weight, bias), weight_filler std (0: none given), line of the
layer's `name:` in that train.prototxt). num_output ${NUM_LABELS} is 21 (VOC).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import voc_largefov, voc_msc, voc_msc_largefov
from configs import tiny
from deeplab_jax import convert as convert_lib
from deeplab_jax import models, optim, sharding
from deeplab_jax.convert import caffe
from deeplab_jax.testing import fake_caffe
from deeplab_jax.errors import UserError
from deeplab_jax.models import multilayer

L = 21  # ${NUM_LABELS}

# config/DeepLab-MSc-LargeFOV/train.prototxt
MSC_LARGEFOV = (
    ('data_conv', 'data', 3, 8, 1, 1, 128, (1, 2), (1, 0), 0.001, 47),
    ('data_fc', 'data_conv', 1, 1, 0, 1, 128, (1, 2), (1, 0), 0.001, 86),
    ('data_ms', 'data_fc', 1, 1, 0, 1, L, (1, 2), (1, 0), 0.01, 124),
    ('conv1_1', 'data', 3, 1, 1, 1, 64, (0, 0), (1, 0), 0, 150),
    ('conv1_2', 'conv1_1', 3, 1, 1, 1, 64, (0, 0), (1, 0), 0, 171),
    ('pool1_conv', 'pool1', 3, 4, 1, 1, 128, (1, 2), (1, 0), 0.001, 205),
    ('pool1_fc', 'pool1_conv', 1, 1, 0, 1, 128, (1, 2), (1, 0), 0.001, 244),
    ('pool1_ms', 'pool1_fc', 1, 1, 0, 1, L, (1, 2), (1, 0), 0.01, 281),
    ('conv2_1', 'pool1', 3, 1, 1, 1, 128, (0, 0), (1, 0), 0, 305),
    ('conv2_2', 'conv2_1', 3, 1, 1, 1, 128, (0, 0), (1, 0), 0, 326),
    ('pool2_conv', 'pool2', 3, 2, 1, 1, 128, (1, 2), (1, 0), 0.001, 360),
    ('pool2_fc', 'pool2_conv', 1, 1, 0, 1, 128, (1, 2), (1, 0), 0.001, 399),
    ('pool2_ms', 'pool2_fc', 1, 1, 0, 1, L, (1, 2), (1, 0), 0.01, 436),
    ('conv3_1', 'pool2', 3, 1, 1, 1, 256, (0, 0), (1, 0), 0, 460),
    ('conv3_2', 'conv3_1', 3, 1, 1, 1, 256, (0, 0), (1, 0), 0, 481),
    ('conv3_3', 'conv3_2', 3, 1, 1, 1, 256, (0, 0), (1, 0), 0, 502),
    ('pool3_conv', 'pool3', 3, 1, 1, 1, 128, (1, 2), (1, 0), 0.001, 536),
    ('pool3_fc', 'pool3_conv', 1, 1, 0, 1, 128, (1, 2), (1, 0), 0.001, 575),
    ('pool3_ms', 'pool3_fc', 1, 1, 0, 1, L, (1, 2), (1, 0), 0, 613),  # No filler: constant 0.
    ('conv4_1', 'pool3', 3, 1, 1, 1, 512, (0, 0), (1, 0), 0, 629),
    ('conv4_2', 'conv4_1', 3, 1, 1, 1, 512, (0, 0), (1, 0), 0, 650),
    ('conv4_3', 'conv4_2', 3, 1, 1, 1, 512, (0, 0), (1, 0), 0, 671),
    ('pool4_conv', 'pool4', 3, 1, 1, 1, 128, (1, 2), (1, 0), 0.001, 705),
    ('pool4_fc', 'pool4_conv', 1, 1, 0, 1, 128, (1, 2), (1, 0), 0.005, 744),
    ('pool4_ms', 'pool4_fc', 1, 1, 0, 1, L, (1, 2), (1, 0), 0.01, 782),
    ('conv5_1', 'pool4', 3, 1, 2, 2, 512, (0, 0), (1, 0), 0, 806),
    ('conv5_2', 'conv5_1', 3, 1, 2, 2, 512, (0, 0), (1, 0), 0, 829),
    ('conv5_3', 'conv5_2', 3, 1, 2, 2, 512, (0, 0), (1, 0), 0, 852),
    ('fc6', 'pool5a', 3, 1, 12, 12, 1024, (0, 0), (1, 0), 0, 903),
    ('fc7', 'fc6', 1, 1, 0, 1, 1024, (0, 0), (1, 0), 0, 935),
    ('fc8_voc12', 'fc7', 1, 1, 0, 1, L, (0, 0), (1, 0), 0.01, 964),  # fc8_${EXP}.
)

# config/DeepLab-MSc/train.prototxt: the same MSc layers (names 1 line up,
# pool3+ 1-2 lines up), trunk weight_decay 0 / 0 (moot at blobs_lr 0), v1
# DeepLab's fc6 / fc7, and fc8_pascal trained at 1 / 2.
MSC = (
    ('data_conv', 'data', 3, 8, 1, 1, 128, (1, 2), (1, 0), 0.001, 46),
    ('data_fc', 'data_conv', 1, 1, 0, 1, 128, (1, 2), (1, 0), 0.001, 85),
    ('data_ms', 'data_fc', 1, 1, 0, 1, L, (1, 2), (1, 0), 0.01, 123),
    ('conv1_1', 'data', 3, 1, 1, 1, 64, (0, 0), (0, 0), 0, 150),
    ('conv1_2', 'conv1_1', 3, 1, 1, 1, 64, (0, 0), (0, 0), 0, 171),
    ('pool1_conv', 'pool1', 3, 4, 1, 1, 128, (1, 2), (1, 0), 0.001, 205),
    ('pool1_fc', 'pool1_conv', 1, 1, 0, 1, 128, (1, 2), (1, 0), 0.001, 244),
    ('pool1_ms', 'pool1_fc', 1, 1, 0, 1, L, (1, 2), (1, 0), 0.01, 281),
    ('conv2_1', 'pool1', 3, 1, 1, 1, 128, (0, 0), (0, 0), 0, 305),
    ('conv2_2', 'conv2_1', 3, 1, 1, 1, 128, (0, 0), (0, 0), 0, 326),
    ('pool2_conv', 'pool2', 3, 2, 1, 1, 128, (1, 2), (1, 0), 0.001, 360),
    ('pool2_fc', 'pool2_conv', 1, 1, 0, 1, 128, (1, 2), (1, 0), 0.001, 399),
    ('pool2_ms', 'pool2_fc', 1, 1, 0, 1, L, (1, 2), (1, 0), 0.01, 436),
    ('conv3_1', 'pool2', 3, 1, 1, 1, 256, (0, 0), (0, 0), 0, 459),
    ('conv3_2', 'conv3_1', 3, 1, 1, 1, 256, (0, 0), (0, 0), 0, 480),
    ('conv3_3', 'conv3_2', 3, 1, 1, 1, 256, (0, 0), (0, 0), 0, 501),
    ('pool3_conv', 'pool3', 3, 1, 1, 1, 128, (1, 2), (1, 0), 0.001, 535),
    ('pool3_fc', 'pool3_conv', 1, 1, 0, 1, 128, (1, 2), (1, 0), 0.001, 574),
    ('pool3_ms', 'pool3_fc', 1, 1, 0, 1, L, (1, 2), (1, 0), 0, 612),  # No filler.
    ('conv4_1', 'pool3', 3, 1, 1, 1, 512, (0, 0), (0, 0), 0, 627),
    ('conv4_2', 'conv4_1', 3, 1, 1, 1, 512, (0, 0), (0, 0), 0, 648),
    ('conv4_3', 'conv4_2', 3, 1, 1, 1, 512, (0, 0), (0, 0), 0, 669),
    ('pool4_conv', 'pool4', 3, 1, 1, 1, 128, (1, 2), (1, 0), 0.001, 703),
    ('pool4_fc', 'pool4_conv', 1, 1, 0, 1, 128, (1, 2), (1, 0), 0.005, 742),
    ('pool4_ms', 'pool4_fc', 1, 1, 0, 1, L, (1, 2), (1, 0), 0.01, 780),
    ('conv5_1', 'pool4', 3, 1, 2, 2, 512, (0, 0), (0, 0), 0, 803),
    ('conv5_2', 'conv5_1', 3, 1, 2, 2, 512, (0, 0), (0, 0), 0, 826),
    ('conv5_3', 'conv5_2', 3, 1, 2, 2, 512, (0, 0), (0, 0), 0, 849),
    ('fc6', 'pool5', 4, 1, 6, 4, 4096, (0, 0), (0, 0), 0, 887),
    ('fc7', 'fc6', 1, 1, 0, 1, 4096, (0, 0), (0, 0), 0, 919),
    ('fc8_pascal', 'fc7', 1, 1, 0, 1, L, (1, 2), (1, 0), 0.01, 949),
)

# Pools (kernel, stride, pad; Caffe ceil mode), both prototxts: pool1 lines
# 195-198, pool2 350-353, pool3 525-528, pool4 693-698 (MSc-LargeFOV 695-698).
POOLS = {'pool1': (3, 2, 1), 'pool2': (3, 2, 1), 'pool3': (3, 2, 1), 'pool4': (3, 1, 1)}
CHANNELS = {'data': 3, 'pool1': 64, 'pool2': 128, 'pool3': 256, 'pool4': 512,
            'pool5': 512, 'pool5a': 512}

RELEASES = {'msc_largefov': (voc_msc_largefov, MSC_LARGEFOV),
            'msc': (voc_msc, MSC)}


def _module(name):
  """Our module path of a Caffe layer."""
  if name.startswith('conv'):
    return f'trunk/{name}'
  if name.startswith(('data_', 'pool')):
    return f'multilayer/{name}'
  return {'fc6': 'head/branch0_hidden0', 'fc7': 'head/branch0_hidden1'}.get(
      name, 'head/branch0_classifier')


def _in_channels(table, row):
  widths = {r[0]: r[6] for r in table}
  return CHANNELS.get(row[1], widths.get(row[1]))


@pytest.mark.parametrize('release', sorted(RELEASES))
def test_variable_shapes_are_the_prototxts(release):
  config_module, table = RELEASES[release]
  shapes = models.variable_shapes(config_module.get_config())
  for row in table:
    name, _, kernel, _, _, _, width, *_, line = row
    path = f'params/{_module(name)}'
    want = (kernel, kernel, _in_channels(table, row), width)
    assert shapes[f'{path}/kernel'] == want, (name, line)
    assert shapes[f'{path}/bias'] == (width,), (name, line)
  ours = {p.rsplit('/', 1)[0] for p in shapes}
  assert ours == {f'params/{_module(r[0])}' for r in table}  # Nothing more, nothing less.


@pytest.mark.parametrize('release', sorted(RELEASES))
def test_optimizer_rates_and_decay_are_blobs_lr_and_weight_decay(release):
  config_module, table = RELEASES[release]
  config = tiny.get_config(config_module)  # Same module names, small arrays.
  model = models.build(config)
  params = model.init(jax.random.key(0), jnp.zeros((1, 33, 33, 3), jnp.uint8),
                      train=False)['params']
  mults = optim.lr_multipliers(params, config.optim, classifiers=models.classifier_paths(config))
  config.optim.weight_decay = 0.5
  tx, schedule = optim.create_optimizer(config.optim, config.num_train_steps, classifiers=models.classifier_paths(config))
  zeros = jax.tree_util.tree_map(jnp.zeros_like, params)
  updates, _ = tx.update(zeros, tx.init(params), params)  # Only weight decay moves.
  lr = float(schedule(0))
  for name, *_, blobs_lr, decay, _, line in table:
    node = _module(name).split('/')
    get = lambda tree: tree[node[0]][node[1]]  # pylint: disable=cell-var-from-loop
    assert (get(mults)['kernel'], get(mults)['bias']) == blobs_lr, (name, line)
    # Caffe: w -= base_lr * blobs_lr * (grad + weight_decay * decay_mult * w).
    want = -lr * blobs_lr[0] * 0.5 * (decay[0] if blobs_lr[0] else 0) * get(params)['kernel']
    np.testing.assert_allclose(get(updates)['kernel'], want, rtol=1e-6, atol=1e-12,
                               err_msg=f'{name} (line {line})')
    np.testing.assert_array_equal(get(updates)['bias'], 0)  # weight_decay 0 on biases.


def _caffe_size(n, kernel, stride, pad, dilation=1, ceil=False):
  span = n + 2 * pad - dilation * (kernel - 1) - 1
  return (-(-span // stride) if ceil else span // stride) + 1


@pytest.mark.parametrize('train,size', [(True, 321), (False, 513)])
def test_branch_sizes_follow_stride_pad_and_hole(train, size):
  """321 -> 41 from every branch in training (train.prototxt's header
  comment, lines 9-16); test.prototxt's stride-1 branches and zooms give
  513 -> 513 (its crop_size, line 27)."""
  config = tiny.get_config(voc_msc_largefov)
  model = models.build(config)
  images = jnp.zeros((1, size, size, 3), jnp.uint8)
  variables = model.init(jax.random.key(0), images, train=False)
  out, state = model.apply(variables, images, train=train, rngs={'dropout': jax.random.key(1)},
                           capture_intermediates=True, mutable=['intermediates'])
  inner = state['intermediates']['multilayer']
  sizes = {'data': size}
  for name in ('pool1', 'pool2', 'pool3', 'pool4'):
    previous = sizes['data' if name == 'pool1' else f'pool{int(name[-1]) - 1}']
    sizes[name] = _caffe_size(previous, *POOLS[name], ceil=True)
  for name, bottom, kernel, stride, pad, hole, *_, line in MSC_LARGEFOV:
    if not name.startswith(('data_', 'pool')):
      continue
    stride = stride if train else 1  # test.prototxt: every {b}_conv at stride 1.
    sizes[name] = _caffe_size(sizes[bottom], kernel, stride, pad, hole)
    got = inner[name]['__call__'][0].shape
    assert got[1:3] == (sizes[name],) * 2, (name, line, got)
  want = 41 if train else 513
  assert out.shape == (1, want, want, config.dataset.num_classes)
  for b in multilayer.BRANCHES:  # Training: all on 41; test: Interp zoom (n - 1) z + 1 = 513.
    n = sizes[f'{b.name}_ms']
    assert (n if train else (n - 1) * b.zoom + 1) == want, b


def test_fc_fusion_is_the_sum_of_fc8_and_the_five_branches():
  """fc_fusion: ELTWISE SUM of data_ms, pool1_ms .. pool4_ms and fc8 (lines 985-998)."""
  config = tiny.get_config(voc_msc_largefov)
  config.model.head.dropout = 0.0
  config.model.multilayer.dropout = 0.0
  model = models.build(config)
  images = jax.random.randint(jax.random.key(2), (1, 65, 65, 3), 0, 255).astype(jnp.uint8)
  variables = model.init(jax.random.key(0), images, train=False)
  variables = jax.tree_util.tree_map(  # Away from the zero-initialised pool3_ms.
      lambda a: a + 0.05 * jax.random.normal(jax.random.key(3), a.shape), variables)
  out, state = model.apply(variables, images, train=True, rngs={'dropout': jax.random.key(1)},
                           capture_intermediates=True, mutable=['intermediates'])
  inner = state['intermediates']
  fc8 = inner['head']['__call__'][0]
  total = fc8 + sum(inner['multilayer'][f'{b.name}_ms']['__call__'][0]
                    for b in multilayer.BRANCHES)
  np.testing.assert_allclose(out, total, rtol=1e-5, atol=1e-5)
  # At test the same sum, zoomed: on the output-stride-8 grid it is the training map.
  dense = model.apply(variables, images, train=False)
  np.testing.assert_allclose(dense[:, ::8, ::8], out, rtol=1e-4, atol=1e-4)


def test_initialisation_follows_the_fillers():
  """gaussian std per row; pool3_ms (line 613) has no weight_filler: Caffe's constant 0."""
  module = multilayer.MultiLayerScores(L, (128, 128))
  features = {name: jnp.zeros((1, 9, 9, c))
              for name, c in zip(multilayer.READS, (3, 64, 128, 256, 512))}
  params = module.init(jax.random.key(0), features, jnp.zeros((1, 9, 9, L)), train=True)['params']
  for name, *_, std, line in MSC_LARGEFOV:
    if name not in params:
      continue
    kernel = np.asarray(params[name]['kernel'])
    np.testing.assert_array_equal(params[name]['bias'], 0)
    if std == 0:
      np.testing.assert_array_equal(kernel, 0, err_msg=f'{name} (line {line})')
    else:
      assert abs(kernel.std() / std - 1) < 0.1, (name, line, kernel.std())


@pytest.mark.parametrize('release,tag', [('msc_largefov', 'voc12'), ('msc', 'pascal')])
def test_release_caffemodel_converts_by_layer_name(tmp_path, release, tag):
  """A V1-format file (the 2015 release's) with the prototxt's layer names."""
  config_module, table = RELEASES[release]
  config = tiny.get_config(config_module)
  variables = fake_caffe.random_variables(config, seed=4)
  layers = fake_caffe.layers_from_flax(variables, config, 'deeplab_v2_vgg', classifier_tag=tag)
  names = [layer.name for layer in layers if layer.blobs]
  assert names == [r[0] for r in table]  # The prototxt's names in its order.
  path = fake_caffe.write_caffemodel(str(tmp_path / 'msc.caffemodel'), layers, legacy=True)
  got = caffe.to_flax(caffe.read_caffemodel(path), config)
  for a, b in zip(jax.tree_util.tree_leaves(got['params']),
                  jax.tree_util.tree_leaves(variables['params'])):
    np.testing.assert_array_equal(a, b)
  model = models.build(config)
  images = jax.random.randint(jax.random.key(5), (1, 41, 41, 3), 0, 255).astype(jnp.uint8)
  np.testing.assert_allclose(model.apply({'params': got['params']}, images, train=False),
                             model.apply({'params': variables['params']}, images, train=False),
                             rtol=1e-6, atol=1e-6)


def test_largefov_file_starts_the_msc_stage_with_fresh_branches():
  """The MSc stage fine-tunes a trained LargeFOV: its file has no MSc layers;
  they are initialised afresh, everything else comes from the file."""
  plain = tiny.get_config(voc_largefov)
  config = tiny.get_config(voc_msc_largefov)
  largefov = fake_caffe.random_variables(plain, seed=6)
  layers = fake_caffe.layers_from_flax(largefov, plain, 'deeplab_v2_vgg')
  converted = caffe.convert(layers, config)
  msc = {p for p in caffe.target_shapes(config) if p.startswith('params/multilayer/')}
  assert converted.absent == frozenset(msc) and len(msc) == 30
  full, reinit = convert_lib.assemble(converted, config)
  assert reinit == sorted(msc)
  np.testing.assert_array_equal(full['params']['head']['branch0_classifier']['kernel'],
                                largefov['params']['head']['branch0_classifier']['kernel'])
  with pytest.raises(UserError, match='multilayer/data_conv'):
    caffe.to_flax(layers, config)  # Strict: the branches are missing.


def test_msc_file_for_a_plain_config_names_the_msc_config():
  config = tiny.get_config(voc_msc_largefov)
  layers = fake_caffe.layers_from_flax(fake_caffe.random_variables(config), config,
                                       'deeplab_v2_vgg')
  with pytest.raises(UserError, match='voc_msc_largefov.py'):
    caffe.to_flax(layers, tiny.get_config(voc_largefov))


def test_recipe_is_the_solver_and_data_layer():
  """solver.prototxt lines 3-12, train.prototxt lines 30-38, test.prototxt line 27."""
  for config_module, batch in ((voc_msc_largefov, 30), (voc_msc, 20)):
    config = config_module.get_config()
    assert config.batch_size == batch  # batch_size (MSc-LargeFOV line 30, MSc line 29).
    assert (config.input.crop_size, config.input.flip, config.input.eval_size) == (321, True, 513)
    o = config.optim
    assert (o.schedule, o.base_lr, o.step_gamma, o.step_every) == ('step', 1e-3, 0.1, 2000)
    assert (config.num_train_steps, o.momentum, o.weight_decay) == (6000, 0.9, 5e-4)
    assert (config.loss.label_offset, config.loss.normalize) == (0, 'batch')
    assert config.model.backbone.pool5a == (config_module is voc_msc_largefov)


def test_msc_stage_trains_only_the_branches_and_evaluates(tmp_path, data_dir):
  """The tiny MSc-LargeFOV stage end to end: trunk and fc6-fc8 stay as they
  start (blobs_lr 0), the branches move; evaluation takes the full-size map."""
  from deeplab_jax import evaluation, train_lib, train_step  # pylint: disable=import-outside-toplevel
  config = tiny.get_config(voc_msc_largefov)
  config.dataset.data_dir = data_dir
  config.num_train_steps = 2
  config.checkpoint_every_steps = 2
  config.eval.trimap_widths = ()
  config.eval.num_overlays = 0
  workdir = str(tmp_path / 'run')
  state = jax.device_get(train_lib.train_and_evaluate(config, workdir))
  model = models.build(config)
  tx, _ = optim.create_optimizer(config.optim, config.num_train_steps, classifiers=models.classifier_paths(config))
  # What training starts from (its compile options change float rounding).
  initial = jax.device_get(train_step.create_train_state(config, model, tx,
                                                         sharding.make_mesh()))
  for part in ('trunk', 'head'):
    for a, b in zip(jax.tree_util.tree_leaves(initial.params[part]),
                    jax.tree_util.tree_leaves(state.params[part])):
      np.testing.assert_array_equal(a, b)
  for name in ('data_ms', 'pool4_fc'):  # lr 1e-3 for 2 steps: small, but moved.
    assert not np.array_equal(initial.params['multilayer'][name]['bias'],
                              state.params['multilayer'][name]['bias'])
  summary = evaluation.evaluate_checkpoint(config, workdir)
  assert 0.0 <= summary['mean_iou'] <= 1.0
