"""The datasets a config can name: a registry of name -> how to build and read it.

`config.dataset.name` picks one (the tf.data pipelines then treat all alike):

| name | builder_config | what | where the files go |
|---|---|---|---|
| `synthetic_shapes` | `default` / `tiny` | built-in, generated on first use | nothing to download |
| `voc2012_sbd` | `''` | VOC 2012 + SBD (train_aug, val, ...) | `VOCtrainval_11-May-2012.tar`, `benchmark.tgz` in `dataset.manual_dir` |
| `cityscapes` | `semantic_segmentation` | TFDS's Cityscapes, label ids -> 19 train ids | `leftImg8bit_trainvaltest.zip`, `gtFine_trainvaltest.zip` in `dataset.manual_dir` |
| `segmentation_folder` | your dataset's name | your images + index-PNG masks (`deeplab_jax/data/folder.py`) | `dataset.folder` |

Any other name is a plain TFDS dataset (`tfds.builder(name/builder_config)`)
read with the default `Features`.

A dataset registers itself from its own module with `register` (see
docs/extending.md, "Adding a dataset"):

    datasets.register('my_data', features=datasets.Features(class_names=NAMES))

The built-in ones are imported on first use through `_BUILT_IN` (one line
each), so naming a dataset never imports the others.

The first use of a dataset prepares it under `dataset.data_dir` (TFDS's
default: ~/tensorflow_datasets); later runs read the prepared files.
`dataset.manual_dir` defaults to TFDS's `<data_dir>/downloads/manual`.
"""

from __future__ import annotations

import dataclasses
import importlib
import os
from typing import Any, Callable

import numpy as np
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


def tfds_builder(dataset_config, data_dir: str | None):
  """The TFDS builder registered as `name` (`name/builder_config` if set).

  The default `Dataset.builder`: for datasets whose module defines (and so
  registers with TFDS) a builder class, or that TFDS itself ships.
  """
  import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel
  name = dataset_config.name
  full_name = f'{name}/{dataset_config.builder_config}' if dataset_config.builder_config else name
  try:
    return tfds.builder(full_name, data_dir=data_dir)
  except Exception as e:  # TFDS raises several types for unknown names.
    raise UserError(f'cannot load dataset {full_name!r}: {e}') from e


@dataclasses.dataclass(frozen=True, eq=False)
class Dataset:
  """A registered dataset.

  Attributes:
    name: what `config.dataset.name` says.
    features: how its examples are read.
    builder: `(config.dataset, data_dir) -> TFDS builder`, not yet prepared;
      raises UserError for a config it cannot serve. `data_dir` is the
      expanded `dataset.data_dir` or None (TFDS's default).
    check_manual_dir: `manual_dir -> None`, run before a first preparation;
      raises UserError saying which files are missing and where to get them.
      None: nothing to check (generated, downloaded, or TFDS's own message).
  """
  name: str
  features: Features = Features()
  builder: Callable[[Any, str | None], Any] = tfds_builder
  check_manual_dir: Callable[[str], None] | None = None


_REGISTRY: dict[str, Dataset] = {}

# Built-in datasets: name -> the module that registers it (imported on first use).
_BUILT_IN = {
    'synthetic_shapes': 'deeplab_jax.data.shapes',
    'voc2012_sbd': 'deeplab_jax.data.voc',
    'cityscapes': 'deeplab_jax.data.cityscapes',
    'segmentation_folder': 'deeplab_jax.data.folder',
}


def register(name: str, *, features: Features = Features(),
             builder: Callable[[Any, str | None], Any] = tfds_builder,
             check_manual_dir: Callable[[str], None] | None = None) -> Dataset:
  """Makes `name` a value of `config.dataset.name`; returns its entry.

  Call it once, at import time of the dataset's module; registering a name
  twice is an error (ValueError).
  """
  if name in _REGISTRY:
    raise ValueError(f'dataset {name!r} is already registered: {_REGISTRY[name]}')
  _REGISTRY[name] = Dataset(name, features, builder, check_manual_dir)
  return _REGISTRY[name]


def lookup(name: str) -> Dataset | None:
  """The registered entry for `name` (importing a built-in's module first);
  None for a name nobody registered (a plain TFDS dataset)."""
  if name not in _REGISTRY and name in _BUILT_IN:
    importlib.import_module(_BUILT_IN[name])
  return _REGISTRY.get(name)


def names() -> list[str]:
  """Every dataset name known without importing user code: built-in and registered."""
  return sorted(set(_BUILT_IN) | set(_REGISTRY))


def features(dataset_config) -> Features:
  """How examples of `config.dataset` are read."""
  entry = lookup(dataset_config.name)
  return entry.features if entry else Features()


def _check_classes(dataset_config, class_names):
  given = tuple(dataset_config.get('class_names') or ())
  if given and len(given) != dataset_config.num_classes:
    raise UserError(
        f'config.dataset.class_names has {len(given)} names but '
        f'config.dataset.num_classes={dataset_config.num_classes}')
  if class_names is None:
    return
  if dataset_config.num_classes != len(class_names):
    raise UserError(
        f'dataset {dataset_config.name!r} has {len(class_names)} classes but '
        f'config.dataset.num_classes={dataset_config.num_classes}')


def builder(dataset_config):
  """The TFDS builder for `config.dataset`, prepared (built) if needed."""
  import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel
  entry = lookup(dataset_config.name) or Dataset(dataset_config.name)
  _check_classes(dataset_config, entry.features.class_names)
  data_dir = dataset_config.get('data_dir')
  data_dir = os.path.expanduser(data_dir) if data_dir else None
  b = entry.builder(dataset_config, data_dir)
  if b.is_prepared():
    return b
  manual_dir = os.path.expanduser(dataset_config.get('manual_dir') or os.path.join(
      b.data_dir_root, 'downloads', 'manual'))
  if entry.check_manual_dir is not None:
    entry.check_manual_dir(manual_dir)
  logging.info('Preparing %s in %s (first use only).', b.info.full_name, b.data_dir)
  b.download_and_prepare(
      download_config=tfds.download.DownloadConfig(manual_dir=manual_dir))
  return b
