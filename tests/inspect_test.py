"""Dataset inspection: statistics against numpy counts, each label mistake found
with its files and fix, the folder builder's warnings and errors, the report CLI."""

import json
import logging
import os
import subprocess
import sys

import numpy as np
from PIL import Image
import pytest
import tensorflow_datasets as tfds

from configs import shapes as shapes_config
from configs import tiny
from deeplab_jax.data import files
from deeplab_jax.data import folder
from deeplab_jax.data import dataset_report
from deeplab_jax.data import label_checks
from deeplab_jax.data import statistics
from deeplab_jax.errors import UserError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLASSES = ('background', 'cat', 'dog')
H, W = 16, 20
SPLITS = {'train': ['t0', 't1', 't2', 't3'], 'val': ['v0', 'v1']}


def _clean_mask(seed):
  """Background, a cat block, a dog block, a void line: classes 0-2 and 255."""
  rng = np.random.default_rng(seed)
  mask = np.zeros((H, W), np.uint8)
  top, left = rng.integers(0, 6, 2)
  mask[top:top + 6, left:left + 7] = 1
  mask[8:14, 10 + seed % 4:18] = 2
  mask[:, 9] = 255
  return mask


def _write(path, masks=None, splits=SPLITS):
  """A folder with a 16x20 image per id and `masks` (id -> HxW or HxWx3
  array; the clean mask where absent); returns id -> the mask written."""
  for sub in ('images', 'masks', 'splits'):
    os.makedirs(os.path.join(path, sub), exist_ok=True)
  masks = dict(masks or {})
  written = {}
  for seed, image_id in enumerate(i for ids in splits.values() for i in ids):
    image = np.random.default_rng(100 + seed).integers(0, 256, (H, W, 3), np.uint8)
    Image.fromarray(image).save(os.path.join(path, 'images', image_id + '.png'))
    mask = masks.get(image_id, _clean_mask(seed))
    Image.fromarray(mask).save(os.path.join(path, 'masks', image_id + '.png'))
    written[image_id] = mask
  for split, ids in splits.items():
    with open(os.path.join(path, 'splits', split + '.txt'), 'w') as f:
      f.write('\n'.join(ids) + '\n')
  return written


def _findings(path, splits=None):
  pairs = folder.split_files(path)
  stats = {s: folder.mask_statistics(s, p, len(CLASSES)) for s, p in pairs.items()
           if splits is None or s in splits}
  return label_checks.check(stats, CLASSES, 'train', lambda s, i: _mask(path, i))


def _mask(path, image_id):
  return os.path.join(path, 'masks', image_id + '.png')


def _one(found, code):
  matching = [f for f in found if f.code == code]
  assert len(matching) == 1, found
  return matching[0]


def test_clean_folder_has_no_findings(tmp_path):
  path = str(tmp_path / 'clean')
  _write(path)
  assert _findings(path) == []


def test_statistics_match_numpy_counts(tmp_path):
  """TFDS read of the prepared folder vs np.count_nonzero of the masks written."""
  path = str(tmp_path / 'data')
  written = _write(path)
  builder = folder.builder(path, CLASSES, name='counts', data_dir=str(tmp_path / 'tfds'))
  builder.download_and_prepare()
  for split, ids in SPLITS.items():
    stats = statistics.split_statistics(builder, split, len(CLASSES))
    masks = [written[i] for i in ids]
    assert stats.num_images == len(ids) and sorted(stats.image_ids) == sorted(ids)
    for c in range(len(CLASSES)):
      assert stats.pixel_counts[c] == sum(np.count_nonzero(m == c) for m in masks)
      assert stats.image_counts[c] == sum(bool((m == c).any()) for m in masks)
    assert stats.void_pixels == sum(np.count_nonzero(m == 255) for m in masks)
    assert stats.total_pixels == len(ids) * H * W
    assert stats.pixel_counts.dtype == np.int64 and stats.out_of_range == {}
    assert list(stats.heights) == [H] * len(ids) and list(stats.widths) == [W] * len(ids)
    assert json.loads(json.dumps(stats.to_dict()))['void_pixels'] == stats.void_pixels


