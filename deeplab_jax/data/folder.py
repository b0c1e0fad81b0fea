"""TFDS builder `segmentation_folder`: your own images and masks as a dataset.

A folder laid out as

    my_data/
      images/<id>.jpg | <id>.jpeg | <id>.png   (any size; RGB, grey, ...)
      masks/<id>.png      palette or greyscale PNG, pixel value = class index,
                          255 = void (not trained on, not scored)
      splits/train.txt    one id per line; each file is a split, any names
      splits/val.txt      (letters, digits, '_' and '-'; not 'all')

becomes a TFDS dataset with the same features as the VOC builder's, so the
same input pipelines read it:

    from deeplab_jax.data import folder
    builder = folder.builder('~/my_data', ('background', 'cat', 'dog'),
                             name='my_data', data_dir='/data/tfds')
    builder.download_and_prepare()  # first use: reads and checks every file
    ds = builder.as_dataset(split='val')

Features: `image` (uint8 HxWx3), `segmentation_mask` (uint8 HxWx1: class index
or 255), `image_id` (the id, text). Before anything is written every mask
is read once and the splits go through `label_checks`: colour masks and
values neither a class (0 to len(class_names) - 1) nor 255 stop the build
with one UserError naming all the files; 0/255-only masks, mostly void masks
and classes missing from 'train' are logged as warnings. A missing file, an
unreadable image or a mask whose size differs from its image's stops it too.
A stopped build leaves nothing (TFDS writes to a temporary directory).

Images are stored as they are (the JPEG or PNG bytes of the file: no second
JPEG compression, formats may be mixed; decoding recognises the format from
the bytes). Only images TF might decode differently from the check here
(anything but 8-bit RGB or greyscale JPEG/PNG: palette, RGBA, CMYK, 16-bit)
are stored as PNGs of their RGB pixels. TFDS's own decoding uses TF's fast
JPEG IDCT, a few levels off other decoders; the training and eval pipelines
skip it and decode with `input_pipeline.decode_image` (PIL's pixels).
Masks are stored as greyscale PNGs of their indices (TF would decode a
palette PNG to colours).

`name` is the builder config's name and so the prepared dataset's directory,
`<data_dir>/segmentation_folder/<name>/1.0.0`: use one name per folder. The
prepared dataset is what training reads; after changing the folder's
contents (files, split lists) prepare it again under a new name or delete
that directory first. Asking for a prepared name with another folder or
other class names is an error that says so.
"""

from __future__ import annotations

import dataclasses
import io
import os
import re

from PIL import Image
import tensorflow_datasets as tfds

from deeplab_jax.data import datasets
from deeplab_jax.data import files
from deeplab_jax.data import label_checks
from deeplab_jax.data import statistics
from deeplab_jax.errors import UserError

IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png')
_NAME_RE = re.compile(r'^[A-Za-z0-9][\w.-]*$')  # Builder config (directory) names.
_SPLIT_RE = re.compile(r'^[\w-]+$')  # What TFDS accepts in split names.
_KEEP_BYTES = {('JPEG', 'RGB'), ('JPEG', 'L'), ('PNG', 'RGB'), ('PNG', 'L')}


@dataclasses.dataclass
class FolderConfig(tfds.core.BuilderConfig):
  """A folder and its classes; `name` (the user's) names the prepared dataset."""
  folder: str = ''  # Absolute path of the folder holding images/, masks/, splits/.
  class_names: tuple[str, ...] = ()  # Class index -> name; 255 is void.


class SegmentationFolder(tfds.core.GeneratorBasedBuilder):
  """Images, index-PNG masks and split lists from a folder (see module doc)."""

  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'Initial release.'}
  # No predefined configs: `builder()` makes one per folder at run time.

  def _info(self):
    cfg = self.builder_config
    return self.dataset_info_from_configs(
        features=tfds.features.FeaturesDict({
            'image': tfds.features.Image(shape=(None, None, 3)),
            'segmentation_mask': tfds.features.Image(shape=(None, None, 1),
                                                     encoding_format='png'),
            'image_id': tfds.features.Text(),
        }),
        supervised_keys=('image', 'segmentation_mask'),
        description=__doc__,
        metadata=tfds.core.MetadataDict(folder=cfg.folder,
                                        class_names=list(cfg.class_names)),
    )

  def _split_generators(self, dl_manager):
    del dl_manager  # Nothing to download.
    cfg = self.builder_config
    splits = split_files(cfg.folder)
    # A first read of every mask: all label mistakes at once, before writing.
    stats = {split: mask_statistics(split, pairs, len(cfg.class_names))
             for split, pairs in splits.items()}
    label_checks.log_or_raise(label_checks.check(
        stats, cfg.class_names, name=_mask_namer(cfg.folder)))
    return {split: self._generate_examples(pairs) for split, pairs in splits.items()}

  def _generate_examples(self, pairs):
    num_classes = len(self.builder_config.class_names)
    for image_id, image_path, mask_path in pairs:
      yield image_id, _example(image_id, image_path, mask_path, num_classes)


