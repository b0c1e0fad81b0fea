"""Every dataset a config can name goes through the same training and evaluation.

VOC 2012 + SBD, Cityscapes and a custom folder are built from generated files
in their real layouts and read by `input_pipeline` with no special case:
training runs and evaluates on VOC, Cityscapes labels arrive as train ids,
per-process shards split the data, bad configs are clear errors.
"""

import hashlib
import io
import os

import jax
import ml_collections
import numpy as np
from PIL import Image
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from configs import cityscapes_aspp
from configs import shapes as shapes_config
from configs import tiny
from deeplab_jax import evaluation
from deeplab_jax import train_lib
from deeplab_jax.data import cityscapes
from deeplab_jax.testing import fake_archives
from deeplab_jax.testing import fake_cityscapes
from deeplab_jax.data import files
from deeplab_jax.data import input_pipeline
from deeplab_jax.data import voc
from deeplab_jax.errors import UserError


def _examples(rng, prefix, count, void_band=1):
  out = []
  for i in range(count):
    height, width = rng.integers(36, 60, 2)
    out.append((f'{prefix}_{i:06d}',
                *fake_archives.patterned_example(rng, height, width, void_band=void_band)))
  return out


@pytest.fixture(scope='module')
def voc_dirs(tmp_path_factory):
  """(data_dir, manual_dir, VOC val ids) of a small VOC + SBD."""
  root = tmp_path_factory.mktemp('voc')
  rng = np.random.default_rng(0)
  train, val = _examples(rng, '2007', 8), _examples(rng, '2008', 4)
  sbd = _examples(rng, '2009', 6, void_band=0) + [(i, im, np.where(l == 255, 0, l))
                                                  for i, im, l in val[:2]]
  manual = str(root / 'manual')
  os.makedirs(manual)
  fake_archives.write_voc_tar(os.path.join(manual, fake_archives.VOC_TAR),
                              {'train': train, 'val': val})
  fake_archives.write_sbd_tgz(os.path.join(manual, fake_archives.SBD_TGZ),
                              {'train': sbd[:5], 'val': sbd[5:]})
  return str(root / 'tfds'), manual, {i for i, _, _ in val}


def _voc_config(voc_dirs):
  data_dir, manual_dir, _ = voc_dirs
  config = tiny.get_config(shapes_config)  # Tiny model; the VOC data.
  config.dataset.name = 'voc2012_sbd'
  config.dataset.builder_config = ''
  config.dataset.data_dir = data_dir
  config.dataset.manual_dir = manual_dir
  config.dataset.train_split = 'train_aug'
  config.dataset.eval_split = 'val'
  config.dataset.num_classes = len(voc.CLASS_NAMES)
  config.dataset.class_names = voc.CLASS_NAMES
  config.num_train_steps = 2
  return config


def _hashes(batches):
  out = []
  for batch in batches:
    for image, valid in zip(batch['image'], batch['valid']):
      if valid.any():
        out.append(hashlib.sha1(image.tobytes()).hexdigest())
  return out


def test_voc_trains_and_evaluates_like_any_dataset(voc_dirs, tmp_path):
  config = _voc_config(voc_dirs)
  state = train_lib.train_and_evaluate(config, str(tmp_path))
  assert int(state.step) == 2
  summary = evaluation.evaluate_checkpoint(config, str(tmp_path))
  assert 0.0 <= summary['mean_iou'] <= 1.0
  assert len(summary['per_class_iou']) == 21


def test_train_aug_batches_hold_voc_labels_only(voc_dirs):
  config = _voc_config(voc_dirs)
  builder = input_pipeline.get_builder(config.dataset)
  # VOC train + SBD's own 6; SBD's 2 VOC val ids are left out.
  assert builder.info.splits['train_aug'].num_examples == 8 + 6
  batch = next(iter(input_pipeline.train_iterator(config, builder, 4)))
  assert batch['image'].shape == (4, 32, 32, 3)
  assert set(np.unique(batch['label']).tolist()) <= set(range(21)) | {255}


