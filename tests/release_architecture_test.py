"""The VGG-16 releases' architecture and recipe, held to their own prototxts.

Every row below was read from the official files, not from our code or the
PyTorch twin in deeplab_jax/testing/torch_deeplab.py (which shares our assumptions):

  V1   TheLegendAli/DeepLab-Context voc12/vgg128_noup/{train,test,solver}.prototxt
       (v1 "DeepLab", fc6 4x4), line numbers at its first commit;
  LFOV corenel/deeplab-public exper/voc12/config/deeplab_largeFOV/
       {train,test,solver}.prototxt (v1 DeepLab-LargeFOV).

The model's pools and convolutions are read back from its traced program
(the reduce_window and conv_general_dilated it really runs), and output sizes
are computed with Caffe's own rules, written out here from Caffe's
PoolingLayer::Reshape and DeepLab's InterpLayer::Reshape.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import voc_deeplab_v1
from configs import voc_largefov
from configs import voc_largefov_v1
from configs import tiny
from deeplab_jax import inference
from deeplab_jax import losses
from deeplab_jax import models
from deeplab_jax import optim
from deeplab_jax.models import resize

# (layer, kernel, stride, pad, prototxt line of the layer's name).
V1_TRAIN_POOLS = [('pool1', 2, 2, 1, 106), ('pool2', 2, 2, 1, 160), ('pool3', 2, 2, 1, 235),
                  ('pool4', 2, 1, 0, 310), ('pool5', 3, 1, 1, 392)]
V1_TEST_POOLS = [('pool1', 2, 2, 1, 85), ('pool2', 2, 2, 1, 139), ('pool3', 2, 2, 1, 214),
                 ('pool4', 2, 1, 1, 289), ('pool5', 3, 1, 1, 371)]
LFOV_POOLS = [('pool1', 3, 2, 1, 90), ('pool2', 3, 2, 1, 144), ('pool3', 3, 2, 1, 219),
              ('pool4', 3, 1, 1, 294), ('pool5', 3, 1, 1, 375)]

# (layer, kernel, hole (dilation), pad, num_output, blobs_lr weight / bias,
#  weight_decay weight / bias, line). conv1_1 .. conv4_3: 3x3 pad 1;
# conv5_x: pad 2 hole 2 ("#pad: 1" above them).
_VGG = [('conv1_1', 64), ('conv1_2', 64), ('conv2_1', 128), ('conv2_2', 128),
        ('conv3_1', 256), ('conv3_2', 256), ('conv3_3', 256), ('conv4_1', 512),
        ('conv4_2', 512), ('conv4_3', 512), ('conv5_1', 512), ('conv5_2', 512),
        ('conv5_3', 512)]
V1_CONV_LINES = (64, 85, 118, 139, 172, 193, 214, 247, 268, 289, 323, 346, 369)
LFOV_CONV_LINES = (48, 69, 102, 123, 156, 177, 198, 231, 252, 273, 306, 329, 352)


def _convs(lines, head):
  rows = [(name, 3, 2 if name.startswith('conv5') else 1, 2 if name.startswith('conv5') else 1,
           width, (1, 2), (1, 0), line) for (name, width), line in zip(_VGG, lines)]
  return rows + head


V1_CONVS = _convs(V1_CONV_LINES, [('fc6', 4, 4, 6, 4096, (1, 2), (1, 0), 407),
                                  ('fc7', 1, 1, 0, 4096, (1, 2), (1, 0), 439),
                                  ('fc8_pascal', 1, 1, 0, 21, (10, 20), (1, 0), 469)])
LFOV_CONVS = _convs(LFOV_CONV_LINES, [('fc6', 3, 12, 12, 1024, (1, 2), (1, 0), 403),
                                      ('fc7', 1, 1, 0, 1024, (1, 2), (1, 0), 435),
                                      ('fc8_voc12', 1, 1, 0, 21, (10, 20), (1, 0), 465)])

# Our parameter path of each Caffe layer (convert/caffe/names.py's name table).
OUR_PATH = {'fc6': 'head/branch0_hidden0', 'fc7': 'head/branch0_hidden1',
            'fc8_pascal': 'head/branch0_classifier', 'fc8_voc12': 'head/branch0_classifier'}


def caffe_pool_out(size, kernel, stride, pad):
  """Caffe PoolingLayer::Reshape: ceil mode, then drop a window starting in the padding."""
  out = int(math.ceil(float(size + 2 * pad - kernel) / stride)) + 1
  if pad > 0 and (out - 1) * stride >= size + pad:
    out -= 1
  return out


def caffe_conv_out(size, kernel, hole, pad):
  extent = (kernel - 1) * hole + 1
  return (size + 2 * pad - extent) + 1


def caffe_net_out(size, pools, convs):
  """The score map's side for an input side, through the release's layers."""
  pool_after = {'conv1_2': 0, 'conv2_2': 1, 'conv3_3': 2, 'conv4_3': 3, 'conv5_3': 4}
  for name, kernel, hole, pad, *_ in convs:
    size = caffe_conv_out(size, kernel, hole, pad)
    if name in pool_after:
      _, k, s, p, _ = pools[pool_after[name]]
      size = caffe_pool_out(size, k, s, p)
  return size


def _equations(jaxpr):
  """Every equation of `jaxpr`, nested calls (pjit, custom_vjp) included, in order."""
  for eqn in jaxpr.eqns:
    subs = [v for v in eqn.params.values() if hasattr(v, 'eqns') or hasattr(v, 'jaxpr')]
    if subs:
      for sub in subs:
        yield from _equations(getattr(sub, 'jaxpr', sub))
    else:
      yield eqn


def _traced_ops(config, size, train):
  model = models.build(config)
  x = jax.ShapeDtypeStruct((1, size, size, 3), jnp.uint8)
  variables = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros(x.shape, x.dtype),
                                                train=False))
  fn = lambda v, im: model.apply(v, im, train=train, rngs={'dropout': jax.random.key(0)})
  jaxpr = jax.make_jaxpr(fn)(variables, x)
  pools, convs = [], []
  for eqn in _equations(jaxpr.jaxpr):
    p = eqn.params
    shapes = [v.aval.shape for v in eqn.invars]
    if eqn.primitive.name == 'reduce_window_max':
      pools.append((p['window_dimensions'][1], p['window_strides'][1], p['padding'][1][0]))
    elif eqn.primitive.name == 'conv_general_dilated':
      convs.append((shapes[1][0], p['rhs_dilation'][0], p['padding'][0][0], shapes[1][-1]))
    elif (eqn.primitive.name == 'dot_general' and len(shapes[0]) == 4 and len(shapes[1]) == 2
          and p['dimension_numbers'][0] == ((3,), (0,))):
      convs.append((1, 1, 0, shapes[1][1]))  # A 1x1 convolution, run as a dot.
  return pools, convs


def _full(config_module):
  config = config_module.get_config()
  config.model.atrous_impl = 'dilation'  # One conv_general_dilated per layer to read back.
  config.model.head.dropout = 0.0
  return config


@pytest.mark.parametrize('config_module, train, rows', [
    (voc_deeplab_v1, True, V1_TRAIN_POOLS), (voc_deeplab_v1, False, V1_TEST_POOLS),
    (voc_largefov, True, LFOV_POOLS), (voc_largefov, False, LFOV_POOLS)])
def test_pools_are_the_prototxts(config_module, train, rows):
  pools, _ = _traced_ops(_full(config_module), 65, train)
  assert pools == [(k, s, p) for _, k, s, p, _ in rows]


@pytest.mark.parametrize('config_module, rows', [(voc_deeplab_v1, V1_CONVS),
                                                 (voc_largefov, LFOV_CONVS)])
def test_convolutions_are_the_prototxts(config_module, rows):
  _, convs = _traced_ops(_full(config_module), 65, False)
  assert convs == [(k, hole, pad, width) for _, k, hole, pad, width, *_ in rows]


@pytest.mark.parametrize('config_module, rows', [(voc_deeplab_v1, V1_CONVS),
                                                 (voc_largefov, LFOV_CONVS)])
def test_learning_rate_and_decay_multipliers_are_the_prototxts(config_module, rows):
  config = _full(config_module)
  shapes = jax.eval_shape(lambda: models.build(config).init(
      jax.random.key(0), jnp.zeros((1, 33, 33, 3), jnp.uint8), train=False))['params']
  mults = optim.lr_multipliers(shapes, config.optim, classifiers=models.classifier_paths(config))
  for name, *_, (lr_w, lr_b), (decay_w, decay_b), line in rows:
    path = OUR_PATH.get(name, f'trunk/{name}').split('/')
    leaf = mults
    for key in path:
      leaf = leaf[key]
    assert (leaf['kernel'], leaf['bias']) == (lr_w, lr_b), (name, line)
    # weight_decay 1 / 0: decay on the weight only (optim applies it to kernels).
    assert (decay_w, decay_b) == (1, 0), (name, line)


@pytest.mark.parametrize('config_module, train, pools, size, expected', [
    # v1 train.prototxt header: a 306 input (8 k + 2, k = 38) gives 39 cells.
    (voc_deeplab_v1, True, V1_TRAIN_POOLS, 306, 39),
    # test.prototxt: 514 -> 67 cells, zoomed x8 to 529, cropped 7 + 8 -> 514.
    (voc_deeplab_v1, False, V1_TEST_POOLS, 514, 67),
    (voc_deeplab_v1, True, V1_TRAIN_POOLS, 307, 39),
    (voc_deeplab_v1, False, V1_TEST_POOLS, 307, 41),
    (voc_largefov, True, LFOV_POOLS, 321, 41),
    (voc_largefov, False, LFOV_POOLS, 513, 65),
    (voc_largefov, False, LFOV_POOLS, 500, 64)])
def test_output_sizes_follow_caffe(config_module, train, pools, size, expected):
  config = _full(config_module)
  convs = V1_CONVS if config_module is voc_deeplab_v1 else LFOV_CONVS
  assert caffe_net_out(size, pools, convs) == expected
  model = models.build(config)
  out = jax.eval_shape(lambda: model.init_with_output(
      {'params': jax.random.key(0), 'dropout': jax.random.key(1)},
      jnp.zeros((1, size, size + 1, 3), jnp.uint8), train=train)[0])
  assert out.shape[1:3] == (expected, caffe_net_out(size + 1, pools, convs))


def test_v1_recipe_is_the_release():
  config = voc_deeplab_v1.get_config()
  assert (config.input.crop_size, config.input.eval_size, config.batch_size) == (306, 514, 20)
  assert tuple(config.input.scale_range) == (1.0, 1.0) and not config.input.scales
  assert config.loss.normalize == 'batch'  # SoftmaxWithLoss: loss / batch_weight.
  assert (config.optim.schedule, config.optim.base_lr, config.optim.step_every,
          config.optim.step_gamma, config.num_train_steps) == ('step', 1e-3, 2000, 0.1, 6000)
  assert (config.optim.momentum, config.optim.weight_decay) == (0.9, 5e-4)
  crf = config.crf
  assert (crf.w1, crf.sigma_alpha, crf.sigma_beta, crf.w2, crf.sigma_gamma) == (5, 50, 10, 3, 3)


def test_v1_label_shrink_reads_the_pixel_under_each_cell():
  """label_shrink: pad_beg -1, shrink 8, corners aligned: cell j <- pixel 8 j + 1."""
  config = voc_deeplab_v1.get_config()
  offset = losses.check_label_offset(config.loss, config.model.align_corners)
  labels = jnp.arange(306)[None, :, None] * jnp.ones((1, 1, 306), jnp.int32)
  shrunk = losses.loss_labels(losses.drop_label_border(labels, offset), (1, 39, 39, 21),
                              config.loss.upsample_logits, config.model.align_corners)
  # Interp::Reshape: in_eff = 306 + pad_beg + pad_end = 305; out = (305 - 1) / 8 + 1.
  assert shrunk.shape == (1, 39, 39) and (305 - 1) // 8 + 1 == 39
  np.testing.assert_array_equal(shrunk[0, :, 0], 1 + 8 * np.arange(39))


def test_v1_test_output_is_zoomed_then_cropped():
  """fc8_interp zoom 8 on 67 cells: (67 - 1) * 8 + 1 = 529 pixels, corners
  aligned; fc8_crop pad_beg -7, pad_end -8 leaves pixels 7 .. 521 = 514."""
  config = voc_deeplab_v1.get_config()
  options = inference.options_from_config(config)
  assert options.score_offset == 7
  cells = np.random.default_rng(0).normal(size=(1, 67, 67, 2)).astype(np.float32)
  zoomed = np.asarray(resize.resize_bilinear(jnp.asarray(cells), (529, 529), True))
  caffe = zoomed[:, 7:529 - 8, 7:529 - 8]
  ours = inference.logits_at_image_size(lambda x: jnp.asarray(cells),
                                        jnp.zeros((1, 514, 514, 3)), options)
  assert ours.shape == (1, 514, 514, 2)
  np.testing.assert_allclose(np.asarray(ours), caffe, rtol=1e-5, atol=1e-5)


def test_offsets_need_caffes_grid():
  config = voc_deeplab_v1.get_config()
  config.model.align_corners = False
  with pytest.raises(Exception, match='align_corners'):
    losses.check_label_offset(config.loss, config.model.align_corners)
  with pytest.raises(Exception, match='align_corners'):
    inference.options_from_config(config)


def test_v1_largefov_recipe_is_the_release():
  config = voc_largefov_v1.get_config()
  assert (config.input.crop_size, config.input.eval_size, config.batch_size) == (321, 513, 30)
  assert config.loss.normalize == 'batch' and config.loss.label_offset == 0
  assert (config.optim.schedule, config.optim.base_lr, config.optim.step_every,
          config.optim.step_gamma, config.num_train_steps) == ('step', 1e-3, 2000, 0.1, 6000)
  crf = config.crf
  assert (crf.w1, crf.sigma_alpha, crf.sigma_beta, crf.w2, crf.sigma_gamma) == (4, 49, 5, 3, 3)
  assert crf.normalization == 'after'


def test_v1_deeplab_trains_and_evaluates_end_to_end(tmp_path, data_dir):
  """The tiny v1 DeepLab (release pools, label and score offsets) through
  train.py's and evaluate.py's library calls: 2 steps, then val mIoU."""
  from deeplab_jax import evaluation  # pylint: disable=import-outside-toplevel
  from deeplab_jax import train_lib  # pylint: disable=import-outside-toplevel
  config = tiny.get_config(voc_deeplab_v1)
  config.dataset.data_dir = data_dir
  config.num_train_steps = 2
  config.checkpoint_every_steps = 2
  config.batch_size = 8
  state = train_lib.train_and_evaluate(config, str(tmp_path))
  assert int(state.step) == 2
  summary = evaluation.evaluate_checkpoint(config, str(tmp_path))
  assert 0.0 <= summary['mean_iou'] <= 1.0
  assert summary['inference']['score_offset'] == 7


def test_v1_deeplab_release_converts_and_gives_the_test_prototxts_size(tmp_path):
  """A generated v1 DeepLab caffemodel (conv1_1 .. fc7, fc8_pascal as the
  release names them, fc6 4 x 4) converts leaf for leaf; the converted model's
  test output has the test prototxt's geometry (67 cells at 514 on the full
  model, as computed above; here the tiny widths at the tiny eval size)."""
  from deeplab_jax.convert import caffe  # pylint: disable=import-outside-toplevel
  from deeplab_jax.testing import fake_caffe  # pylint: disable=import-outside-toplevel
  config = tiny.get_config(voc_deeplab_v1)
  variables = fake_caffe.random_variables(config, seed=3)
  layers = fake_caffe.layers_from_flax(variables, config, 'deeplab_v2_vgg',
                                       classifier_tag='pascal')
  assert {'fc6', 'fc7', 'fc8_pascal'} <= {l.name for l in layers}
  fc6 = next(l for l in layers if l.name == 'fc6')
  assert fc6.blobs[0].shape[2:] == (4, 4)  # (O, I, kh, kw): kernel_size 4.
  path = str(tmp_path / 'train_iter_6000.caffemodel')
  fake_caffe.write_caffemodel(path, layers, legacy=True)  # v1 files are V1LayerParameter.
  converted = caffe.to_flax(caffe.read_caffemodel(path), config)
  for (key, got), want in zip(jax.tree_util.tree_leaves_with_path(converted['params']),
                              jax.tree_util.tree_leaves(variables['params'])):
    np.testing.assert_array_equal(np.asarray(got), np.asarray(want), err_msg=str(key))
  size = config.input.eval_size
  model = models.build(config)
  logits = model.apply({'params': converted['params']},
                       jnp.zeros((1, size, size, 3), jnp.uint8), train=False)
  assert logits.shape[1] == caffe_net_out(size, V1_TEST_POOLS, V1_CONVS)
  options = inference.options_from_config(config)
  full = inference.logits_at_image_size(
      lambda x: model.apply({'params': converted['params']}, x, train=False),
      jnp.zeros((1, size, size, 3)), options)
  assert full.shape[1:3] == (size, size)
