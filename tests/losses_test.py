"""Cross-entropy: mean over valid pixels; void (255) pixels change nothing."""

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image
import pytest

from deeplab_jax import losses
from deeplab_jax.models import resize


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
  labels = rng.integers(0, 3, size=(1, 17, 25)).astype(np.int32)
  loss, count = losses.segmentation_loss(logits, labels, upsample_logits=False,
                                         align_corners=True)
  expected = _numpy_loss(logits, labels[:, ::8, ::8])
  np.testing.assert_allclose(loss, expected, rtol=1e-6)
  assert count == 12


@pytest.mark.parametrize('in_size, out_size, stride', [(321, 41, 8), (321, 21, 16), (241, 31, 8),
                                                       (513, 65, 8), (161, 21, 8)])
def test_caffe_label_shrink_reads_the_pixels_under_the_score_cells(in_size, out_size, stride):
  # With corners aligned (Caffe's Interp, the VOC configs) output cell i of an
  # output-stride-8 map sits on input pixel 8 i of a 8k+1 crop: the shrunk
  # labels are those pixels, at every scale the MSC losses use.
  labels = np.arange(in_size * 3, dtype=np.int32).reshape(1, in_size, 3) % 251
  shrunk = resize.resize_nearest_labels(labels, (out_size, 3), align_corners=True)
  np.testing.assert_array_equal(shrunk, labels[:, ::stride])


def test_caffe_label_shrink_rounds_to_the_nearest_pixel():
  # 321 -> 31 (the 0.75 branch's map against the full crop): output i sits on
  # input i * 320 / 30, rounded.
  rows = resize.nearest_source_indices(321, 31, align_corners=True)
  np.testing.assert_array_equal(rows, np.floor(np.arange(31) * 320 / 30 + 0.5).astype(int))
  assert rows[0] == 0 and rows[-1] == 320


@pytest.mark.parametrize('in_size, out_size', [(321, 41), (321, 31), (24, 3), (500, 63), (7, 7)])
def test_half_pixel_label_shrink_equals_pil_nearest(in_size, out_size):
  # align_corners=False: the PyTorch port shrinks labels with PIL's NEAREST.
  labels = (np.arange(in_size * in_size).reshape(in_size, in_size) % 251).astype(np.uint8)
  pil = np.asarray(Image.fromarray(labels).resize((out_size, out_size), Image.NEAREST))
  ours = resize.resize_nearest_labels(labels[None], (out_size, out_size), align_corners=False)
  np.testing.assert_array_equal(ours[0], pil)


def test_per_image_normalisation_averages_each_images_own_mean():
  # Caffe's SoftmaxWithLoss at batch 1 x iter_size: each image's mean over its
  # own valid pixels, then the mean over images (an all-void image adds 0).
  rng = np.random.default_rng(4)
  logits = rng.normal(size=(3, 6, 5, 4)).astype(np.float32) * 2
  labels = rng.integers(0, 4, size=(3, 6, 5)).astype(np.int32)
  labels[0, :4] = 255  # Few valid pixels in image 0.
  labels[2] = 255  # None in image 2.
  loss, count = losses.softmax_cross_entropy(jnp.asarray(logits), jnp.asarray(labels),
                                             normalize='image')
  expected = (_numpy_loss(logits[:1], labels[:1]) + _numpy_loss(logits[1:2], labels[1:2])) / 3
  np.testing.assert_allclose(loss, expected, rtol=1e-6)
  assert count == 10 + 30
  by_batch, _ = losses.softmax_cross_entropy(jnp.asarray(logits), jnp.asarray(labels))
  assert abs(float(by_batch) - float(loss)) > 1e-3
  with pytest.raises(ValueError, match='normalize'):
    losses.softmax_cross_entropy(jnp.asarray(logits), jnp.asarray(labels), normalize='pixel')


@pytest.mark.parametrize('size, scale, expected', [
    (321, 0.75, 241), (513, 0.75, 385), (324, 0.75, 241), (325, 0.75, 244),
    (321, 0.5, 161), (324, 0.5, 162), (41, 1.5, 61), (41, 2.0, 81), (321, 1.0, 321)])
def test_caffe_interp_sizes(size, scale, expected):
  # Caffe's Interp: shrink_factor then zoom_factor, ((n - 1) // s) * z + 1.
  assert resize.scaled_size(size, scale, align_corners=True) == expected


def test_sum_normalisation_is_the_undivided_sum_over_valid_pixels():
  # FCN's SoftmaxWithLoss `normalize: false` (voc-fcn*/net.py): the sum over
  # every valid pixel of the batch, so a stride-1 map of 500x375 pixels at lr
  # 1e-10 moves the weights as Caffe's does.
  rng = np.random.default_rng(5)
  logits = rng.normal(size=(2, 7, 5, 3)).astype(np.float32)
  labels = rng.integers(0, 3, size=(2, 7, 5)).astype(np.int32)
  labels[1, :3] = 255
  loss, count = losses.softmax_cross_entropy(jnp.asarray(logits), jnp.asarray(labels),
                                             normalize='sum')
  valid = int((labels != 255).sum())
  assert count == valid == 70 - 15
  np.testing.assert_allclose(loss, _numpy_loss(logits, labels) * valid, rtol=1e-5)