def test_label_table_and_out_of_range_ids():
  table = np.full(256, 255, np.uint8)
  table[7], table[8] = 0, 1  # Cityscapes-like: stored ids -> classes.
  acc = statistics.Accumulator(2, label_table=table)
  acc.add('a', np.array([[7, 7, 8], [8, 8, 3]], np.uint8))
  stats = acc.result('x')
  assert stats.pixel_counts.tolist() == [2, 3] and stats.void_pixels == 1
  acc = statistics.Accumulator(2)
  acc.add('a', np.array([[0, 5, 5]], np.uint8))
  acc.add('b', np.array([[[1], [5]]], np.uint8))
  stats = acc.result('x')
  assert stats.out_of_range == {5: ['a', 'b']} and stats.out_of_range_pixels == {5: 3}


def test_binary_void_masks_are_an_error(tmp_path):
  path = str(tmp_path / 'd')
  binary = {i: np.where(_clean_mask(n) > 0, 255, 0).astype(np.uint8)
            for n, i in enumerate(SPLITS['train'])}
  _write(path, binary)
  f = _one(_findings(path), 'binary_void')
  assert f.level == 'error' and "every mask of split 'train' holds only 0 and 255" in f.message
  assert _mask(path, 't0') in f.message and 'm[m == 255] = 1' in f.message
  assert not [x for x in _findings(path) if x.code.startswith('class')]  # Not repeated.


def test_some_binary_masks_and_mostly_void_are_warnings(tmp_path):
  path = str(tmp_path / 'd')
  mostly = np.full((H, W), 255, np.uint8)
  mostly[:5] = 0
  mostly[5:7] = 1  # 0, 1 and 255 over 56% of the mask.
  binary = np.zeros((H, W), np.uint8)
  binary[4:12, 4:16] = 255  # 30% void, nothing but 0 besides.
  _write(path, {'t1': binary, 'v0': mostly})
  found = _findings(path)
  f = _one(found, 'binary_void')
  assert f.level == 'warning' and f.files == (_mask(path, 't1'),)
  assert '(30% void)' in f.message and 'm[m == 255] = 1' in f.message
  f = _one(found, 'mostly_void')
  assert f.level == 'warning' and f.files == (_mask(path, 'v0'),)
  assert '(56%)' in f.message and "write that class's index" in f.message


def test_class_never_in_train(tmp_path):
  path = str(tmp_path / 'd')
  no_dog = {i: np.where(_clean_mask(n) == 2, 0, _clean_mask(n)).astype(np.uint8)
            for n, i in enumerate(SPLITS['train'] + SPLITS['val'])}
  _write(path, no_dog)
  f = _one(_findings(path), 'class_missing')
  assert f.level == 'warning' and "class 2 ('dog') has no pixel in the training split" in f.message
  assert 'drop it from class_names' in f.message


def test_class_in_val_but_not_train(tmp_path):
  path = str(tmp_path / 'd')
  no_dog = {i: np.where(_clean_mask(n) == 2, 0, _clean_mask(n)).astype(np.uint8)
            for n, i in enumerate(SPLITS['train'])}
  _write(path, no_dog)
  f = _one(_findings(path), 'class_not_in_train')
  assert f.level == 'warning' and f.files == (_mask(path, 'v0'), _mask(path, 'v1'))
  assert "'val' has it in 2 masks" in f.message and "move some of those images into 'train'" in f.message


def test_rgb_masks_look_like_colour_masks(tmp_path):
  path = str(tmp_path / 'd')
  colours = files.voc_palette()[_clean_mask(1)]
  _write(path, {'t1': colours, 'v1': colours})
  f = _one(_findings(path), 'colour_mask')
  assert f.level == 'error' and f.files == (_mask(path, 't1'), _mask(path, 'v1'))
  assert "look like colour masks ('RGB' PNGs)" in f.message and 'convert them' in f.message


