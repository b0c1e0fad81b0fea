"""Segmentation metrics from ONE confusion matrix accumulated over a split.

Rows are ground truth, columns predictions. Void pixels (255) and padding never
enter the matrix. A class absent from both ground truth and predictions has no
IoU (None) and is left out of the means, as in the VOC devkit.

    cm = metrics.confusion_matrix(labels_BxHxW, preds_BxHxW, 21, valid_BxHxW)  # jittable
    summary = metrics.summarize(total_cm, class_names)  # mean_iou, ...
    print(metrics.format_table(summary))

Boundary accuracy (DeepLab v1 Sec. 5, v2 Fig. 6: mIoU in a "trimap" band
around object boundaries) is host-side numpy, one call per evaluated batch:

    tri_KxCxC += metrics.trimap_confusion(labels, preds, 21, widths, valid)
    tri = metrics.trimap_summary(tri_KxCxC, widths, class_names)
    print(metrics.format_trimap_table(tri_before_crf, tri_after_crf))
"""

from __future__ import annotations

from collections.abc import Sequence

import jax.numpy as jnp
import numpy as np
from scipy import ndimage

from deeplab_jax.errors import UserError

IGNORE_LABEL = 255
BOUNDARY_MODES = ('auto', 'void', 'edges')
# The band widths (pixels) of DeepLab v2's boundary figure.
TRIMAP_WIDTHS = (1, 2, 3, 4, 5, 7, 10, 15, 20, 25, 30, 35, 40)


def confusion_matrix(labels_BxHxW, preds_BxHxW, num_classes, valid_BxHxW=None,
                     ignore_label=IGNORE_LABEL):
  """(C, C) int32 counts of (ground truth, prediction) pairs; jittable.

  Counted: pixels whose label is in [0, C) (so never `ignore_label`) and, when
  given, `valid_BxHxW` is True (padding is False). Predictions must be in [0, C).
  """
  valid = (labels_BxHxW != ignore_label) & (labels_BxHxW >= 0) & (
      labels_BxHxW < num_classes)
  if valid_BxHxW is not None:
    valid = valid & valid_BxHxW
  index = jnp.where(valid, labels_BxHxW * num_classes + preds_BxHxW, 0)
  counts = jnp.bincount(index.ravel(), weights=valid.ravel().astype(jnp.int32),
                        length=num_classes * num_classes)
  return counts.reshape(num_classes, num_classes).astype(jnp.int32)


def summarize(confusion, class_names):
  """mIoU, pixel accuracy, mean class accuracy, fw-IoU and per-class IoU.

  Args:
    confusion: (C, C) counts, rows ground truth, columns predictions.
    class_names: C names.

  Returns:
    {'mean_iou', 'pixel_accuracy', 'mean_class_accuracy',
     'frequency_weighted_iou': floats (NaN when no pixel was scored),
     'per_class_iou': {name: IoU, or None for a class in neither ground truth
                       nor predictions},
     'num_pixels': int}.
    A class only predicted has IoU 0 and counts in the mean IoU; a class absent
    from the ground truth is left out of the mean class accuracy.
  """
  cm = np.asarray(confusion, np.float64)
  if cm.ndim != 2 or cm.shape[0] != cm.shape[1]:
    raise ValueError(f'confusion matrix must be (C, C), got shape {cm.shape}')
  if len(class_names) != cm.shape[0]:
    raise UserError(f'{len(class_names)} class names for a {cm.shape[0]}-class '
                    'confusion matrix; check dataset.class_names and num_classes')
  true_pos = np.diag(cm)
  gt = cm.sum(axis=1)
  pred = cm.sum(axis=0)
  union = gt + pred - true_pos
  with np.errstate(divide='ignore', invalid='ignore'):
    iou = np.where(union > 0, true_pos / union, np.nan)
    class_acc = np.where(gt > 0, true_pos / gt, np.nan)
  total = cm.sum()
  present = ~np.isnan(iou)
  nan = float('nan')
  return {
      'mean_iou': float(np.mean(iou[present])) if present.any() else nan,
      'pixel_accuracy': float(true_pos.sum() / total) if total else nan,
      'mean_class_accuracy': (float(np.mean(class_acc[gt > 0]))
                              if (gt > 0).any() else nan),
      # Classes with ground truth pixels weighted by their share of them.
      'frequency_weighted_iou': (float((gt[gt > 0] * iou[gt > 0]).sum() / total)
                                 if total else nan),
      'per_class_iou': {name: (None if np.isnan(v) else float(v))
                        for name, v in zip(class_names, iou)},
      'num_pixels': int(total),
  }


def _fmt(value):
  return 'n/a' if value is None or np.isnan(value) else f'{value:.4f}'


def format_table(summary):
  """A Markdown table of per-class IoU followed by the summary numbers."""
  lines = ['| class | IoU |', '|---|---|']
  for name, value in summary['per_class_iou'].items():
    lines.append(f'| {name} | {_fmt(value)} |')
  lines.append(f'| **mean IoU** | **{_fmt(summary["mean_iou"])}** |')
  lines.append('')
  lines.append(f'pixel accuracy {_fmt(summary["pixel_accuracy"])}, '
               f'mean class accuracy {_fmt(summary["mean_class_accuracy"])}, '
               f'frequency-weighted IoU {_fmt(summary["frequency_weighted_iou"])}, '
               f'{summary["num_pixels"]:,} scored pixels')
  return '\n'.join(lines)


