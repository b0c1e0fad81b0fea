"""U-Net (models/unet.py) against the PyTorch U-Net written from the paper
(deeplab_jax/testing/torch_unet.py): both forms, odd and non-square sizes,
BatchNorm in both modes and none, the paper's 572 -> 388, through the
registry and the segmenter (models.build)."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from configs import tiny
from deeplab_jax import models
from deeplab_jax.errors import UserError
from deeplab_jax.models import unet
from deeplab_jax.testing.torch_unet import TorchUNet, load_flax_variables

NUM_CLASSES = 5  # synthetic_shapes'.


def _config(depth, base_width, padding, batch_norm, mirror=True):
  config = tiny.get_config('shapes_unet')
  m = config.model
  m.backbone.depth, m.backbone.base_width = depth, base_width
  m.backbone.padding, m.backbone.mirror = padding, mirror
  m.head.depth, m.head.padding = depth, padding
  m.batch_norm = batch_norm
  return config


def _randomise(variables, seed):
  """Random BatchNorm affine and statistics (init's 1 / 0 would hide a swap)."""
  rng = np.random.default_rng(seed)
  def perturb(path, leaf):
    name = str(getattr(path[-1], 'key', path[-1]))
    if name in ('scale', 'var'):
      return jnp.asarray(rng.uniform(0.5, 1.5, leaf.shape), jnp.float32)
    if name in ('mean',) or (name == 'bias'):
      return jnp.asarray(rng.normal(0, 0.1, leaf.shape), jnp.float32)
    return leaf
  return jax.tree_util.tree_map_with_path(perturb, variables)


class Pair:
  """A flax U-Net (models.build) and the torch one holding its weights."""

  def __init__(self, depth, base_width, padding, batch_norm, mirror=True):
    config = _config(depth, base_width, padding, batch_norm, mirror)
    self.model = models.build(config)
    self.mean = np.asarray(config.model.pixel_mean, np.float32)
    self.std = np.asarray(config.model.pixel_std, np.float32)
    side = 37 if padding == 'same' or mirror else unet.valid_input_size(1, depth)
    self.variables = _randomise(self.model.init(
        jax.random.key(depth), jnp.zeros((1, side, side, 3)), train=False), depth)
    self.torch = TorchUNet(NUM_CLASSES, depth, base_width, padding,
                           bn=batch_norm != 'none', mirror=mirror)
    load_flax_variables(self.torch, self.variables)
    self.apply = jax.jit(functools.partial(self.model.apply, mutable=['batch_stats']),
                         static_argnames='train')

  def outputs(self, images, train=False):
    """(flax logits, torch logits), both NHWC numpy."""
    got, _ = self.apply(self.variables, jnp.asarray(images), train=train)
    x = (images - self.mean) / self.std
    self.torch.train(train)
    with torch.no_grad():
      want = self.torch(torch.from_numpy(x.transpose(0, 3, 1, 2).copy()))
    return np.asarray(got), want.numpy().transpose(0, 2, 3, 1)


def _images(hw, seed=0, batch=2):
  return np.random.default_rng(seed).uniform(0, 255, (batch, *hw, 3)).astype(np.float32)


def _assert_close(got, want):
  assert got.shape == want.shape
  np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * np.abs(want).max())


@pytest.fixture(scope='module')
def same_bn():
  return Pair(depth=3, base_width=4, padding='same', batch_norm='train')


@pytest.fixture(scope='module')
def same_plain():
  return Pair(depth=2, base_width=4, padding='same', batch_norm='none')


@pytest.mark.parametrize('hw', [(37, 53), (30, 64)])
def test_same_form_matches_torch_at_odd_sizes(same_bn, hw):
  got, want = same_bn.outputs(_images(hw))
  assert got.shape == (2, *hw, NUM_CLASSES)  # Output = input size.
  _assert_close(got, want)


def test_same_form_batch_statistics_match_torch_training_mode(same_bn):
  got, want = same_bn.outputs(_images((41, 34), seed=1), train=True)
  _assert_close(got, want)


def test_same_form_without_batch_norm_matches_torch(same_plain):
  assert 'batch_stats' not in same_plain.variables
  got, want = same_plain.outputs(_images((33, 47), seed=2))
  _assert_close(got, want)


def test_valid_form_mirrored_covers_any_size_and_matches_torch():
  pair = Pair(depth=2, base_width=4, padding='valid', batch_norm='train')
  got, want = pair.outputs(_images((37, 53), seed=3))
  assert got.shape == (2, 37, 53, NUM_CLASSES)
  _assert_close(got, want)


def test_valid_form_is_the_papers_572_to_388():
  """Fig. 1's tile at depth 4, width 2 (not 64) to stay small."""
  pair = Pair(depth=4, base_width=2, padding='valid', batch_norm='none', mirror=False)
  got, want = pair.outputs(_images((572, 572), seed=4, batch=1))
  assert got.shape == (1, 388, 388, NUM_CLASSES)
  _assert_close(got, want)
  # The paper's other sizes: a side n gives n - 184 where all pools meet even sizes.
  assert unet.valid_output_size(572, 4) == 388 and unet.valid_input_size(388, 4) == 572
  assert [n for n in range(540, 600) if unet.valid_output_size(n, 4)] == [540, 556, 572, 588]
  with pytest.raises(UserError, match=r'side of 570 .*nearest: \[556, 572\]'):
    pair.model.apply(pair.variables, jnp.zeros((1, 570, 572, 3)), train=False)


def test_the_papers_network_has_23_convolutional_layers():
  """Section 2: "In total the network has 23 convolutional layers", 64 .. 1024 wide."""
  config = _config(depth=4, base_width=64, padding='valid', batch_norm='none')
  shapes = models.variable_shapes(config)
  kernels = {k: v for k, v in shapes.items() if k.endswith('/kernel')}
  assert len(kernels) == 23
  assert shapes['params/trunk/enc4_conv2/conv/kernel'] == (3, 3, 1024, 1024)
  assert shapes['params/head/up0/kernel'] == (2, 2, 128, 64)
  assert shapes['params/head/classifier/kernel'] == (1, 1, 64, NUM_CLASSES)


def test_encoder_features_and_config_errors():
  config = _config(depth=3, base_width=4, padding='same', batch_norm='none')
  model = models.build(config)
  assert model.trunk.feature_strides() == {'image': 1, 'level0': 1, 'level1': 2,
                                           'level2': 4, 'out': 8}
  assert model.classifier_paths() == ('head/classifier',)
  config.model.backbone.width = 8  # A typo of base_width.
  with pytest.raises(UserError, match=r"'unet_encoder' does not read \['width'\]"):
    models.build(config)
  config = _config(depth=3, base_width=4, padding='same', batch_norm='none')
  config.model.head.padding = 'nope'
  with pytest.raises(UserError, match=r"padding 'nope' is not one of \('same', 'valid'\)"):
    models.build(config)
  config.model.head.padding = 'same'
  config.model.head.depth = 4  # Reads level3, which a depth-3 encoder lacks.
  with pytest.raises(UserError, match=r"reads features \['level3'\]"):
    models.build(config)
  config.model.head.depth = 2  # Reads names the encoder has, at the wrong strides.
  model = models.build(config)
  with pytest.raises(UserError, match='same depth and padding'):
    model.init(jax.random.key(0), jnp.zeros((1, 32, 32, 3)), train=False)
