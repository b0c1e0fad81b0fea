"""Every atrous implementation gives the same numbers, equal to PyTorch's conv2d."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from deeplab_jax.models import atrous

torch = pytest.importorskip('torch')

IMPLS = ('dilation', 'space_to_batch', 'taps', 'dilation_taps_grad', 'auto')
# (batch, height, width, in, out, kernel, rate): odd sizes, an even kernel (v1's
# 4x4), a rate larger than the map (taps wholly in the padding), narrow outputs.
CASES = [(2, 9, 11, 5, 4, 3, 2), (1, 13, 7, 6, 3, 3, 5), (1, 10, 9, 4, 4, 4, 4),
         (2, 7, 6, 8, 2, 3, 12), (1, 12, 12, 16, 3, 7, 3), (1, 11, 13, 3, 5, 3, 1)]


def _torch_conv(x, kernel, rate):
  k = kernel.shape[0]
  lo, hi = atrous.same_padding(k, rate)
  xt = torch.nn.functional.pad(torch.from_numpy(x.transpose(0, 3, 1, 2)), (lo, hi, lo, hi))
  w = torch.from_numpy(np.ascontiguousarray(kernel.transpose(3, 2, 0, 1)))
  return torch.nn.functional.conv2d(xt, w, dilation=rate).numpy().transpose(0, 2, 3, 1)


@pytest.mark.parametrize('case', CASES, ids=str)
def test_implementations_match_pytorch_and_each_other(case):
  b, h, w, c, o, k, rate = case
  rng = np.random.default_rng(sum(case))
  x = rng.normal(size=(b, h, w, c)).astype(np.float32)
  kernel = rng.normal(size=(k, k, c, o)).astype(np.float32)
  expected = _torch_conv(x, kernel, rate)
  assert expected.shape == (b, h, w, o)  # 'same' size.
  scale = np.abs(expected).max()
  for impl in IMPLS:
    got = jax.jit(atrous.atrous_conv, static_argnums=(2, 3, 4))(x, kernel, rate, 1, impl)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5 * scale, err_msg=impl)


@pytest.mark.parametrize('k,rate', [(3, 3), (4, 4), (3, 1), (3, 12)])
def test_gradients_match_across_implementations(k, rate):
  rng = np.random.default_rng(k * rate)
  x = rng.normal(size=(2, 9, 10, 6)).astype(np.float32)
  kernel = rng.normal(size=(k, k, 6, 2)).astype(np.float32)

  def grads(impl):
    loss = lambda x, w: jnp.sum(jnp.sin(atrous.atrous_conv(x, w, rate, 1, impl)))
    return jax.grad(loss, argnums=(0, 1))(x, kernel)

  gx, gk = grads('dilation')
  for impl in ('space_to_batch', 'taps', 'dilation_taps_grad'):
    hx, hk = grads(impl)
    np.testing.assert_allclose(hx, gx, rtol=1e-4, atol=1e-4 * np.abs(gx).max())
    np.testing.assert_allclose(hk, gk, rtol=1e-4, atol=1e-4 * np.abs(gk).max())


@pytest.mark.parametrize('stride', [1, 2])
def test_pointwise_and_strided_convs_match_pytorch(stride):
  rng = np.random.default_rng(stride)
  x = rng.normal(size=(1, 9, 8, 5)).astype(np.float32)
  for k in (1, 3, 7):
    kernel = rng.normal(size=(k, k, 5, 4)).astype(np.float32)
    got = atrous.atrous_conv(x, kernel, 1, stride)
    pad = (k - 1) // 2
    expected = torch.nn.functional.conv2d(
        torch.from_numpy(x.transpose(0, 3, 1, 2)),
        torch.from_numpy(np.ascontiguousarray(kernel.transpose(3, 2, 0, 1))),
        stride=stride, padding=pad).numpy().transpose(0, 2, 3, 1)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5 * np.abs(expected).max())


def test_auto_choice_per_backend_and_shape():
  assert atrous.resolve_impl('auto', 2048, 21, 'cpu') == 'taps'
  assert atrous.resolve_impl('auto', 512, 512, 'cpu') == 'dilation_taps_grad'
  assert atrous.resolve_impl('auto', 64, 64, 'cpu') == 'dilation_taps_grad'
  assert atrous.resolve_impl('auto', 2048, 21, 'gpu') == 'space_to_batch'
  assert atrous.resolve_impl('auto', 2048, 21, 'tpu') == 'dilation'
  with pytest.raises(ValueError, match='not one of'):
    atrous.resolve_impl('winograd', 1, 1)


@pytest.mark.parametrize('b,h,w,c,o,k', [(2, 11, 9, 6, 5, 7), (1, 8, 13, 4, 3, 3), (1, 7, 7, 3, 4, 7)])
def test_valid_convs_match_pytorch_values_and_gradients(b, h, w, c, o, k):
  # FCN's fc6: no padding, the map shrinks by k - 1 (7x7 on 7x7 gives 1x1).
  rng = np.random.default_rng(h * w + k)
  x = rng.normal(size=(b, h, w, c)).astype(np.float32)
  kernel = rng.normal(size=(k, k, c, o)).astype(np.float32)
  cotangent = rng.normal(size=(b, h - k + 1, w - k + 1, o)).astype(np.float32)
  xt = torch.from_numpy(x.transpose(0, 3, 1, 2)).requires_grad_()
  wt = torch.from_numpy(np.ascontiguousarray(kernel.transpose(3, 2, 0, 1))).requires_grad_()
  yt = torch.nn.functional.conv2d(xt, wt)
  (yt * torch.from_numpy(cotangent.transpose(0, 3, 1, 2))).sum().backward()
  expected = yt.detach().numpy().transpose(0, 2, 3, 1)
  gx, gk = xt.grad.numpy().transpose(0, 2, 3, 1), wt.grad.numpy().transpose(2, 3, 1, 0)
  for impl in IMPLS:
    y, vjp = jax.vjp(lambda x, w, impl=impl: atrous.conv_valid(x, w, impl), x, kernel)
    np.testing.assert_allclose(y, expected, rtol=0, atol=1e-5 * np.abs(expected).max(),
                               err_msg=impl)
    hx, hk = vjp(cotangent)
    np.testing.assert_allclose(hx, gx, rtol=0, atol=1e-5 * np.abs(gx).max(), err_msg=impl)
    np.testing.assert_allclose(hk, gk, rtol=0, atol=1e-5 * np.abs(gk).max(), err_msg=impl)


def test_valid_conv_module_and_its_limits():
  x = jnp.ones((1, 9, 8, 3))
  conv = atrous.AtrousConv(4, 7, padding='valid', impl='taps')
  variables = conv.init(jax.random.PRNGKey(0), x)
  assert conv.apply(variables, x).shape == (1, 3, 2, 4)
  assert variables['params']['kernel'].shape == (7, 7, 3, 4)  # As nn.Conv's: weights convert.
  with pytest.raises(ValueError, match='stride-1, rate-1'):
    atrous.AtrousConv(4, 3, rate=2, padding='valid').init(jax.random.PRNGKey(0), x)
  with pytest.raises(ValueError, match='at least 7x7'):
    atrous.conv_valid(jnp.ones((1, 6, 9, 3)), jnp.ones((7, 7, 3, 4)))
