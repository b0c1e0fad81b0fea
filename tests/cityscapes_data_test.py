"""Cityscapes: TFDS's builder on fake archives in the official layout; train ids."""

import os
import re

import ml_collections
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from deeplab_jax.data import cityscapes
from deeplab_jax.data import datasets
from deeplab_jax.testing import fake_cityscapes
from deeplab_jax.errors import UserError

# cityscapesScripts `labels.py`, written out independently of the module:
# label id -> train id for the 19 evaluated classes.
OFFICIAL_TRAIN_IDS = {
    7: 0,  # road
    8: 1,  # sidewalk
    11: 2,  # building
    12: 3,  # wall
    13: 4,  # fence
    17: 5,  # pole
    19: 6,  # traffic light
    20: 7,  # traffic sign
    21: 8,  # vegetation
    22: 9,  # terrain
    23: 10,  # sky
    24: 11,  # person
    25: 12,  # rider
    26: 13,  # car
    27: 14,  # truck
    28: 15,  # bus
    31: 16,  # train
    32: 17,  # motorcycle
    33: 18,  # bicycle
}
# Void in labels.py: unlabeled, ego vehicle, rectification border, out of roi,
# static, dynamic, ground, parking, rail track, guard rail, bridge, tunnel,
# polegroup, caravan, trailer, license plate (-1, 255 as uint8).
OFFICIAL_VOID_IDS = (0, 1, 2, 3, 4, 5, 6, 9, 10, 14, 15, 16, 18, 29, 30, 255)

# (split folder, TFDS split, cities) of the fixture: two images per split.
SPLITS = (('train', 'train', ('aachen', 'bochum')),
          ('val', 'validation', ('frankfurt', 'frankfurt')),
          ('test', 'test', ('berlin', 'mainz')))


def _example(rng):
  """Blocky image and label ids (every official id + 255), cheap to encode."""
  image = rng.integers(0, 256, (16, 32, 3), dtype=np.uint8)
  image = np.kron(image, np.ones((64, 64, 1), np.uint8))
  ids = np.r_[np.arange(34), 255].astype(np.uint8)
  label = np.kron(rng.choice(ids, (32, 64)), np.ones((32, 32), np.uint8))
  label[:32, :35 * 32:32] = ids  # Every id occurs.
  return image, label.astype(np.uint8)


@pytest.fixture(scope='module')
def prepared(tmp_path_factory):
  """(builder, {image_id: (image, label ids)}) built by TFDS from fake zips."""
  root = tmp_path_factory.mktemp('cityscapes')
  rng = np.random.default_rng(0)
  examples, expected = {}, {}
  for folder, _, cities in SPLITS:
    examples[folder] = []
    for frame, city in enumerate(cities):
      image, label = _example(rng)
      examples[folder].append((city, 7, frame * 19, image, label))
      expected[f'{city}_000007_{frame * 19:06d}'] = (image, label)
  manual_dir = str(root / 'manual')
  fake_cityscapes.write_cityscapes_zips(manual_dir, examples)
  builder = tfds.builder(cityscapes.TFDS_NAME, data_dir=str(root / 'tfds'))
  builder.download_and_prepare(
      download_config=tfds.download.DownloadConfig(manual_dir=manual_dir))
  return builder, expected


def _read(builder, split):
  ds = builder.as_dataset(split=split, shuffle_files=False)
  return {ex[cityscapes.ID_KEY].decode(): ex for ex in tfds.as_numpy(ds)}


def test_splits_ids_full_size_images_and_exact_label_ids(prepared):
  builder, expected = prepared
  assert set(builder.info.splits) == set(cityscapes.SPLITS)
  for _, split, cities in SPLITS:
    examples = _read(builder, split)
    assert builder.info.splits[split].num_examples == 2
    assert sorted(examples) == sorted(
        f'{city}_000007_{frame * 19:06d}' for frame, city in enumerate(cities))
    for image_id, ex in examples.items():
      image, label = expected[image_id]
      assert ex[cityscapes.IMAGE_KEY].shape == (1024, 2048, 3)
      assert ex[cityscapes.LABEL_KEY].shape == (1024, 2048, 1)
      assert ex[cityscapes.LABEL_KEY].dtype == np.uint8
      np.testing.assert_array_equal(ex[cityscapes.IMAGE_KEY], image)
      np.testing.assert_array_equal(ex[cityscapes.LABEL_KEY][..., 0], label)


