"""Cityscapes (fine annotations) through TFDS's own `cityscapes` builder.

TFDS builds `cityscapes/semantic_segmentation` from the two official archives,
which need a login at https://www.cityscapes-dataset.com/downloads/ and so
are never downloaded for you. Put them in one directory (the manual dir):

    ~/cityscapes/leftImg8bit_trainvaltest.zip   (11 GB, the images)
    ~/cityscapes/gtFine_trainvaltest.zip        (241 MB, the fine labels)

then the first run of a config naming it (`configs/cityscapes_aspp.py`,
`--config.dataset.manual_dir=~/cityscapes`) prepares the dataset once
through `data/datasets.py` (TFDS extracts the archives under
`<data_dir>/downloads/extracted`, then copies the PNGs into its own files
unchanged, so allow disk for both): 'train' 2,975, 'validation' 500, 'test'
1,525 frames. With TFDS directly (after `check_manual_dir`, whose error says
what is missing; TFDS's own is a bare AssertionError):

    cityscapes.check_manual_dir(manual_dir)
    builder = tfds.builder(cityscapes.TFDS_NAME, data_dir=data_dir)
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
        manual_dir=manual_dir))

Examples hold `image_left` (uint8 1024x2048x3), `segmentation_label` (uint8
1024x2048x1: the gtFine `*_labelIds.png` values, 0-33, *not* train ids) and
`image_id` (e.g. 'frankfurt_000000_000294'). The 19 evaluated classes are
obtained with `TRAIN_ID_TABLE`, a plain 256-entry numpy table, in tf.data

    table = tf.constant(cityscapes.TRAIN_ID_TABLE)  # uint8 (256,)
    train_ids = tf.gather(table, tf.cast(example[cityscapes.LABEL_KEY], tf.int32))

or with `to_train_ids(label_ids)` in numpy. Every other id maps to 255 (void),
as in cityscapesScripts' `labels.py`. The test split's labels are not public:
its `segmentation_label` holds placeholders, not classes to score.
"""

from __future__ import annotations

import os

import numpy as np

from deeplab_jax.data import datasets
from deeplab_jax.errors import UserError

TFDS_NAME = 'cityscapes/semantic_segmentation'  # TFDS dataset/builder config.
IMAGE_KEY = 'image_left'  # uint8 1024x2048x3.
LABEL_KEY = 'segmentation_label'  # uint8 1024x2048x1 label ids (not train ids).
ID_KEY = 'image_id'  # '{city}_{seq:06d}_{frame:06d}'.
SPLITS = ('train', 'validation', 'test')  # TFDS's split names (2,975 / 500 / 1,525).

IMAGES_ZIP = 'leftImg8bit_trainvaltest.zip'
LABELS_ZIP = 'gtFine_trainvaltest.zip'
DOWNLOAD_URL = 'https://www.cityscapes-dataset.com/downloads/'

IGNORE_LABEL = 255

# The 19 evaluated classes, in train-id order.
CLASS_NAMES = (
    'road', 'sidewalk', 'building', 'wall', 'fence', 'pole', 'traffic light',
    'traffic sign', 'vegetation', 'terrain', 'sky', 'person', 'rider', 'car',
    'truck', 'bus', 'train', 'motorcycle', 'bicycle',
)

# Label id of each train id (cityscapesScripts `labels.py`: the labels whose
# trainId is not 255). Ids 0-6 (unlabeled ... ground), 9 parking, 10 rail
# track, 14-16 guard rail / bridge / tunnel, 18 polegroup, 29 caravan,
# 30 trailer and -1 license plate (255 as uint8) are void.
LABEL_IDS = (7, 8, 11, 12, 13, 17, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 31,
             32, 33)


def _train_id_table() -> np.ndarray:
  table = np.full(256, IGNORE_LABEL, np.uint8)
  table[list(LABEL_IDS)] = np.arange(len(LABEL_IDS), dtype=np.uint8)
  table.setflags(write=False)
  return table


# TRAIN_ID_TABLE[label_id] = train id (0-18) or 255; indexed by uint8 label ids.
TRAIN_ID_TABLE = _train_id_table()


def to_train_ids(label_ids: np.ndarray) -> np.ndarray:
  """Train ids (uint8, 0-18 or 255) of an array of label ids, any shape.

      to_train_ids(np.array([7, 26, 0, 255], np.uint8))  # -> [0, 13, 255, 255]

  Integer arrays may hold -1 (license plate), which is void like its uint8
  form 255; any other value outside 0-255 is an error.
  """
  label_ids = np.asarray(label_ids)
  if label_ids.dtype != np.uint8:
    if not np.issubdtype(label_ids.dtype, np.integer):
      raise UserError(f'Cityscapes label ids must be integers, got {label_ids.dtype}')
    label_ids = np.where(label_ids == -1, IGNORE_LABEL, label_ids)
    bad = label_ids[(label_ids < 0) | (label_ids > 255)]
    if bad.size:
      raise UserError(f'Cityscapes label ids must be -1 or 0-255, got '
                      f'{np.unique(bad)[:10].tolist()}')
  return TRAIN_ID_TABLE[label_ids]


def check_manual_dir(manual_dir: str) -> None:
  """Raises UserError naming the archives missing from `manual_dir`.

      check_manual_dir('~/cityscapes')  # passes once both zips are there
  """
  manual_dir = os.path.expanduser(manual_dir)
  missing = [name for name in (IMAGES_ZIP, LABELS_ZIP)
             if not os.path.isfile(os.path.join(manual_dir, name))]
  if missing:
    where = ('' if os.path.isdir(manual_dir) else ' (the directory does not exist)')
    raise UserError(
        f'Cityscapes needs {" and ".join(missing)} in {manual_dir}{where}. '
        f'Download {IMAGES_ZIP} and {LABELS_ZIP} from {DOWNLOAD_URL} (free, '
        'needs an account), put them there unextracted, or pass the '
        'directory that holds them as the manual dir.')


# `dataset.name='cityscapes'`, builder_config 'semantic_segmentation': TFDS's own builder.
datasets.register('cityscapes',
                  features=datasets.Features(IMAGE_KEY, LABEL_KEY, TRAIN_ID_TABLE,
                                             CLASS_NAMES),
                  check_manual_dir=check_manual_dir)
