"""The datasets a config can name, how to build them, and how to read them.

`config.dataset.name` picks one (the tf.data pipelines then treat all alike):

| name | builder_config | what | where the files go |
|---|---|---|---|
| `synthetic_shapes` | `default` / `tiny` | built-in, generated on first use | nothing to download |
| `voc2012_sbd` | `''` | VOC 2012 + SBD (train_aug, val, ...) | `VOCtrainval_11-May-2012.tar`, `benchmark.tgz` in `dataset.manual_dir` |
| `cityscapes` | `semantic_segmentation` | TFDS's Cityscapes, label ids -> 19 train ids | `leftImg8bit_trainvaltest.zip`, `gtFine_trainvaltest.zip` in `dataset.manual_dir` |
| `segmentation_folder` | your dataset's name | your images + index-PNG masks (`deeplab_jax/data/folder.py`) | `dataset.folder` |

The first use of a dataset prepares it under `dataset.data_dir` (TFDS's
default: ~/tensorflow_datasets); later runs read the prepared files.
`dataset.manual_dir` defaults to TFDS's `<data_dir>/downloads/manual`.
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np
import tensorflow_datasets as tfds
from absl import logging

from deeplab_jax.errors import UserError


@dataclasses.dataclass(frozen=True)
class Features:
  """Which features hold the image and label, and how label values map to classes."""
  image: str = 'image'
  label: str = 'segmentation_mask'
  # 256 entries, stored value -> class (255 = void); None: stored values are classes.
  label_table: np.ndarray | None = None
  class_names: tuple[str, ...] | None = None  # None: not fixed by the dataset.


def features(dataset_config) -> Features:
  """How examples of `config.dataset` are read."""
  name = dataset_config.name
  if name == 'cityscapes':
    from deeplab_jax.data import cityscapes  # pylint: disable=import-outside-toplevel
    return Features(cityscapes.IMAGE_KEY, cityscapes.LABEL_KEY,
                    cityscapes.TRAIN_ID_TABLE, tuple(cityscapes.CLASS_NAMES))
  if name == 'voc2012_sbd':
    from deeplab_jax.data import voc  # pylint: disable=import-outside-toplevel
    return Features(class_names=tuple(voc.CLASS_NAMES))
  if name == 'synthetic_shapes':
    from deeplab_jax.data import shapes  # pylint: disable=import-outside-toplevel
    return Features(class_names=tuple(shapes.CLASS_NAMES))
  return Features()


def _check_classes(dataset_config, names):
  given = tuple(dataset_config.get('class_names') or ())
  if given and len(given) != dataset_config.num_classes:
    raise UserError(
        f'config.dataset.class_names has {len(given)} names but '
        f'config.dataset.num_classes={dataset_config.num_classes}')
  if names is None:
    return
  if dataset_config.num_classes != len(names):
    raise UserError(
        f'dataset {dataset_config.name!r} has {len(names)} classes but '
        f'config.dataset.num_classes={dataset_config.num_classes}')


def _make_builder(dataset_config):
  name = dataset_config.name
  data_dir = dataset_config.get('data_dir')
  data_dir = os.path.expanduser(data_dir) if data_dir else None
  if name == 'segmentation_folder':
    from deeplab_jax.data import folder  # pylint: disable=import-outside-toplevel
    if not dataset_config.get('folder'):
      raise UserError('dataset segmentation_folder needs --config.dataset.folder=DIR')
    if not dataset_config.builder_config:
      raise UserError('dataset segmentation_folder needs a name for your dataset: '
                      '--config.dataset.builder_config=NAME')
    return folder.builder(dataset_config.folder, tuple(dataset_config.class_names),
                          dataset_config.builder_config, data_dir)
  if name == 'voc2012_sbd':
    from deeplab_jax.data import voc  # pylint: disable=import-outside-toplevel,unused-import  # Registers it.
  elif name == 'synthetic_shapes':
    from deeplab_jax.data import shapes  # pylint: disable=import-outside-toplevel,unused-import  # Registers it.
  full_name = f'{name}/{dataset_config.builder_config}' if dataset_config.builder_config else name
  try:
    return tfds.builder(full_name, data_dir=data_dir)
  except Exception as e:  # TFDS raises several types for unknown names.
    raise UserError(f'cannot load dataset {full_name!r}: {e}') from e


def builder(dataset_config):
  """The TFDS builder for `config.dataset`, prepared (built) if needed."""
  _check_classes(dataset_config, features(dataset_config).class_names)
  b = _make_builder(dataset_config)
  if b.is_prepared():
    return b
  manual_dir = os.path.expanduser(dataset_config.get('manual_dir') or os.path.join(
      b.data_dir_root, 'downloads', 'manual'))
  if dataset_config.name == 'cityscapes':
    from deeplab_jax.data import cityscapes  # pylint: disable=import-outside-toplevel
    cityscapes.check_manual_dir(manual_dir)
  logging.info('Preparing %s in %s (first use only).', b.info.full_name, b.data_dir)
  b.download_and_prepare(
      download_config=tfds.download.DownloadConfig(manual_dir=manual_dir))
  return b
