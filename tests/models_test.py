"""Model shapes (output stride 8, Caffe sizes), atrous conv and resizing."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import shapes as shapes_config
from configs import tiny
from deeplab_jax import models
from deeplab_jax.models.atrous import AtrousConv
from deeplab_jax.models.resize import interpolation_matrix, resize_bilinear


@pytest.fixture(scope='module')
def tiny_model():
  config = tiny.get_config(shapes_config)
  model = models.build(config)
  variables = model.init(jax.random.key(0), jnp.zeros((1, 32, 32, 3)), train=False)
  return config, model, variables


@pytest.mark.parametrize('size,expected', [((321, 321), (41, 41)), ((513, 513), (65, 65)),
                                           ((57, 90), (8, 12)), ((64, 33), (8, 5))])
def test_output_stride_8_sizes(tiny_model, size, expected):
  config, model, variables = tiny_model
  shape = jax.eval_shape(lambda x: model.apply(variables, x, train=False),
                         jax.ShapeDtypeStruct((1,) + size + (3,), jnp.uint8))
  assert shape.shape == (1,) + expected + (config.dataset.num_classes,)
  assert shape.dtype == jnp.float32


def test_bfloat16_activations_keep_float32_params_and_logits(tiny_model):
  config, _, variables = tiny_model
  config.model.dtype = 'bfloat16'
  model = models.build(config)
  images = jax.random.randint(jax.random.key(1), (2, 24, 24, 3), 0, 256).astype(jnp.uint8)
  logits = model.apply(variables, images, train=False)
  reference = models.build(tiny.get_config(shapes_config)).apply(variables, images, train=False)
  assert logits.dtype == jnp.float32
  assert all(p.dtype == jnp.float32 for p in jax.tree_util.tree_leaves(variables))
  np.testing.assert_allclose(logits, reference, atol=0.1 * np.abs(reference).max())


def _numpy_atrous(x, kernel, rate):
  """Direct loop: 'same' zero padding of rate * (k - 1) / 2."""
  k = kernel.shape[0]
  pad = rate * (k - 1) // 2
  xp = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
  out = np.zeros(x.shape[:3] + (kernel.shape[-1],))
  for i in range(k):
    for j in range(k):
      window = xp[:, i * rate:i * rate + x.shape[1], j * rate:j * rate + x.shape[2]]
      out += window @ kernel[i, j]
  return out


@pytest.mark.parametrize('rate', [1, 2, 5])
def test_atrous_conv_matches_direct_computation(rate):
  rng = np.random.default_rng(rate)
  x = rng.normal(size=(2, 9, 11, 3)).astype(np.float32)
  conv = AtrousConv(4, 3, rate=rate)
  variables = conv.init(jax.random.key(0), x)
  got = conv.apply(variables, x)
  expected = _numpy_atrous(x, np.asarray(variables['params']['kernel']), rate)
  np.testing.assert_allclose(got, expected + np.asarray(variables['params']['bias']),
                             rtol=1e-5, atol=1e-5)


def test_resize_align_corners_maps_corners_exactly():
  matrix = interpolation_matrix(41, 321, align_corners=True)
  assert matrix[0, 0] == 1 and matrix[-1, -1] == 1
  assert matrix[8, 1] == pytest.approx(1.0)  # (41 - 1) * 8 + 1 = 321: every 8th.
  np.testing.assert_allclose(matrix.sum(1), 1.0, rtol=1e-6)


def test_resize_half_pixel_matches_jax_image_resize():
  x = jax.random.normal(jax.random.key(0), (1, 5, 7, 2))
  got = resize_bilinear(x, (17, 23), align_corners=False)
  expected = jax.image.resize(x, (1, 17, 23, 2), 'linear', antialias=False)
  np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
