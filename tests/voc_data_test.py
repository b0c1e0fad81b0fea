"""voc2012_sbd prepared from generated VOC + SBD archives: splits, pixels, errors.

The ids overlap as in the real data: some SBD ids are in VOC train (VOC's
label wins), some in VOC val (kept out of train_aug), some only in SBD (one
of them with its image in VOC's JPEGImages, as all SBD images are there).
"""

import dataclasses
import io
import re
import socket
import tarfile

import numpy as np
from PIL import Image
import pytest
import scipy.io
import tensorflow_datasets as tfds

from deeplab_jax.testing import fake_archives
from deeplab_jax.data import voc
from deeplab_jax.errors import UserError

VOC_IDS = {
    'train': ['2007_000032', '2007_000039', '2008_000008', '2009_000012'],
    'val': ['2007_000033', '2007_000042', '2010_000002'],
}
SBD_IDS = {
    'train': ['2007_000039',  # In VOC train: VOC's label and image win.
              '2007_000033',  # In VOC val: not in train_aug.
              '2008_000002', '2008_000003', '2011_000001'],  # Only in SBD.
    'val': ['2007_000042',  # In VOC val.
            '2009_000012',  # In VOC train.
            '2008_000010'],  # Only in SBD.
}
VOC_EXTRA_IMAGES = ['2008_000003']  # In JPEGImages, in no VOC list.
# Mean absolute error of the patterned images as quality-95 4:4:4 JPEGs (at
# most 1.4 over 200 examples; 4:2:0 chroma blurs their edges up to 9).
MAX_JPEG_ERROR = 2.0


def _expected_split_ids():
  voc_train, voc_val = set(VOC_IDS['train']), set(VOC_IDS['val'])
  train_aug = (voc_train | set(SBD_IDS['train']) | set(SBD_IDS['val'])) - voc_val
  return {
      'train': sorted(voc_train),
      'val': sorted(voc_val),
      'trainval': sorted(voc_train | voc_val),
      'train_aug': sorted(train_aug),
      'trainval_aug': sorted(train_aug | voc_val),
  }


def _examples(rng, ids, void_band):
  """[(id, image, label, JPEG bytes)]: patterned examples, 20-60 px a side."""
  out = []
  for image_id in ids:
    height, width = rng.integers(20, 61, size=2)
    image, label = fake_archives.patterned_example(rng, height, width,
                                                   void_band=void_band)
    out.append((image_id, image, label, _jpeg(image)))
  return out


def _jpeg(image):
  """A faithful JPEG of `image`: quality 95, no chroma subsampling."""
  buffer = io.BytesIO()
  Image.fromarray(image).save(buffer, format='JPEG', quality=95, subsampling=0)
  return buffer.getvalue()


def _for_writer(examples):
  """{split: [(id, JPEG bytes, label)]}, as the archive writers take them."""
  return {split: [(i, jpeg, label) for i, _, label, jpeg in split_examples]
          for split, split_examples in examples.items()}


def _closed_port_url(name):
  """An address on this machine that refuses connections at once."""
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    port = s.getsockname()[1]
  return f'http://127.0.0.1:{port}/{name}'


@pytest.fixture(autouse=True)
def no_download(monkeypatch):
  """Archives not in the manual dir are 'downloaded' from a closed local port."""
  monkeypatch.setattr(voc, 'ARCHIVES', tuple(
      dataclasses.replace(a, url=_closed_port_url(a.filename))
      for a in voc.ARCHIVES))


def _prepare(tmp_path, voc_examples=None, sbd_examples=None, *,
             extra_images=None, sbd_members=None):
  """Writes the archives given into tmp_path/manual, prepares voc2012_sbd."""
  manual = tmp_path / 'manual'
  manual.mkdir()
  if voc_examples is not None:
    fake_archives.write_voc_tar(str(manual / fake_archives.VOC_TAR), voc_examples,
                                extra_images=extra_images)
  if sbd_examples is not None:
    fake_archives.write_sbd_tgz(str(manual / fake_archives.SBD_TGZ), sbd_examples)
  if sbd_members is not None:
    fake_archives.write_tar(str(manual / fake_archives.SBD_TGZ), sbd_members)
  builder = tfds.builder('voc2012_sbd', data_dir=str(tmp_path / 'tfds'))
  builder.download_and_prepare(
      download_config=tfds.download.DownloadConfig(manual_dir=str(manual)))
  return builder


