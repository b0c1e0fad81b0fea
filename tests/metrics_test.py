"""Metrics against a plain-numpy computation, including adversarial cases."""

import numpy as np
import pytest

from deeplab_jax import metrics

NAMES = ('a', 'b', 'c', 'd')


def _numpy_confusion(labels, preds, valid, n):
  keep = valid & (labels != 255)
  cm = np.zeros((n, n), np.int64)
  np.add.at(cm, (labels[keep], preds[keep]), 1)
  return cm


def _numpy_miou(labels, preds, valid, n):
  keep = valid & (labels != 255)
  ious = []
  for c in range(n):
    inter = np.sum(keep & (labels == c) & (preds == c))
    union = np.sum(keep & ((labels == c) | (preds == c)))
    if union:
      ious.append(inter / union)
  return np.mean(ious), np.mean(labels[keep] == preds[keep])


@pytest.mark.parametrize('seed', [0, 1, 2])
def test_confusion_and_summary_match_numpy(seed):
  rng = np.random.default_rng(seed)
  labels = rng.integers(0, 4, size=(3, 9, 11)).astype(np.int32)
  labels[rng.random(labels.shape) < 0.2] = 255
  preds = rng.integers(0, 4, size=labels.shape).astype(np.int32)
  valid = rng.random(labels.shape) < 0.8
  cm = np.asarray(metrics.confusion_matrix(labels, preds, 4, valid))
  np.testing.assert_array_equal(cm, _numpy_confusion(labels, preds, valid, 4))
  summary = metrics.summarize(cm, NAMES)
  miou, acc = _numpy_miou(labels, preds, valid, 4)
  assert summary['mean_iou'] == pytest.approx(miou, abs=1e-12)
  assert summary['pixel_accuracy'] == pytest.approx(acc, abs=1e-12)


def test_void_and_padding_do_not_change_metrics():
  rng = np.random.default_rng(3)
  labels = rng.integers(0, 4, size=(2, 8, 8)).astype(np.int32)
  preds = rng.integers(0, 4, size=labels.shape).astype(np.int32)
  base = np.asarray(metrics.confusion_matrix(labels, preds, 4))
  voided = labels.copy()
  voided[:, :3] = 255
  other_preds = preds.copy()
  other_preds[:, :3] = 0
  padded = np.ones(labels.shape, bool)
  padded[:, :3] = False
  cm_void = np.asarray(metrics.confusion_matrix(voided, other_preds, 4))
  cm_pad = np.asarray(metrics.confusion_matrix(labels, other_preds, 4, padded))
  expected = _numpy_confusion(labels[:, 3:], preds[:, 3:], np.ones((2, 5, 8), bool), 4)
  np.testing.assert_array_equal(cm_void, expected)
  np.testing.assert_array_equal(cm_pad, expected)
  assert base.sum() == 128 and cm_void.sum() == 80


def test_class_absent_from_ground_truth_and_predictions():
  labels = np.array([[0, 0, 1, 1]])
  preds = np.array([[0, 1, 1, 1]])
  summary = metrics.summarize(metrics.confusion_matrix(labels, preds, 4), NAMES)
  assert summary['per_class_iou'] == {'a': 0.5, 'b': 2 / 3, 'c': None, 'd': None}
  assert summary['mean_iou'] == pytest.approx((0.5 + 2 / 3) / 2)
  assert summary['mean_class_accuracy'] == pytest.approx((0.5 + 1.0) / 2)
  assert summary['frequency_weighted_iou'] == pytest.approx(0.5 * 0.5 + 0.5 * 2 / 3)


def test_class_only_predicted_counts_with_zero_iou():
  labels = np.array([[0, 0, 0, 0]])
  preds = np.array([[0, 0, 0, 2]])
  summary = metrics.summarize(metrics.confusion_matrix(labels, preds, 4), NAMES)
  assert summary['per_class_iou']['c'] == 0.0
  assert summary['mean_iou'] == pytest.approx((0.75 + 0.0) / 2)


def test_all_void_gives_nan_not_an_exception():
  labels = np.full((1, 4, 4), 255)
  summary = metrics.summarize(metrics.confusion_matrix(labels, labels * 0, 4), NAMES)
  assert np.isnan(summary['mean_iou']) and summary['num_pixels'] == 0
  assert 'mean IoU' in metrics.format_table(summary)
