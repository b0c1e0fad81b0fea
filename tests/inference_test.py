"""Inference modes: sliding windows vs whole image, flip and scale averaging,
option validation, and the sharded predict function.

Exactness of sliding == whole: window logits equal the whole image's logits
when the network's outputs over a window are those of the whole image (a
receptive field inside the window, windows on the stride-8 grid) AND the
bilinear upsampling of a window's map reads the same source positions as the
whole map's. With align_corners=True, sides of 8k + 1 pixels and window
starts that are multiples of 8, both hold: pixel p reads map position p / 8
in either, so the only difference is float rounding of the overlap averages
(tolerance 1e-6 on logits of magnitude <= 1). With half-pixel sampling
(align_corners=False) a window clamps its outermost 4 pixels to its edge
cell where the whole map interpolates towards the neighbour cell, so the two
agree (1e-6) only away from interior window edges: measured below.
"""

import dataclasses

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from configs import shapes as shapes_config
from configs import tiny as tiny_configs
from deeplab_jax import inference
from deeplab_jax import models
from deeplab_jax import sharding
from deeplab_jax.errors import UserError
from deeplab_jax.models.resize import resize_bilinear, resize_by_scale

NUM_CLASSES = 5
_rng = np.random.default_rng(0)
_MIX = jnp.asarray(_rng.normal(size=(3, NUM_CLASSES)) / 100, jnp.float32)
_BIAS = jnp.asarray(_rng.normal(size=(NUM_CLASSES,)), jnp.float32)


def subsample_apply(x_BxHxWx3):
  """Stride 8, receptive field one pixel: map cell (i, j) sees pixel (8i, 8j).

  ceil(n / 8) cells per side, as the DeepLab models give.
  """
  return jnp.tanh(x_BxHxWx3[:, ::8, ::8] @ _MIX + _BIAS)


def pointwise_apply(x_BxHxWx3):
  """Stride 1 (no upsampling needed), receptive field one pixel."""
  return jnp.tanh(x_BxHxWx3 @ _MIX + _BIAS)


def random_images(shape, seed=0):
  return np.random.default_rng(seed).integers(0, 256, shape, np.uint8)


def infer(apply_fn, images, pad_value=None, **options):
  options = inference.make_options(**options)
  return np.asarray(jax.jit(lambda x: inference.logits_at_image_size(
      apply_fn, x, options, pad_value))(images))


# ---------------------------------------------------------------- windows

def test_window_positions_cover_every_pixel_last_aligned_to_the_end():
  assert inference.window_positions(73, 33, 16) == [0, 16, 32, 40]
  assert inference.window_positions(1024, 513, 342) == [0, 342, 511]
  assert inference.window_positions(2048, 513, 342) == [0, 342, 684, 1026, 1368, 1535]
  assert inference.window_positions(513, 513, 342) == [0]
  assert inference.window_positions(20, 33, 16) == [0]
  counts = inference.window_counts((1024, 2048), (513, 513), (342, 342))
  assert counts.shape == (1024, 2048) and counts.min() == 1
  assert counts[400, 400] == 4 and counts[0, 0] == 1 and counts[600, 2047] == 2


def test_sliding_equals_whole_exactly_on_the_stride8_grid_with_aligned_corners():
  # 73 = 8 * 9 + 1 and 57 = 8 * 7 + 1: not multiples of the stride (16);
  # windows 33 = 8 * 4 + 1 at rows 0, 16, 32, 40 and columns 0, 16, 24.
  images = random_images((2, 73, 57, 3))
  kw = dict(align_corners=True, window=33, stride=16)
  whole = infer(subsample_apply, images, mode='whole', **kw)
  sliding = infer(subsample_apply, images, mode='sliding', **kw)
  assert whole.shape == (2, 73, 57, NUM_CLASSES)
  np.testing.assert_allclose(sliding, whole, rtol=0, atol=1e-6)
  # Not vacuous: a window off the stride-8 grid sees other pixels.
  shifted = infer(subsample_apply, images, mode='sliding', align_corners=True,
                  window=33, stride=12)
  assert np.abs(shifted - whole).max() > 1e-2


@pytest.mark.parametrize('align_corners', [False, True])
def test_sliding_equals_whole_for_a_pointwise_model_also_when_padding(align_corners):
  """Stride 1, no upsampling: exact but for rounding in the overlap average.

  The 20-row images are smaller than the 33-pixel window: padded with
  `pad_value` to 33 rows, the padding's logits cropped off.
  """
  for shape in [(2, 45, 70, 3), (2, 20, 70, 3)]:
    images = random_images(shape, seed=1)
    kw = dict(align_corners=align_corners, window=(33, 24), stride=(16, 10))
    whole = infer(pointwise_apply, images, mode='whole', **kw)
    sliding = infer(pointwise_apply, images, pad_value=(1, 2, 3), mode='sliding', **kw)
    np.testing.assert_allclose(sliding, whole, rtol=0, atol=1e-6)
  with pytest.raises(ValueError, match='pad_value'):
    infer(pointwise_apply, images, mode='sliding', **kw)