@pytest.fixture(scope='module')
def dataset(tmp_path_factory):
  """(builder, id -> expected (image, label, JPEG bytes), id -> SBD's label)."""
  rng = np.random.default_rng(0)
  voc_examples = {s: _examples(rng, ids, 1) for s, ids in VOC_IDS.items()}
  sbd_examples = {s: _examples(rng, ids, 0) for s, ids in SBD_IDS.items()}
  sbd = {e[0]: e[1:] for split in sbd_examples.values() for e in split}
  extra = {}  # Same size as SBD's label, other pixels than SBD's image.
  for image_id in VOC_EXTRA_IMAGES:
    image = fake_archives.patterned_example(rng, *sbd[image_id][1].shape)[0]
    extra[image_id] = (image, _jpeg(image))
  builder = _prepare(
      tmp_path_factory.mktemp('voc'), _for_writer(voc_examples),
      _for_writer(sbd_examples),
      extra_images={i: jpeg for i, (_, jpeg) in extra.items()})

  # What each id should hold: VOC's image and label where VOC has them.
  expected = dict(sbd)
  for image_id, (image, jpeg) in extra.items():
    expected[image_id] = (image, sbd[image_id][1], jpeg)
  expected.update({e[0]: e[1:] for split in voc_examples.values() for e in split})
  return builder, expected, {i: label for i, (_, label, _) in sbd.items()}


def _read(builder, split, **kwargs):
  return list(tfds.as_numpy(builder.as_dataset(split=split, **kwargs)))


def test_features_and_split_sizes(dataset):
  builder, _, _ = dataset
  info = builder.info
  assert info.features['image'].encoding_format == 'jpeg'
  assert info.features['image'].shape == (None, None, 3)
  assert info.features['segmentation_mask'].encoding_format == 'png'
  assert info.features['segmentation_mask'].shape == (None, None, 1)
  assert info.supervised_keys == ('image', 'segmentation_mask')
  assert len(voc.CLASS_NAMES) == 21 and voc.CLASS_NAMES[0] == 'background'
  sizes = {name: split.num_examples for name, split in info.splits.items()}
  assert sizes == {'train': 4, 'val': 3, 'trainval': 7, 'train_aug': 8,
                   'trainval_aug': 11}


def test_split_ids(dataset):
  builder, _, _ = dataset
  for split, ids in _expected_split_ids().items():
    got = [e['image_id'].decode() for e in _read(builder, split)]
    assert sorted(got) == ids, split
    assert len(set(got)) == len(got), split


def test_train_aug_excludes_every_val_id(dataset):
  builder, _, _ = dataset
  got = {e['image_id'].decode() for e in _read(builder, 'train_aug')}
  assert not got & set(VOC_IDS['val'])
  assert got >= set(VOC_IDS['train'])
  assert '2007_000033' in SBD_IDS['train'] and '2007_000042' in SBD_IDS['val']


def test_labels_exact_and_images_as_written(dataset):
  builder, written, _ = dataset
  with_void = 0
  for example in _read(builder, 'trainval_aug'):
    image_id = example['image_id'].decode()
    image, label, _ = written[image_id]
    assert example['segmentation_mask'].dtype == np.uint8
    np.testing.assert_array_equal(example['segmentation_mask'][..., 0], label,
                                  err_msg=image_id)
    assert example['image'].shape == image.shape, image_id
    error = np.abs(example['image'].astype(float) - image).mean()  # TF vs PIL.
    assert error < MAX_JPEG_ERROR, (image_id, error)
    with_void += 255 in label
  assert with_void >= 5  # VOC's void bands came through.


def test_images_are_the_original_jpeg_bytes(dataset):
  builder, written, _ = dataset
  examples = _read(builder, 'trainval_aug',
                   decoders={'image': tfds.decode.SkipDecoding()})
  assert len(examples) == 11
  for example in examples:
    image_id = example['image_id'].decode()
    assert example['image'] == written[image_id][2], image_id


