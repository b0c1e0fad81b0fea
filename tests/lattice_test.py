"""Tests for deeplab_jax.crf.lattice and lattice_host (permutohedral-lattice Gaussian filter)."""

import functools
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from deeplab_jax.crf import lattice
from deeplab_jax.crf import lattice_host
from deeplab_jax.crf import packing

build = jax.jit(lattice.build, static_argnames=('max_points', 'pack'))
filter_ = jax.jit(lattice.filter)
exact = jax.jit(lattice.gaussian_filter_exact)


def _image_features(h, w, d, sxy=4.0, seed=0):
  """Features like a CRF's: (x, y)/sxy plus d-2 smooth 'colour' channels."""
  rng = np.random.default_rng(seed)
  yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
  colours = [2 * (np.sin(xx / 7 + k) + np.cos(yy / 5 - k))
             + rng.normal(0, 0.1, (h, w)) for k in range(d - 2)]
  return np.stack([xx / sxy, yy / sxy] + colours, -1).reshape(-1, d).astype(
      np.float32)


def _rel(a, b):
  return float(np.linalg.norm(np.asarray(a) - np.asarray(b))
               / np.linalg.norm(np.asarray(b)))


def _densecrf_filter(features_NxD, values_NxC):
  """densecrf's own lattice output, read through pydensecrf's mean-field step.

  One pairwise term with an identity label compatibility, no normalisation
  and zero unaries: after stepInference, tmp2 holds K Q (the lattice filter of
  Q, own pixel included).
  """
  dcrf = pytest.importorskip('pydensecrf.densecrf')
  eigen = pytest.importorskip('pydensecrf.eigen')
  n, c = values_NxC.shape
  crf = dcrf.DenseCRF(n, c)
  crf.setUnaryEnergy(np.zeros((c, n), np.float32))
  crf.addPairwiseEnergy(
      np.ascontiguousarray(features_NxD.T, np.float32),
      np.eye(c, dtype=np.float32), kernel=dcrf.DIAG_KERNEL,
      normalization=dcrf.NO_NORMALIZATION)
  q = eigen.matrixXf(np.ascontiguousarray(values_NxC.T, np.float32))
  tmp1 = eigen.matrixXf(np.zeros((c, n), np.float32))
  tmp2 = eigen.matrixXf(np.zeros((c, n), np.float32))
  crf.stepInference(q, tmp1, tmp2)
  return np.array(tmp2).T


@pytest.mark.parametrize('d,n,scale', [(1, 200, 4.0), (2, 600, 3.0),
                                       (5, 1500, 2.0)])
def test_matches_densecrf_lattice(d, n, scale):
  rng = np.random.default_rng(d)
  features = rng.uniform(0, scale, (n, d)).astype(np.float32)
  values = rng.uniform(0, 1, (n, 3)).astype(np.float32)
  want = _densecrf_filter(features, values)
  got = filter_(build(features), values)
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * want.max())


@pytest.mark.parametrize('d,scale_low,scale_high,max_normalised_err', [
    (2, 0.84, 0.90, 0.01),   # measured 0.875, 0.4%
    (5, 0.40, 0.60, 0.03),   # measured 0.49, 1.1%
])
def test_accuracy_against_exact(d, scale_low, scale_high, max_normalised_err):
  """Like densecrf's, the lattice's kernel is lower than the Gaussian's (the
  ratio is stable across pixels), and the normalised filter the CRF uses,
  K v / K 1, is close to the exact one."""
  features = _image_features(30, 50, d)
  values = np.random.default_rng(1).uniform(0, 1, (1500, 21)).astype(
      np.float32)
  ones = np.ones((1500, 1), np.float32)
  lat = build(features)
  got, got_norm = filter_(lat, values), filter_(lat, ones)
  want, want_norm = exact(features, values), exact(features, ones)
  ratio = float(jnp.mean(got_norm / want_norm))
  assert scale_low < ratio < scale_high
  assert _rel(got / ratio, want) < 0.1
  assert _rel(got / got_norm, want / want_norm) < max_normalised_err


def test_constant_gives_smooth_positive_normaliser():
  """K 1 is positive and follows the exact normaliser: their ratio (measured
  0.77..0.90, mean 0.875 for D=2) changes little from pixel to pixel."""
  features = _image_features(30, 50, 2)
  ones = np.ones((1500, 1), np.float32)
  norm = np.asarray(filter_(build(features), ones))
  assert norm.min() > 0
  ratio_hw = (norm / np.asarray(exact(features, ones))).reshape(30, 50)
  assert 0.7 < ratio_hw.min() and ratio_hw.max() < 0.95
  assert np.abs(np.diff(ratio_hw, axis=0)).max() < 0.08
  assert np.abs(np.diff(ratio_hw, axis=1)).max() < 0.08