def test_sliding_with_half_pixel_sampling_differs_only_next_to_interior_window_edges():
  size, window, stride = (72, 56), (32, 32), (16, 16)
  images = random_images((1, *size, 3), seed=2)
  kw = dict(align_corners=False, window=window, stride=stride)
  diff = np.abs(infer(subsample_apply, images, mode='sliding', **kw)
                - infer(subsample_apply, images, mode='whole', **kw)).max(axis=(0, 3))
  edge = []  # Per axis: pixels within 4 of a window edge inside the image.
  for n, win, step in zip(size, window, stride):
    near = np.zeros(n, bool)
    for start in inference.window_positions(n, win, step):
      if start > 0:
        near[start:start + 4] = True
      if start + win < n:
        near[start + win - 4:start + win] = True
    edge.append(near)
  far = ~edge[0][:, None] & ~edge[1][None, :]
  assert diff[far].max() < 1e-6
  assert diff[~far].max() > 1e-3  # Approximate there, as the docstring says.


# ------------------------------------------------------ the real tiny model

@pytest.fixture(scope='module')
def tiny():
  config = tiny_configs.get_config(shapes_config)
  model = models.build(config)
  variables = jax.jit(lambda x: model.init(jax.random.key(0), x, train=False))(
      jnp.zeros((1, 32, 32, 3), jnp.uint8))
  # Random-init BatchNorm statistics are 0 / 1; perturb the params so the
  # logits vary across the image and across classes.
  leaves, tree = jax.tree_util.tree_flatten(variables)
  keys = jax.random.split(jax.random.key(1), len(leaves))
  variables = jax.tree_util.tree_unflatten(tree, [
      leaf + 0.1 * jax.random.normal(k, leaf.shape) for leaf, k in zip(leaves, keys)])
  return config, model, variables


def test_scale_one_without_flip_is_exactly_apply_then_resize(tiny):
  config, model, variables = tiny
  images = random_images((2, 37, 42, 3), seed=3)
  apply_fn = lambda x: model.apply(variables, x, train=False)
  by_hand = np.asarray(jax.jit(lambda x: resize_bilinear(
      apply_fn(x), x.shape[1:3], config.model.align_corners))(images))
  got = infer(apply_fn, images, align_corners=config.model.align_corners)
  np.testing.assert_array_equal(got, by_hand)


@pytest.mark.parametrize('align_corners', [False, True])
def test_multi_scale_is_the_mean_of_the_scales_resized_to_the_image(tiny, align_corners):
  _, model, variables = tiny
  images = random_images((2, 37, 42, 3), seed=4)
  apply_fn = lambda x: model.apply(variables, x, train=False)
  scales = (0.5, 1.0, 1.25)

  def by_hand(x):
    x = x.astype(jnp.float32)
    return sum(resize_bilinear(apply_fn(resize_by_scale(x, s, align_corners)),
                               x.shape[1:3], align_corners) for s in scales) / 3

  expected = np.asarray(jax.jit(by_hand)(images))
  got = infer(apply_fn, images, scales=scales, align_corners=align_corners)
  np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5)
  single = infer(apply_fn, images, align_corners=align_corners)
  assert np.abs(got - single).max() > 1e-2  # The other scales do count.


def test_flip_is_the_mean_of_the_two_passes(tiny):
  config, model, variables = tiny
  images = random_images((2, 37, 42, 3), seed=5)
  apply_fn = lambda x: model.apply(variables, x, train=False)
  ac = config.model.align_corners

  def by_hand(x):
    plain = resize_bilinear(apply_fn(x), x.shape[1:3], ac)
    mirrored = resize_bilinear(apply_fn(x[:, :, ::-1]), x.shape[1:3], ac)[:, :, ::-1]
    return (plain + mirrored) / 2

  expected = np.asarray(jax.jit(by_hand)(images))
  np.testing.assert_allclose(infer(apply_fn, images, flip=True, align_corners=ac),
                             expected, rtol=0, atol=1e-5)
  # Sliding: the mirrored image gets its own windows, mirrored back.
  kw = dict(mode='sliding', window=24, stride=16, align_corners=ac)
  no_flip = lambda x: infer(apply_fn, x, pad_value=(0, 0, 0), **kw)
  expected = (no_flip(images) + no_flip(images[:, :, ::-1])[:, :, ::-1]) / 2
  np.testing.assert_allclose(infer(apply_fn, images, pad_value=(0, 0, 0), flip=True, **kw),
                             expected, rtol=0, atol=1e-5)


