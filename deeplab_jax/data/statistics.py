"""What a split's masks hold: pixels and images per class, void, sizes, stray values.

One pass over the masks (never the images: sizes come from the masks' shapes),
one `np.bincount` per mask:

    stats = statistics.split_statistics(builder, 'train', num_classes=21)
    stats.pixel_counts / stats.pixel_counts.sum()  # class frequencies
    stats.image_counts  # images each class occurs in
    json.dump(stats.to_dict(), f)

`split_statistics` reads a prepared TFDS dataset (only its mask and id
features are decoded, labels mapped through the dataset's `label_table`,
e.g. Cityscapes' label ids -> train ids); `Accumulator` counts masks from
anywhere (the folder builder feeds it the mask files before it prepares
them). `label_checks` turns the result into warnings and errors.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from deeplab_jax.data import datasets
from deeplab_jax.errors import UserError

OUT_OF_RANGE_IDS = 5  # Image ids kept per out-of-range value.


@dataclasses.dataclass
class SplitStatistics:
  """Counts over one split's masks (values after the dataset's label table).

  Attributes:
    split: the split's name.
    num_classes: classes 0 .. num_classes - 1; `ignore_label` is void.
    ignore_label: the void value (not trained on, not scored).
    num_images: images in the split, colour masks included.
    pixel_counts: (num_classes,) int64, pixels of each class.
    image_counts: (num_classes,) int64, images where the class occurs.
    void_pixels: pixels equal to `ignore_label`.
    total_pixels: all pixels of all masks (colour masks included).
    heights, widths: (num_images,) int64, each mask's size.
    out_of_range: value -> the first few ids of images with pixels of that
      value, neither a class nor `ignore_label`.
    out_of_range_pixels: value -> its pixels over the split.
    image_ids: (num_images,) the ids, in reading order.
    present: (num_images, 256) bool, which values each mask holds.
    image_void: (num_images,) int64, void pixels of each mask.
    colour_masks: id -> what the mask is (e.g. "'RGB' PNG"): masks of
      colours, not indices; not counted in the class, void or value counts.
  """
  split: str
  num_classes: int
  ignore_label: int
  num_images: int
  pixel_counts: np.ndarray
  image_counts: np.ndarray
  void_pixels: int
  total_pixels: int
  heights: np.ndarray
  widths: np.ndarray
  out_of_range: dict[int, list[str]]
  out_of_range_pixels: dict[int, int]
  image_ids: list[str]
  present: np.ndarray
  image_void: np.ndarray
  colour_masks: dict[str, str]

  @property
  def present_image_pixels(self) -> np.ndarray:
    """(num_classes,) int64: all pixels of the images in which each class
    occurs (median frequency balancing's denominator, losses/class_weights.py)."""
    sizes = (self.heights * self.widths).astype(np.int64)
    return (self.present[:, :self.num_classes] * sizes[:, None]).sum(0).astype(np.int64)

  def to_dict(self) -> dict:
    """JSON-ready: counts, shares and sizes (not the per-image value table)."""
    labelled = int(self.pixel_counts.sum())
    return {
        'split': self.split,
        'num_images': self.num_images,
        'num_classes': self.num_classes,
        'ignore_label': self.ignore_label,
        'pixel_counts': self.pixel_counts.tolist(),
        'image_counts': self.image_counts.tolist(),
        # Of the pixels with a class (void and stray values left out).
        'class_frequencies': (self.pixel_counts / max(labelled, 1)).tolist(),
        'void_pixels': self.void_pixels,
        'total_pixels': self.total_pixels,
        'heights': self.heights.tolist(),
        'widths': self.widths.tolist(),
        'out_of_range': {str(v): ids for v, ids in self.out_of_range.items()},
        'out_of_range_pixels': {str(v): n for v, n in self.out_of_range_pixels.items()},
        'colour_masks': dict(self.colour_masks),
    }


class Accumulator:
  """Counts masks one at a time; `result()` gives their `SplitStatistics`.

      acc = Accumulator(num_classes=3)
      for image_id, mask in masks:  # HxW (or HxWx1) integer arrays
        acc.add(image_id, mask)
      stats = acc.result('train')
  """

  def __init__(self, num_classes: int, ignore_label: int = 255,
               label_table: np.ndarray | None = None):
    if not 1 <= num_classes <= 256 or not 0 <= ignore_label <= 255:
      raise UserError(f'num_classes={num_classes}, ignore_label={ignore_label}: '
                      'masks hold values 0-255, so give 1-256 classes and a '
                      'void value in 0-255')
    self.num_classes = num_classes
    self.ignore_label = ignore_label
    self._table = None if label_table is None else np.asarray(label_table, np.int64)
    self._ids, self._heights, self._widths = [], [], []
    self._histograms, self._colour = [], {}

  def add(self, image_id: str, mask: np.ndarray) -> None:
    """Counts one mask: HxW, HxWx1 or (colours) HxWx3/4 integer values."""
    mask = np.asarray(mask)
    if mask.ndim == 3 and mask.shape[-1] > 1:
      if (mask == mask[..., :1]).all():
        mask = mask[..., 0]  # Grey stored as RGB: the values are still indices.
      else:
        self.add_colour_mask(image_id, mask.shape[0], mask.shape[1],
                             f'{mask.shape[-1]}-channel mask')
        return
    if mask.ndim == 3:
      mask = mask[..., 0]
    if mask.ndim != 2 or not np.issubdtype(mask.dtype, np.integer):
      raise UserError(f'mask of {image_id}: expected HxW integer class indices, '
                      f'got shape {mask.shape} {mask.dtype}')
    if mask.size and (mask.min() < 0 or mask.max() > 255):
      raise UserError(f'mask of {image_id} has values {mask.min()}..{mask.max()}; '
                      'masks hold 0-255 (class index, 255 = void)')
    counts = np.bincount(mask.reshape(-1).astype(np.intp), minlength=256)
    if self._table is not None:  # Stored value -> class: histogram of classes.
      counts = np.bincount(self._table, weights=counts, minlength=256)
    self._record(image_id, *mask.shape, counts.astype(np.int64))

  def add_colour_mask(self, image_id: str, height: int, width: int,
                      what: str) -> None:
    """Records a mask of colours (`what`, e.g. "'RGB' PNG"), not indices."""
    self._colour[image_id] = what
    self._record(image_id, height, width, np.zeros(256, np.int64))

  def _record(self, image_id, height, width, counts):
    self._ids.append(image_id)
    self._heights.append(height)
    self._widths.append(width)
    self._histograms.append(counts)

  def result(self, split: str) -> SplitStatistics:
    """The statistics of every mask added so far, as split `split`."""
    c, void = self.num_classes, self.ignore_label
    hist = (np.stack(self._histograms) if self._histograms
            else np.zeros((0, 256), np.int64))
    present = hist > 0
    totals = hist.sum(axis=0)
    out_of_range, out_pixels = {}, {}
    for value in np.flatnonzero(totals):
      if value >= c and value != void:
        rows = np.flatnonzero(present[:, value])[:OUT_OF_RANGE_IDS]
        out_of_range[int(value)] = [self._ids[i] for i in rows]
        out_pixels[int(value)] = int(totals[value])
    return SplitStatistics(
        split=split, num_classes=c, ignore_label=void,
        num_images=len(self._ids),
        pixel_counts=totals[:c].astype(np.int64),
        image_counts=present[:, :c].sum(axis=0).astype(np.int64),
        void_pixels=int(totals[void]),
        total_pixels=int(sum(h * w for h, w in zip(self._heights, self._widths))),
        heights=np.asarray(self._heights, np.int64),
        widths=np.asarray(self._widths, np.int64),
        out_of_range=out_of_range, out_of_range_pixels=out_pixels,
        image_ids=list(self._ids), present=present,
        image_void=hist[:, void].astype(np.int64),
        colour_masks=dict(self._colour))


def split_statistics(builder, split: str, num_classes: int, ignore_label: int = 255,
                     features: datasets.Features | None = None) -> SplitStatistics:
  """One pass over `split` of a prepared TFDS dataset's masks.

      b = input_pipeline.get_builder(config.dataset)
      stats = split_statistics(b, 'train', config.dataset.num_classes)

  Only the mask (`features.label`, default 'segmentation_mask') and the
  'image_id' feature are decoded; images are not read. Stored values go
  through `features.label_table` where there is one. Examples without an
  'image_id' are named `<split>[<index>]`.
  """
  # pylint: disable=import-outside-toplevel
  from deeplab_jax.data import input_pipeline  # Imports TF (kept off the GPUs).
  import tensorflow_datasets as tfds
  features = features or datasets.Features()
  names = set(builder.info.features.keys())
  if features.label not in names:
    raise UserError(f'{builder.info.full_name} has no {features.label!r} feature '
                    f'(it has {sorted(names)}); name the mask feature in the '
                    "dataset's registry entry (datasets.Features(label=...))")
  if split not in builder.info.splits:
    raise UserError(f'{builder.info.full_name} has no split {split!r}; its '
                    f'splits: {sorted(builder.info.splits.keys())}')
  keep = {features.label: True}
  has_id = input_pipeline.ID_FEATURE in names
  if has_id:
    keep[input_pipeline.ID_FEATURE] = True
  ds = builder.as_dataset(split=split, shuffle_files=False,
                          decoders=tfds.decode.PartialDecoding(keep))
  accumulator = Accumulator(num_classes, ignore_label, features.label_table)
  for index, example in enumerate(tfds.as_numpy(ds)):
    image_id = (example[input_pipeline.ID_FEATURE].decode() if has_id
                else f'{split}[{index}]')
    accumulator.add(image_id, example[features.label])
  return accumulator.result(split)