def test_nearly_self_adjoint():
  """densecrf blurs axes 0..D in order, so K is symmetric only up to the
  order of the blurs over missing lattice points."""
  rng = np.random.default_rng(2)
  features = _image_features(30, 50, 5)
  a, b = rng.uniform(0, 1, (2, 1500, 4)).astype(np.float32)
  lat = build(features)
  left = float(jnp.vdot(a, filter_(lat, b)))
  right = float(jnp.vdot(filter_(lat, a), b))
  assert abs(left - right) < 1e-3 * abs(left)


def test_invalid_pixels_neither_splat_nor_receive():
  rng = np.random.default_rng(3)
  features = rng.uniform(0, 3, (400, 5)).astype(np.float32)
  values = rng.uniform(0, 1, (400, 3)).astype(np.float32)
  valid = rng.uniform(size=400) < 0.7
  got = np.asarray(filter_(build(features, valid), values))
  assert np.all(got[~valid] == 0)
  alone = filter_(build(features[valid]), values[valid])
  np.testing.assert_allclose(got[valid], alone, rtol=1e-5, atol=1e-5)
  # Garbage (even non-finite) features at invalid pixels change nothing.
  features[~valid] = 1e6
  again = filter_(build(features, valid), values)
  np.testing.assert_allclose(again, got, rtol=1e-6, atol=1e-6)


def test_vmap_over_images_with_different_valid_masks():
  rng = np.random.default_rng(4)
  features_BxNxD = rng.uniform(0, 3, (3, 500, 5)).astype(np.float32)
  values_BxNxC = rng.uniform(0, 1, (3, 500, 2)).astype(np.float32)
  sizes = [500, 350, 120]
  valid_BxN = np.arange(500)[None, :] < np.array(sizes)[:, None]

  @jax.jit
  def batched(features, values, valid):
    return jax.vmap(lambda f, v, m: lattice.filter(lattice.build(f, m), v))(
        features, values, valid)

  got = np.asarray(batched(features_BxNxD, values_BxNxC, valid_BxN))
  for i, size in enumerate(sizes):
    alone = filter_(build(features_BxNxD[i, :size]), values_BxNxC[i, :size])
    np.testing.assert_allclose(got[i, :size], alone, rtol=1e-5, atol=1e-5)
    assert np.all(got[i, size:] == 0)


def test_gradient_matches_finite_differences():
  rng = np.random.default_rng(5)
  features = rng.uniform(0, 2, (60, 3)).astype(np.float32)
  values = rng.uniform(0, 1, (60, 2)).astype(np.float64)
  probe = rng.uniform(-1, 1, (60, 2)).astype(np.float32)
  lat = build(features)

  def loss(v):
    return jnp.sum(jnp.sin(lattice.filter(lat, v)) * probe)

  grad = np.asarray(jax.jit(jax.grad(loss))(values.astype(np.float32)))
  direction = rng.normal(size=values.shape)
  eps = 1e-2
  plus = float(loss((values + eps * direction).astype(np.float32)))
  minus = float(loss((values - eps * direction).astype(np.float32)))
  numeric = (plus - minus) / (2 * eps)
  assert abs(float(np.sum(grad * direction)) - numeric) < 2e-3 * max(
      1.0, abs(numeric))


def test_gradient_wrt_features_is_finite():
  rng = np.random.default_rng(6)
  features = rng.uniform(0, 2, (60, 3)).astype(np.float32)
  values = rng.uniform(0, 1, (60, 2)).astype(np.float32)
  grad = jax.jit(jax.grad(
      lambda f: jnp.sum(lattice.filter(lattice.build(f), values))))(features)
  assert np.all(np.isfinite(grad)) and np.any(grad != 0)


def test_static_shapes_compile_once_and_max_points():
  traces = []

  @functools.partial(jax.jit, static_argnames='max_points')
  def run(features, values, max_points=None):
    traces.append(1)
    lat = lattice.build(features, max_points=max_points)
    return lattice.filter(lat, values), lat.num_points, lat.overflow

  rng = np.random.default_rng(7)
  outs = []
  for seed in range(2):
    features = np.random.default_rng(seed).uniform(0, 3, (300, 5)).astype(
        np.float32)
    outs.append(run(features, np.ones((300, 1), np.float32)))
  assert len(traces) == 1
  out, num_points, overflow = outs[-1]
  assert 0 < int(num_points) <= 300 * 6 and not bool(overflow)
  # A tighter static bound that still holds gives the same result.
  tight, _, tight_overflow = run(features, np.ones((300, 1), np.float32),
                                 max_points=int(num_points))
  assert not bool(tight_overflow)
  np.testing.assert_allclose(tight, out, rtol=1e-6)
  _, _, small_overflow = run(features, np.ones((300, 1), np.float32),
                             max_points=int(num_points) - 1)
  assert bool(small_overflow)
  del rng


