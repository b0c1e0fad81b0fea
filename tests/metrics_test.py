"""Metrics against a plain-numpy computation, including adversarial cases."""

import numpy as np
import pytest

from deeplab_jax import metrics
from deeplab_jax.errors import UserError

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


def _plain_summary(labels, preds, keep, n):
  """Every summary number by per-class loops over pixels (not the matrix)."""
  ious, accs, fw = {}, [], 0.0
  total = int(keep.sum())
  for c in range(n):
    gt_c = keep & (labels == c)
    pred_c = keep & (preds == c)
    union = int(np.sum(gt_c | pred_c))
    ious[NAMES[c]] = int(np.sum(gt_c & pred_c)) / union if union else None
    if gt_c.any():
      accs.append(np.sum(gt_c & pred_c) / np.sum(gt_c))
      fw += np.sum(gt_c) / total * ious[NAMES[c]]
  scored = [v for v in ious.values() if v is not None]
  return {
      'mean_iou': np.mean(scored) if scored else np.nan,
      'pixel_accuracy': np.sum(keep & (labels == preds)) / total if total else np.nan,
      'mean_class_accuracy': np.mean(accs) if accs else np.nan,
      'frequency_weighted_iou': fw if total else np.nan,
      'per_class_iou': ious,
      'num_pixels': total,
  }


def _assert_summaries_equal(got, want):
  assert got['num_pixels'] == want['num_pixels']
  assert got['per_class_iou'].keys() == want['per_class_iou'].keys()
  for name, value in want['per_class_iou'].items():
    if value is None:
      assert got['per_class_iou'][name] is None, name
    else:
      assert got['per_class_iou'][name] == pytest.approx(value, abs=1e-12), name
  for key in ('mean_iou', 'pixel_accuracy', 'mean_class_accuracy',
              'frequency_weighted_iou'):
    if np.isnan(want[key]):
      assert np.isnan(got[key]), key
    else:
      assert got[key] == pytest.approx(want[key], abs=1e-12), key


def _adversarial_batch(seed):
  """Class 3 never in ground truth, class 2 never predicted, class 1 only in
  padding; image 1 all void, image 2 all padding."""
  rng = np.random.default_rng(seed)
  labels = rng.choice([0, 1, 2, 255], size=(4, 10, 12)).astype(np.int32)
  preds = rng.choice([0, 1, 3], size=labels.shape).astype(np.int32)
  valid = np.ones(labels.shape, bool)
  valid[:, :, 9:] = False
  labels[:, :, :9][labels[:, :, :9] == 1] = 0  # Class 1's labels all in padding.
  labels[1] = 255
  valid[2] = False
  return labels, preds, valid


@pytest.mark.parametrize('seed', [0, 1, 2, 3])
def test_summary_matches_plain_loops_on_random_and_adversarial(seed):
  rng = np.random.default_rng(10 + seed)
  labels = rng.integers(0, 4, size=(2, 7, 9)).astype(np.int32)
  labels[rng.random(labels.shape) < 0.3] = 255
  preds = rng.integers(0, 4, size=labels.shape).astype(np.int32)
  valid = rng.random(labels.shape) < 0.9
  cases = [(labels, preds, valid), _adversarial_batch(seed)]
  for labels, preds, valid in cases:
    cm = np.asarray(metrics.confusion_matrix(labels, preds, 4, valid))
    keep = valid & (labels != 255)
    np.testing.assert_array_equal(cm, _numpy_confusion(labels, preds, valid, 4))
    _assert_summaries_equal(metrics.summarize(cm, NAMES),
                            _plain_summary(labels, preds, keep, 4))


def test_adversarial_batch_reaches_every_edge_case():
  labels, preds, valid = _adversarial_batch(0)
  summary = metrics.summarize(metrics.confusion_matrix(labels, preds, 4, valid), NAMES)
  # 'b' is predicted but its ground truth is all padding: IoU 0, not None.
  assert summary['per_class_iou']['b'] == 0.0
  # 'c' is never predicted, 'd' never in ground truth: both IoU 0.
  assert summary['per_class_iou']['c'] == 0.0
  assert summary['per_class_iou']['d'] == 0.0
  assert summary['num_pixels'] == np.sum(valid & (labels != 255)) > 0


def test_padding_predictions_never_counted():
  labels = np.zeros((1, 4, 4), np.int32)
  preds = np.zeros((1, 4, 4), np.int32)
  valid = np.zeros((1, 4, 4), bool)
  valid[:, :2] = True
  preds[:, 2:] = 3  # Garbage predictions in the padding.
  cm = np.asarray(metrics.confusion_matrix(labels, preds, 4, valid))
  assert cm[0, 0] == 8 and cm.sum() == 8
  assert metrics.summarize(cm, NAMES)['per_class_iou']['d'] is None


def test_empty_matrix_is_all_nan_and_formats():
  summary = metrics.summarize(np.zeros((4, 4), np.int64), NAMES)
  for key in ('mean_iou', 'pixel_accuracy', 'mean_class_accuracy',
              'frequency_weighted_iou'):
    assert np.isnan(summary[key]), key
  assert set(summary['per_class_iou'].values()) == {None}
  table = metrics.format_table(summary)
  assert '| **mean IoU** | **n/a** |' in table and '0 scored pixels' in table


def test_class_names_must_match_matrix():
  with pytest.raises(UserError):
    metrics.summarize(np.zeros((4, 4)), NAMES[:3])
  with pytest.raises(ValueError):
    metrics.summarize(np.zeros((4, 3)), NAMES[:3])
