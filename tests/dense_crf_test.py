"""The JAX dense CRF against the reference (pydensecrf2), batching, gradients."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from deeplab_jax import crf
from deeplab_jax.crf import dense_crf
from deeplab_jax.crf import lattice as lattice_lib
from deeplab_jax.testing import scenes

pydensecrf = pytest.importorskip('pydensecrf.densecrf')  # The dev extra installs it.


def _scene(seed, height=90, width=120):
  return scenes.natural_image_and_unaries(np.random.default_rng(seed), height, width, 21)


@pytest.mark.parametrize('normalization', ['symmetric', 'after'])
def test_jax_labels_agree_with_pydensecrf2_and_beat_the_unaries(normalization):
  params = crf.CRFParams(4, 67, 3, 3, 1, normalization=normalization, unary='probs')
  for seed in range(3):
    image, labels, probs = _scene(seed)
    q_jax = crf.refine(image[None], probs[None], params, backend='jax')[0]
    q_host = crf.refine(image[None], probs[None], params, backend='host', processes=1)[0]
    agree = (q_jax.argmax(-1) == q_host.argmax(-1)).mean()
    print(normalization, seed, 'labels agreeing with pydensecrf2:', agree)
    assert agree >= 0.99, (seed, agree)
    # The exact spatial kernel (the default) moves Q where labels are close.
    assert np.mean(np.abs(q_jax - q_host)) < 2e-3
    # With the spatial kernel on a lattice too, as densecrf does, Q matches.
    unary = dense_crf.unary_energy(jnp.asarray(probs)[None], 'probs')
    q_lattice = jax.jit(dense_crf.mean_field, static_argnames=('params', 'spatial'))(
        jnp.asarray(image)[None], unary, jnp.ones((1,) + image.shape[:2], bool),
        params=params, spatial='lattice')[0]
    np.testing.assert_allclose(q_lattice, q_host, atol=1e-3)
    before = (probs.argmax(-1) == labels).mean()
    for q in (q_jax, q_host):
      assert (q.argmax(-1) == labels).mean() > before + 0.05


def test_padded_batch_of_different_sizes_equals_each_image_alone():
  params = crf.RESNET_V2
  scenes_ = [_scene(3, 60, 80), _scene(4, 48, 70)]
  images = np.zeros((2, 60, 80, 3), np.uint8)
  logits = np.zeros((2, 60, 80, 21), np.float32)
  valid = np.zeros((2, 60, 80), bool)
  for i, (image, _, probs) in enumerate(scenes_):
    h, w = image.shape[:2]
    images[i, :h, :w], logits[i, :h, :w], valid[i, :h, :w] = image, np.log(probs), True
  # On a CPU the JAX backend builds its lattices in numpy; the device build
  # (what accelerators use) gives the same lattices, so the same Q.
  on_device = crf._refine_jax(images, logits, params, valid,  # pylint: disable=protected-access
                              lattice_on_host=False)
  for backend in ('jax', 'host'):
    q = crf.refine(images, logits, params, backend=backend, valid=valid, processes=2)
    if backend == 'jax':
      np.testing.assert_allclose(q, on_device, atol=1e-6)
    for i, (image, _, probs) in enumerate(scenes_):
      h, w = image.shape[:2]
      alone = crf.refine(image[None], np.log(probs)[None], params, backend=backend)[0]
      np.testing.assert_allclose(q[i, :h, :w], alone, atol=1e-4)
    # Padding takes no part: its Q is the unary's softmax.
    np.testing.assert_allclose(q[1, 48:], jax.nn.softmax(logits[1, 48:]), atol=1e-6)


def test_lattice_approximates_the_exact_kernels_on_a_tiny_image():
  image, _, probs = _scene(5, 16, 20)
  unary = dense_crf.unary_energy(jnp.asarray(probs)[None], 'probs')
  args = (jnp.asarray(image)[None], unary, jnp.ones((1, 16, 20), bool), crf.RESNET_V2)
  lattice = dense_crf.mean_field(*args, method='lattice')
  exact = dense_crf.mean_field(*args, method='exact')
  assert (lattice.argmax(-1) == exact.argmax(-1)).mean() >= 0.95


def test_grid_gaussian_filter_is_the_exact_spatial_kernel():
  rng = np.random.default_rng(0)
  values = rng.uniform(0, 1, (12, 17, 3)).astype(np.float32)
  valid = np.zeros((12, 17), bool)
  valid[:10, :15] = True
  for sigma in (1.0, 3.0):
    positions = dense_crf._positions(12, 17) / sigma  # pylint: disable=protected-access
    want = lattice_lib.gaussian_filter_exact(positions, values.reshape(-1, 3),
                                             valid.reshape(-1)).reshape(12, 17, 3)
    got = dense_crf.grid_gaussian_filter(jnp.asarray(values), sigma, jnp.asarray(valid))
    # Truncated at 4 sigma: the taps left out weigh under 3.4e-4 each of the centre's.
    np.testing.assert_allclose(got, want, rtol=0, atol=2e-3 * float(np.max(want)))
    assert float(np.max(np.abs(np.asarray(got)[~valid]))) == 0


def test_gradients_reach_the_unary_and_the_kernel_weights():
  image, labels, probs = _scene(6, 16, 20)
  params = crf.CRFParams(4, 67, 3, 3, 1, iterations=5)
  images, valid = jnp.asarray(image)[None], jnp.ones((1, 16, 20), bool)
  onehot = jax.nn.one_hot(labels, 21)[None]

  def loss(unary, weights):
    q = dense_crf.mean_field(images, unary, valid, params, weights=weights)
    return -jnp.mean(jnp.sum(onehot * jnp.log(q + 1e-8), -1))

  unary = dense_crf.unary_energy(jnp.asarray(probs)[None], 'probs')
  weights = (jnp.float32(4.0), jnp.float32(3.0))
  g_unary, g_weights = jax.jit(jax.grad(loss, argnums=(0, 1)))(unary, weights)
  assert jnp.all(jnp.isfinite(g_unary)) and float(jnp.abs(g_unary).sum()) > 0
  eps = 1e-2  # Central difference in w1.
  numeric = (loss(unary, (weights[0] + eps, weights[1])) -
             loss(unary, (weights[0] - eps, weights[1]))) / (2 * eps)
  np.testing.assert_allclose(g_weights[0], numeric, rtol=0.05, atol=1e-5)
