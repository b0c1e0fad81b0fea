"""docs/own_data.md end to end, shrunk: example folder -> inspect -> train -> best -> masks.

The guide's own commands (entry points as subprocesses), on a generated
folder of 16 + 8 small images, with configs/folder.py's model shrunk to
seconds by overrides. What must hold: the mistaken 0/255 folder is caught
by inspect and stops train.py with the fix; the right one trains, evaluates
every 2 steps, and its best checkpoint evaluates and segments new images.
"""

import json
import os
import subprocess
import sys

import numpy as np
from PIL import Image
import pytest

from deeplab_jax.data import example_folder
from deeplab_jax.data import shapes_render

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = os.path.join(ROOT, 'configs', 'folder.py')
STYLE = shapes_render.Style(min_size=40, max_size=56, max_objects=2, void_width=1)
SHRINK = ('--config.model.backbone.widths=4,8,8', '--config.model.backbone.atrous_widths=8,8',
          '--config.model.head.rates=1,2', '--config.model.head.hidden=8',
          '--config.input.crop_size=32', '--config.input.eval_size=64',
          '--config.num_train_steps=4', '--config.eval_every_steps=2',
          '--config.checkpoint_every_steps=2', '--config.log_every_steps=1',
          '--config.optim.warmup_steps=0', '--config.eval.trimap_widths=()',
          '--config.input.shuffle_buffer=16')


# Runs an entry point where TensorFlow and TFDS cannot be imported.
_NO_TF = ("import runpy, sys\n"
          "sys.modules['tensorflow'] = sys.modules['tensorflow_datasets'] = None\n"
          "sys.argv = sys.argv[1:]\n"
          "runpy.run_path(sys.argv[0], run_name='__main__')")


def _run(*args, cwd=ROOT):
  return subprocess.run([sys.executable, *args], capture_output=True, text=True,
                        cwd=cwd, timeout=300, check=False)


@pytest.fixture(scope='module')
def folders(tmp_path_factory):
  root = tmp_path_factory.mktemp('own_data')
  good, bad = str(root / 'my_data'), str(root / 'bad')
  example_folder.write(good, num_train=16, num_val=8, style=STYLE)
  example_folder.write(bad, num_train=16, num_val=8, mask_values=(0, 255), style=STYLE)
  return root, good, bad


def _dataset(folder, root, name):
  return (f'--config.dataset.folder={folder}', f'--config.dataset.builder_config={name}',
          f'--config.dataset.data_dir={root / "tfds"}')


def test_example_folder_holds_indices_and_the_mistake(folders):
  _, good, bad = folders
  mask = np.asarray(Image.open(os.path.join(good, 'masks', 'train_0000.png')))
  assert set(np.unique(mask)) <= {0, 1, 255} and {0, 1} <= set(np.unique(mask))
  wrong = np.asarray(Image.open(os.path.join(bad, 'masks', 'train_0000.png')))
  np.testing.assert_array_equal(wrong, np.where(mask == 1, 255, mask))
  with open(os.path.join(good, 'splits', 'val.txt'), encoding='utf-8') as f:
    assert len(f.read().split()) == 8


def test_inspect_and_train_stop_at_the_0_255_masks(folders):
  root, _, bad = folders
  result = _run('-m', 'deeplab_jax.data.inspect', f'--config={CONFIG}',
                *_dataset(bad, root, 'bad'), f'--output_dir={root / "inspect_bad"}')
  assert result.returncode == 1 and 'binary_void' in result.stdout, result.stderr[-2000:]
  assert 'm[m == 255] = 1' in result.stdout
  result = _run('train.py', f'--config={CONFIG}', f'--workdir={root / "run_bad"}',
                *_dataset(bad, root, 'bad'), *SHRINK)
  assert result.returncode == 1 and 'Traceback' not in result.stderr
  assert 'holds only 0 and 255' in result.stderr and 'bad/masks/train_0000.png' in result.stderr
  assert not (root / 'run_bad' / 'checkpoints').exists()  # Stopped before writing.


def test_the_guide_from_folder_to_masks(folders):
  root, good, _ = folders
  dataset = _dataset(good, root, 'my_data')
  result = _run('-m', 'deeplab_jax.data.inspect', f'--config={CONFIG}', *dataset,
                f'--output_dir={root / "inspect"}')
  assert result.returncode == 0 and 'No label problems found.' in result.stdout, result.stderr[-2000:]
  workdir = root / 'run'
  result = _run('train.py', f'--config={CONFIG}', f'--workdir={workdir}', *dataset, *SHRINK,
                '--config.loss.dice_weight=1.0', '--config.loss.class_balance=inverse_sqrt')
  assert result.returncode == 0, result.stderr[-3000:]
  assert 'val mIoU' in result.stderr
  best = json.loads((workdir / 'best' / 'best.json').read_text())
  weights = json.loads((workdir / 'class_weights.json').read_text())['weights']
  assert weights[1] > weights[0] > 0  # The object is the smaller class.
  result = _run('evaluate.py', f'--config={CONFIG}', f'--workdir={workdir}', *dataset, *SHRINK,
                '--step=best')
  assert result.returncode == 0, result.stderr[-3000:]
  metrics = json.loads((workdir / 'metrics.json').read_text())
  assert metrics['step'] == best['step']
  np.testing.assert_allclose(metrics['mean_iou'], best['mean_iou'], rtol=1e-6)
  new_images = root / 'new_images'
  new_images.mkdir()
  for name in ('val_0000.jpg', 'val_0001.jpg'):
    os.link(os.path.join(good, 'images', name), new_images / name)
  # The guide's claim: predict.py needs neither the folder (not named) nor TensorFlow.
  result = _run('-c', _NO_TF, 'predict.py', f'--config={CONFIG}', f'--workdir={workdir}', *SHRINK,
                '--step=best', f'--input={new_images}', f'--output={root / "masks"}')
  assert result.returncode == 0, result.stderr[-3000:]
  mask = np.asarray(Image.open(root / 'masks' / 'val_0000.png'))
  image = Image.open(new_images / 'val_0000.jpg')
  assert mask.shape == (image.height, image.width) and set(np.unique(mask)) <= {0, 1}
