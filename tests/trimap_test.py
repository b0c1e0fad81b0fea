"""Trimap (boundary band) metrics against hand-checked masks and brute force."""

import numpy as np
import pytest

from deeplab_jax import metrics
from deeplab_jax.errors import UserError

V = 255

# 7x7: class 1 above, class 0 below, a 3-pixel void segment in the middle row.
LABELS_7x7 = np.array([
    [1, 1, 1, 1, 1, 1, 1],
    [1, 1, 1, 1, 1, 1, 1],
    [1, 1, 1, 1, 1, 1, 1],
    [1, 1, V, V, V, 0, 0],
    [0, 0, 0, 0, 0, 0, 0],
    [0, 0, 0, 0, 0, 0, 0],
    [0, 0, 0, 0, 0, 0, 0],
])
# distance <= 1: the void segment and its 4-neighbours (diagonals are sqrt 2).
BAND1_7x7 = np.array([
    [0, 0, 0, 0, 0, 0, 0],
    [0, 0, 0, 0, 0, 0, 0],
    [0, 0, 1, 1, 1, 0, 0],
    [0, 1, 1, 1, 1, 1, 0],
    [0, 0, 1, 1, 1, 0, 0],
    [0, 0, 0, 0, 0, 0, 0],
    [0, 0, 0, 0, 0, 0, 0],
], bool)
# distance <= 2: adds diagonals (sqrt 2) and 2 px straight; not sqrt 5.
BAND2_7x7 = np.array([
    [0, 0, 0, 0, 0, 0, 0],
    [0, 0, 1, 1, 1, 0, 0],
    [0, 1, 1, 1, 1, 1, 0],
    [1, 1, 1, 1, 1, 1, 1],
    [0, 1, 1, 1, 1, 1, 0],
    [0, 0, 1, 1, 1, 0, 0],
    [0, 0, 0, 0, 0, 0, 0],
], bool)


def _plain_confusion(labels, preds, keep, n):
  """Per-class loops, independent of metrics.py."""
  cm = np.zeros((n, n), np.int64)
  for t in range(n):
    for p in range(n):
      cm[t, p] = np.sum(keep & (labels == t) & (preds == p))
  return cm


def _brute_distance(boundary):
  """Distance from every pixel to the nearest True pixel, by enumeration."""
  ys, xs = np.nonzero(boundary)
  yy, xx = np.mgrid[:boundary.shape[0], :boundary.shape[1]]
  d2 = (yy[..., None] - ys) ** 2 + (xx[..., None] - xs) ** 2
  return np.sqrt(d2.min(axis=-1))


def test_band_masks_hand_checked():
  distance = metrics.boundary_distance(LABELS_7x7)
  assert distance.dtype == np.float32 and distance.shape == (7, 7)
  np.testing.assert_array_equal(distance <= 1, BAND1_7x7)
  np.testing.assert_array_equal(distance <= 2, BAND2_7x7)
  assert distance[3, 0] == 2 and distance[2, 1] == pytest.approx(np.sqrt(2))
  assert distance[0, 0] == pytest.approx(np.sqrt(9 + 4))


def test_trimap_confusion_hand_checked():
  preds = np.where(LABELS_7x7 == V, 0, LABELS_7x7)
  preds[2, 2] = 0  # A wrong prediction inside both bands.
  preds[0, 0] = 0  # One outside both bands.
  tri = metrics.trimap_confusion(LABELS_7x7[None], preds[None], 2, [1, 2])
  assert tri.dtype == np.int64 and tri.shape == (2, 2, 2)
  # Width 1: row 2 cols 2-4 (class 1, one wrong), row 3 col 1 (1), col 5 (0),
  # row 4 cols 2-4 (0).
  np.testing.assert_array_equal(tri[0], [[4, 0], [1, 3]])
  # Width 2: 23 band pixels less 3 void = 20; 10 of class 1 (one wrong), 10 of 0.
  np.testing.assert_array_equal(tri[1], [[10, 0], [1, 9]])


