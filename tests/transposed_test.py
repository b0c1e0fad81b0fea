"""Transposed convolution (models/transposed.py) against torch.nn.ConvTranspose2d,
and the bilinear initialisation against bilinear interpolation and Caffe's filler."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from deeplab_jax.models import transposed
from deeplab_jax.models.layers import Layers

torch = pytest.importorskip('torch')

# (batch, height, width, in, out, kernel, stride, padding, output_padding):
# FCN's k = 2s upsamplings (4/2, 16/8, 32/16, 64/32, no padding), U-Net's 2/2,
# stride 1, paddings, output_padding, a padding above k - 1 (negative pad),
# odd and non-square inputs throughout.
CASES = [(2, 5, 7, 3, 4, 4, 2, 0, 0), (1, 3, 4, 2, 3, 16, 8, 0, 0),
         (1, 3, 2, 2, 2, 32, 16, 0, 0), (1, 2, 3, 2, 2, 64, 32, 0, 0),
         (2, 7, 5, 4, 3, 2, 2, 0, 0), (1, 9, 6, 3, 2, 3, 1, 1, 0),
         (1, 6, 7, 3, 2, 3, 2, 1, 1), (1, 5, 6, 2, 3, 8, 4, 2, 3),
         (1, 5, 3, 2, 2, 3, 4, 3, 2), (1, 3, 5, 2, 2, 16, 16, 4, 0)]

_conv_transpose = jax.jit(transposed.conv_transpose, static_argnums=(2, 3, 4, 5))
IMPLS = transposed.IMPLEMENTATIONS


def _torch_layer(kernel, bias, stride, padding, output_padding):
  k, _, cin, cout = kernel.shape
  layer = torch.nn.ConvTranspose2d(cin, cout, k, stride, padding, output_padding,
                                   bias=bias is not None)
  with torch.no_grad():
    layer.weight.copy_(torch.from_numpy(np.ascontiguousarray(kernel.transpose(2, 3, 0, 1))))
    if bias is not None:
      layer.bias.copy_(torch.from_numpy(bias))
  return layer


def _nchw(x):
  return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))


def _case_arrays(case):
  b, h, w, cin, cout, k, _, _, _ = case
  rng = np.random.default_rng(sum(case))
  x = rng.normal(size=(b, h, w, cin)).astype(np.float32)
  kernel = rng.normal(size=(k, k, cin, cout)).astype(np.float32)
  return x, kernel


@pytest.mark.parametrize('impl', IMPLS)
@pytest.mark.parametrize('case', CASES, ids=str)
def test_matches_pytorch_conv_transpose(case, impl):
  b, h, w, _, cout, k, s, p, op = case
  x, kernel = _case_arrays(case)
  expected = _torch_layer(kernel, None, s, p, op)(_nchw(x)).detach().numpy()
  expected = expected.transpose(0, 2, 3, 1)
  size = (transposed.output_size(h, k, s, p, op), transposed.output_size(w, k, s, p, op))
  assert expected.shape == (b, *size, cout)
  got = np.asarray(_conv_transpose(x, kernel, s, p, op, impl))
  assert got.shape == expected.shape
  np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())


@pytest.mark.parametrize('impl', IMPLS)
@pytest.mark.parametrize('case', [CASES[0], CASES[3], CASES[6], CASES[7], CASES[8],
                                  CASES[9]], ids=str)
def test_gradients_match_pytorch_autograd(case, impl):
  _, _, _, _, cout, _, s, p, op = case
  x, kernel = _case_arrays(case)
  bias = np.linspace(-1, 1, cout).astype(np.float32)
  module = transposed.ConvTranspose(cout, kernel.shape[0], s, p, op, impl=impl)
  params = {'params': {'kernel': jnp.asarray(kernel), 'bias': jnp.asarray(bias)}}

  def loss(params, x):  # A loss whose gradient varies per pixel.
    return jnp.sum(jnp.sin(module.apply(params, x)))

  grads, gx = jax.jit(jax.grad(loss, argnums=(0, 1)))(params, x)
  layer = _torch_layer(kernel, bias, s, p, op)
  xt = _nchw(x).requires_grad_(True)
  torch.sin(layer(xt)).sum().backward()
  expected = {'x': xt.grad.numpy().transpose(0, 2, 3, 1),
              'kernel': layer.weight.grad.numpy().transpose(2, 3, 0, 1),
              'bias': layer.bias.grad.numpy()}
  got = {'x': gx, 'kernel': grads['params']['kernel'], 'bias': grads['params']['bias']}
  for name, want in expected.items():
    have = np.asarray(got[name])
    assert np.isfinite(have).all(), name
    np.testing.assert_allclose(have, want, rtol=1e-4, atol=1e-4 * np.abs(want).max(),
                               err_msg=name)


def test_auto_resolves_per_backend_and_unknown_impl_raises():
  assert transposed.resolve_impl('auto', 'cpu') == 'subpixel'
  assert transposed.resolve_impl('auto', 'gpu') == 'lhs_dilation'
  assert transposed.resolve_impl('subpixel_matmul', 'gpu') == 'subpixel_matmul'
  with pytest.raises(ValueError, match='not one of'):
    transposed.resolve_impl('dilation')
  x = jnp.ones((1, 3, 3, 2))
  with pytest.raises(ValueError, match='not one of'):
    transposed.ConvTranspose(2, 4, 2, impl='taps').init(jax.random.key(0), x)


def test_bilinear_filter_is_caffes_filler():
  # Caffe's BilinearFiller (include/caffe/filler.hpp) as written there, per index.
  for k in range(1, 10):
    f = int(np.ceil(k / 2.))
    c = (k - 1) / (2. * f)
    caffe = np.array([[(1 - abs(x / f - c)) * (1 - abs(y / f - c)) for x in range(k)]
                      for y in range(k)])
    np.testing.assert_allclose(transposed.bilinear_filter(k), caffe, rtol=0, atol=1e-12)


@pytest.mark.parametrize('factor', [2, 8, 32])
def test_bilinear_init_is_bilinear_interpolation_inside(factor):
  # FCN's k = 2f, stride f layer: input pixel i sits at output f i + f - 1/2,
  # F.interpolate's (align_corners=False) at f i + f / 2 - 1/2, so the
  # deconvolution is the interpolation shifted by f / 2; away from the
  # borders (where interpolate clamps and the deconvolution sees zeros) equal.
  h, w, c = 4, 5, 3
  x = np.random.default_rng(factor).normal(size=(1, h, w, c)).astype(np.float32)
  kernel = transposed.bilinear_kernel_init(None, (2 * factor, 2 * factor, c, c))
  got = np.asarray(_conv_transpose(x, np.asarray(kernel), factor, 0, 0))
  expected = torch.nn.functional.interpolate(
      _nchw(x), scale_factor=factor, mode='bilinear', align_corners=False)
  expected = expected.numpy().transpose(0, 2, 3, 1)
  lo, shift = factor, factor // 2
  inner = lambda n: slice(lo, (n - 1) * factor)
  np.testing.assert_allclose(
      got[:, shift:, shift:][:, inner(h), inner(w)], expected[:, inner(h), inner(w)],
      rtol=1e-5, atol=1e-5)
  assert np.abs(got).max() > 0.1  # Not vacuous.


def test_bilinear_init_per_channel_and_single_output():
  kernel = np.asarray(transposed.bilinear_kernel_init(None, (4, 4, 3, 3)))
  filt = transposed.bilinear_filter(4)
  for i in range(3):
    for o in range(3):
      np.testing.assert_array_equal(kernel[:, :, i, o], filt if i == o else 0)
  single = np.asarray(transposed.bilinear_kernel_init(None, (4, 4, 3, 1)))
  np.testing.assert_array_equal(single[..., 0], np.stack([filt] * 3, axis=-1))
  with pytest.raises(ValueError, match='in == out'):
    transposed.bilinear_kernel_init(None, (4, 4, 3, 2))


def test_layers_conv_transpose_parameters_and_dtype():
  x = jnp.ones((1, 5, 3, 4))
  layer = Layers(dtype=jnp.bfloat16).conv_transpose(6, 4, stride=2, use_bias=False)
  variables = layer.init(jax.random.key(0), x)
  assert jax.tree.map(jnp.shape, variables) == {'params': {'kernel': (4, 4, 4, 6)}}
  assert variables['params']['kernel'].dtype == jnp.float32
  y = layer.apply(variables, x)
  assert y.shape == (1, 12, 8, 6) and y.dtype == jnp.bfloat16
  with pytest.raises(ValueError, match='output_padding'):
    Layers().conv_transpose(2, 3, stride=2, output_padding=2).init(jax.random.key(0), x)


def test_benchmark_times_transposed_against_pytorch():
  from benchmarks import atrous as atrous_benchmark  # pylint: disable=import-outside-toplevel
  line = atrous_benchmark.time_shape(atrous_benchmark.parse_shape('1x5x6x3x2s2', 's'), [],
                                     steps=1, with_torch=True, kind='transposed')
  assert line['kind'] == 'transposed' and line['shape'] == '1x5x6x3x2s2'
  for name in ('lhs_dilation', 'subpixel', 'subpixel_matmul', 'torch'):
    assert line[name]['forward_ms'] > 0 and line[name]['grad_ms'] > 0
