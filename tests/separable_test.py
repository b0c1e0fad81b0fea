"""Depthwise atrous convolution in every implementation (models/atrous.py) and the
depthwise-separable blocks (atrous.SeparableConv, layers.SeparableConvBN) against
PyTorch's grouped Conv2d and a torch.nn.Sequential of the same layers."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from deeplab_jax.models import atrous
from deeplab_jax.models.layers import Layers

torch = pytest.importorskip('torch')

IMPLS = ('dilation', 'space_to_batch', 'taps', 'dilation_taps_grad', 'auto')
# (batch, height, width, channels, kernel, rate): v3+'s rates, odd and
# non-square maps, a rate wider than the map (taps wholly in the padding), 5x5.
CASES = [(2, 9, 11, 5, 3, 1), (1, 13, 7, 6, 3, 2), (2, 10, 9, 4, 3, 3),
         (1, 7, 12, 3, 3, 6), (1, 5, 6, 4, 3, 6), (1, 11, 8, 3, 5, 2)]


@functools.partial(jax.jit, static_argnums=(2, 3, 4))
def _conv(x, kernel, rate, stride, impl):
  return atrous.atrous_conv(x, kernel, rate, stride, impl)


@functools.partial(jax.jit, static_argnums=(2, 3))
def _grads(x, kernel, rate, impl):
  loss = lambda x, w: jnp.sum(jnp.sin(atrous.atrous_conv(x, w, rate, 1, impl)))
  return jax.grad(loss, argnums=(0, 1))(x, kernel)


def _nchw(x):
  return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))


def _nhwc(t):
  return t.detach().numpy().transpose(0, 2, 3, 1)


def _torch_depthwise(kernel, rate, stride=1):
  """torch Conv2d(C, C, k, groups=C) with our (k, k, 1, C) kernel."""
  k, _, _, c = kernel.shape
  layer = torch.nn.Conv2d(c, c, k, stride=stride, dilation=rate,
                          padding=rate * (k - 1) // 2, groups=c, bias=False)
  with torch.no_grad():
    layer.weight.copy_(torch.from_numpy(np.ascontiguousarray(kernel.transpose(3, 2, 0, 1))))
  return layer


def _arrays(case):
  b, h, w, c, k, _ = case
  rng = np.random.default_rng(sum(case))
  return (rng.normal(size=(b, h, w, c)).astype(np.float32),
          rng.normal(size=(k, k, 1, c)).astype(np.float32))


def _close(got, want, name=''):
  got = np.asarray(got)
  assert got.shape == want.shape, (name, got.shape, want.shape)
  np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * np.abs(want).max(),
                             err_msg=name)


@pytest.mark.parametrize('case', CASES, ids=str)
def test_depthwise_every_implementation_matches_pytorch(case):
  x, kernel = _arrays(case)
  rate = case[-1]
  expected = _nhwc(_torch_depthwise(kernel, rate)(_nchw(x)))
  assert expected.shape == x.shape
  for impl in IMPLS:
    _close(_conv(x, kernel, rate, 1, impl), expected, impl)


@pytest.mark.parametrize('case', [CASES[0], CASES[2], CASES[3], CASES[4]], ids=str)
def test_depthwise_gradients_match_pytorch_autograd(case):
  x, kernel = _arrays(case)
  rate = case[-1]
  layer = _torch_depthwise(kernel, rate)
  xt = _nchw(x).requires_grad_(True)
  torch.sin(layer(xt)).sum().backward()
  want_x = _nhwc(xt.grad)
  want_k = layer.weight.grad.numpy().transpose(2, 3, 1, 0)
  for impl in IMPLS:
    gx, gk = _grads(x, kernel, rate, impl)
    assert np.isfinite(gx).all() and np.isfinite(gk).all(), impl
    _close(gx, want_x, f'{impl} input')
    _close(gk, want_k, f'{impl} kernel')


@pytest.mark.parametrize('k', [1, 3])
def test_strided_and_pointwise_depthwise_match_pytorch(k):
  rng = np.random.default_rng(k)
  x = rng.normal(size=(1, 9, 8, 5)).astype(np.float32)
  kernel = rng.normal(size=(k, k, 1, 5)).astype(np.float32)
  for stride in (1, 2):
    _close(_conv(x, kernel, 1, stride, 'auto'),
           _nhwc(_torch_depthwise(kernel, 1, stride)(_nchw(x))), f'stride {stride}')


@pytest.mark.parametrize('case', [(2, 9, 11, 5, 3), (1, 12, 7, 4, 5), (1, 3, 4, 3, 5)], ids=str)
def test_strided_depthwise_and_its_gradients_match_pytorch_in_every_implementation(case):
  """MobileNet's stride-2 depthwise convs: 'taps' (what 'auto' picks on CPU)
  slices the padded input per tap; the others run XLA's grouped convolution.
  Odd and even sizes, and a 3x4 map a 5x5 kernel's corner taps overhang."""
  b, h, w, c, k = case
  rng = np.random.default_rng(h * w)
  x = rng.normal(size=(b, h, w, c)).astype(np.float32)
  kernel = rng.normal(size=(k, k, 1, c)).astype(np.float32)
  layer = _torch_depthwise(kernel, 1, stride=2)
  xt = _nchw(x).requires_grad_(True)
  out = layer(xt)
  torch.sin(out).sum().backward()
  want_x, want_k = _nhwc(xt.grad), layer.weight.grad.numpy().transpose(2, 3, 1, 0)
  for impl in IMPLS:
    _close(_conv(x, kernel, 1, 2, impl), _nhwc(out), impl)
    loss = lambda x, w, impl=impl: jnp.sum(jnp.sin(atrous.atrous_conv(x, w, 1, 2, impl)))
    gx, gk = jax.jit(jax.grad(loss, argnums=(0, 1)))(x, kernel)
    _close(gx, want_x, f'{impl} input')
    _close(gk, want_k, f'{impl} kernel')


