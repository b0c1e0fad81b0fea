"""Pictures of predictions and metrics: palette PNGs, overlays, plots.

    visualize.write_mask_png('pred/2007_000033.png', pred_HxW)  # VOC server format
    visualize.write_overlay_png('vis/2007_000033.png', image, pred, label=gt)
    visualize.write_confusion_png('confusion.png', confusion_CxC, class_names)
    visualize.write_trimap_plot('trimap.png', widths, {'before CRF': [...], ...})

Masks are class indices (255 = void). Colours come from the VOC colour map
(`data.files.voc_palette`) unless a (N, 3) uint8 palette is given. Plots use
matplotlib's object API with the Agg canvas (no pyplot, no display, safe in
threads); matplotlib is imported only by the plotting functions.
"""

from __future__ import annotations

import os

import numpy as np

from deeplab_jax.data import files
from deeplab_jax.errors import UserError

IGNORE_LABEL = 255
GAP = 4  # White pixels between the panels of `comparison`.


def _write_bytes(path, data):
  parent = os.path.dirname(os.fspath(path))
  if parent:
    os.makedirs(parent, exist_ok=True)
  with open(path, 'wb') as f:
    f.write(data)


def _palette(palette):
  """(256, 3) uint8: the VOC colour map, or `palette` padded with black."""
  if palette is None:
    return files.voc_palette()
  palette = np.asarray(palette)
  if palette.ndim != 2 or palette.shape[1] != 3 or not 0 < len(palette) <= 256:
    raise UserError(f'a palette is (N, 3) RGB colours with N <= 256, got shape '
                    f'{palette.shape}')
  full = np.zeros((256, 3), np.uint8)
  full[:len(palette)] = palette
  return full


def _mask(mask_HxW, name='mask'):
  """uint8 HxW class indices; UserError for values a PNG index cannot hold."""
  mask = np.asarray(mask_HxW)
  if mask.ndim != 2:
    raise UserError(f'{name} must be HxW class indices, got shape {mask.shape}')
  if not np.issubdtype(mask.dtype, np.integer):
    raise UserError(f'{name} must hold integer class indices, got {mask.dtype}')
  if mask.size and (mask.min() < 0 or mask.max() > 255):
    raise UserError(f'{name} values {mask.min()}..{mask.max()} do not fit a '
                    'palette PNG (0-255)')
  return mask.astype(np.uint8)


def _image(image_HxWx3, mask):
  image = np.asarray(image_HxWx3)
  if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
    raise UserError(f'image must be HxWx3 uint8, got {image.shape} {image.dtype}')
  if image.shape[:2] != mask.shape:
    raise UserError(f'image is {image.shape[0]}x{image.shape[1]} but the mask is '
                    f'{mask.shape[0]}x{mask.shape[1]}; crop padding off first')
  return image


def write_mask_png(path, mask_HxW, palette=None):
  """Writes a palette ('P' mode) PNG whose pixel values are the class indices.

  The format of VOC's SegmentationClass masks and of the VOC evaluation server's
  submissions: index = class, 255 (void) kept as 255, VOC colours unless
  `palette` ((N, 3) uint8, N <= 256) is given. Creates missing directories.
  """
  mask = _mask(mask_HxW)
  _write_bytes(path, files.encode_index_png(mask, _palette(palette)))


def colorize(mask_HxW, palette=None):
  """HxWx3 uint8: each pixel's palette colour (void: the palette's entry 255)."""
  return _palette(palette)[_mask(mask_HxW)]


def overlay(image_HxWx3, mask_HxW, alpha=0.5, palette=None,
            ignore_label=IGNORE_LABEL):
  """HxWx3 uint8: `(1 - alpha) * image + alpha * colour(mask)`, rounded.

  Every class, background included (black in VOC's map), is blended; void
  (`ignore_label`) pixels are left exactly as the image.
  """
  mask = _mask(mask_HxW)
  image = _image(image_HxWx3, mask)
  if not 0 <= alpha <= 1:
    raise UserError(f'overlay alpha must be in [0, 1], got {alpha}')
  colours = _palette(palette)[mask].astype(np.float32)
  blended = np.rint((1 - alpha) * image.astype(np.float32) + alpha * colours)
  blended = np.clip(blended, 0, 255).astype(np.uint8)
  return np.where((mask == ignore_label)[..., None], image, blended)


def comparison(image_HxWx3, pred_HxW, gt_HxW=None, alpha=0.5, palette=None,
               ignore_label=IGNORE_LABEL):
  """Hx(2W+4) or Hx(3W+8) x3 uint8: image | prediction overlay [| ground truth
  overlay], separated by 4 white columns."""
  panels = [np.asarray(image_HxWx3),
            overlay(image_HxWx3, pred_HxW, alpha, palette, ignore_label)]
  if gt_HxW is not None:
    panels.append(overlay(image_HxWx3, gt_HxW, alpha, palette, ignore_label))
  gap = np.full((panels[0].shape[0], GAP, 3), 255, np.uint8)
  pieces = [panels[0]]
  for panel in panels[1:]:
    pieces += [gap, panel]
  return np.concatenate(pieces, axis=1)