def test_edges_boundary_without_void():
  labels = np.array([[1, 1, 2, 2, 2]] * 4)
  distance = metrics.boundary_distance(labels)  # 'auto': no void, so edges.
  np.testing.assert_array_equal(distance, [[1, 0, 0, 1, 2]] * 4)
  np.testing.assert_array_equal(
      metrics.boundary_distance(labels, boundary='edges'), distance)
  assert np.isinf(metrics.boundary_distance(labels, boundary='void')).all()
  # 'edges' on an image with void: void is a label like any other.
  voided = labels.copy()
  voided[0, 4] = V
  edges = metrics.boundary_mask(voided, boundary='edges')
  assert edges[0, 4] and edges[0, 3] and edges[1, 4] and not edges[2, 4]
  np.testing.assert_array_equal(metrics.boundary_mask(voided), voided == V)


def test_single_label_image_has_no_band():
  labels = np.full((1, 6, 6), 3)
  assert np.isinf(metrics.boundary_distance(labels[0])).all()
  tri = metrics.trimap_confusion(labels, labels, 4, [1, 100])
  assert tri.sum() == 0


@pytest.mark.parametrize('seed', [0, 1, 2])
def test_random_against_brute_force(seed):
  rng = np.random.default_rng(seed)
  n, widths = 4, [3, 1, 2.5, 0, 6, 1]  # Unsorted, repeated, fractional, zero.
  labels = rng.integers(0, n, size=(3, 12, 10))
  labels[rng.random(labels.shape) < 0.1] = V
  labels[2, 4:7] = V  # Image 2 has a void line; image 1 gets no void at all.
  labels[1] = np.where(labels[1] == V, 0, labels[1])
  preds = rng.integers(0, n, size=labels.shape)
  valid = np.ones(labels.shape, bool)
  valid[0, :, 8:] = False  # Padding on image 0.
  tri = metrics.trimap_confusion(labels, preds, n, widths, valid)
  expected = np.zeros((len(widths), n, n), np.int64)
  for i in range(3):
    if (labels[i][valid[i]] == V).any():
      boundary = (labels[i] == V) & valid[i]
    else:
      boundary = np.zeros(labels[i].shape, bool)
      for y in range(labels.shape[1]):
        for x in range(labels.shape[2]):
          for dy, dx in ((0, 1), (1, 0), (0, -1), (-1, 0)):
            yy, xx = y + dy, x + dx
            if (0 <= yy < labels.shape[1] and 0 <= xx < labels.shape[2]
                and valid[i, y, x] and valid[i, yy, xx]
                and labels[i, y, x] != labels[i, yy, xx]):
              boundary[y, x] = True
    distance = _brute_distance(boundary)
    for k, w in enumerate(widths):
      keep = valid[i] & (labels[i] != V) & (distance <= w + 1e-6)
      expected[k] += _plain_confusion(labels[i], preds[i], keep, n)
  np.testing.assert_array_equal(tri, expected)


def test_wide_band_equals_full_confusion_of_non_void_pixels():
  rng = np.random.default_rng(4)
  labels = rng.integers(0, 5, size=(2, 20, 30))
  labels[:, 10, 5:9] = V
  preds = rng.integers(0, 5, size=labels.shape)
  valid = np.ones(labels.shape, bool)
  valid[1, 15:] = False
  tri = metrics.trimap_confusion(labels, preds, 5, [1, 1000], valid)
  full = _plain_confusion(labels, preds, valid & (labels != V), 5)
  np.testing.assert_array_equal(tri[1], full)
  np.testing.assert_array_equal(
      tri[1], np.asarray(metrics.confusion_matrix(labels, preds, 5, valid)))
  assert 0 < tri[0].sum() < full.sum()


def test_padding_is_neither_scored_nor_a_boundary():
  """A void-padded, valid-masked image scores exactly like the image itself."""
  rng = np.random.default_rng(5)
  labels = rng.integers(0, 3, size=(9, 11))
  labels[4, 3:6] = V
  preds = rng.integers(0, 3, size=labels.shape)
  padded_labels = np.full((16, 16), V)
  padded_labels[:9, :11] = labels
  padded_preds = np.zeros((16, 16), int)
  padded_preds[:9, :11] = preds
  valid = np.zeros((16, 16), bool)
  valid[:9, :11] = True
  widths = [1, 2, 4, 8]
  np.testing.assert_array_equal(
      metrics.trimap_confusion(padded_labels[None], padded_preds[None], 3,
                               widths, valid[None]),
      metrics.trimap_confusion(labels[None], preds[None], 3, widths))
  # Without the valid mask the padding's void would widen the band.
  unmasked = metrics.trimap_confusion(padded_labels[None], padded_preds[None], 3,
                                      widths)
  assert unmasked[0].sum() > metrics.trimap_confusion(labels, preds, 3, [1]).sum()


