"""What an evaluation writes: per-image files and the split's report files.

`Writer` (each process its own images): overlays/ (first `eval.num_overlays`
images), predictions/ (every mask as a VOC palette PNG, with
`eval.save_predictions`) and logits/ (`eval.save_logits` images, for
`python -m deeplab_jax.crf.search`). `Pictures`: the first images' image |
prediction | ground truth strips in memory (TensorBoard's, during training),
taken by the same `Writer` pass. `write_outputs`: metrics.json, report.md,
confusion.png and trimap.png.
"""

from __future__ import annotations

import json
import os

import numpy as np

from deeplab_jax.evaluation.report import format_report


class Pictures:
  """The first `num` images' strips, image | prediction | ground truth
  (`visualize.comparison`, HxWx3 uint8), kept in memory: `strips` maps
  each image's name to its strip, `crf_strips` (with the CRF) to the one
  with the prediction after the CRF."""

  def __init__(self, num):
    self.num = num
    self.strips = {}
    self.crf_strips = {}

  @property
  def full(self):
    """Whether `num` images have been taken."""
    return len(self.strips) >= self.num

  def add(self, name, image, pred, label, crf_pred=None):
    """Takes one image (HxWx3 uint8, HxW prediction and label) unless full."""
    from deeplab_jax import visualize  # pylint: disable=import-outside-toplevel
    if self.full:
      return
    self.strips[name] = visualize.comparison(image, pred, label)
    if crf_pred is not None:
      self.crf_strips[name] = visualize.comparison(image, crf_pred, label)


class Writer:
  """Per-image files of one evaluation (each process writes its own images),
  and `pictures` (a `Pictures`, or None) filled from the same pass."""

  def __init__(self, config, output_dir, pictures=None):
    self.dir = output_dir
    self.config = config
    files = output_dir is not None
    self.overlays_left = config.eval.num_overlays if files else 0
    self.logits_left = config.eval.save_logits if files else 0
    self.save_predictions = files and config.eval.save_predictions
    self.pictures = pictures

  @property
  def enabled(self):
    """Whether `add` still has anything to do."""
    return bool(self.overlays_left or self.logits_left or self.save_predictions or
                (self.pictures is not None and not self.pictures.full))

  def add(self, images, labels, valid, sizes, ids, preds, crf_preds, logits_fn):
    """Writes (or keeps) the batch's valid images; crops padding off first."""
    from deeplab_jax import visualize  # pylint: disable=import-outside-toplevel
    for i, (h, w) in enumerate(sizes):
      if not valid[i].any():
        continue  # A padding example.
      name = ids[i].decode() if isinstance(ids[i], bytes) else str(ids[i])
      name = name.replace('/', '_') or f'image_{i}'
      image, label, pred = images[i, :h, :w], labels[i, :h, :w], preds[i, :h, :w]
      crf_pred = None if crf_preds is None else crf_preds[i, :h, :w]
      if self.save_predictions:
        visualize.write_mask_png(self._path('predictions', f'{name}.png'),
                                 pred.astype(np.uint8))
        if crf_pred is not None:
          visualize.write_mask_png(self._path('predictions_crf', f'{name}.png'),
                                   crf_pred.astype(np.uint8))
      label_u8 = np.where((label >= 0) & (label < 256), label, 255).astype(np.uint8)
      if self.pictures is not None:
        self.pictures.add(name, image, pred.astype(np.uint8), label_u8,
                          None if crf_pred is None else crf_pred.astype(np.uint8))
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
