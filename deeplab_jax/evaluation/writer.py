"""What an evaluation writes: per-image files and the split's report files.

`Writer` (each process its own images): overlays/ (first `eval.num_overlays`
images), predictions/ (every mask as a VOC palette PNG, with
`eval.save_predictions`) and logits/ (`eval.save_logits` images, for
`python -m deeplab_jax.crf.search`). `write_outputs`: metrics.json,
report.md, confusion.png and trimap.png.
"""

from __future__ import annotations

import json
import os

import numpy as np

from deeplab_jax.evaluation.report import format_report


class Writer:
  """Per-image files of one evaluation (each process writes its own images)."""

  def __init__(self, config, output_dir):
    self.dir = output_dir
    self.config = config
    self.overlays_left = config.eval.num_overlays
    self.logits_left = config.eval.save_logits
    self.enabled = output_dir is not None and (
        self.overlays_left or self.logits_left or config.eval.save_predictions)

  def add(self, images, labels, valid, sizes, ids, preds, crf_preds, logits_fn):
    from deeplab_jax import visualize  # pylint: disable=import-outside-toplevel
    for i, (h, w) in enumerate(sizes):
      if not valid[i].any():
        continue  # A padding example.
      name = ids[i].decode() if isinstance(ids[i], bytes) else str(ids[i])
      name = name.replace('/', '_') or f'image_{i}'
      image, label, pred = images[i, :h, :w], labels[i, :h, :w], preds[i, :h, :w]
      crf_pred = None if crf_preds is None else crf_preds[i, :h, :w]
      if self.config.eval.save_predictions:
        visualize.write_mask_png(self._path('predictions', f'{name}.png'),
                                 pred.astype(np.uint8))
        if crf_pred is not None:
          visualize.write_mask_png(self._path('predictions_crf', f'{name}.png'),
                                   crf_pred.astype(np.uint8))
      label_u8 = np.where((label >= 0) & (label < 256), label, 255).astype(np.uint8)
      if self.overlays_left:
        self.overlays_left -= 1
        visualize.write_overlay_png(self._path('overlays', f'{name}.png'), image,
                                    pred.astype(np.uint8), label=label_u8)
        if crf_pred is not None:
          visualize.write_overlay_png(self._path('overlays', f'{name}_crf.png'), image,
                                      crf_pred.astype(np.uint8), label=label_u8)
      if self.logits_left:
        self.logits_left -= 1
        np.savez(self._path('logits', f'{name}.npz'), image=image, label=label_u8,
                 logits=logits_fn(i)[:h, :w].astype(np.float16))

  def _path(self, sub, name):
    os.makedirs(os.path.join(self.dir, sub), exist_ok=True)
    return os.path.join(self.dir, sub, name)


def write_outputs(summary, output_dir, class_names):
  """metrics.json, report.md, confusion.png and trimap.png into `output_dir`."""
  from deeplab_jax import visualize  # pylint: disable=import-outside-toplevel
  os.makedirs(output_dir, exist_ok=True)
  with open(os.path.join(output_dir, 'metrics.json'), 'w') as f:
    json.dump(summary, f, indent=2)
  with open(os.path.join(output_dir, 'report.md'), 'w') as f:
    f.write(format_report(summary) + '\n')
  visualize.write_confusion_png(os.path.join(output_dir, 'confusion.png'),
                                np.asarray(summary['confusion_matrix']), class_names)
  if 'crf' in summary:
    visualize.write_confusion_png(os.path.join(output_dir, 'confusion_crf.png'),
                                  np.asarray(summary['crf']['confusion_matrix']), class_names)
  if 'trimap' in summary:
    curves = {'before CRF' if 'after' in summary['trimap'] else 'mIoU':
              summary['trimap']['before']['mean_iou']}
    if 'after' in summary['trimap']:
      curves['after CRF'] = summary['trimap']['after']['mean_iou']
    visualize.write_trimap_plot(os.path.join(output_dir, 'trimap.png'),
                                summary['trimap']['before']['widths'], curves)