def split_files(folder: str) -> dict[str, list[tuple[str, str, str]]]:
  """split -> [(id, image path, mask path)] of every listed id, checked to exist."""
  images = _image_files(folder)
  masks_dir = _subfolder(folder, 'masks')
  splits = {}
  for split, (list_path, ids) in _split_lists(folder).items():
    pairs = []
    for image_id in ids:
      image = images.get(image_id)
      mask = os.path.join(masks_dir, image_id + '.png')
      if image is None or not os.path.isfile(mask):
        image_text = (f'{image} is there' if image else os.path.join(
            folder, 'images', image_id) + '.{jpg,jpeg,png} is missing')
        mask_text = f'{mask} is {"there" if os.path.isfile(mask) else "missing"}'
        raise UserError(f'{list_path} lists {image_id!r}: image {image_text}, '
                        f'mask {mask_text}; add the missing file or remove '
                        'the id from the list')
      pairs.append((image_id, image, mask))
    splits[split] = pairs
  return splits


def mask_statistics(split: str, pairs, num_classes: int,
                    ignore_label: int = files.IGNORE_LABEL):
  """`statistics.SplitStatistics` of the mask files of `pairs` (`split_files`'s
  entries), read as they are; RGB(A) masks are recorded as colour masks."""
  accumulator = statistics.Accumulator(num_classes, ignore_label)
  for image_id, _, mask_path in pairs:
    with open(mask_path, 'rb') as f:
      data = f.read()
    try:
      with Image.open(io.BytesIO(data)) as mask:
        mode, (width, height) = mask.mode, mask.size
    except Exception as e:  # PIL raises several types for bad files.
      raise UserError(f'cannot read segmentation mask {mask_path}: {e}') from e
    if mode in ('RGB', 'RGBA'):
      accumulator.add_colour_mask(image_id, height, width, f'{mode!r} PNG')
    else:
      accumulator.add(image_id, files.read_index_png(data, mask_path))
  return accumulator.result(split)


def _mask_namer(folder):
  masks_dir = os.path.join(folder, 'masks')
  return lambda split, image_id: os.path.join(masks_dir, image_id + '.png')


def _subfolder(folder: str, name: str) -> str:
  path = os.path.join(folder, name)
  if not os.path.isdir(folder):
    raise UserError(f'dataset folder {folder} does not exist; give the folder '
                    'that holds images/, masks/ and splits/')
  if not os.path.isdir(path):
    raise UserError(f'{path} is missing; a segmentation folder holds images/, '
                    'masks/ and splits/ (see deeplab_jax/data/folder.py)')
  return path


def _image_files(folder: str) -> dict[str, str]:
  """id -> path of every image in images/ (one file per id)."""
  images_dir = _subfolder(folder, 'images')
  found = {}
  for file_name in sorted(os.listdir(images_dir)):
    image_id, extension = os.path.splitext(file_name)
    if extension.lower() not in IMAGE_EXTENSIONS:
      continue
    path = os.path.join(images_dir, file_name)
    if image_id in found:
      raise UserError(f'two images for id {image_id!r}: {found[image_id]} and '
                      f'{path}; keep one')
    found[image_id] = path
  return found


