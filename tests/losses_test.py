"""Cross-entropy: mean over valid pixels; void (255) pixels change nothing."""

import jax
import jax.numpy as jnp
import numpy as np

from deeplab_jax import losses


def _numpy_loss(logits, labels):
  shifted = logits - logits.max(-1, keepdims=True)
  log_probs = shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))
  valid = labels != 255
  picked = np.take_along_axis(log_probs, np.where(valid, labels, 0)[..., None], -1)[..., 0]
  return -picked[valid].mean()


def test_loss_is_mean_over_valid_pixels():
  rng = np.random.default_rng(0)
  logits = rng.normal(size=(2, 5, 7, 4)).astype(np.float32) * 3
  labels = rng.integers(0, 4, size=(2, 5, 7)).astype(np.int32)
  labels[rng.random(labels.shape) < 0.3] = 255
  loss, count = losses.softmax_cross_entropy(jnp.asarray(logits), jnp.asarray(labels))
  np.testing.assert_allclose(loss, _numpy_loss(logits, labels), rtol=1e-6)
  assert count == (labels != 255).sum()


def test_void_pixels_change_neither_loss_nor_gradient():
  rng = np.random.default_rng(1)
  logits = rng.normal(size=(1, 6, 6, 3)).astype(np.float32)
  labels = rng.integers(0, 3, size=(1, 6, 6)).astype(np.int32)
  labels[0, :2] = 255
  other = logits.copy()
  other[0, :2] = rng.normal(size=(2, 6, 3)) * 100  # Anything at void pixels.
  grad = jax.value_and_grad(lambda x: losses.softmax_cross_entropy(x, labels)[0])
  (loss_a, grad_a), (loss_b, grad_b) = grad(logits), grad(other)
  assert loss_a == loss_b
  np.testing.assert_array_equal(grad_a, grad_b)
  assert np.all(grad_a[0, :2] == 0)


def test_all_void_gives_zero_loss():
  loss, count = losses.softmax_cross_entropy(jnp.ones((1, 2, 2, 3)),
                                             jnp.full((1, 2, 2), 255))
  assert loss == 0 and count == 0


def test_shrunk_labels_mode_uses_nearest_labels_at_logit_size():
  rng = np.random.default_rng(2)
  logits = rng.normal(size=(1, 3, 4, 3)).astype(np.float32)
  labels = rng.integers(0, 3, size=(1, 24, 32)).astype(np.int32)
  loss, count = losses.segmentation_loss(logits, labels, upsample_logits=False)
  expected = _numpy_loss(logits, labels[:, ::8, ::8])
  np.testing.assert_allclose(loss, expected, rtol=1e-6)
  assert count == 12
