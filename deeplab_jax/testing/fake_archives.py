"""Small archives in the official layouts of public datasets, for tests and benchmarks.

Nothing is downloaded: each writer builds, from arrays, an archive laid out
as the real one, so a dataset builder prepares from it exactly as from the
download. Writers take examples as `(image_id, image, label)`: `image` a
uint8 HxWx3 array (encoded as the dataset's files are) or bytes (written as
they are: a broken file for an error test, or your own encoding); `label` a
uint8 HxW class map, or None for no label file.

- PASCAL VOC 2012 (`write_voc_tar`) and SBD (`write_sbd_tgz`):

      rng = np.random.default_rng(0)
      image, label = patterned_example(rng, 40, 60)  # uint8 40x60x3, 40x60
      write_voc_tar(f'{manual_dir}/{VOC_TAR}',
                    {'train': [('2007_000032', image, label)], 'val': []})
      write_sbd_tgz(f'{manual_dir}/{SBD_TGZ}',
                    {'train': [('2008_000002', image, label)], 'val': []})

`patterned_example` makes images whose colour gives the class, so a test
can check that labels and images come through; `write_tar` writes any
members.
"""

from __future__ import annotations

import io
import os
import posixpath
import tarfile
from typing import Mapping, Sequence

import numpy as np
from PIL import Image
import scipy.io
import scipy.sparse

from deeplab_jax.data import files

# (image_id, image: uint8 HxWx3 or file bytes, label: uint8 HxW or None).
Example = tuple[str, np.ndarray | bytes, np.ndarray | None]

# PASCAL VOC 2012 trainval and the Semantic Boundaries Dataset (SBD): the
# archives' names and their dataset folders, as distributed.
VOC_TAR = 'VOCtrainval_11-May-2012.tar'
SBD_TGZ = 'benchmark.tgz'
VOC_ROOT = 'VOCdevkit/VOC2012'
SBD_ROOT = 'benchmark_RELEASE/dataset'
SBD_NUM_CLASSES = 20  # Object classes; SBD's Boundaries cell has one per class.


def write_tar(path: str | os.PathLike, members: Mapping[str, bytes]) -> None:
  """A tar of `members` (path inside -> contents); gzipped if `path` ends .tgz/.gz.

      write_tar('/tmp/x.tgz', {'top/a.txt': b'hello'})  # with dir entry 'top'
  """
  path = os.fspath(path)
  mode = 'w:gz' if path.endswith(('.tgz', '.gz')) else 'w'
  dirs = set()
  for name in members:
    parent = posixpath.dirname(name)
    while parent and parent not in dirs:
      dirs.add(parent)
      parent = posixpath.dirname(parent)
  with tarfile.open(path, mode) as tar:
    for name in sorted(dirs):  # Parents first, as tar writes them.
      info = tarfile.TarInfo(name)
      info.type, info.mode = tarfile.DIRTYPE, 0o755
      tar.addfile(info)
    for name, data in members.items():
      info = tarfile.TarInfo(name)
      info.size, info.mode = len(data), 0o644
      tar.addfile(info, io.BytesIO(data))


def encode_jpeg(image: np.ndarray, quality: int = 95) -> bytes:
  """JPEG bytes of a uint8 HxWx3 image (PIL, 4:2:0 chroma as most cameras)."""
  buffer = io.BytesIO()
  Image.fromarray(np.asarray(image, np.uint8)).save(
      buffer, format='JPEG', quality=quality)
  return buffer.getvalue()


def _image_file(image, quality: int) -> bytes:
  return image if isinstance(image, bytes) else encode_jpeg(image, quality)


def _id_list(ids: Sequence[str]) -> bytes:
  return ''.join(f'{image_id}\n' for image_id in ids).encode()


def write_voc_tar(path: str | os.PathLike,
                  examples: Mapping[str, Sequence[Example]], *,
                  quality: int = 95,
                  extra_images: Mapping[str, np.ndarray | bytes] | None = None
                  ) -> None:
  """`VOCtrainval_11-May-2012.tar`'s segmentation part, from `examples`.

      write_voc_tar(f'{manual_dir}/{VOC_TAR}',
                    {'train': [(id, image, label), ...], 'val': [...]},
                    extra_images={'2008_000002': image})

  Writes `VOCdevkit/VOC2012/JPEGImages/<id>.jpg` (JPEG at `quality`),
  `SegmentationClass/<id>.png` (palette PNG of the class indices with VOC's
  colours, as the real masks) and `ImageSets/Segmentation/{train,val,
  trainval}.txt` (trainval = train + val, sorted). `extra_images` are JPEGs
  in no segmentation list, as the real JPEGImages holds for SBD's images.
  """
  root = VOC_ROOT
  members = {}
  lists = {'train': [], 'val': []}
  for split, split_examples in examples.items():
    if split not in lists:
      raise ValueError(f"VOC split {split!r}: use 'train' and 'val' "
                       '(trainval is written from them)')
    for image_id, image, label in split_examples:
      lists[split].append(image_id)
      members[f'{root}/JPEGImages/{image_id}.jpg'] = _image_file(image, quality)
      if label is not None:
        members[f'{root}/SegmentationClass/{image_id}.png'] = (
            files.encode_index_png(label))
  for image_id, image in (extra_images or {}).items():
    members[f'{root}/JPEGImages/{image_id}.jpg'] = _image_file(image, quality)
  lists['trainval'] = sorted(lists['train'] + lists['val'])
  for split, ids in lists.items():
    members[f'{root}/ImageSets/Segmentation/{split}.txt'] = _id_list(ids)
  write_tar(path, members)