def test_exact_filter_brute_force():
  rng = np.random.default_rng(8)
  features = rng.normal(size=(5, 2)).astype(np.float32)
  values = rng.normal(size=(5, 3)).astype(np.float32)
  valid = np.array([True, True, False, True, True])
  d2 = ((features[:, None] - features[None]) ** 2).sum(-1)
  kernel = np.exp(-d2 / 2) * (valid[:, None] & valid[None])
  np.testing.assert_allclose(exact(features, values, valid), kernel @ values,
                             rtol=1e-5, atol=1e-6)


def test_host_build_equals_device_build():
  features = _image_features(30, 40, 5, sxy=6.0)
  valid = np.arange(30 * 40) < 30 * 40 - 55
  keys, weights = jax.jit(lattice.embed)(features, valid)
  m = lattice.bucket(lattice_host.host_num_points(keys))
  on_host = lattice_host.build_host(keys, weights, m)
  on_device = build(features, valid, max_points=m)
  assert int(on_host.num_points) == int(on_device.num_points) <= m
  for name, a, b in zip(lattice.Lattice._fields, on_host, on_device):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b), err_msg=name)


def test_bucket_holds_the_points_with_little_slack():
  for num in (1, 1000, 1025, 5000, 128461, 10**6):
    size = lattice.bucket(num)
    assert num <= size <= max(1024, 1.25 * num + 1)


def _box(d, seed=9):
  rng = np.random.default_rng(seed)
  low = rng.uniform(-5, 0, d)
  return low, low + rng.uniform(1, 40, d)


def test_packed_build_equals_unpacked_build():
  """With a `packing` (one uint32 sort, binary-searched neighbours) the
  lattice is the same, array for array, as with D-key sorts."""
  features = _image_features(30, 40, 5, sxy=6.0)
  valid = np.arange(30 * 40) < 30 * 40 - 55
  pack = packing.packing(features.min(0), features.max(0))
  assert pack is not None
  m = lattice.bucket(int(jax.jit(lattice.count_points)(features, valid)))
  packed = build(features, valid, max_points=m, pack=pack)
  unpacked = build(features, valid, max_points=m)
  assert 0 < int(packed.num_points) <= m
  for name, a, b in zip(lattice.Lattice._fields, packed, unpacked):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b), err_msg=name)


@pytest.mark.parametrize('d', [2, 5])
def test_packing_holds_every_vertex_and_its_neighbours(d):
  """Vertices of features anywhere in the box, corners included, have
  coords at least one step inside the packing's range."""
  low, high = _box(d)
  pack = packing.packing(low, high)
  corners = np.array(np.meshgrid(*zip(low, high))).reshape(d, -1).T
  inside = np.random.default_rng(d).uniform(low, high, (20000, d))
  coords, _ = jax.jit(lattice.embed)(np.concatenate([corners, inside]).astype(np.float32))
  coords = np.asarray(coords).reshape(-1, d)
  assert np.all(coords.min(0) - 1 >= np.array(pack.low))
  assert np.all(coords.max(0) + 1 <= np.array(pack.low) + np.array(pack.span) - 1)


def test_packing_clips_features_to_its_range():
  low, high = _box(5)
  pack = packing.packing(low, high)
  features = np.random.default_rng(10).uniform(low - 3, high + 3, (400, 5)).astype(np.float32)
  values = np.random.default_rng(11).uniform(0, 1, (400, 2)).astype(np.float32)
  clipped = np.clip(features, low.astype(np.float32), high.astype(np.float32))
  np.testing.assert_array_equal(filter_(build(features, pack=pack), values),
                                filter_(build(clipped), values))


def test_packing_refuses_ranges_wider_than_uint32():
  assert packing.packing([0.0] * 5, [500 / 67, 375 / 67] + [255 / 3] * 3) is not None
  assert packing.packing([0.0] * 5, [2000.0] * 5) is None


def test_packed_build_sorts_once_with_one_uint32_key():
  """The shape XLA's GPU backend runs as a CUB radix sort: one sort, a
  uint32 key with a 32-bit payload and a plain less-than. Without a packing
  the build sorts D+2 times, each with D or more keys."""
  features = np.zeros((64, 5), np.float32)
  low, high = _box(5)
  lower = lambda pack: jax.jit(lambda f: lattice.build(f, pack=pack)).lower(features).as_text()
  packed = lower(packing.packing(low, high))
  sorts = re.findall(r'"stablehlo.sort"\((.*?)\).*?\n\s*\^bb0\((.*?)\):\n\s*(.*)\n', packed)
  assert len(sorts) == 1
  operands, args, compare = sorts[0]
  assert len(operands.split(',')) == 2 and args.count('tensor<ui32>') == 2
  assert args.count('tensor<i32>') == 2 and re.search(r'compare\s+LT, %arg\d, %arg\d, UNSIGNED', compare)
  assert lower(None).count('"stablehlo.sort"') == 1 + 6
