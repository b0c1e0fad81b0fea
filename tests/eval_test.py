"""Evaluation end to end: the numbers, their files, CRF before/after, errors.

One tiny checkpoint (random initial weights, saved as a run at step 0) is
evaluated with the built-in tiny dataset. The numbers are checked against an
independent computation from the written prediction PNGs and the dataset's
own labels; the same evaluation on 1 device equals the one on 8; CRF scores
(JAX and host backends) come in the same run; saved logits feed the CRF
parameter search; predict.py writes masks of each image's size.
"""

import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest
from PIL import Image

from configs import tiny
from deeplab_jax import checkpoint
from deeplab_jax import crf
from deeplab_jax import evaluation
from deeplab_jax import models
from deeplab_jax import optim
from deeplab_jax import predict_lib
from deeplab_jax.export import serving
from deeplab_jax import sharding
from deeplab_jax import train_step
from deeplab_jax.crf import search as crf_search
from deeplab_jax.data import files
from deeplab_jax.data import input_pipeline
from deeplab_jax.errors import UserError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = os.path.join(ROOT, 'configs', 'tiny.py')  # :shapes, the demo shrunk.


def _config(data_dir, **eval_fields):
  from configs import shapes  # pylint: disable=import-outside-toplevel
  config = tiny.get_config(shapes)
  config.dataset.data_dir = data_dir
  config.eval.trimap_widths = (1, 3, 100)
  config.eval.num_overlays = 2
  for key, value in eval_fields.items():
    config.eval[key] = value
  return config


@pytest.fixture(scope='module')
def run_dir(tmp_path_factory, data_dir):
  """A run directory holding the tiny model's initial weights at step 0."""
  config = _config(data_dir)
  workdir = str(tmp_path_factory.mktemp('eval_run'))
  model = models.build(config)
  tx, _ = optim.create_optimizer(config.optim, config.num_train_steps, classifiers=models.classifier_paths(config))
  state = train_step.create_train_state(config, model, tx, sharding.make_mesh())
  mngr = checkpoint.manager(workdir)
  checkpoint.save(mngr, 0, state)
  mngr.wait_until_finished()
  mngr.close()
  return workdir


@pytest.fixture(scope='module')
def evaluated(run_dir, data_dir, tmp_path_factory):
  """evaluate_checkpoint with the JAX CRF, predictions and logits saved."""
  config = _config(data_dir, crf=True, save_predictions=True, save_logits=-1)
  out = str(tmp_path_factory.mktemp('eval_out'))
  summary = evaluation.evaluate_checkpoint(config, run_dir, output_dir=out)
  return config, summary, out


def _labels_by_id(config):
  builder = input_pipeline.get_builder(config.dataset)
  labels = {}
  for batch in input_pipeline.eval_iterator(config, builder, 'val', 8):
    for label, (h, w), image_id in zip(batch['label'], batch['size'], batch['id']):
      if image_id:
        labels[image_id.decode()] = label[:h, :w]
  return labels


def _numpy_miou(pairs, num_classes):
  """mIoU by per-class loops over (label, prediction) pairs: independent code."""
  ious = []
  for c in range(num_classes):
    tp = fp = fn = 0
    for label, pred in pairs:
      scored = label != 255
      tp += int(((label == c) & (pred == c) & scored).sum())
      fp += int(((label != c) & (pred == c) & scored).sum())
      fn += int(((label == c) & (pred != c) & scored).sum())
    if tp + fp + fn:
      ious.append(tp / (tp + fp + fn))
  return float(np.mean(ious))


def test_metrics_equal_an_independent_computation_from_the_written_masks(evaluated):
  config, summary, out = evaluated
  labels = _labels_by_id(config)
  assert summary['num_images'] == len(labels) == 8
  for folder, key in (('predictions', None), ('predictions_crf', 'crf')):
    pairs = []
    for image_id, label in labels.items():
      with Image.open(os.path.join(out, folder, f'{image_id}.png')) as mask:
        assert mask.mode == 'P' and mask.size == (label.shape[1], label.shape[0])
        pairs.append((label, np.asarray(mask)))
    scores = summary if key is None else summary[key]
    assert scores['mean_iou'] == pytest.approx(_numpy_miou(pairs, config.dataset.num_classes), abs=1e-9)
    scored = sum(int((label != 255).sum()) for label, _ in pairs)
    assert scores['num_pixels'] == scored  # Padding never counted.