def test_all_void_and_empty_batches():
  labels = np.full((2, 5, 5), V)
  tri = metrics.trimap_confusion(labels, labels * 0, 3, [1, 2])
  assert tri.shape == (2, 3, 3) and tri.sum() == 0
  summary = metrics.trimap_summary(tri, [1, 2], ['a', 'b', 'c'])
  assert summary['num_pixels'] == [0, 0]
  assert all(np.isnan(v) for v in summary['mean_iou'])
  assert 'n/a' in metrics.format_trimap_table(summary)


def test_bad_arguments():
  labels = np.zeros((1, 4, 4), int)
  with pytest.raises(UserError):
    metrics.trimap_confusion(labels, labels, 2, [])
  with pytest.raises(UserError):
    metrics.trimap_confusion(labels, labels, 2, [-1])
  with pytest.raises(UserError):
    metrics.trimap_confusion(labels, labels + 2, 2, [1])  # Prediction 2 of 2 classes.
  with pytest.raises(UserError):
    metrics.boundary_distance(labels[0], boundary='outline')


def test_summary_and_table():
  labels = LABELS_7x7[None]
  preds = np.where(labels == V, 0, labels)
  preds[0, 2, 2] = 0
  tri = metrics.trimap_confusion(labels, preds, 2, [1, 2])
  before = metrics.trimap_summary(tri, [1, 2], ['bg', 'fg'])
  assert before['widths'] == [1, 2] and before['num_pixels'] == [8, 20]
  # Width 1: IoU(bg) = 4 / 5, IoU(fg) = 3 / 4.
  assert before['mean_iou'][0] == pytest.approx((4 / 5 + 3 / 4) / 2)
  assert before['pixel_accuracy'][1] == pytest.approx(19 / 20)
  assert before['per_class_iou'][1]['fg'] == pytest.approx(9 / 10)
  after = metrics.trimap_summary(metrics.trimap_confusion(
      labels, np.where(labels == V, 0, labels), 2, [1, 2]), [1, 2], ['bg', 'fg'])
  assert after['mean_iou'] == [1.0, 1.0]
  table = metrics.format_trimap_table(before, after)
  lines = table.splitlines()
  assert len(lines) == 4 and 'after CRF' in lines[0]
  assert lines[2].startswith('| 1 | 8 | 0.7750 | 1.0000 | +0.2250 |')
  assert len(metrics.format_trimap_table(before).splitlines()) == 4
  with pytest.raises(ValueError):
    metrics.format_trimap_table(before, dict(after, widths=[1, 3]))


def test_precomputed_distances_give_the_same_counts():
  rng = np.random.default_rng(6)
  labels = rng.integers(0, 3, size=(3, 8, 9))
  labels[:2, 3, 2:6] = V
  valid = np.ones(labels.shape, bool)
  valid[1, :, 7:] = False
  preds_a = rng.integers(0, 3, size=labels.shape)
  preds_b = rng.integers(0, 3, size=labels.shape)
  distance = metrics.boundary_distance(labels, valid_HxW=valid)
  assert distance.shape == labels.shape and distance.dtype == np.float32
  for i in range(3):
    np.testing.assert_array_equal(
        distance[i], metrics.boundary_distance(labels[i], valid_HxW=valid[i]))
  for preds in (preds_a, preds_b):
    np.testing.assert_array_equal(
        metrics.trimap_confusion(labels, preds, 3, [1, 3], valid,
                                 distance_BxHxW=distance),
        metrics.trimap_confusion(labels, preds, 3, [1, 3], valid))
  # The given distances are the ones used: all zero puts every pixel in the band.
  everywhere = metrics.trimap_confusion(labels, preds_a, 3, [1], valid,
                                        distance_BxHxW=np.zeros(labels.shape))
  np.testing.assert_array_equal(
      everywhere[0], _plain_confusion(labels, preds_a, valid & (labels != V), 3))
  assert metrics.boundary_distance(labels[:0]).shape == (0, 8, 9)
  with pytest.raises(ValueError):
    metrics.trimap_confusion(labels, preds_a, 3, [1], distance_BxHxW=distance[:2])