# ---------------------------------------------------------------------------
# Boundary accuracy: the trimap band around object boundaries.
# ---------------------------------------------------------------------------


def boundary_mask(labels_HxW, ignore_label=IGNORE_LABEL, boundary='auto',
                  valid_HxW=None):
  """HxW bool: the ground truth's boundary pixels, from which bands are measured.

  boundary='void': the void (`ignore_label`) pixels, DeepLab's definition (VOC
    draws a ~5 px void band along every object outline).
  boundary='edges': pixels with a 4-neighbour of a different label (void
    counts as a label; both sides of an edge are marked), for ground truth
    without a void band (e.g. Cityscapes, whose void marks regions, not outlines).
  boundary='auto': 'void' if the image has any valid void pixel, else 'edges'.
  Pixels where `valid_HxW` is False (padding) are never boundary pixels, and a
  label change between a valid and a padding pixel is no edge.
  """
  labels = np.asarray(labels_HxW)
  if labels.ndim != 2:
    raise ValueError(f'labels must be HxW, got shape {labels.shape}')
  if boundary not in BOUNDARY_MODES:
    raise UserError(f'boundary must be one of {BOUNDARY_MODES}, got {boundary!r}')
  valid = (np.ones(labels.shape, bool) if valid_HxW is None
           else np.asarray(valid_HxW, bool))
  if valid.shape != labels.shape:
    raise ValueError(f'valid {valid.shape} does not match labels {labels.shape}')
  void = (labels == ignore_label) & valid
  if boundary == 'void' or (boundary == 'auto' and void.any()):
    return void
  edges = np.zeros(labels.shape, bool)
  # Vertical then horizontal neighbour pairs, both valid, labels differ.
  change = (labels[1:] != labels[:-1]) & valid[1:] & valid[:-1]
  edges[1:] |= change
  edges[:-1] |= change
  change = (labels[:, 1:] != labels[:, :-1]) & valid[:, 1:] & valid[:, :-1]
  edges[:, 1:] |= change
  edges[:, :-1] |= change
  return edges


def boundary_distance(labels_HxW, ignore_label=IGNORE_LABEL, boundary='auto',
                      valid_HxW=None):
  """float32 HxW: each pixel's Euclidean distance to the nearest boundary pixel.

  Distance is between pixel centres, in pixels (exact, scipy's
  distance_transform_edt): 0 on boundary pixels (see `boundary_mask` for the
  `boundary` and `valid_HxW` options), 1 for their 4-neighbours, sqrt(2) for
  diagonal ones. The image border is not a boundary. +inf everywhere when the
  image has no boundary pixel. A trimap band of width w is `distance <= w`
  (inclusive: width 1 adds the 4-neighbours of the boundary, width 2 also the
  diagonal ones and those two pixels away in a row or column).
  BxHxW labels (and valid) give BxHxW distances, each image on its own.
  """
  labels = np.asarray(labels_HxW)
  if labels.ndim == 3:
    if not len(labels):
      return np.zeros(labels.shape, np.float32)
    valid = [None] * len(labels) if valid_HxW is None else valid_HxW
    if len(valid) != len(labels):
      raise ValueError(f'{len(valid)} valid masks for {len(labels)} label maps')
    return np.stack([boundary_distance(l, ignore_label, boundary, v)
                     for l, v in zip(labels, valid)]).reshape(labels.shape)
  on_boundary = boundary_mask(labels, ignore_label, boundary, valid_HxW)
  if not on_boundary.any():
    return np.full(on_boundary.shape, np.inf, np.float32)
  return ndimage.distance_transform_edt(~on_boundary).astype(np.float32)


def _check_widths(widths):
  widths_K = np.asarray(widths, np.float64).reshape(-1)
  if widths_K.size == 0 or np.isnan(widths_K).any() or (widths_K < 0).any():
    raise UserError(f'trimap widths must be a non-empty list of numbers >= 0, '
                    f'got {widths!r}')
  return widths_K