def test_voc_wins_for_ids_in_both(dataset):
  builder, written, sbd_labels = dataset
  both = set(VOC_IDS['train']) & set(sbd_labels)
  assert both == {'2007_000039', '2009_000012'}
  seen = 0
  for example in _read(builder, 'train_aug'):
    image_id = example['image_id'].decode()
    if image_id in both:
      seen += 1
      mask = example['segmentation_mask'][..., 0]
      np.testing.assert_array_equal(mask, written[image_id][1])  # VOC's.
      assert not np.array_equal(mask, sbd_labels[image_id])
  assert seen == 2


def test_missing_archives_name_both_files_and_the_manual_dir(tmp_path):
  builder = tfds.builder('voc2012_sbd', data_dir=str(tmp_path / 'tfds'))
  manual = tmp_path / 'not_there'
  with pytest.raises(UserError) as e:
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(manual_dir=str(manual)))
  message = str(e.value)
  assert 'VOCtrainval_11-May-2012.tar' in message
  assert 'benchmark.tgz' in message
  assert str(manual) in message
  assert 'host.robots.ox.ac.uk' in message  # Where to get it.
  assert 'download failed' in message


def test_one_missing_archive_is_named_alone(tmp_path):
  rng = np.random.default_rng(1)
  with pytest.raises(UserError, match='benchmark.tgz') as e:
    _prepare(tmp_path, _for_writer(
        {'train': _examples(rng, ['2007_000032'], 1), 'val': []}))
  assert 'VOCtrainval_11-May-2012.tar' not in str(e.value)
  assert str(tmp_path / 'manual') in str(e.value)


def _one_each(rng):
  """VOC and SBD examples, one per list (SBD val: none), for the writers."""
  return (_for_writer({'train': _examples(rng, ['2007_000032'], 1),
                       'val': _examples(rng, ['2007_000033'], 1)}),
          _for_writer({'train': _examples(rng, ['2008_000002'], 0), 'val': []}))


def test_label_value_37_names_the_png(tmp_path):
  voc_examples, sbd_examples = _one_each(np.random.default_rng(2))
  image_id, jpeg, label = voc_examples['val'][0]
  label = label.copy()
  label[0, 0] = 37
  voc_examples['val'] = [(image_id, jpeg, label)]
  with pytest.raises(UserError, match=re.escape(
      'VOCdevkit/VOC2012/SegmentationClass/2007_000033.png') + r'.*\[37\]'):
    _prepare(tmp_path, voc_examples, sbd_examples)


def test_size_mismatch_names_the_mat(tmp_path):
  voc_examples, sbd_examples = _one_each(np.random.default_rng(3))
  image_id, jpeg, label = sbd_examples['train'][0]
  sbd_examples['train'] = [(image_id, jpeg, label[:-2])]
  h, w = label.shape
  with pytest.raises(UserError, match=re.escape(
      'benchmark_RELEASE/dataset/cls/2008_000002.mat') + f'.*image is {h}x{w}'):
    _prepare(tmp_path, voc_examples, sbd_examples)


def test_unreadable_jpeg_names_it(tmp_path):
  voc_examples, sbd_examples = _one_each(np.random.default_rng(4))
  image_id, _, label = voc_examples['train'][0]
  voc_examples['train'] = [(image_id, b'\xff\xd8 not really a JPEG', label)]
  with pytest.raises(UserError, match=re.escape(
      'cannot read image VOCdevkit/VOC2012/JPEGImages/2007_000032.jpg')):
    _prepare(tmp_path, voc_examples, sbd_examples)


def test_missing_label_names_the_id_and_list(tmp_path):
  voc_examples, sbd_examples = _one_each(np.random.default_rng(5))
  image_id, jpeg, _ = voc_examples['val'][0]
  voc_examples['val'] = [(image_id, jpeg, None)]
  with pytest.raises(UserError, match=re.escape(
      "'2007_000033', listed in VOCdevkit/VOC2012/ImageSets/Segmentation/val.txt")
                     + '.*no label'):
    _prepare(tmp_path, voc_examples, sbd_examples)


