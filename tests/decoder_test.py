"""DeepLab v3+'s head (models/decoder.py) against a PyTorch v3+ written from the
paper (deeplab_jax/testing/torch_deeplab_v3.py): equal within 1e-4 relative in
float32 where the stride-16 map is not a quarter of the stride-4 one (ceil
sizes of odd, non-square images), in both resize conventions, at test and in
training; through models.build on the tiny ResNet (65 x 97 image -> stride-4
scores 17 x 25); the v3 ASPP's parameters under the same names as aspp_v3's.
"""

import functools

import jax
import numpy as np
import pytest
import torch

from configs import parts
from configs import tiny
from configs import voc_aspp
from deeplab_jax import models
from deeplab_jax.errors import UserError
from deeplab_jax.models import decoder
from deeplab_jax.models.features import Features
from deeplab_jax.models.layers import Layers
from deeplab_jax.testing import torch_deeplab
from deeplab_jax.testing import torch_deeplab_v3
from tests.aspp_v3_test import _nchw, _nhwc, _perturbed, _rel_err

LOW, HIGH, CLASSES, RATES = 6, 10, 4, (1, 2, 3)
STRIDES = {'layer2': 4, 'out': 16}


def _features(low, high):
  return Features({'layer2': low, 'out': high}, STRIDES)


@functools.lru_cache(maxsize=None)
def _apply(head):
  return jax.jit(lambda v, low, high, train: head.apply(
      v, _features(low, high), train=train,
      mutable=['batch_stats'] if train else False), static_argnums=3)


def _case(align_corners, low_shape, high_shape, seed, separable=False):
  head = decoder.DeepLabV3Plus(CLASSES, rates=RATES, width=8, dropout=0.0, low_level_width=3,
                               decoder_width=8, align_corners=align_corners, separable=separable,
                               layers=Layers(batch_norm='train'))
  rng = np.random.default_rng(seed)
  low = rng.normal(size=low_shape).astype(np.float32)
  high = rng.normal(size=high_shape).astype(np.float32)
  variables = _perturbed(head.init(jax.random.key(0), _features(low, high), train=False), seed)
  reference = torch_deeplab_v3.DeepLabV3Plus(LOW, HIGH, CLASSES, RATES, width=8, dropout=0.0,
                                             low_level_width=3, decoder_width=8,
                                             align_corners=align_corners, separable=separable)
  torch_deeplab_v3.load_flax(reference, variables, head_only=True)
  return head, low, high, variables, reference


def test_separable_decoder_matches_torch_reference():
  """The paper's best form: separable ASPP branches and decoder convs."""
  head, low, high, variables, reference = _case(True, (2, 15, 10, LOW), (2, 4, 3, HIGH),
                                                seed=7, separable=True)
  assert variables['params']['decoder_conv0']['depthwise']['kernel'].shape == (3, 3, 1, 11)
  got = _apply(head)(variables, low, high, False)
  with torch.no_grad():
    expected = _nhwc(reference.eval()(_nchw(low), _nchw(high)))
  assert _rel_err(got, expected) < 1e-4


@pytest.mark.parametrize('align_corners,low_shape,high_shape', [
    (True, (2, 17, 25, LOW), (2, 5, 7, HIGH)),   # 65 x 97 at strides 4 and 16 (ceil sizes).
    (False, (1, 13, 9, LOW), (1, 4, 3, HIGH)),   # Half-pixel resize, taller than wide.
])
def test_decoder_matches_torch_reference_at_test(align_corners, low_shape, high_shape):
  head, low, high, variables, reference = _case(align_corners, low_shape, high_shape, seed=1)
  got = _apply(head)(variables, low, high, False)
  with torch.no_grad():
    expected = _nhwc(reference.eval()(_nchw(low), _nchw(high)))
  assert got.shape == low_shape[:3] + (CLASSES,)
  assert _rel_err(got, expected) < 1e-4


def test_decoder_matches_torch_reference_in_training():
  head, low, high, variables, reference = _case(True, (3, 11, 14, LOW), (3, 3, 4, HIGH), seed=2)
  got, updates = _apply(head)(variables, low, high, True)
  expected = _nhwc(reference.train()(_nchw(low), _nchw(high)))
  assert _rel_err(got, expected) < 1e-4
  np.testing.assert_allclose(updates['batch_stats']['decoder_conv1']['bn']['mean'],
                             reference.decoder_conv1.bn.running_mean.numpy(),
                             rtol=1e-4, atol=1e-5)


def test_parameter_names():
  head, low, high, variables, _ = _case(True, (1, 9, 9, LOW), (1, 3, 3, HIGH), seed=3)
  assert set(variables['params']) == {
      'branch0', 'branch1', 'branch2', 'branch3', 'pool', 'project', 'feature_projection',
      'decoder_conv0', 'decoder_conv1', 'classifier'}
  assert variables['params']['decoder_conv0']['conv']['kernel'].shape == (3, 3, 8 + 3, 8)
  assert head.classifier_layers() == ('classifier',)


# ------------------------------------------------- through models.build ----

@pytest.fixture(scope='module')
def tiny_v3plus():
  config = tiny.get_config(voc_aspp)
  config.dataset.num_classes = CLASSES
  config.model.input_scales = (1.0,)
  config.model.head = parts.deeplabv3plus(rates=(2, 4, 6), width=16, dropout=0.5,
                                          low_level_width=8, decoder_width=16)
  return config


def test_whole_model_matches_torch_resnet_under_the_reference_decoder(tiny_v3plus):
  model = models.build(tiny_v3plus)
  images = np.random.default_rng(5).uniform(0, 255, (1, 65, 97, 3)).astype(np.float32)
  variables = _perturbed(model.init(jax.random.key(0), images, train=False), 6)
  got = jax.jit(lambda v, x: model.apply(v, x, train=False))(variables, images)
  trunk = torch_deeplab.ResNetASPP(CLASSES, depth=14, base_width=8)
  del trunk.aspp
  head = torch_deeplab_v3.DeepLabV3Plus(32, 256, CLASSES, (2, 4, 6), width=16, dropout=0.5,
                                        low_level_width=8, decoder_width=16)
  reference = torch_deeplab_v3.ResNetWithHead(trunk, head, ('layer2', 'layer5'))
  torch_deeplab_v3.load_flax(reference, variables)
  m = tiny_v3plus.model
  x = images[..., ::-1] if m.channel_order == 'bgr' else images
  x = (x - np.asarray(m.pixel_mean, np.float32)) / np.asarray(m.pixel_std, np.float32)
  with torch.no_grad():
    expected = _nhwc(reference.eval()(_nchw(x)))
  assert got.shape == (1, 17, 25, CLASSES)  # Stride 4: ceil(65 / 4), ceil(97 / 4).
  assert _rel_err(got, expected) < 1e-4


def test_config_errors_are_user_errors(tiny_v3plus):
  config = tiny_v3plus.copy_and_resolve_references()
  config.model.head.reads = ('out',)
  with pytest.raises(UserError, match='reads two maps'):
    models.build(config)
  config = tiny_v3plus.copy_and_resolve_references()
  config.model.head.reads = ('stage2', 'out')
  with pytest.raises(UserError, match="reads features \\['stage2'\\]"):
    models.build(config)
  config = tiny_v3plus.copy_and_resolve_references()
  config.model.head.extra_conv = True
  with pytest.raises(UserError, match='does not read'):
    models.build(config)
