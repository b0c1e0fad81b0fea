"""VGG-16 DeepLab trunk: Caffe pooling sizes, output sizes, parameter counts."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import parts
from configs import shapes as shapes_config
from deeplab_jax import models
from deeplab_jax.models.pooling import caffe_pool_size, max_pool_caffe


def _vgg_config(rates=(12,), kernel=3, hidden=(1024, 1024), num_classes=21):
  config = shapes_config.get_config()
  config.model.backbone = parts.vgg16()
  config.model.head = parts.aspp(rates, hidden=hidden, kernel_size=kernel, dropout=0.5)
  config.dataset.num_classes = num_classes
  return config


def _numpy_caffe_pool(x, k=3, s=2, p=1):
  """Direct Caffe max pooling: windows clipped to the image, ceil-mode size."""
  _, h, w, _ = x.shape
  oh, ow = caffe_pool_size(h, k, s, p), caffe_pool_size(w, k, s, p)
  out = np.empty((x.shape[0], oh, ow, x.shape[3]), x.dtype)
  for i in range(oh):
    for j in range(ow):
      r0, c0 = max(i * s - p, 0), max(j * s - p, 0)
      r1, c1 = min(i * s - p + k, h), min(j * s - p + k, w)
      out[:, i, j] = x[:, r0:r1, c0:c1].max(axis=(1, 2))
  return out


def test_caffe_pool_size_is_ceil_mode():
  assert caffe_pool_size(321, 3, 2, 1) == 161
  assert caffe_pool_size(512, 3, 2, 1) == 257  # Floor mode would give 256.
  assert caffe_pool_size(41, 3, 1, 1) == 41


@pytest.mark.parametrize('shape,stride', [((1, 9, 12, 2), 2), ((2, 10, 7, 3), 2),
                                          ((1, 6, 5, 1), 1)])
def test_max_pool_matches_direct_caffe_pooling(shape, stride):
  x = np.random.default_rng(0).normal(size=shape).astype(np.float32) - 5
  np.testing.assert_array_equal(max_pool_caffe(jnp.asarray(x), 3, stride, 1),
                                _numpy_caffe_pool(x, 3, stride, 1))


@pytest.mark.parametrize('size,expected', [((321, 321), (41, 41)), ((513, 513), (65, 65)),
                                           ((320, 250), (41, 33))])
def test_vgg_largefov_output_sizes(size, expected):
  model = models.build(_vgg_config())
  variables = jax.eval_shape(lambda: model.init(jax.random.key(0),
                                                jnp.zeros((1, 64, 64, 3)), train=False))
  out = jax.eval_shape(lambda v, x: model.apply(v, x, train=False), variables,
                       jax.ShapeDtypeStruct((1,) + size + (3,), jnp.uint8))
  assert out.shape == (1,) + expected + (21,)


def _num_params(config):
  model = models.build(config)
  shapes = jax.eval_shape(lambda: model.init(jax.random.key(0),
                                             jnp.zeros((1, 64, 64, 3)), train=False))
  return sum(int(np.prod(x.shape)) for x in jax.tree_util.tree_leaves(shapes['params']))


def test_parameter_counts():
  largefov = _num_params(_vgg_config())
  aspp_l = _num_params(_vgg_config(rates=(6, 12, 18, 24)))
  v1_deeplab = _num_params(_vgg_config(rates=(4,), kernel=4, hidden=(4096, 4096)))
  print(f'VGG-16 LargeFOV {largefov:,}  ASPP-L {aspp_l:,}  v1 DeepLab (4x4, 4096) {v1_deeplab:,}')
  assert 20.4e6 < largefov < 20.6e6  # Paper: 20.5M.
  # A branch is fc6 (k x k x 512 -> c), fc7 (1x1, c -> c), fc8 (1x1, c -> 21).
  def branch(k, c):
    return k * k * 512 * c + c + c * c + c + c * 21 + 21
  trunk = largefov - branch(3, 1024)
  assert trunk == 14_714_688  # VGG-16 conv1_1..conv5_3 (torchvision's count).
  assert aspp_l == trunk + 4 * branch(3, 1024)
  assert v1_deeplab == trunk + branch(4, 4096)
