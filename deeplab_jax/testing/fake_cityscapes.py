"""Fake Cityscapes archives in the official layout, for tests (no download).

    examples = {'train': [('aachen', 0, 19, image, label_ids)], 'val': [...],
                'test': [...]}  # image uint8 1024x2048x3, label_ids uint8 1024x2048
    write_cityscapes_zips(manual_dir, examples)
    # manual_dir/leftImg8bit_trainvaltest.zip, manual_dir/gtFine_trainvaltest.zip

TFDS's `cityscapes/semantic_segmentation` builder then prepares from
`manual_dir` as it would from the real archives. Split keys are the archives'
folder names ('train', 'val', 'test'; TFDS calls 'val' 'validation'). City
names are lower case (TFDS's file-name pattern is `[a-z-]+_\\d+_\\d+`).

The layout is the real one:

    leftImg8bit/{split}/{city}/{city}_{seq:06d}_{frame:06d}_leftImg8bit.png
    gtFine/{split}/{city}/{city}_{seq:06d}_{frame:06d}_gtFine_labelIds.png
    gtFine/.../..._gtFine_color.png, ..._gtFine_instanceIds.png, ..._gtFine_polygons.json

plus each zip's README and license.txt. TFDS reads only the images and the
`labelIds` PNGs (greyscale, as in the real archive); the other gtFine files
are stand-ins in the right formats (colour: the label ids through a
palette, not the official colours; instance ids: the label ids as 16-bit
grey, which is what the real files hold for classes without instances;
polygons: the image size and no objects). PNGs are written with a low
compression level and stored in the zips as they are, so blocky fixture
images cost little at the full 1024x2048 that TFDS's features require.
"""

from __future__ import annotations

import io
import json
import os
import zipfile

import numpy as np
from PIL import Image

from deeplab_jax.data import cityscapes
from deeplab_jax.data import files

HEIGHT, WIDTH = 1024, 2048
SPLITS = ('train', 'val', 'test')


def _png(image: Image.Image) -> bytes:
  buffer = io.BytesIO()
  image.save(buffer, format='PNG', compress_level=1)
  return buffer.getvalue()


def _check(split, city, image, label_ids):
  if split not in SPLITS:
    raise ValueError(f'split {split!r} is not one of {SPLITS}')
  if not city or not all(c.islower() or c == '-' for c in city):
    raise ValueError(f'city {city!r}: lower-case letters and "-" only')
  if image.shape != (HEIGHT, WIDTH, 3) or image.dtype != np.uint8:
    raise ValueError(f'image is {image.dtype} {image.shape}; '
                     f'expected uint8 {(HEIGHT, WIDTH, 3)}')
  if label_ids.shape != (HEIGHT, WIDTH) or label_ids.dtype != np.uint8:
    raise ValueError(f'label ids are {label_ids.dtype} {label_ids.shape}; '
                     f'expected uint8 {(HEIGHT, WIDTH)}')


def write_cityscapes_zips(manual_dir: str, examples: dict) -> None:
  """Writes both archives into `manual_dir` (created if needed).

  Args:
    manual_dir: directory for `leftImg8bit_trainvaltest.zip` and
      `gtFine_trainvaltest.zip`.
    examples: split ('train', 'val' or 'test') -> list of (city, seq, frame,
      image uint8 1024x2048x3, label_ids uint8 1024x2048).
  """
  os.makedirs(manual_dir, exist_ok=True)
  images_zip = os.path.join(manual_dir, cityscapes.IMAGES_ZIP)
  labels_zip = os.path.join(manual_dir, cityscapes.LABELS_ZIP)
  with zipfile.ZipFile(images_zip, 'w', zipfile.ZIP_STORED) as images, \
       zipfile.ZipFile(labels_zip, 'w', zipfile.ZIP_STORED) as labels:
    for archive in (images, labels):
      archive.writestr('README', 'Fake Cityscapes archive written for tests.\n')
      archive.writestr('license.txt', 'Test fixture; no Cityscapes data.\n')
    for split, split_examples in examples.items():
      for city, seq, frame, image, label_ids in split_examples:
        _check(split, city, image, label_ids)
        stem = f'{city}_{seq:06d}_{frame:06d}'
        images.writestr(f'leftImg8bit/{split}/{city}/{stem}_leftImg8bit.png',
                        _png(Image.fromarray(image)))
        prefix = f'gtFine/{split}/{city}/{stem}_gtFine'
        labels.writestr(f'{prefix}_labelIds.png',
                        _png(Image.fromarray(label_ids)))
        labels.writestr(f'{prefix}_color.png', files.encode_index_png(label_ids))
        labels.writestr(f'{prefix}_instanceIds.png',
                        _png(Image.fromarray(label_ids.astype(np.uint16))))
        labels.writestr(f'{prefix}_polygons.json', json.dumps(
            {'imgHeight': HEIGHT, 'imgWidth': WIDTH, 'objects': []}))