def test_outputs_are_written(evaluated, run_dir):
  _, summary, out = evaluated
  with open(os.path.join(out, 'metrics.json')) as f:
    written = json.load(f)
  assert written['mean_iou'] == summary['mean_iou']
  assert written['crf']['mean_iou'] == summary['crf']['mean_iou']
  assert written['crf']['params']['w1'] == 4 and written['crf']['backend'] == 'jax'
  with open(os.path.join(run_dir, 'metrics.json')) as f:
    assert json.load(f)['step'] == 0
  trimap = summary['trimap']
  assert trimap['before']['widths'] == [1, 3, 100]
  # The widest band holds every scored pixel: its mIoU is the split's.
  assert trimap['before']['mean_iou'][-1] == pytest.approx(summary['mean_iou'])
  assert trimap['after']['mean_iou'][-1] == pytest.approx(summary['crf']['mean_iou'])
  assert trimap['before']['num_pixels'][0] < trimap['before']['num_pixels'][1]
  for name in ('confusion.png', 'confusion_crf.png', 'trimap.png'):
    with Image.open(os.path.join(out, name)) as image:
      assert image.size[0] > 100
  assert len(os.listdir(os.path.join(out, 'overlays'))) == 4  # 2 images, before/after.
  report = open(os.path.join(out, 'report.md')).read()
  assert '| class | IoU | IoU after CRF |' in report and 'band width' in report
  assert len(os.listdir(os.path.join(out, 'logits'))) == 8


def test_same_numbers_twice_and_on_one_device(evaluated, run_dir, data_dir):
  config, summary, _ = evaluated
  again = evaluation.evaluate_checkpoint(config, run_dir, output_dir=None)
  one = sharding.make_mesh(jax.devices()[:1])
  single = evaluation.evaluate_checkpoint(config, run_dir, mesh=one)
  for other in (again, single):
    assert other['confusion_matrix'] == summary['confusion_matrix']
    assert other['crf']['confusion_matrix'] == summary['crf']['confusion_matrix']
    assert other['trimap'] == summary['trimap']


def test_jax_crf_with_lattices_built_on_the_mesh_gives_the_same_numbers(
    evaluated, run_dir):
  # On a CPU the JAX CRF builds its lattices in numpy, per process; on an
  # accelerator it sorts them on the mesh (8 devices here) and runs at the
  # batch's bucketed lattice size. Both build the same lattices.
  config, summary, _ = evaluated
  mesh = sharding.make_mesh()
  variables, _ = evaluation.load_variables(config, run_dir, None, mesh)
  on_mesh = evaluation.evaluate(
      config, models.build(config), variables, mesh,
      crf_step=evaluation.make_crf_step(config, mesh, lattice_on_host=False))
  assert on_mesh['crf']['confusion_matrix'] == summary['crf']['confusion_matrix']


def test_host_crf_backend_agrees_with_the_jax_one(evaluated, run_dir, data_dir, tmp_path):
  pytest.importorskip('pydensecrf')
  _, summary, _ = evaluated
  config = _config(data_dir, crf=True, crf_backend='host', crf_processes=1,
                   trimap_widths=())
  config.eval_batch_size = 16  # Half of the one batch is filler examples.
  host = evaluation.evaluate_checkpoint(config, run_dir, output_dir=str(tmp_path))
  assert host['confusion_matrix'] == summary['confusion_matrix']
  jax_cm = np.asarray(summary['crf']['confusion_matrix'])
  host_cm = np.asarray(host['crf']['confusion_matrix'])
  # Same pixels scored; labels differ on at most 1% of them.
  assert host_cm.sum() == jax_cm.sum()
  assert np.abs(host_cm - jax_cm).sum() / 2 <= 0.01 * jax_cm.sum()
  assert 'trimap' not in host


def test_crf_search_on_saved_logits(evaluated):
  config, summary, out = evaluated
  examples = crf_search.load(os.path.join(out, 'logits'))
  assert len(examples) == 8 and examples[0][2].shape[-1] == config.dataset.num_classes
  base = crf.settings(config)[0]
  outcome = crf_search.search(examples, base, 'jax', coarse={
      'w1': (3.0, 5.0), 'sigma_alpha': (30.0,), 'sigma_beta': (3.0,)},
      fine_steps={'w1': (-0.5, 0.0), 'sigma_alpha': (0.0,), 'sigma_beta': (0.0,)},
      log=lambda _: None)
  # Baseline = the evaluation's own mIoU (float16 logits: ties may flip).
  assert outcome['baseline_mean_iou'] == pytest.approx(summary['mean_iou'], abs=0.01)
  stages = [r['stage'] for r in outcome['results']]
  assert stages.count('coarse') == 2 and stages.count('fine') >= 1
  ious = [r['mean_iou'] for r in outcome['results']]
  assert ious == sorted(ious, reverse=True) and outcome['best_mean_iou'] == ious[0]
  assert outcome['best']['w1'] == outcome['results'][0]['w1']
  # The config's own parameters, scored the same way, give the eval's CRF mIoU.
  assert crf_search.score(examples, base) == pytest.approx(summary['crf']['mean_iou'], abs=0.01)
  assert '--config.crf.w1=' in crf_search.overrides(outcome['best'])


def test_checkpoint_of_another_class_count_is_named(run_dir, data_dir):
  config = _config(data_dir)
  config.dataset.num_classes = 6
  config.dataset.class_names = ('a', 'b', 'c', 'd', 'e', 'f')
  with pytest.raises(UserError, match='trained for 5 classes, config.dataset.num_classes=6'):
    evaluation.load_variables(config, run_dir)