def write_overlay_png(path, image_HxWx3, mask_HxW, alpha=0.5, palette=None,
                      label=None, ignore_label=IGNORE_LABEL):
  """Writes an RGB PNG: `overlay(image, mask)`, or with a ground truth `label`
  (HxW) `comparison(image, mask, label)`: image | prediction | ground truth."""
  from PIL import Image  # pylint: disable=import-outside-toplevel
  if label is None:
    picture = overlay(image_HxWx3, mask_HxW, alpha, palette, ignore_label)
  else:
    picture = comparison(image_HxWx3, mask_HxW, label, alpha, palette,
                         ignore_label)
  parent = os.path.dirname(os.fspath(path))
  if parent:
    os.makedirs(parent, exist_ok=True)
  Image.fromarray(picture, 'RGB').save(path, format='PNG')


def _figure(width_in, height_in):
  # pylint: disable=import-outside-toplevel
  from matplotlib.backends import backend_agg
  from matplotlib.figure import Figure
  figure = Figure(figsize=(width_in, height_in), dpi=100)
  backend_agg.FigureCanvasAgg(figure)
  return figure


def _save(figure, path):
  parent = os.path.dirname(os.fspath(path))
  if parent:
    os.makedirs(parent, exist_ok=True)
  figure.savefig(path, format='png')


def normalize_confusion(confusion_CxC, normalize='true'):
  """float64 CxC: counts divided by ground-truth row totals ('true'), prediction
  column totals ('pred'), the grand total ('all'), or raw counts (None). Rows or
  columns with no pixels are 0."""
  cm = np.asarray(confusion_CxC, np.float64)
  if normalize is None:
    return cm
  if normalize == 'true':
    total = cm.sum(axis=1, keepdims=True)
  elif normalize == 'pred':
    total = cm.sum(axis=0, keepdims=True)
  elif normalize == 'all':
    total = cm.sum()
  else:
    raise UserError(f"normalize must be 'true', 'pred', 'all' or None, got "
                    f'{normalize!r}')
  with np.errstate(divide='ignore', invalid='ignore'):
    return np.where(total > 0, cm / total, 0.0)


def write_confusion_png(path, confusion_CxC, class_names, normalize='true',
                        title=None):
  """Writes a confusion-matrix heat map PNG: ground truth rows, predicted
  columns, class names on both axes, cells normalised as in
  `normalize_confusion` (default: each row by its ground-truth total, so the
  diagonal is per-class accuracy) and annotated in percent when >= 1%.
  About 1,100 x 1,000 px for 21 classes, sized with the class count."""
  cm = np.asarray(confusion_CxC)
  num = len(class_names)
  if cm.shape != (num, num):
    raise UserError(f'confusion matrix {cm.shape} does not match {num} class '
                    'names')
  values = normalize_confusion(cm, normalize)
  side = max(4.0, 0.42 * num + 2.0)
  figure = _figure(side + 1.2, side)
  axes = figure.add_subplot()
  vmax = 1.0 if normalize else max(float(values.max()), 1.0)
  image = axes.imshow(values, cmap='Blues', vmin=0.0, vmax=vmax,
                      interpolation='nearest')
  figure.colorbar(image, ax=axes, fraction=0.046, pad=0.04)
  axes.set_xticks(range(num), labels=list(class_names), rotation=90,
                  fontsize=8)
  axes.set_yticks(range(num), labels=list(class_names), fontsize=8)
  axes.set_xlabel('prediction')
  axes.set_ylabel('ground truth')
  if title is None:
    title = {'true': 'confusion (rows normalised to ground truth)',
             'pred': 'confusion (columns normalised to predictions)',
             'all': 'confusion (fraction of all pixels)',
             None: 'confusion (pixels)'}[normalize]
  axes.set_title(title, fontsize=10)
  if normalize:
    fontsize = 7 if num <= 25 else 5
    for t in range(num):
      for p in range(num):
        if values[t, p] >= 0.01:
          axes.text(p, t, f'{100 * values[t, p]:.0f}', ha='center', va='center',
                    fontsize=fontsize,
                    color='white' if values[t, p] > 0.5 else 'black')
  figure.tight_layout()
  _save(figure, path)


def write_trimap_plot(path, widths, curves, title=None):
  """Writes a PNG of mean IoU (%) against trimap band width (px), one line per
  entry of `curves` ({name: K mIoUs in [0, 1]}, e.g. 'before CRF', 'after
  CRF'), like DeepLab v2's boundary figure. NaN values leave gaps."""
  widths = np.asarray(widths, np.float64).reshape(-1)
  if not curves:
    raise UserError('write_trimap_plot needs at least one curve')
  for name, values in curves.items():
    if len(values) != len(widths):
      raise UserError(f'curve {name!r} has {len(values)} values for '
                      f'{len(widths)} widths')
  figure = _figure(6.4, 4.8)
  axes = figure.add_subplot()
  for name, values in curves.items():
    axes.plot(widths, 100 * np.asarray(values, np.float64), marker='o',
              markersize=3, label=name)
  axes.set_xlabel('trimap width (pixels)')
  axes.set_ylabel('mean IoU (%)')
  axes.set_title(title or 'accuracy near object boundaries')
  axes.grid(True, alpha=0.3)
  axes.legend(loc='lower right')
  figure.tight_layout()
  _save(figure, path)
