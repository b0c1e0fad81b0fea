"""TFDS builder `voc2012_sbd`: PASCAL VOC 2012 segmentation plus SBD's labels.

    import tensorflow_datasets as tfds
    from deeplab_jax.data import voc  # registers 'voc2012_sbd'
    builder = tfds.builder('voc2012_sbd', data_dir='/data/tfds')
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
        manual_dir='/data/tfds/downloads/manual'))  # first use only
    ds = builder.as_dataset(split='train_aug')  # 10,582 examples

Prepared from the two official archives, taken from the manual directory
(TFDS's default: `<data_dir>/downloads/manual`) or, where there is a network,
downloaded:
- PASCAL VOC 2012 trainval, `VOCtrainval_11-May-2012.tar` (2 GB):
  `VOCdevkit/VOC2012/{JPEGImages, SegmentationClass, ImageSets/Segmentation}`;
- the Semantic Boundaries Dataset (SBD), `benchmark.tgz` (1.4 GB):
  `benchmark_RELEASE/dataset/{img, cls, train.txt, val.txt}`, whose
  `cls/<id>.mat` hold a MATLAB struct `GTcls` with the class map in
  `Segmentation`.

Splits (ids sorted, each once):
| split | ids | real size |
|---|---|---|
| `train` | VOC `train.txt` | 1,464 |
| `val` | VOC `val.txt` | 1,449 |
| `trainval` | VOC `trainval.txt` | 2,913 |
| `train_aug` | VOC train + SBD train + SBD val, minus every VOC val id | 10,582 |
| `trainval_aug` | `train_aug` + VOC val | 12,031 |

An id's label is VOC's `SegmentationClass/<id>.png` where VOC has one (its
object boundaries are 255, void), else SBD's `cls/<id>.mat`; its image is
VOC's `JPEGImages/<id>.jpg` where present, else SBD's `img/<id>.jpg`.

Features: `image` (uint8 HxWx3, stored as the original JPEG bytes),
`segmentation_mask` (uint8 HxWx1, classes 0-20 and 255 = void, stored as a
greyscale PNG of the indices), `image_id` (text, e.g. '2007_000032').
Every example is checked while the dataset is prepared: an unreadable image,
a mask of another size than its image, a mask value that is neither a class
nor 255, a .mat without `GTcls.Segmentation` or a listed id without image or
label stops the build with a UserError naming the file inside its archive.
"""

from __future__ import annotations

import dataclasses
import io
import os
import socket
import urllib.parse
import urllib.request

from etils import epath
import numpy as np
from PIL import Image
import scipy.io
import tensorflow_datasets as tfds

from deeplab_jax.data import datasets
from deeplab_jax.data import files
from deeplab_jax.errors import UserError

CLASS_NAMES = ('background', 'aeroplane', 'bicycle', 'bird', 'boat', 'bottle',
               'bus', 'car', 'cat', 'chair', 'cow', 'diningtable', 'dog',
               'horse', 'motorbike', 'person', 'pottedplant', 'sheep', 'sofa',
               'train', 'tvmonitor')
NUM_CLASSES = len(CLASS_NAMES)


@dataclasses.dataclass(frozen=True)
class Archive:
  """One official archive: its file name, download address and what it is."""
  filename: str
  url: str
  title: str
  homepage: str
  extract_method: tfds.download.ExtractMethod

  def describe(self) -> str:
    """'<filename> (<title>, <homepage>): <url>', for messages."""
    return f'{self.filename} ({self.title}, {self.homepage}): {self.url}'


VOC_ARCHIVE = Archive(
    'VOCtrainval_11-May-2012.tar',
    'http://host.robots.ox.ac.uk/pascal/VOC/voc2012/VOCtrainval_11-May-2012.tar',
    'PASCAL VOC 2012 trainval, 2 GB',
    'http://host.robots.ox.ac.uk/pascal/VOC/voc2012/',
    tfds.download.ExtractMethod.TAR)
SBD_ARCHIVE = Archive(
    'benchmark.tgz',
    'http://www.eecs.berkeley.edu/Research/Projects/CS/vision/grouping/'
    'semantic_contours/benchmark.tgz',
    'Semantic Boundaries Dataset, 1.4 GB',
    'http://www.eecs.berkeley.edu/Research/Projects/CS/vision/grouping/'
    'semantic_contours/',
    tfds.download.ExtractMethod.TAR_GZ)
ARCHIVES = (VOC_ARCHIVE, SBD_ARCHIVE)  # Read at build time (tests replace it).

