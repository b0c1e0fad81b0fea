"""Segmentation metrics from ONE confusion matrix accumulated over a split.

Rows are ground truth, columns predictions. Void pixels (255) and padding never
enter the matrix. A class absent from both ground truth and predictions has no
IoU (None) and is left out of the means, as in the VOC devkit.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np


def confusion_matrix(labels_BxHxW, preds_BxHxW, num_classes, valid_BxHxW=None,
                     ignore_label=255):
  """(C, C) int32 counts of (ground truth, prediction) pairs; jittable."""
  valid = (labels_BxHxW != ignore_label) & (labels_BxHxW >= 0) & (
      labels_BxHxW < num_classes)
  if valid_BxHxW is not None:
    valid = valid & valid_BxHxW
  index = jnp.where(valid, labels_BxHxW * num_classes + preds_BxHxW, 0)
  counts = jnp.bincount(index.ravel(), weights=valid.ravel().astype(jnp.int32),
                        length=num_classes * num_classes)
  return counts.reshape(num_classes, num_classes).astype(jnp.int32)


def summarize(confusion, class_names):
  """mIoU, pixel accuracy, mean class accuracy, fw-IoU and per-class IoU."""
  cm = np.asarray(confusion, np.float64)
  true_pos = np.diag(cm)
  gt = cm.sum(axis=1)
  pred = cm.sum(axis=0)
  union = gt + pred - true_pos
  with np.errstate(divide='ignore', invalid='ignore'):
    iou = np.where(union > 0, true_pos / union, np.nan)
    class_acc = np.where(gt > 0, true_pos / gt, np.nan)
  total = cm.sum()
  freq = gt / total if total else np.zeros_like(gt)
  present = ~np.isnan(iou)
  return {
      'mean_iou': float(np.nanmean(iou)) if present.any() else float('nan'),
      'pixel_accuracy': float(true_pos.sum() / total) if total else float('nan'),
      'mean_class_accuracy': (float(np.nanmean(class_acc))
                              if (gt > 0).any() else float('nan')),
      'frequency_weighted_iou': float((freq[present] * iou[present]).sum()),
      'per_class_iou': {name: (None if np.isnan(v) else float(v))
                        for name, v in zip(class_names, iou)},
      'num_pixels': int(total),
  }


def format_table(summary):
  """A Markdown table of per-class IoU followed by the summary numbers."""
  lines = ['| class | IoU |', '|---|---|']
  for name, value in summary['per_class_iou'].items():
    lines.append(f'| {name} | {"n/a" if value is None else f"{value:.4f}"} |')
  lines.append(f'| **mean IoU** | **{summary["mean_iou"]:.4f}** |')
  lines.append('')
  lines.append(f'pixel accuracy {summary["pixel_accuracy"]:.4f}, '
               f'mean class accuracy {summary["mean_class_accuracy"]:.4f}, '
               f'frequency-weighted IoU {summary["frequency_weighted_iou"]:.4f}, '
               f'{summary["num_pixels"]:,} scored pixels')
  return '\n'.join(lines)