def test_grey_values_that_look_like_colours(tmp_path):
  path = str(tmp_path / 'd')
  grey = np.asarray(Image.fromarray(files.voc_palette()[_clean_mask(0)]).convert('L'))
  assert set(np.unique(grey)) == {0, 38, 75, 220}  # VOC's void colour is light grey.
  _write(path, {'t0': grey})
  f = _one(_findings(path), 'colour_values')
  assert f.level == 'error' and f.files == (_mask(path, 't0'),)
  assert 'look like colours' in f.message and "class index instead" in f.message


def test_values_beyond_the_classes(tmp_path):
  path = str(tmp_path / 'd')
  extra = _clean_mask(2)
  extra[0, :3] = 3
  _write(path, {'t2': extra})
  f = _one(_findings(path), 'out_of_range')
  assert f.level == 'error' and f.files == (_mask(path, 't2'),)
  assert _mask(path, 't2') + ' (values [3])' in f.message
  assert 'set num_classes to 4' in f.message and 'set them to 255' in f.message


def test_more_ids_than_classes_are_not_colours(tmp_path):
  path = str(tmp_path / 'd')
  five = _clean_mask(0)
  five[(five == 1) | (five == 2)] += 2  # 0, 3, 4: five classes where 3 are configured.
  _write(path, {'t0': five})
  f = _one(_findings(path), 'out_of_range')
  assert _mask(path, 't0') + ' (values [3, 4])' in f.message
  assert 'set num_classes to 5' in f.message


def test_ids_shifted_by_one(tmp_path):
  path = str(tmp_path / 'd')
  shifted = {i: np.where(_clean_mask(n) == 255, 255, _clean_mask(n) + 1).astype(np.uint8)
             for n, i in enumerate(SPLITS['train'] + SPLITS['val'])}
  _write(path, shifted)
  found = _findings(path)
  f = _one(found, 'shifted_ids')
  assert f.level == 'error' and len(f.files) == 6 and 'and 1 more' in f.message
  assert 'look shifted by one' in f.message and 'subtract 1' in f.message
  assert not [x for x in found if x.code == 'out_of_range']


def test_failed_build_leaves_nothing_and_fixed_folder_prepares(tmp_path, caplog):
  path, data_dir = str(tmp_path / 'd'), str(tmp_path / 'tfds')
  bad = _clean_mask(0)
  bad[0, 0] = 7
  _write(path, {'t0': bad, 'v1': bad})
  builder = folder.builder(path, CLASSES, name='mine', data_dir=data_dir)
  with pytest.raises(UserError) as e:
    builder.download_and_prepare()
  assert _mask(path, 't0') + ' (values [7])' in str(e.value)
  assert _mask(path, 'v1') + ' (values [7])' in str(e.value)  # All at once.
  left = [os.path.join(r, n) for r, ds, fs in os.walk(data_dir) for n in ds + fs]
  assert not [p for p in left if 'incomplete' in p or p.endswith('1.0.0')], left
  no_dog = {i: np.where(_clean_mask(n) == 2, 0, _clean_mask(n)).astype(np.uint8)
            for n, i in enumerate(SPLITS['train'] + SPLITS['val'])}
  _write(path, no_dog)  # Fixed, and with a warning to log.
  builder = folder.builder(path, CLASSES, name='mine', data_dir=data_dir)
  with caplog.at_level(logging.WARNING):
    builder.download_and_prepare()
  assert builder.is_prepared() and builder.info.splits['train'].num_examples == 4
  assert "class 2 ('dog') has no pixel" in caplog.text
  ds = builder.as_dataset(split='val', shuffle_files=False)
  assert sorted(ex['image_id'].decode() for ex in tfds.as_numpy(ds)) == ['v0', 'v1']


def _folder_config(path, tmp_path):
  config = tiny.get_config(shapes_config)
  d = config.dataset
  d.name, d.builder_config, d.folder = 'segmentation_folder', 'mine', path
  d.data_dir, d.num_classes, d.class_names = str(tmp_path / 'tfds'), 3, CLASSES
  return config