def test_eval_shards_of_two_processes_are_disjoint_and_cover_the_split(
    voc_dirs, monkeypatch):
  config = _voc_config(voc_dirs)
  builder = input_pipeline.get_builder(config.dataset)
  whole = _hashes(input_pipeline.eval_iterator(config, builder, 'val', 2))
  shards = []
  for index in range(2):
    monkeypatch.setattr(jax, 'process_count', lambda: 2)
    monkeypatch.setattr(jax, 'process_index', lambda index=index: index)
    shards.append(_hashes(input_pipeline.eval_iterator(config, builder, 'val', 2)))
  assert len(whole) == 4 and not set(shards[0]) & set(shards[1])
  assert sorted(shards[0] + shards[1]) == sorted(whole)


def test_train_streams_of_two_processes_differ(voc_dirs, monkeypatch):
  config = _voc_config(voc_dirs)
  builder = input_pipeline.get_builder(config.dataset)
  batches = []
  for index in range(2):
    monkeypatch.setattr(jax, 'process_count', lambda: 2)
    monkeypatch.setattr(jax, 'process_index', lambda index=index: index)
    batches.append(next(iter(input_pipeline.train_iterator(config, builder, 4))))
  assert not np.array_equal(batches[0]['image'], batches[1]['image'])


def test_class_count_mismatch_is_a_user_error(voc_dirs):
  config = _voc_config(voc_dirs)
  config.dataset.num_classes = 20
  config.dataset.class_names = voc.CLASS_NAMES[:20]
  with pytest.raises(UserError, match=r"voc2012_sbd.*21 classes.*num_classes=20"):
    input_pipeline.get_builder(config.dataset)


@pytest.fixture(scope='module')
def cityscapes_config(tmp_path_factory):
  root = tmp_path_factory.mktemp('cityscapes')
  rng = np.random.default_rng(1)
  ids = np.r_[np.arange(34), 255].astype(np.uint8)
  examples = {}
  for split in ('train', 'val', 'test'):
    examples[split] = []
    for frame in range(2):
      image = np.kron(rng.integers(0, 256, (16, 32, 3), dtype=np.uint8),
                      np.ones((64, 64, 1), np.uint8))
      label = np.kron(rng.choice(ids, (32, 64)), np.ones((32, 32), np.uint8))
      examples[split].append(('aachen', 1, frame, image, label.astype(np.uint8)))
  fake_cityscapes.write_cityscapes_zips(str(root / 'manual'), examples)
  config = cityscapes_aspp.get_config()
  config.dataset.data_dir = str(root / 'tfds')
  config.dataset.manual_dir = str(root / 'manual')
  config.input.crop_size = 65
  return config


def test_cityscapes_labels_arrive_as_train_ids(cityscapes_config):
  builder = input_pipeline.get_builder(cityscapes_config.dataset)
  batch = next(iter(input_pipeline.train_iterator(cityscapes_config, builder, 2)))
  assert batch['image'].shape == (2, 65, 65, 3)
  assert set(np.unique(batch['label']).tolist()) <= set(range(19)) | {255}
  evaluation = next(input_pipeline.eval_iterator(cityscapes_config, builder, 'validation', 2))
  assert evaluation['image'].shape == (2, 1024, 2048, 3) and evaluation['valid'].all()
  raw = next(iter(builder.as_dataset(split='validation', shuffle_files=False)))
  want = cityscapes.to_train_ids(raw['segmentation_label'].numpy()[..., 0])
  got = [lab for lab in evaluation['label'] if np.array_equal(lab, want)]
  assert len(got) == 1  # The same frame, its ids mapped exactly.


def test_cityscapes_missing_zips_name_them(tmp_path):
  config = cityscapes_aspp.get_config()
  config.dataset.data_dir = str(tmp_path / 'tfds')
  config.dataset.manual_dir = str(tmp_path / 'manual')
  with pytest.raises(UserError, match=r'gtFine_trainvaltest\.zip'):
    input_pipeline.get_builder(config.dataset)


def _folder_config(folder, tmp_path):
  config = tiny.get_config(shapes_config)
  config.dataset = ml_collections.ConfigDict({
      'name': 'segmentation_folder', 'builder_config': folder.name,
      'folder': str(folder), 'data_dir': str(tmp_path / 'tfds'),
      'train_split': 'train', 'eval_split': 'val', 'num_classes': 3,
      'class_names': ('background', 'cat', 'dog'), 'ignore_label': 255})
  return config


