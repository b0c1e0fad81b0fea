"""The Markdown report of an evaluation's summary, and its trimap entry.

Boundary accuracy: a confusion matrix per trimap band width
(`eval.trimap_widths`), summed over the split and processes, becomes the
summary's 'trimap' entry (`trimap_entry`) and a table of the report.
"""

from __future__ import annotations

import math

from deeplab_jax import metrics
from deeplab_jax import sharding


def trimap_entry(counts, widths, names):
  """The summary's trimap metrics of `counts` (one C x C matrix per width),
  summed over processes, without the per-class tables."""
  result = metrics.trimap_summary(sharding.sum_over_processes(counts), widths, names)
  result.pop('per_class_iou', None)  # K per-class tables: too much for metrics.json.
  return result


def format_report(summary):
  """Markdown: per-class IoU (before / after CRF), totals, trimap bands."""
  crf = summary.get('crf')
  if crf is None:
    lines = [metrics.format_table(summary)]
  else:
    lines = ['| class | IoU | IoU after CRF |', '|---|---|---|']
    fmt = lambda v: 'n/a' if v is None or (isinstance(v, float) and math.isnan(v)) else f'{v:.4f}'
    for name, value in summary['per_class_iou'].items():
      lines.append(f'| {name} | {fmt(value)} | {fmt(crf["per_class_iou"][name])} |')
    lines.append(f'| **mean IoU** | **{fmt(summary["mean_iou"])}** | '
                 f'**{fmt(crf["mean_iou"])}** |')
    lines.append('')
    for key, title in (('pixel_accuracy', 'pixel accuracy'),
                       ('mean_class_accuracy', 'mean class accuracy'),
                       ('frequency_weighted_iou', 'frequency-weighted IoU')):
      lines.append(f'{title} {fmt(summary[key])} -> {fmt(crf[key])} after CRF')
    lines.append(f'{summary["num_pixels"]:,} scored pixels')
  if 'trimap' in summary:
    lines += ['', 'Boundary accuracy (mIoU within a band around void/boundary pixels):', '',
              metrics.format_trimap_table(summary['trimap']['before'],
                                          summary['trimap'].get('after'))]
  return '\n'.join(lines)