VOC_ROOT = 'VOCdevkit/VOC2012'  # In the VOC archive.
SBD_ROOT = 'benchmark_RELEASE/dataset'  # In the SBD archive.
_PROBE_TIMEOUT_S = 10.0
# Image files stored as they are; others (CMYK, palette, ...) as pixels.
_KEEP_BYTES = {('JPEG', 'RGB'), ('JPEG', 'L')}

_MANUAL_INSTRUCTIONS = '\n'.join(
    [f'Put these files in the manual directory (TFDS\'s default: '
     '<data_dir>/downloads/manual; deeplab_jax configs: '
     '--config.dataset.manual_dir):'] +
    [f'- {a.describe()}' for a in ARCHIVES] +
    ['Without them there, the builder tries to download them from those '
     'addresses.'])

_CITATION = """\
@article{everingham2010pascal,
  author = {Everingham, M. and Van Gool, L. and Williams, C. K. I. and
            Winn, J. and Zisserman, A.},
  title = {The Pascal Visual Object Classes ({VOC}) Challenge},
  journal = {International Journal of Computer Vision},
  volume = {88}, number = {2}, pages = {303--338}, year = {2010}}
@inproceedings{hariharan2011semantic,
  author = {Hariharan, Bharath and Arbel{\\'a}ez, Pablo and Bourdev, Lubomir
            and Maji, Subhransu and Malik, Jitendra},
  title = {Semantic Contours from Inverse Detectors},
  booktitle = {International Conference on Computer Vision (ICCV)},
  year = {2011}}
"""


@dataclasses.dataclass(frozen=True)
class _File:
  """A file of an extracted archive: where it is, and its name for messages."""
  path: epath.Path
  name: str  # Path inside the archive and the archive, e.g. 'a/b.png in x.tar'.


@dataclasses.dataclass(frozen=True)
class _Example:
  image_id: str
  image: _File
  label: _File  # A VOC .png or an SBD .mat.


class Voc2012Sbd(tfds.core.GeneratorBasedBuilder):
  """PASCAL VOC 2012 segmentation with SBD's extra labels (see module doc)."""

  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'Initial release: train, val, trainval, '
                            'train_aug, trainval_aug.'}
  MANUAL_DOWNLOAD_INSTRUCTIONS = _MANUAL_INSTRUCTIONS

  def _info(self):
    return self.dataset_info_from_configs(
        features=tfds.features.FeaturesDict({
            'image': tfds.features.Image(shape=(None, None, 3),
                                         encoding_format='jpeg'),
            'segmentation_mask': tfds.features.Image(shape=(None, None, 1),
                                                     encoding_format='png'),
            'image_id': tfds.features.Text(),
        }),
        supervised_keys=('image', 'segmentation_mask'),
        description=__doc__,
        homepage='http://host.robots.ox.ac.uk/pascal/VOC/voc2012/',
        citation=_CITATION,
    )

  def _split_generators(self, dl_manager):
    voc_archive, sbd_archive = _archive_paths(dl_manager)
    voc_dir = _extract(dl_manager, voc_archive, VOC_ARCHIVE)
    sbd_dir = _extract(dl_manager, sbd_archive, SBD_ARCHIVE)
    sources = _Sources(voc_dir, sbd_dir)
    return {split: self._generate_examples([sources.example(i) for i in ids])
            for split, ids in sources.split_ids().items()}

  def _generate_examples(self, examples):
    for example in examples:
      yield example.image_id, _features(example)


def _archive_paths(dl_manager) -> list[epath.Path]:
  """Each of ARCHIVES from the manual dir, else downloaded; UserError if neither."""
  manual_dir = _manual_dir(dl_manager)
  paths, missing = [], []
  for archive in ARCHIVES:
    path = manual_dir / archive.filename if manual_dir else None
    if path is None or not path.exists():
      path, why = _download(dl_manager, archive)
      if path is None:
        missing.append(f'- {archive.describe()}\n  (download failed: {why})')
    paths.append(path)
  if missing:
    where = manual_dir or getattr(dl_manager, '_manual_dir', None)
    raise UserError(
        f'voc2012_sbd needs these files in the manual directory {where}, where '
        'they are not, and they could not be downloaded:\n' + '\n'.join(missing) +
        f'\nDownload them on a machine with a network, put them in {where} '
        '(or give another directory: DownloadConfig(manual_dir=...), '
        '--config.dataset.manual_dir) and run again.')
  return paths


