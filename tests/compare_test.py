"""benchmarks/compare.py at its tiniest: two tiny families, two steps each.

The table's figures are checked against what they claim to be: the mIoU
(with and without the CRF) against evaluate.py's library call on the same
workdir, the parameters against the checkpoint's arrays, the steps against
the checkpoints written; the picture's ground-truth panels against the
dataset's own labels; XLA's FLOP count against a hand count of one conv.
"""

import json
import os

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from benchmarks import compare
from benchmarks import compare_report
from benchmarks import compare_run
from deeplab_jax import checkpoint
from deeplab_jax import evaluation
from deeplab_jax import visualize
from deeplab_jax.data import input_pipeline

FAMILIES = ('shapes', 'voc_largefov')
IMAGES = 2


@pytest.fixture(scope='module')
def compared(tmp_path_factory, data_dir):
  output = str(tmp_path_factory.mktemp('compare'))
  rows = compare.compare(output, FAMILIES, steps=2, tiny=True, data_dir=data_dir,
                         timed_steps=1, num_images=IMAGES, command='test')
  return output, rows


def test_writes_the_table_and_the_picture(compared):
  output, rows = compared
  with open(os.path.join(output, 'compare.json')) as f:
    written = json.load(f)
  assert [r['config'] for r in written['rows']] == list(FAMILIES) == [r['config'] for r in rows]
  assert written['hardware']['cores'] == os.cpu_count()
  with open(os.path.join(output, 'compare.md')) as f:
    md = f.read()
  for row in rows:
    assert f'| `{row["config"]}` | 2 x 8 | {row["val_miou"]:.4f} | {row["val_miou_crf"]:.4f} |' in md
    assert f'{row["params"]:,}' in md
    assert row['train_images_per_sec'] > 0 and row['eval_images_per_sec'] > 0
    assert row['gflop_per_image'] > 0 and row['eval_size'] == [64, 64]


@pytest.mark.parametrize('index', range(len(FAMILIES)))
def test_figures_are_the_measured_ones(compared, data_dir, index):
  output, rows = compared
  row = rows[index]
  workdir = os.path.join(output, row['config'])
  config = compare_run.family_config(row['config'], tiny=True, steps=2, data_dir=data_dir)
  summary = evaluation.evaluate_checkpoint(config, workdir, output_dir=os.path.join(
      str(output), 'again', row['config']))  # What evaluate.py --crf runs.
  assert row['val_miou'] == summary['mean_iou']
  assert row['val_miou_crf'] == summary['crf']['mean_iou']
  assert row['val_images'] == summary['num_images'] == 8
  params = checkpoint.restore_variables(workdir)['params']
  assert row['params'] == sum(np.asarray(a).size for a in _leaves(params))
  assert checkpoint.manager(workdir, read_only=True).latest_step() == row['steps'] == 2


def _leaves(tree):
  if isinstance(tree, dict):
    for value in tree.values():
      yield from _leaves(value)
  else:
    yield tree


def test_picture_shows_the_val_images_and_their_labels(compared, tiny_builder, tiny_config):
  output, _ = compared
  picture = np.asarray(Image.open(os.path.join(output, 'compare.png')).convert('RGB'))
  batch = next(input_pipeline.eval_iterator(tiny_config, tiny_builder, 'val', 8))
  h, w = (int(v) for v in batch['size'][0])
  zoom = -(-compare_report.MIN_WIDTH // max(int(s[1]) for s in batch['size'][:IMAGES]))
  columns = 2 + len(FAMILIES)
  panel_w = max(int(s[1]) for s in batch['size'][:IMAGES]) * zoom
  assert picture.shape[1] == columns * panel_w + (columns - 1) * compare_report.GAP
  top = compare_report.TITLE_HEIGHT
  zoomed = lambda a: np.repeat(np.repeat(a, zoom, axis=0), zoom, axis=1)
  image = batch['image'][0, :h, :w]
  label = batch['label'][0, :h, :w].astype(np.uint8)
  np.testing.assert_array_equal(picture[top:top + h * zoom, :w * zoom], zoomed(image))
  x = panel_w + compare_report.GAP
  np.testing.assert_array_equal(picture[top:top + h * zoom, x:x + w * zoom],
                                zoomed(visualize.overlay(image, label)))


class _OneConv(nn.Module):
  @nn.compact
  def __call__(self, x, train):
    del train
    return nn.Conv(7, (3, 3), padding='SAME', use_bias=False)(x.astype(jnp.float32))


def test_flop_count_is_two_per_multiply_add_without_padding_taps():
  model = _OneConv()
  variables = model.init(jax.random.key(0), jnp.zeros((1, 17, 13, 3), jnp.uint8), train=False)
  # In-bounds taps of a 3x3 'SAME' conv: rows (16 + 17 + 16) x columns (12 + 13 + 12).
  multiply_adds = (16 + 17 + 16) * (12 + 13 + 12) * 3 * 7
  converts = 17 * 13 * 3  # The uint8 -> float32 cast: one FLOP per element.
  assert compare_run.forward_flops(model, variables, (17, 13)) == 2 * multiply_adds + converts