def sbd_mat(label: np.ndarray) -> bytes:
  """An SBD `cls/<id>.mat` for a class map: struct GTcls as in the real files.

      gt = scipy.io.loadmat(io.BytesIO(sbd_mat(label)), struct_as_record=False,
                            squeeze_me=True)['GTcls']
      gt.Segmentation  # == label (uint8 HxW, classes 0-20)

  Fields: `Segmentation` (uint8 HxW), `Boundaries` (20x1 cell of sparse
  HxW 0/1 maps, the edge of each class's region) and `CategoriesPresent`
  (the classes 1-20 present, uint8 column).
  """
  label = np.asarray(label, np.uint8)
  boundaries = np.empty((SBD_NUM_CLASSES, 1), object)
  for index in range(SBD_NUM_CLASSES):
    boundaries[index, 0] = scipy.sparse.csc_matrix(
        _region_edge(label == index + 1))
  present = [c for c in np.unique(label).tolist() if 1 <= c <= SBD_NUM_CLASSES]
  gt_cls = {'Segmentation': label, 'Boundaries': boundaries,
            'CategoriesPresent': np.asarray(present, np.uint8).reshape(-1, 1)}
  buffer = io.BytesIO()
  scipy.io.savemat(buffer, {'GTcls': gt_cls}, do_compression=True)
  return buffer.getvalue()


def _region_edge(region: np.ndarray) -> np.ndarray:
  """Pixels of `region` (bool HxW) with a 4-neighbour outside it."""
  padded = np.pad(region, 1, constant_values=False)
  inner = (padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2]
           & padded[1:-1, 2:])
  return region & ~inner


def write_sbd_tgz(path: str | os.PathLike,
                  examples: Mapping[str, Sequence[Example]], *,
                  quality: int = 95) -> None:
  """SBD's `benchmark.tgz`, from `examples` ('train' and 'val' lists).

      write_sbd_tgz(f'{manual_dir}/{SBD_TGZ}',
                    {'train': [(id, image, label), ...], 'val': [...]})

  Writes `benchmark_RELEASE/dataset/img/<id>.jpg` (JPEG at `quality`),
  `cls/<id>.mat` (`sbd_mat`) and `{train,val}.txt`.
  """
  root = SBD_ROOT
  members = {}
  for split in ('train', 'val'):
    split_examples = examples.get(split, ())
    for image_id, image, label in split_examples:
      members[f'{root}/img/{image_id}.jpg'] = _image_file(image, quality)
      if label is not None:
        members[f'{root}/cls/{image_id}.mat'] = sbd_mat(label)
    members[f'{root}/{split}.txt'] = _id_list([e[0] for e in split_examples])
  extra = set(examples) - {'train', 'val'}
  if extra:
    raise ValueError(f"SBD splits {sorted(extra)}: use 'train' and 'val'")
  write_tar(path, members)


def class_colours(num_classes: int = 21) -> np.ndarray:
  """The colour of each class in `patterned_example` images: VOC's palette."""
  return files.voc_palette()[:num_classes]


def patterned_example(rng: np.random.Generator, height: int, width: int,
                      num_classes: int = 21, void_band: int = 1
                      ) -> tuple[np.ndarray, np.ndarray]:
  """An image whose colour gives the class, and its label map.

      image, label = patterned_example(np.random.default_rng(0), 40, 60)
      # image[y, x] == class_colours()[c] for every label[y, x] == c != 255

  A background (class 0) with 1-3 rectangles of random classes 1 to
  `num_classes - 1`, later ones over earlier ones. Pixels within `void_band`
  of a boundary between classes are 255 in the label, as VOC's annotations
  (0: no void, as SBD's); the image keeps the class colour there.
  """
  classes = np.zeros((height, width), np.uint8)
  for _ in range(rng.integers(1, 4)):
    top, left = rng.integers(0, height - 2), rng.integers(0, width - 2)
    bottom = rng.integers(top + 2, height + 1)
    right = rng.integers(left + 2, width + 1)
    classes[top:bottom, left:right] = rng.integers(1, num_classes)
  image = class_colours(num_classes)[classes]
  label = classes.copy()
  label[_near_boundary(classes, void_band)] = files.IGNORE_LABEL
  return image, label


def _near_boundary(classes: np.ndarray, distance: int) -> np.ndarray:
  """Pixels within `distance` (chessboard) of a pixel of another class."""
  near = np.zeros(classes.shape, bool)
  if distance <= 0:
    return near
  height, width = classes.shape
  padded = np.pad(classes, distance, mode='edge')
  for dy in range(-distance, distance + 1):
    for dx in range(-distance, distance + 1):
      shifted = padded[distance + dy:distance + dy + height,
                       distance + dx:distance + dx + width]
      near |= shifted != classes
  return near