def test_missing_split_and_step_are_named(run_dir, data_dir):
  config = _config(data_dir)
  with pytest.raises(UserError, match="no split 'test'"):
    evaluation.evaluate_checkpoint(config, run_dir, split='test')
  with pytest.raises(UserError, match=r'available steps: \[0\]'):
    evaluation.load_variables(config, run_dir, step=7)


def _write(path, size, fmt):
  rng = np.random.default_rng(0)
  Image.fromarray(rng.integers(0, 255, (*size, 3), np.uint8)).save(path, format=fmt)


def test_predict_writes_masks_of_each_images_size(run_dir, data_dir, tmp_path):
  images = tmp_path / 'in'
  images.mkdir()
  _write(images / 'a.jpg', (37, 53), 'JPEG')
  _write(images / 'b.png', (70, 29), 'PNG')
  out = str(tmp_path / 'out')
  written = predict_lib.predict(_config(data_dir), run_dir, [str(images)], out)
  assert [os.path.basename(p) for p in written] == ['a.png', 'b.png']
  for path, size in zip(written, ((53, 37), (29, 70))):
    with Image.open(path) as mask:
      assert mask.mode == 'P' and mask.size == size
      assert np.asarray(mask).max() < 5
      np.testing.assert_array_equal(
          np.asarray(mask.getpalette()[:15]).reshape(5, 3), files.voc_palette()[:5])
  assert os.path.exists(os.path.join(out, 'a_overlay.png'))


def test_predict_names_an_unreadable_image(run_dir, data_dir, tmp_path):
  bad = tmp_path / 'broken.jpg'
  bad.write_bytes(b'not an image')
  with pytest.raises(UserError, match='broken.jpg'):
    predict_lib.predict(_config(data_dir), run_dir, [str(bad)], str(tmp_path / 'o'))
  with pytest.raises(UserError, match='neither an image file nor a folder'):
    predict_lib.predict(_config(data_dir), run_dir, [str(tmp_path / 'nope')], str(tmp_path))


def _cli(script, *args):
  return subprocess.run([sys.executable, os.path.join(ROOT, script), *args],
                        capture_output=True, text=True, cwd=ROOT, timeout=600,
                        env=dict(os.environ), check=False)


def test_evaluate_and_predict_command_lines(run_dir, data_dir, tmp_path):
  common = [f'--config={CONFIG}:shapes', f'--workdir={run_dir}',
            f'--config.dataset.data_dir={data_dir}']
  result = _cli('evaluate.py', *common, '--crf', f'--output_dir={tmp_path}/e',
                '--config.eval.trimap_widths=2')
  assert result.returncode == 0, result.stderr[-3000:]
  assert 'after CRF' in result.stdout and '| **mean IoU** |' in result.stdout
  assert os.path.exists(tmp_path / 'e' / 'metrics.json')
  image = tmp_path / 'x.png'
  _write(image, (41, 43), 'PNG')
  result = _cli('predict.py', *common, f'--input={image}', f'--output={tmp_path}/p')
  assert result.returncode == 0, result.stderr[-3000:]
  with Image.open(tmp_path / 'p' / 'x.png') as mask:
    assert mask.size == (43, 41)
  result = _cli('predict.py', *common, f'--input={tmp_path}/missing.jpg',
                f'--output={tmp_path}/p')
  assert result.returncode == 1 and 'error: input' in result.stderr


def test_evaluation_during_training_scores_before_and_after_the_crf(
    data_dir, tmp_path, monkeypatch):
  from deeplab_jax import train_lib  # pylint: disable=import-outside-toplevel
  config = _config(data_dir, crf=True)
  config.eval_every_steps = 2  # Steps 2 and 4 of 4.
  summaries = []
  evaluate = evaluation.evaluate

  def recording(*args, **kwargs):
    assert kwargs['crf_step'] is not None  # Compiled once, for every evaluation.
    summaries.append(evaluate(*args, **kwargs))
    return summaries[-1]

  monkeypatch.setattr(evaluation, 'evaluate', recording)
  train_lib.train_and_evaluate(config, str(tmp_path))
  assert len(summaries) == 2
  for summary in summaries:
    assert 0 <= summary['crf']['mean_iou'] <= 1 and summary['num_images'] == 8


@pytest.mark.parametrize('align_corners, sides', [
    (True, {1: 65, 64: 65, 65: 65, 66: 129, 375: 385, 500: 513, 513: 513}),
    (False, {1: 64, 64: 64, 65: 128, 500: 512, 513: 576})])
def test_predict_pads_to_sizes_on_the_score_grid(align_corners, sides):
  # Corners aligned: 64 k + 1, so the stride-8 map's last cell is the last
  # pixel (as evaluation's 513); otherwise multiples of 64 (and of 8).
  for n, padded in sides.items():
    assert serving.padded_side(n, align_corners) == padded, n