def test_train_id_table_in_tf_data_gives_train_ids(prepared):
  builder, expected = prepared
  table = tf.constant(cityscapes.TRAIN_ID_TABLE)
  ds = builder.as_dataset(split='validation').map(
      lambda ex: (ex[cityscapes.ID_KEY],
                  tf.gather(table, tf.cast(ex[cityscapes.LABEL_KEY], tf.int32))))
  for image_id, train_ids in tfds.as_numpy(ds):
    label = expected[image_id.decode()][1]
    np.testing.assert_array_equal(train_ids[..., 0], cityscapes.to_train_ids(label))
    assert set(np.unique(train_ids).tolist()) == set(range(19)) | {255}


def test_train_id_table_is_the_official_one():
  table = cityscapes.TRAIN_ID_TABLE
  assert table.shape == (256,) and table.dtype == np.uint8
  for label_id, train_id in OFFICIAL_TRAIN_IDS.items():
    assert table[label_id] == train_id, label_id
  for label_id in range(256):
    if label_id not in OFFICIAL_TRAIN_IDS:
      assert table[label_id] == 255, label_id
  assert all(table[i] == 255 for i in OFFICIAL_VOID_IDS)
  assert len(cityscapes.CLASS_NAMES) == 19
  assert cityscapes.CLASS_NAMES[0] == 'road' and cityscapes.CLASS_NAMES[-1] == 'bicycle'
  assert cityscapes.CLASS_NAMES[13] == 'car'


def test_to_train_ids():
  ids = np.array([[7, 26, 0], [33, 255, 30]], np.uint8)
  np.testing.assert_array_equal(cityscapes.to_train_ids(ids),
                                [[0, 13, 255], [18, 255, 255]])
  assert cityscapes.to_train_ids(ids).dtype == np.uint8
  np.testing.assert_array_equal(cityscapes.to_train_ids(np.array([-1, 24])), [255, 11])
  with pytest.raises(UserError, match='300'):
    cityscapes.to_train_ids(np.array([7, 300]))


def test_check_manual_dir_names_missing_zips(tmp_path):
  with pytest.raises(UserError) as e:
    cityscapes.check_manual_dir(str(tmp_path / 'nowhere'))
  message = str(e.value)
  assert cityscapes.IMAGES_ZIP in message and cityscapes.LABELS_ZIP in message
  assert str(tmp_path / 'nowhere') in message and 'does not exist' in message
  assert 'https://www.cityscapes-dataset.com/downloads/' in message
  (tmp_path / cityscapes.IMAGES_ZIP).write_bytes(b'')
  with pytest.raises(UserError, match=re.escape(
      f'needs {cityscapes.LABELS_ZIP} in {tmp_path}.')):
    cityscapes.check_manual_dir(str(tmp_path))
  (tmp_path / cityscapes.LABELS_ZIP).write_bytes(b'')
  cityscapes.check_manual_dir(str(tmp_path))


def _dataset_config(data_dir, manual_dir=None):
  return ml_collections.ConfigDict({
      'name': 'cityscapes', 'builder_config': 'semantic_segmentation',
      'data_dir': data_dir, 'manual_dir': manual_dir, 'num_classes': 19})


def test_builder_raises_our_error_before_tfds(tmp_path):
  with pytest.raises(UserError, match=cityscapes.IMAGES_ZIP):
    datasets.builder(_dataset_config(str(tmp_path), str(tmp_path / 'm')))
  # Default manual dir: TFDS's own, under the data dir.
  with pytest.raises(UserError, match=re.escape(
      os.path.join(str(tmp_path), 'downloads', 'manual'))):
    datasets.builder(_dataset_config(str(tmp_path)))


def test_builder_returns_prepared_dataset_without_archives(prepared):
  builder, _ = prepared
  again = datasets.builder(_dataset_config(str(builder.data_dir_root), '/does/not/exist'))
  assert again.info.splits['train'].num_examples == 2