def _manual_dir(dl_manager) -> epath.Path | None:
  """The manual dir if it exists and holds anything (TFDS asserts otherwise)."""
  try:
    return dl_manager.manual_dir
  except AssertionError:  # Missing or empty.
    return None


def _download(dl_manager, archive: Archive) -> tuple[epath.Path | None, str]:
  """(path, '') of the downloaded archive, or (None, why not)."""
  # TFDS retries a failed connection ten times with back-off (3.5 minutes
  # without a network): see first whether the server answers at all.
  unreachable = _unreachable(archive.url)
  if unreachable:
    return None, unreachable
  try:
    return epath.Path(dl_manager.download(archive.url)), ''
  except Exception as e:  # pylint: disable=broad-except  # requests, TFDS, OS.
    return None, f'{type(e).__name__}: {e}'


def _unreachable(url: str) -> str:
  """Why `url`'s server cannot be reached, or '' if it can (or a proxy is set)."""
  parts = urllib.parse.urlsplit(url)
  if parts.scheme in urllib.request.getproxies():
    return ''  # Only the download itself can tell.
  port = parts.port or (443 if parts.scheme == 'https' else 80)
  try:
    with socket.create_connection((parts.hostname, port), _PROBE_TIMEOUT_S):
      return ''
  except OSError as e:
    return f'cannot connect to {parts.hostname}:{port}: {e}'


def _extract(dl_manager, path: epath.Path, archive: Archive) -> epath.Path:
  try:
    return epath.Path(dl_manager.extract(tfds.download.Resource(
        path=path, extract_method=archive.extract_method)))
  except Exception as e:  # pylint: disable=broad-except  # TFDS wraps tarfile's.
    raise UserError(f'cannot extract {path}: {e}; is it the complete '
                    f'{archive.describe()}?') from e


class _Sources:
  """The split lists and each id's image and label in the extracted archives."""

  def __init__(self, voc_dir: epath.Path, sbd_dir: epath.Path):
    self._voc = _Tree(voc_dir, VOC_ROOT, VOC_ARCHIVE)
    self._sbd = _Tree(sbd_dir, SBD_ROOT, SBD_ARCHIVE)
    self._voc_images = self._voc.stems('JPEGImages', '.jpg')
    self._voc_labels = self._voc.stems('SegmentationClass', '.png')
    self._sbd_images = self._sbd.stems('img', '.jpg')
    self._sbd_labels = self._sbd.stems('cls', '.mat')
    self._lists = {
        'train': self._voc.id_list('ImageSets/Segmentation/train.txt'),
        'val': self._voc.id_list('ImageSets/Segmentation/val.txt'),
        'trainval': self._voc.id_list('ImageSets/Segmentation/trainval.txt'),
        'sbd_train': self._sbd.id_list('train.txt'),
        'sbd_val': self._sbd.id_list('val.txt'),
    }

  def split_ids(self) -> dict[str, list[str]]:
    """split -> its sorted ids (see the module doc's table)."""
    ids = {name: id_list.ids for name, id_list in self._lists.items()}
    train_aug = (ids['train'] | ids['sbd_train'] | ids['sbd_val']) - ids['val']
    splits = {
        'train': ids['train'],
        'val': ids['val'],
        'trainval': ids['trainval'],
        'train_aug': train_aug,
        'trainval_aug': train_aug | ids['val'],
    }
    return {split: sorted(split_ids) for split, split_ids in splits.items()}

  def example(self, image_id: str) -> _Example:
    """Where `image_id`'s image and label are; UserError if one is missing."""
    if image_id in self._voc_images:
      image = self._voc.file(f'JPEGImages/{image_id}.jpg')
    elif image_id in self._sbd_images:
      image = self._sbd.file(f'img/{image_id}.jpg')
    else:
      image = None
    if image_id in self._voc_labels:
      label = self._voc.file(f'SegmentationClass/{image_id}.png')
    elif image_id in self._sbd_labels:
      label = self._sbd.file(f'cls/{image_id}.mat')
    else:
      label = None
    if image is None or label is None:
      lists = ', '.join(l.name for l in self._lists.values() if image_id in l.ids)
      missing = []
      if image is None:
        missing.append(f'no image ({self._voc.name(f"JPEGImages/{image_id}.jpg")}'
                       f' or {self._sbd.name(f"img/{image_id}.jpg")})')
      if label is None:
        missing.append('no label ('
                       f'{self._voc.name(f"SegmentationClass/{image_id}.png")}'
                       f' or {self._sbd.name(f"cls/{image_id}.mat")})')
      raise UserError(f'{image_id!r}, listed in {lists}, has '
                      f'{" and ".join(missing)}; are the archives complete?')
    return _Example(image_id, image, label)