def test_report_on_an_unprepared_folder(tmp_path):
  path = str(tmp_path / 'd')
  extra = _clean_mask(2)
  extra[0, :3] = 3
  written = _write(path, {'t2': extra})
  out = str(tmp_path / 'out')
  result = dataset_report.inspect_dataset(_folder_config(path, tmp_path), None, out)
  assert 'not prepared yet' in result.source and [f.code for f in result.errors] == ['out_of_range']
  saved = json.load(open(os.path.join(out, 'statistics.json')))
  for split, ids in SPLITS.items():
    s = saved['splits'][split]
    assert s['pixel_counts'] == [sum(int((written[i] == c).sum()) for i in ids) for c in range(3)]
    assert s['num_images'] == len(ids) and s['total_pixels'] == len(ids) * H * W
  assert saved['splits']['train']['out_of_range'] == {'3': ['t2']}
  report = open(os.path.join(out, 'report.md')).read()
  assert '| train | 4 | 16 / 16 / 16 | 20 / 20 / 20 | 16x20 (4) |' in report
  assert '**error** `out_of_range`' in report and _mask(path, 't2') in report
  with Image.open(os.path.join(out, 'grid.png')) as grid:  # 4 rows of image | overlay,
    assert grid.size == ((2 * W + 4) * 96 // H, 4 * 96 + 3 * 4)  # 16 -> 96 px high.


def test_eval_images_larger_than_eval_size(tmp_path):
  path = str(tmp_path / 'd')
  _write(path)
  config = _folder_config(path, tmp_path)
  config.input.eval_size = 18  # Widths are 20.
  f = _one(dataset_report.inspect_dataset(config).findings, 'eval_size')
  assert f.level == 'warning' and f.files == ('v0', 'v1')
  assert '--config.input.eval_size=16,20' in f.message


def _inspect_cli(*args):
  return subprocess.run([sys.executable, '-m', 'deeplab_jax.data.inspect', *args],
                        capture_output=True, text=True, cwd=ROOT, timeout=300, check=False)


def test_cli_on_synthetic_shapes(tmp_path, tiny_builder, data_dir):
  out = str(tmp_path / 'out')
  result = _inspect_cli(f'--config={ROOT}/configs/tiny.py:shapes',
                        f'--config.dataset.data_dir={data_dir}', f'--output_dir={out}',
                        '--split=val')
  assert result.returncode == 0, result.stderr[-3000:]
  assert '# Dataset synthetic_shapes/tiny' in result.stdout
  # Only val read: its missing class is all there is to find.
  assert "- **warning** `class_missing`: class 4 ('star') has no pixel in split(s) 'val'" \
      in result.stdout
  masks = [ex['segmentation_mask'][..., 0] for ex in
           tfds.as_numpy(tiny_builder.as_dataset(split='val', shuffle_files=False))]
  saved = json.load(open(os.path.join(out, 'statistics.json')))['splits']
  assert list(saved) == ['val'] and saved['val']['num_images'] == len(masks) == 8
  assert saved['val']['pixel_counts'] == [int((np.concatenate([m.ravel() for m in masks]) == c).sum())
                                          for c in range(5)]
  assert sorted(saved['val']['heights']) == sorted(m.shape[0] for m in masks)
  assert os.path.getsize(os.path.join(out, 'grid.png')) > 0
  assert open(os.path.join(out, 'report.md')).read() in result.stdout


def test_cli_exits_nonzero_on_errors(tmp_path):
  path = str(tmp_path / 'd')
  _write(path, {'v0': files.voc_palette()[_clean_mask(0)]})
  result = _inspect_cli(
      f'--config={ROOT}/configs/tiny.py:shapes', '--config.dataset.name=segmentation_folder',
      '--config.dataset.builder_config=mine', f'--config.dataset.folder={path}',
      f'--config.dataset.data_dir={tmp_path / "tfds"}', '--config.dataset.num_classes=3',
      "--config.dataset.class_names=('background','cat','dog')",
      f'--output_dir={tmp_path / "out"}')
  assert result.returncode == 1 and 'Traceback' not in result.stderr, result.stderr[-3000:]
  assert 'error: label errors: 1 (see the findings above)' in result.stderr
  assert '**error** `colour_mask`' in result.stdout and _mask(path, 'v0') in result.stdout
  assert os.path.isfile(tmp_path / 'out' / 'report.md')