def test_mat_without_gtcls_segmentation_names_it(tmp_path):
  voc_examples, _ = _one_each(np.random.default_rng(6))
  image, label = fake_archives.patterned_example(np.random.default_rng(7), 20, 30)
  mat = io.BytesIO()
  scipy.io.savemat(mat, {'GTinst': {'Segmentation': label}})
  root = 'benchmark_RELEASE/dataset'
  members = {f'{root}/img/2008_000002.jpg': fake_archives.encode_jpeg(image),
             f'{root}/cls/2008_000002.mat': mat.getvalue(),
             f'{root}/train.txt': b'2008_000002\n', f'{root}/val.txt': b''}
  with pytest.raises(UserError, match=re.escape(
      f'{root}/cls/2008_000002.mat in benchmark.tgz holds no GTcls.Segmentation')):
    _prepare(tmp_path, voc_examples, sbd_members=members)


def test_read_sbd_mat_round_trip_and_bad_values():
  label = fake_archives.patterned_example(np.random.default_rng(8), 20, 30,
                                          void_band=0)[1]
  np.testing.assert_array_equal(
      voc.read_sbd_mat(fake_archives.sbd_mat(label), 'x.mat'), label)
  mat = io.BytesIO()
  scipy.io.savemat(mat, {'GTcls': {'Segmentation': np.full((4, 4), 300.0)}})
  with pytest.raises(UserError, match=r'x\.mat.*\[300'):
    voc.read_sbd_mat(mat.getvalue(), 'x.mat')
  with pytest.raises(UserError, match='cannot read x.mat'):
    voc.read_sbd_mat(b'not a mat file', 'x.mat')


def test_patterned_example_colour_gives_the_class():
  rng = np.random.default_rng(9)
  for _ in range(20):
    image, label = fake_archives.patterned_example(rng, 30, 40)
    colours = fake_archives.class_colours()
    known = label != 255
    np.testing.assert_array_equal(image[known], colours[label[known]])
    # Void only where two classes meet: no two 4-neighbours differ otherwise.
    for a, b in ((label[1:], label[:-1]), (label[:, 1:], label[:, :-1])):
      assert not np.any((a != 255) & (b != 255) & (a != b))
    _, sbd_label = fake_archives.patterned_example(rng, 30, 40, void_band=0)
    assert 255 not in sbd_label


def test_writers_use_the_official_layouts(tmp_path):
  image, label = fake_archives.patterned_example(np.random.default_rng(10), 20, 30)
  fake_archives.write_voc_tar(tmp_path / 'voc.tar', {
      'train': [('b', image, label)], 'val': [('a', image, label)]})
  fake_archives.write_sbd_tgz(tmp_path / 'sbd.tgz', {'val': [('c', image, label)]})
  with tarfile.open(tmp_path / 'voc.tar') as tar:
    lists = 'VOCdevkit/VOC2012/ImageSets/Segmentation'
    assert tar.extractfile(f'{lists}/trainval.txt').read() == b'a\nb\n'
    png = tar.extractfile('VOCdevkit/VOC2012/SegmentationClass/b.png').read()
    assert Image.open(io.BytesIO(png)).mode == 'P'
    assert 'VOCdevkit/VOC2012/JPEGImages/a.jpg' in tar.getnames()
  with tarfile.open(tmp_path / 'sbd.tgz', 'r:gz') as tar:
    root = 'benchmark_RELEASE/dataset'
    assert tar.extractfile(f'{root}/train.txt').read() == b''
    assert f'{root}/img/c.jpg' in tar.getnames()
    mat = tar.extractfile(f'{root}/cls/c.mat').read()
  gt = scipy.io.loadmat(io.BytesIO(mat), struct_as_record=False,
                        squeeze_me=True)['GTcls']
  assert gt.Segmentation.dtype == np.uint8
  np.testing.assert_array_equal(gt.Segmentation, label)
  assert len(gt.Boundaries) == 20
  present = sorted(set(np.unique(label).tolist()) - {0, 255})
  assert np.atleast_1d(gt.CategoriesPresent).tolist() == present
