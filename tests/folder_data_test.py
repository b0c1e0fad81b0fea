"""The `segmentation_folder` builder: a user's folder in, checked TFDS dataset out."""

import io
import os
import re
import shutil

import numpy as np
from PIL import Image
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from deeplab_jax.data import files
from deeplab_jax.data import folder
from deeplab_jax.errors import UserError

CLASSES = ('background', 'cat', 'dog')
# id -> (file name, height, width); JPEG and PNG mixed, in both splits.
IMAGES = {
    'a1': ('a1.jpg', 40, 56),
    'a2': ('a2.png', 48, 32),
    'a3': ('a3.JPEG', 36, 36),  # Grey JPEG, upper-case extension.
    'a4': ('a4.png', 30, 44),  # RGBA: stored as a PNG of its RGB pixels.
    'b1': ('b1.png', 52, 40),
    'b2': ('b2.jpeg', 32, 48),
}
SPLITS = {'train': ['a1', 'a2', 'a3', 'a4'], 'val': ['b2', 'b1']}


def _save(array, path, **kwargs):
  Image.fromarray(array).save(path, **kwargs)


def _label(rng, height, width):
  """Blocks of classes 0-2 with void (255) borders between them."""
  label = np.kron(rng.integers(0, 3, (4, 4), dtype=np.uint8),
                  np.ones((height // 4 + 1, width // 4 + 1), np.uint8))[:height, :width]
  label[:, ::7] = 255
  label[::9] = 255
  return label


def _write_folder(path, seed=0):
  """The fixture folder; returns id -> (image as decoded by PIL, label)."""
  rng = np.random.default_rng(seed)
  for sub in ('images', 'masks', 'splits'):
    os.makedirs(os.path.join(path, sub))
  expected = {}
  for image_id, (file_name, height, width) in IMAGES.items():
    image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    image_path = os.path.join(path, 'images', file_name)
    if image_id == 'a3':
      _save(image[..., 0], image_path, format='JPEG')
    elif image_id == 'a4':
      rgba = np.concatenate([image, rng.integers(0, 256, (height, width, 1),
                                                 dtype=np.uint8)], axis=-1)
      _save(rgba, image_path)
    elif file_name.endswith('.png'):
      _save(image, image_path)
    else:
      _save(image, image_path, format='JPEG', quality=90)
    label = _label(rng, height, width)
    mask_path = os.path.join(path, 'masks', image_id + '.png')
    if image_id in ('a1', 'b1'):
      _save(label, mask_path)  # Greyscale mask.
    else:
      with open(mask_path, 'wb') as f:
        f.write(files.encode_index_png(label))  # Palette mask.
    with open(image_path, 'rb') as f:
      expected[image_id] = (files.read_image(f.read(), image_path), label)
  for split, ids in SPLITS.items():
    with open(os.path.join(path, 'splits', split + '.txt'), 'w') as f:
      f.write('\n'.join(ids) + '\n\n')
  return expected


@pytest.fixture(scope='module')
def prepared(tmp_path_factory):
  root = tmp_path_factory.mktemp('folder')
  path = str(root / 'my_data')
  expected = _write_folder(path)
  builder = folder.builder(path, CLASSES, name='my_data', data_dir=str(root / 'tfds'))
  builder.download_and_prepare()
  return builder, expected, path


def _read(builder, split, **kwargs):
  ds = builder.as_dataset(split=split, shuffle_files=False, **kwargs)
  return {ex['image_id'].decode(): ex for ex in tfds.as_numpy(ds)}


def test_splits_ids_labels_and_images(prepared):
  builder, expected, _ = prepared
  assert builder.name == 'segmentation_folder'
  assert builder.builder_config.name == 'my_data'
  assert builder.data_dir.endswith(os.path.join('segmentation_folder', 'my_data', '1.0.0'))
  for split, ids in SPLITS.items():
    assert builder.info.splits[split].num_examples == len(ids)
    examples = _read(builder, split)
    assert sorted(examples) == sorted(ids)
    for image_id, ex in examples.items():
      image, label = expected[image_id]
      assert ex['image'].dtype == np.uint8 and ex['image'].shape == image.shape
      np.testing.assert_array_equal(ex['segmentation_mask'][..., 0], label)
      if IMAGES[image_id][0].endswith('.png'):
        np.testing.assert_array_equal(ex['image'], image)
      else:  # JPEG: TF's default (fast) IDCT rounds unlike PIL's.
        diff = np.abs(ex['image'].astype(int) - image)
        assert diff.max() <= 8 and diff.mean() < 2, image_id
  assert set(np.unique(_read(builder, 'train')['a1']['segmentation_mask'])) == {0, 1, 2, 255}


def test_images_keep_their_encoded_bytes(prepared):
  builder, expected, path = prepared
  skip = {'image': tfds.decode.SkipDecoding()}
  raw = {**_read(builder, 'train', decoders=skip), **_read(builder, 'val', decoders=skip)}
  for image_id in ('a1', 'a2', 'a3', 'b1', 'b2'):
    file_name = IMAGES[image_id][0]
    with open(os.path.join(path, 'images', file_name), 'rb') as f:
      assert raw[image_id]['image'] == f.read(), image_id
    if not file_name.endswith('.png'):  # Decoded with PIL's IDCT: exact.
      decoded = tf.io.decode_jpeg(raw[image_id]['image'], channels=3,
                                  dct_method='INTEGER_ACCURATE')
      np.testing.assert_array_equal(decoded, expected[image_id][0])
  with Image.open(io.BytesIO(raw['a4']['image'])) as image:  # Was RGBA.
    assert (image.format, image.mode) == ('PNG', 'RGB')


def test_prepared_name_with_other_classes_or_folder_is_an_error(prepared):
  builder, _, path = prepared
  data_dir = str(builder.data_dir_root)
  again = folder.builder(path, CLASSES, name='my_data', data_dir=data_dir)
  assert again.is_prepared()
  with pytest.raises(UserError, match="another name"):
    folder.builder(path, CLASSES + ('bird',), name='my_data', data_dir=data_dir)
  with pytest.raises(UserError, match=re.escape(path)):
    folder.builder(path + '_other', CLASSES, name='my_data', data_dir=data_dir)


def test_bad_arguments():
  with pytest.raises(UserError, match='dataset name'):
    folder.builder('x', CLASSES, name='my/data')
  with pytest.raises(UserError, match='distinct'):
    folder.builder('x', ('a', 'a'), name='x')


def _build_broken(tmp_path, change):
  """Writes the folder, applies `change(path)`, prepares; returns the error."""
  path = str(tmp_path / 'data')
  _write_folder(path)
  change(path)
  builder = folder.builder(path, CLASSES, name='broken', data_dir=str(tmp_path / 'tfds'))
  with pytest.raises(UserError) as e:
    builder.download_and_prepare()
  return str(e.value)


def _join(*parts):
  return os.path.join(*parts)


def test_missing_folder(tmp_path):
  message = _build_broken(tmp_path, shutil.rmtree)
  assert str(tmp_path / 'data') in message and 'does not exist' in message


@pytest.mark.parametrize('sub', ['images', 'masks', 'splits'])
def test_missing_subfolder(tmp_path, sub):
  message = _build_broken(tmp_path, lambda p: shutil.rmtree(_join(p, sub)))
  assert _join(str(tmp_path / 'data'), sub) + ' is missing' in message


def test_listed_id_without_image_names_both_paths(tmp_path):
  message = _build_broken(tmp_path, lambda p: os.remove(_join(p, 'images', 'b2.jpeg')))
  path = str(tmp_path / 'data')
  assert _join(path, 'splits', 'val.txt') in message
  assert _join(path, 'images', 'b2') + '.{jpg,jpeg,png} is missing' in message
  assert _join(path, 'masks', 'b2.png') + ' is there' in message


def test_listed_id_without_mask_names_both_paths(tmp_path):
  message = _build_broken(tmp_path, lambda p: os.remove(_join(p, 'masks', 'a2.png')))
  path = str(tmp_path / 'data')
  assert _join(path, 'images', 'a2.png') + ' is there' in message
  assert _join(path, 'masks', 'a2.png') + ' is missing' in message


def test_unreadable_image(tmp_path):
  def corrupt(path):
    with open(_join(path, 'images', 'a1.jpg'), 'wb') as f:
      f.write(b'not a jpeg')
  message = _build_broken(tmp_path, corrupt)
  assert 'cannot read image ' + _join(str(tmp_path / 'data'), 'images', 'a1.jpg') in message


def test_label_value_neither_class_nor_void(tmp_path):
  def relabel(path):
    label = np.full((52, 40), 3, np.uint8)
    _save(label, _join(path, 'masks', 'b1.png'))
  message = _build_broken(tmp_path, relabel)
  assert _join(str(tmp_path / 'data'), 'masks', 'b1.png') in message
  assert '[3]' in message and '0-2' in message


def test_size_mismatch(tmp_path):
  message = _build_broken(tmp_path, lambda p: _save(
      np.zeros((10, 10), np.uint8), _join(p, 'masks', 'a2.png')))
  path = str(tmp_path / 'data')
  assert _join(path, 'masks', 'a2.png') in message and _join(path, 'images', 'a2.png') in message
  assert '48x32' in message and '10x10' in message


def test_rgb_mask(tmp_path):
  message = _build_broken(tmp_path, lambda p: _save(
      np.zeros((48, 32, 3), np.uint8), _join(p, 'masks', 'a2.png')))
  assert _join(str(tmp_path / 'data'), 'masks', 'a2.png') in message
  assert "'RGB'" in message


def test_bad_split_lists(tmp_path):
  def duplicate(path):
    with open(_join(path, 'splits', 'val.txt'), 'a') as f:
      f.write('b1\n')
  message = _build_broken(tmp_path, duplicate)
  assert _join(str(tmp_path / 'data'), 'splits', 'val.txt') in message and 'twice' in message