@dataclasses.dataclass(frozen=True)
class _IdList:
  """The ids in a split list file."""
  name: str  # The file, for messages.
  ids: frozenset[str]


class _Tree:
  """The dataset folder (`root`) inside an extracted archive."""

  def __init__(self, extracted: epath.Path, root: str, archive: Archive):
    self._dir = extracted / root
    self._root = root
    self._archive = archive
    if not self._dir.is_dir():
      raise UserError(f'{archive.filename} holds no {root}/; is it '
                      f'{archive.describe()}?')

  def name(self, relative: str) -> str:
    return f'{self._root}/{relative} in {self._archive.filename}'

  def file(self, relative: str) -> _File:
    return _File(self._dir / relative, self.name(relative))

  def stems(self, folder: str, suffix: str) -> frozenset[str]:
    """Names (without `suffix`) of the `suffix` files in `folder`."""
    path = self._dir / folder
    if not path.is_dir():
      raise UserError(f'{self.name(folder)}/ is missing; is the archive complete?')
    return frozenset(name[:-len(suffix)] for name in os.listdir(path)
                     if name.endswith(suffix))

  def id_list(self, relative: str) -> _IdList:
    path = self._dir / relative
    if not path.is_file():
      raise UserError(f'{self.name(relative)} is missing; is the archive complete?')
    return _IdList(self.name(relative),
                   frozenset(line.strip() for line in path.read_text().splitlines()
                             if line.strip()))


def _features(example: _Example) -> dict:
  """The checked features of one example."""
  image_bytes = example.image.path.read_bytes()
  image = files.read_image(image_bytes, example.image.name)
  label = _read_label(example.label)
  files.check_example(image, label, NUM_CLASSES,
                      f'{example.label.name} (image {example.image.name})')
  with Image.open(io.BytesIO(image_bytes)) as header:
    keep = (header.format, header.mode) in _KEEP_BYTES
  return {
      'image': image_bytes if keep else image,  # TFDS writes arrays as JPEG.
      'segmentation_mask': label[..., None],
      'image_id': example.image_id,
  }


def _read_label(label: _File) -> np.ndarray:
  data = label.path.read_bytes()
  if label.path.suffix == '.png':
    return files.read_index_png(data, label.name)
  return read_sbd_mat(data, label.name)


def read_sbd_mat(data: bytes, name: str) -> np.ndarray:
  """The class map (uint8 HxW) in an SBD `cls/<id>.mat` file's bytes.

      label = read_sbd_mat(path.read_bytes(), 'benchmark_RELEASE/dataset/cls/x.mat')

  Raises UserError naming `name` if the file cannot be read, holds no
  `GTcls.Segmentation`, or that is not a 2-D map of values 0-255.
  """
  try:
    mat = scipy.io.loadmat(io.BytesIO(data), struct_as_record=False,
                           squeeze_me=True)
  except Exception as e:  # pylint: disable=broad-except  # scipy raises several.
    raise UserError(f'cannot read {name}: {e}') from e
  segmentation = getattr(mat.get('GTcls'), 'Segmentation', None)
  if segmentation is None:
    raise UserError(f'{name} holds no GTcls.Segmentation (the class map of an '
                    f'SBD cls/ file); variables: {sorted(_variables(mat))}')
  segmentation = np.asarray(segmentation)
  if segmentation.ndim != 2 or segmentation.dtype.kind not in 'uif':
    raise UserError(f'{name}: GTcls.Segmentation is a {segmentation.dtype} '
                    f'array of shape {segmentation.shape}; expected an HxW class map')
  outside = (segmentation < 0) | (segmentation > 255) | (
      segmentation != np.round(segmentation))
  if np.any(outside):
    raise UserError(f'{name}: GTcls.Segmentation has values '
                    f'{np.unique(segmentation[outside])[:10].tolist()}, which '
                    f'are not classes (0-{NUM_CLASSES - 1}) or 255 (void)')
  return segmentation.astype(np.uint8)


def _variables(mat: dict) -> list[str]:
  return [key for key in mat if not key.startswith('__')]


datasets.register('voc2012_sbd', features=datasets.Features(class_names=CLASS_NAMES))