@pytest.mark.parametrize('mode', ['whole', 'sliding'])
def test_flip_of_a_mirror_symmetric_image_gives_mirror_symmetric_logits(tiny, mode):
  _, model, variables = tiny
  half = random_images((2, 37, 21, 3), seed=6)
  images = np.concatenate([half, half[:, :, ::-1]], axis=2)  # 37 x 42, symmetric.
  apply_fn = lambda x: model.apply(variables, x, train=False)
  kw = dict(mode=mode, window=24, stride=16, scales=(0.75, 1.0), pad_value=(9, 9, 9))
  flipped = infer(apply_fn, images, flip=True, **kw)
  np.testing.assert_allclose(flipped, flipped[:, :, ::-1], rtol=0, atol=1e-6)
  plain = infer(apply_fn, images, flip=False, **kw)
  # Without flip the stride-8 grid (6 cells over 42 pixels) is lopsided.
  assert np.abs(plain - plain[:, :, ::-1]).max() > 1e-3


# ---------------------------------------------------------------- options

def test_options_from_config_reads_the_eval_section():
  config = tiny_configs.get_config(shapes_config)
  config.eval = ml_collections.ConfigDict(dict(
      mode='sliding', window=(321, 257), stride=200, scales=(0.5, 1.0), flip=True))
  config.model.align_corners = True
  options = inference.options_from_config(config)
  assert options == inference.InferenceOptions(
      mode='sliding', window=(321, 257), stride=(200, 200), scales=(0.5, 1.0),
      flip=True, align_corners=True)
  del config.eval  # Configs from before the eval section: one whole pass.
  assert inference.options_from_config(config) == inference.InferenceOptions(
      align_corners=True)
  assert inference.make_options(window=321, stride=214).window == (321, 321)
  assert inference.make_options(scales=1.5).scales == (1.5,)


@pytest.mark.parametrize('options, message', [
    (dict(mode='tiles'), r"eval.mode='tiles' is not one of \['whole', 'sliding'\]"),
    (dict(window=(513, 513), stride=(600, 342)), 'eval.stride=.* larger than eval.window'),
    (dict(stride=(0, 342)), r'eval.stride=\(0, 342\) must be positive'),
    (dict(window=-3), 'eval.window=.* must be positive'),
    (dict(window=(513, 513, 3)), 'eval.window=.*pair'),
    (dict(stride='342'), 'eval.stride=.*pair'),
    (dict(window=(513.0, 513)), 'eval.window=.*pair'),
    (dict(scales=(1.0, 0.0)), 'eval.scales=.*positive'),
    (dict(scales=()), 'eval.scales=.*positive'),
    (dict(scales=(-0.5,)), 'eval.scales=.*positive'),
    (dict(flip='yes'), 'eval.flip'),
])
def test_bad_options_are_user_errors_naming_the_field(options, message):
  with pytest.raises(UserError, match=message):
    inference.make_options(**options)


def test_a_scale_that_empties_the_image_is_a_user_error():
  options = inference.make_options(scales=(0.01,))
  with pytest.raises(UserError, match='eval.scales'):
    inference.logits_at_image_size(pointwise_apply, jnp.zeros((1, 20, 20, 3)), options)


# ------------------------------------------------------------ predict fn

def test_predict_fn_on_the_8_device_mesh_equals_the_unsharded_result(tiny):
  config, model, variables = tiny
  config = ml_collections.ConfigDict(config.to_dict())
  config.eval = ml_collections.ConfigDict(dict(
      mode='sliding', window=(24, 24), stride=(16, 16), scales=(0.75, 1.0), flip=True))
  images = random_images((8, 30, 44, 3), seed=7)
  mesh = sharding.make_mesh()
  sharded_fn = inference.make_predict_fn(config, model, mesh)
  got = sharded_fn(jax.device_put(variables, sharding.replicated(mesh)),
                   jax.device_put(images, sharding.batch_sharded(mesh)))
  assert got.shape == (8, 30, 44, config.dataset.num_classes) and got.dtype == jnp.float32
  assert got.sharding.is_equivalent_to(sharding.batch_sharded(mesh), 4)
  single = jax.device_put(images, jax.devices()[0])
  expected = inference.make_predict_fn(config, model)(variables, single)
  np.testing.assert_allclose(np.asarray(got), np.asarray(expected), rtol=0, atol=1e-5)
  options = inference.options_from_config(config)
  by_hand = infer(lambda x: model.apply(variables, x, train=False), images,
                  pad_value=inference.pad_colour(config.model),
                  **dataclasses.asdict(options))
  np.testing.assert_allclose(np.asarray(expected), by_hand, rtol=0, atol=1e-5)