def test_folder_dataset_through_the_config(tmp_path):
  folder = tmp_path / 'my_data'
  for sub in ('images', 'masks', 'splits'):
    (folder / sub).mkdir(parents=True)
  rng = np.random.default_rng(2)
  for i in range(4):
    image, label = fake_archives.patterned_example(rng, 40, 50, num_classes=3)
    (folder / 'images' / f'img{i}.jpg').write_bytes(fake_archives.encode_jpeg(image))
    (folder / 'masks' / f'img{i}.png').write_bytes(files.encode_index_png(label))
  (folder / 'splits' / 'train.txt').write_text('img0\nimg1\nimg2\n')
  (folder / 'splits' / 'val.txt').write_text('img3\n')
  config = _folder_config(folder, tmp_path)
  builder = input_pipeline.get_builder(config.dataset)
  assert builder.info.splits['train'].num_examples == 3
  batch = next(iter(input_pipeline.train_iterator(config, builder, 2)))
  assert set(np.unique(batch['label']).tolist()) <= {0, 1, 2, 255}
  config.dataset.num_classes = 4
  with pytest.raises(UserError, match='class_names has 3 names but .*num_classes=4'):
    input_pipeline.get_builder(config.dataset)
  config.dataset.num_classes = 3
  config.dataset.folder = ''
  with pytest.raises(UserError, match='dataset.folder'):
    input_pipeline.get_builder(config.dataset)


def test_pipelines_decode_jpegs_as_pil_and_opencv_do(tmp_path):
  # Caffe's data layer (OpenCV), PIL (predict.py) and the PyTorch port read
  # JPEGs with libjpeg's accurate IDCT; TF's default fast IDCT is a few levels
  # off on textured images. Train and eval batches carry PIL's pixels.
  folder = tmp_path / 'textured'
  for sub in ('images', 'masks', 'splits'):
    (folder / sub).mkdir(parents=True)
  rng = np.random.default_rng(5)
  names = {'rgb': 'rgb.jpg', 'grey': 'grey.jpg', 'png': 'png.png', 'rgb2': 'rgb2.jpg'}
  expected = {}
  for i, (image_id, file_name) in enumerate(names.items()):
    h, w = 30 + 4 * i, 40 - 2 * i
    ramp = np.linspace(0, 200, w)[None, :, None] + np.linspace(0, 50, h)[:, None, None]
    image = np.clip(ramp + rng.normal(0, 30, (h, w, 3)), 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    if image_id == 'grey':
      Image.fromarray(image[..., 0]).save(buffer, format='JPEG', quality=80)
    else:
      Image.fromarray(image).save(buffer, format='PNG' if image_id == 'png' else 'JPEG',
                                  quality=80)
    data = buffer.getvalue()
    (folder / 'images' / file_name).write_bytes(data)
    label = rng.integers(0, 3, (h, w)).astype(np.uint8)
    (folder / 'masks' / f'{image_id}.png').write_bytes(files.encode_index_png(label))
    expected[image_id] = files.read_image(data, file_name)
    if image_id == 'rgb':  # The fixture tells the two IDCTs apart.
      fast = tf.io.decode_jpeg(data, channels=3).numpy()
      assert (fast != expected[image_id]).mean() > 0.1
  (folder / 'splits' / 'train.txt').write_text('rgb\ngrey\npng\nrgb2\n')
  (folder / 'splits' / 'val.txt').write_text('rgb\ngrey\npng\nrgb2\n')
  config = _folder_config(folder, tmp_path)
  builder = input_pipeline.get_builder(config.dataset)
  order = [ex['image_id'].decode() for ex in tfds.as_numpy(
      builder.as_dataset(split='val', shuffle_files=False))]
  batches = list(input_pipeline.eval_iterator(config, builder, 'val', 4))
  assert len(batches) == 1
  for image_id, image, (h, w) in zip(order, batches[0]['image'], batches[0]['size']):
    np.testing.assert_array_equal(image[:h, :w], expected[image_id], err_msg=image_id)
  # Training decodes the same way whether it caches decoded images or not.
  streams = []
  for cache in (True, False):
    config.input.cache = cache
    streams.append(next(iter(input_pipeline.train_iterator(config, builder, 4))))
  for key in ('image', 'label'):
    np.testing.assert_array_equal(streams[0][key], streams[1][key])