def test_auto_for_depthwise_and_kernel_checks():
  assert atrous.resolve_impl('auto', 64, 64, 'cpu', depthwise=True) == atrous.DEPTHWISE_AUTO['cpu']
  assert atrous.resolve_impl('auto', 64, 64, 'gpu', depthwise=True) == atrous.DEPTHWISE_AUTO['gpu']
  assert atrous.resolve_impl('auto', 64, 64, 'tpu', depthwise=True) == 'dilation'
  assert atrous.groups(6, (3, 3, 1, 6)) == 6 and atrous.groups(6, (3, 3, 6, 2)) == 1
  with pytest.raises(ValueError, match='neither'):
    atrous.groups(6, (3, 3, 2, 6))
  with pytest.raises(ValueError, match='keeps the 4 channels'):
    atrous.AtrousConv(5, depthwise=True).init(jax.random.key(0), jnp.ones((1, 5, 5, 4)))


# ------------------------------------------------------------- blocks ----

_C, _O = 6, 5


def _torch_separable(params, stats, rate, batch_norm):
  """torch.nn.Sequential of v3+'s split separable conv, loaded with our weights."""
  k = params['depthwise']['kernel'].shape[0]
  use_bn = batch_norm != 'none'
  dw = torch.nn.Conv2d(_C, _C, k, dilation=rate, padding=rate * (k - 1) // 2, groups=_C,
                       bias=not use_bn)
  pw = torch.nn.Conv2d(_C, _O, 1, bias=not use_bn)
  layers = [dw] + ([torch.nn.BatchNorm2d(_C)] if use_bn else []) + [torch.nn.ReLU(), pw]
  layers += ([torch.nn.BatchNorm2d(_O)] if use_bn else []) + [torch.nn.ReLU()]
  net = torch.nn.Sequential(*layers)
  t = lambda a: torch.from_numpy(np.array(a))
  with torch.no_grad():
    dw.weight.copy_(t(np.asarray(params['depthwise']['kernel']).transpose(3, 2, 0, 1)))
    pw.weight.copy_(t(np.asarray(params['pointwise']['kernel']).transpose(3, 2, 0, 1)))
    if use_bn:
      for bn, name in ((layers[1], 'depthwise_bn'), (layers[4], 'pointwise_bn')):
        bn.weight.copy_(t(params[name]['scale']))
        bn.bias.copy_(t(params[name]['bias']))
        bn.running_mean.copy_(t(stats[name]['mean']))
        bn.running_var.copy_(t(stats[name]['var']))
    else:
      dw.bias.copy_(t(params['depthwise']['bias']))
      pw.bias.copy_(t(params['pointwise']['bias']))
  return net