def trimap_confusion(labels_BxHxW, preds_BxHxW, num_classes, widths,
                     valid_BxHxW=None, ignore_label=IGNORE_LABEL, boundary='auto',
                     distance_BxHxW=None):
  """int64 (K, C, C): a confusion matrix per band width, summed over the batch.

  Entry k counts the pixels that `confusion_matrix` counts (label in [0, C),
  so never void; `valid_BxHxW` True) AND lie within `widths[k]` pixels of a
  boundary: `boundary_distance(...) <= widths[k]`, distances measured per image
  with padding excluded (see `boundary_distance`). Widths may be in any order
  and need not be integers; a width past the image's diagonal gives the full
  confusion matrix of an image that has a boundary. Each image's distance map
  is computed once and binned against the sorted widths, so the cost hardly
  grows with K. HxW inputs are taken as a batch of one.

  The distance transform is most of the cost (about 25 ms of ~30 ms for a
  513x513 image): to score several predictions of the same batch (before and
  after the CRF) compute `boundary_distance(labels, ignore_label, boundary,
  valid)` once and pass it as `distance_BxHxW`.
  """
  labels = np.asarray(labels_BxHxW)
  preds = np.asarray(preds_BxHxW)
  if labels.ndim == 2:
    labels, preds = labels[None], preds[None]
    if valid_BxHxW is not None:
      valid_BxHxW = np.asarray(valid_BxHxW)[None]
    if distance_BxHxW is not None:
      distance_BxHxW = np.asarray(distance_BxHxW)[None]
  if labels.ndim != 3 or preds.shape != labels.shape:
    raise ValueError(f'labels {labels.shape} and predictions {preds.shape} must '
                     'be the same BxHxW shape')
  valid = (np.ones(labels.shape, bool) if valid_BxHxW is None
           else np.asarray(valid_BxHxW, bool))
  if valid.shape != labels.shape:
    raise ValueError(f'valid {valid.shape} does not match labels {labels.shape}')
  if distance_BxHxW is not None and np.shape(distance_BxHxW) != labels.shape:
    raise ValueError(f'distance {np.shape(distance_BxHxW)} does not match labels '
                     f'{labels.shape}')
  widths_K = _check_widths(widths)
  order = np.argsort(widths_K, kind='stable')
  sorted_K = widths_K[order]
  num_widths, c2 = len(sorted_K), num_classes * num_classes

  scored = valid & (labels != ignore_label) & (labels >= 0) & (labels < num_classes)
  if scored.any():
    p = preds[scored]
    if p.min() < 0 or p.max() >= num_classes:
      raise UserError(f'predictions span {p.min()}..{p.max()}, outside the '
                      f'{num_classes} classes; does the model match the dataset?')
  counts = np.zeros((num_widths + 1) * c2, np.int64)
  for i in range(labels.shape[0]):
    keep = scored[i]
    if not keep.any():
      continue
    if distance_BxHxW is None:
      distance = boundary_distance(labels[i], ignore_label, boundary, valid[i])
    else:
      distance = np.asarray(distance_BxHxW[i])
    distance = distance[keep]
    # Bin k: sorted_K[k-1] < distance <= sorted_K[k]; bin K: beyond every width.
    bin_index = np.searchsorted(sorted_K, distance, side='left')
    pair = labels[i][keep].astype(np.int64) * num_classes + preds[i][keep]
    counts += np.bincount(bin_index * c2 + pair, minlength=counts.size)
  banded = np.cumsum(counts.reshape(num_widths + 1, c2), axis=0)[:num_widths]
  result = np.empty_like(banded)
  result[order] = banded
  return result.reshape(num_widths, num_classes, num_classes)


def trimap_summary(trimap_confusions, widths, class_names):
  """Per band width metrics from `trimap_confusion`'s (K, C, C) sums.

  Returns {'widths': [K floats or ints as given], 'mean_iou': [K],
  'pixel_accuracy': [K], 'mean_class_accuracy': [K], 'num_pixels': [K ints],
  'per_class_iou': [K dicts as in `summarize`]}; NaN where a band has no pixels.
  """
  tri = np.asarray(trimap_confusions)
  widths = list(np.asarray(widths).reshape(-1).tolist())
  if tri.ndim != 3 or tri.shape[0] != len(widths):
    raise ValueError(f'trimap confusions of shape {tri.shape} do not match '
                     f'{len(widths)} widths')
  per_width = [summarize(cm, class_names) for cm in tri]
  keys = ('mean_iou', 'pixel_accuracy', 'mean_class_accuracy', 'num_pixels',
          'per_class_iou')
  return {'widths': widths, **{k: [s[k] for s in per_width] for k in keys}}


def format_trimap_table(summary_before, summary_after=None):
  """A Markdown table: band width (px), scored pixels, mIoU (before / after CRF).

  With `summary_after` (same widths), adds the after-CRF mIoU and the change.
  """
  widths = summary_before['widths']
  if summary_after is None:
    lines = ['| band width (px) | pixels | mean IoU |', '|---:|---:|---:|']
    for i, w in enumerate(widths):
      lines.append(f'| {w:g} | {summary_before["num_pixels"][i]:,} | '
                   f'{_fmt(summary_before["mean_iou"][i])} |')
    return '\n'.join(lines)
  if list(summary_after['widths']) != list(widths):
    raise ValueError(f'before/after CRF trimap widths differ: {widths} vs '
                     f'{summary_after["widths"]}')
  lines = ['| band width (px) | pixels | mean IoU before CRF | mean IoU after CRF '
           '| change |', '|---:|---:|---:|---:|---:|']
  for i, w in enumerate(widths):
    before, after = summary_before['mean_iou'][i], summary_after['mean_iou'][i]
    change = 'n/a' if np.isnan(before) or np.isnan(after) else f'{after - before:+.4f}'
    lines.append(f'| {w:g} | {summary_before["num_pixels"][i]:,} | {_fmt(before)} '
                 f'| {_fmt(after)} | {change} |')
  return '\n'.join(lines)