def _split_lists(folder: str) -> dict[str, tuple[str, list[str]]]:
  """split -> (path of its list, ids) for every splits/<split>.txt."""
  splits_dir = _subfolder(folder, 'splits')
  splits = {}
  for file_name in sorted(os.listdir(splits_dir)):
    split, extension = os.path.splitext(file_name)
    if extension != '.txt' or split.startswith('.'):
      continue
    path = os.path.join(splits_dir, file_name)
    if not _SPLIT_RE.match(split) or split.lower() == 'all':
      raise UserError(f'{path}: {split!r} cannot name a split (letters, digits, '
                      "'_' and '-' only, not 'all'); rename the file")
    with open(path, encoding='utf-8') as f:
      ids = [line.strip() for line in f if line.strip()]
    if not ids:
      raise UserError(f'{path} lists no ids; one image id per line')
    seen = set()
    for image_id in ids:
      if image_id in seen:
        raise UserError(f'{path} lists {image_id!r} twice; list each id once')
      seen.add(image_id)
    splits[split] = (path, ids)
  if not splits:
    raise UserError(f'{splits_dir} has no split lists; add e.g. train.txt and '
                    'val.txt with one image id per line')
  return splits


def _example(image_id: str, image_path: str, mask_path: str,
             num_classes: int) -> dict:
  """The checked features of one example."""
  with open(image_path, 'rb') as f:
    image_bytes = f.read()
  with open(mask_path, 'rb') as f:
    mask_bytes = f.read()
  image = files.read_image(image_bytes, image_path)
  mask = files.read_index_png(mask_bytes, mask_path)
  files.check_example(image, mask, num_classes, f'{mask_path} (image {image_path})')
  with Image.open(io.BytesIO(image_bytes)) as header:
    keep = (header.format, header.mode) in _KEEP_BYTES
  if keep and header.format == 'PNG':
    keep = image_bytes[24] == 8  # IHDR bit depth: PIL reads 16-bit RGB as 'RGB'.
  return {
      'image': image_bytes if keep else image,  # TFDS writes arrays as PNG.
      'segmentation_mask': mask[..., None],
      'image_id': image_id,
  }


def builder(folder: str, class_names, name: str,
            data_dir: str | None = None) -> SegmentationFolder:
  """The `segmentation_folder` builder for `folder`, prepared or ready to be.

      b = builder('~/my_data', ('background', 'cat', 'dog'), name='my_data')
      b.download_and_prepare()  # builds on first use, else does nothing
      ds = b.as_dataset(split='train')

  Args:
    folder: the folder holding images/, masks/ and splits/ (module doc).
    class_names: class index -> name; masks hold 0 .. len - 1 and 255 (void).
    name: the dataset's name under `<data_dir>/segmentation_folder/`; one
      per folder (and per version of its contents).
    data_dir: TFDS data dir; None is TFDS's default (~/tensorflow_datasets).

  Raises:
    UserError: bad name or class names, or `name` is already prepared from
      another folder or with other class names.
  """
  if not isinstance(name, str) or not _NAME_RE.match(name):
    raise UserError(f'dataset name {name!r}: use letters, digits, "_", "-" and '
                    '"." (it names a directory), e.g. "my_data"')
  class_names = tuple(class_names)
  if not 1 <= len(class_names) <= 255 or len(set(class_names)) != len(class_names):
    raise UserError(f'class_names {class_names!r}: give 1 to 255 distinct names, '
                    'index order (255 is void)')
  config = FolderConfig(name=name, folder=os.path.abspath(os.path.expanduser(folder)),
                        class_names=class_names,
                        description=f'Segmentation folder {folder}.')
  data_dir = os.path.expanduser(data_dir) if data_dir else None
  result = SegmentationFolder(config=config, data_dir=data_dir)
  if result.is_prepared():
    stored = dict(result.info.metadata)
    if (stored.get('folder') != config.folder
        or tuple(stored.get('class_names', ())) != class_names):
      raise UserError(
          f'{result.data_dir} was prepared from {stored.get("folder")} with '
          f'classes {tuple(stored.get("class_names", ()))}, not from '
          f'{config.folder} with classes {class_names}; give this folder '
          'another name, or delete that directory to prepare it again')
  return result


def _config_builder(dataset_config, data_dir):
  """`builder` for `config.dataset` (name 'segmentation_folder')."""
  if not dataset_config.get('folder'):
    raise UserError('dataset segmentation_folder needs --config.dataset.folder=DIR')
  if not dataset_config.builder_config:
    raise UserError('dataset segmentation_folder needs a name for your dataset: '
                    '--config.dataset.builder_config=NAME')
  return builder(dataset_config.folder, tuple(dataset_config.class_names),
                 dataset_config.builder_config, data_dir)


datasets.register('segmentation_folder', builder=_config_builder)