def _randomised(variables, seed):
  """Every variable replaced by random values (variances positive)."""
  leaves, tree = jax.tree.flatten(variables)
  rng = np.random.default_rng(seed)
  return jax.tree.unflatten(tree, [jnp.asarray(rng.uniform(0.5, 1.5, leaf.shape)
                                               * rng.choice([-1, 1], leaf.shape), jnp.float32)
                                   for leaf in leaves])


@pytest.mark.parametrize('batch_norm,train,rate', [('train', True, 2), ('train', False, 6),
                                                    ('frozen', True, 3), ('none', True, 1)])
def test_separable_conv_bn_matches_pytorch_sequential(batch_norm, train, rate):
  x = np.random.default_rng(rate).normal(size=(2, 13, 10, _C)).astype(np.float32)
  block = Layers(batch_norm=batch_norm, atrous_impl='auto').separable_conv_bn(_O, rate=rate)
  variables = _randomised(block.init(jax.random.key(0), x, train=False), rate)
  if 'batch_stats' in variables:  # Variances must be positive.
    variables['batch_stats'] = jax.tree.map(jnp.abs, variables['batch_stats'])
  assert variables['params']['depthwise']['kernel'].shape == (3, 3, 1, _C)
  assert variables['params']['pointwise']['kernel'].shape == (1, 1, _C, _O)
  got = block.apply(variables, x, train=train, mutable=['batch_stats'])[0]
  net = _torch_separable(variables['params'], variables.get('batch_stats'), rate, batch_norm)
  net.train(train and batch_norm == 'train')
  _close(got, _nhwc(net(_nchw(x))))


def test_separable_conv_matches_pytorch():
  x = np.random.default_rng(0).normal(size=(1, 9, 14, _C)).astype(np.float32)
  conv = atrous.SeparableConv(_O, rate=3, impl='taps')
  variables = _randomised(conv.init(jax.random.key(0), x), 1)
  p = variables['params']
  dw = _torch_depthwise(np.asarray(p['depthwise']['kernel']), 3)
  pw = torch.nn.Conv2d(_C, _O, 1)
  with torch.no_grad():
    pw.weight.copy_(torch.from_numpy(
        np.array(p['pointwise']['kernel']).transpose(3, 2, 0, 1).copy()))
    pw.bias.copy_(torch.from_numpy(np.array(p['pointwise']['bias'])))
  _close(conv.apply(variables, x), _nhwc(pw(dw(_nchw(x)))))


def test_benchmark_times_depthwise_against_pytorch():
  from benchmarks import atrous as atrous_benchmark  # pylint: disable=import-outside-toplevel
  line = atrous_benchmark.time_shape(atrous_benchmark.parse_shape('1x9x7x4x4r2'),
                                     ['dilation', 'taps'], steps=1, with_torch=True,
                                     kind='depthwise')
  assert line['kind'] == 'depthwise' and line['shape'] == '1x9x7x4x4r2'
  for name in ('dilation', 'taps', 'torch'):
    assert line[name]['forward_ms'] > 0 and line[name]['grad_ms'] > 0
