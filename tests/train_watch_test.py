"""Training you can watch: val scalars and pictures in TensorBoard, the best
checkpoint by val mIoU kept beside the latest, `--step best`.

One tiny run evaluates after every step (4 evaluations) with real numbers;
every evaluation's summary and the variables it scored are recorded by
wrapping `evaluation.evaluate`, then compared with what the event files,
best.json and the best checkpoint hold. A second run has its mIoUs scripted
(the best is not the last) and is resumed twice. Then a failed write of the
best checkpoint, and a run of two processes.
"""

import errno
import glob
import io
import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from configs import tiny
from deeplab_jax import best_checkpoint
from deeplab_jax import checkpoint
from deeplab_jax import evaluation
from deeplab_jax import models
from deeplab_jax import optim
from deeplab_jax import sharding
from deeplab_jax import train_lib
from deeplab_jax import train_step
from deeplab_jax import visualize
from deeplab_jax.data import input_pipeline
from deeplab_jax.errors import UserError
from deeplab_jax.testing import processes as processes_lib
from deeplab_jax.testing.trees import assert_trees_equal

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STEPS = 4


def _config(data_dir, num_train_steps=STEPS):
  from configs import shapes  # pylint: disable=import-outside-toplevel
  config = tiny.get_config(shapes)
  config.dataset.data_dir = data_dir
  config.num_train_steps = num_train_steps
  config.eval_every_steps = 1
  config.checkpoint_every_steps = 2
  config.max_checkpoints_to_keep = 1  # Would delete the best if it were one of them.
  config.eval.trimap_widths = ()
  config.eval.num_tensorboard_images = 2
  return config


def _train(config, workdir, scripted=None):
  """Trains; returns [(summary, host variables)] of every evaluation. With
  `scripted`, the summaries' mIoUs are replaced by those values in turn."""
  calls = []
  evaluate = evaluation.evaluate
  values = list(scripted or ())

  def recording(config, model, variables, *args, **kwargs):
    summary = evaluate(config, model, variables, *args, **kwargs)
    if scripted is not None:
      summary['mean_iou'] = values.pop(0)
    calls.append((summary, jax.device_get(variables)))
    return summary

  with pytest.MonkeyPatch.context() as patch:
    patch.setattr(evaluation, 'evaluate', recording)
    train_lib.train_and_evaluate(config, workdir)
  return calls


def _events(workdir):
  """{tag: [(step, value)]}: scalars as floats, images as decoded arrays."""
  found = {}
  for path in sorted(glob.glob(os.path.join(workdir, 'events.out.tfevents*'))):
    for event in tf.compat.v1.train.summary_iterator(path):
      for value in event.summary.value:
        plugin = value.metadata.plugin_data.plugin_name
        array = tf.make_ndarray(value.tensor)
        if plugin == 'scalars':
          item = float(array)
        elif plugin == 'images':  # [width, height, png, ...]
          item = [np.asarray(Image.open(io.BytesIO(png))) for png in array[2:]]
        else:
          continue
        found.setdefault(value.tag, []).append((event.step, item))
  return found


@pytest.fixture(scope='module')
def watched(tmp_path_factory, data_dir):
  """The real run: (config, workdir, [(summary, variables)] of steps 1..4)."""
  config = _config(data_dir)
  workdir = str(tmp_path_factory.mktemp('watched'))
  calls = _train(config, workdir)
  assert len(calls) == STEPS
  return config, workdir, calls


def test_event_files_hold_val_scalars_and_pictures(watched):
  config, workdir, calls = watched
  events = _events(workdir)
  steps = list(range(1, STEPS + 1))
  recorded = [summary['mean_iou'] for summary, _ in calls]
  assert [s for s, _ in events['eval/mean_iou']] == steps
  np.testing.assert_allclose([v for _, v in events['eval/mean_iou']], recorded, rtol=1e-6)
  for name in config.dataset.class_names:
    expected = [summary['per_class_iou'][name] for summary, _ in calls]
    if None in expected:
      continue  # A class never seen nor predicted has no scalar that step.
    got = events[f'eval/iou/{name}']
    assert [s for s, _ in got] == steps
    np.testing.assert_allclose([v for _, v in got], expected, rtol=1e-6)
  assert 'eval/pixel_accuracy' in events and 'eval/crf/mean_iou' not in events
  # The first two val images, image | prediction | ground truth, every step.
  builder = input_pipeline.get_builder(config.dataset)
  batch = next(iter(input_pipeline.eval_iterator(config, builder, 'val', 8)))
  image_tags = sorted(t for t in events if t.startswith('eval/images/'))
  assert len(image_tags) == 2
  for tag in image_tags:
    assert [s for s, _ in events[tag]] == steps
    index = [i.decode() for i in batch['id']].index(tag.rsplit('/', 1)[1])
    h, w = batch['size'][index]
    image, label = batch['image'][index, :h, :w], batch['label'][index, :h, :w]
    for _, (strip,) in events[tag]:
      assert strip.shape == (h, 3 * w + 2 * visualize.GAP, 3) and strip.dtype == np.uint8
      np.testing.assert_array_equal(strip[:, :w], image)
      np.testing.assert_array_equal(strip[:, -w:], visualize.overlay(image, label))


def test_best_checkpoint_is_the_highest_val_miou(watched):
  config, workdir, calls = watched
  values = [summary['mean_iou'] for summary, _ in calls]
  best = int(np.argmax(values))  # The first of equal ones: only higher replaces.
  with open(best_checkpoint.record_path(workdir)) as f:
    record = json.load(f)
  assert record['step'] == best + 1 and record['mean_iou'] == values[best]
  assert record['split'] == 'val' and record['metric'] == 'mean_iou'
  assert best_checkpoint.read_record(workdir) == record
  # Beside the latest training checkpoint, which max_checkpoints_to_keep=1 left alone.
  assert checkpoint.resolve_step(workdir, 'best') == (checkpoint.best_dir(workdir), best + 1)
  assert checkpoint.resolve_step(workdir, 'latest') == (workdir, STEPS)
  assert os.listdir(checkpoint.checkpoint_dir(checkpoint.best_dir(workdir))) == [str(best + 1)]
  variables, step = checkpoint.load_variables(config, workdir, 'best')
  assert step == best + 1
  assert_trees_equal(variables, calls[best][1])
  summary = evaluation.evaluate_checkpoint(config, workdir, step='best', output_dir=None)
  assert summary['step'] == best + 1
  assert summary['confusion_matrix'] == calls[best][0]['confusion_matrix']
  assert summary['mean_iou'] == values[best]


def _cli(script, *args):
  return subprocess.run([sys.executable, os.path.join(ROOT, script), *args],
                        capture_output=True, text=True, cwd=ROOT, timeout=600, check=False)


def test_evaluate_and_predict_step_best_command_lines(watched, data_dir, tmp_path):
  config, workdir, _ = watched
  common = [f'--config={os.path.join(ROOT, "configs", "tiny.py")}:shapes',
            f'--workdir={workdir}', f'--config.dataset.data_dir={data_dir}', '--step=best']
  result = _cli('evaluate.py', *common, f'--output_dir={tmp_path}/eval')
  assert result.returncode == 0, result.stderr[-3000:]
  with open(best_checkpoint.record_path(workdir)) as f:
    record = json.load(f)
  with open(tmp_path / 'eval' / 'metrics.json') as f:
    written = json.load(f)
  assert written['step'] == record['step'] and written['mean_iou'] == record['mean_iou']
  assert '(the best checkpoint)' in result.stdout
  # predict.py takes --step best too (Segmenter.from_workdir).
  builder = input_pipeline.get_builder(config.dataset)
  batch = next(iter(input_pipeline.eval_iterator(config, builder, 'val', 8)))
  h, w = batch['size'][0]
  Image.fromarray(batch['image'][0, :h, :w]).save(tmp_path / 'val.png')
  result = _cli('predict.py', *common, f'--input={tmp_path}/val.png',
                f'--output={tmp_path}/masks')
  assert result.returncode == 0, result.stderr[-3000:]
  with Image.open(tmp_path / 'masks' / 'val.png') as mask:
    assert mask.size == (w, h) and np.asarray(mask).max() < config.dataset.num_classes


def test_a_worse_later_evaluation_keeps_the_best_across_resumes(data_dir, tmp_path):
  workdir = str(tmp_path)
  calls = _train(_config(data_dir), workdir, scripted=[0.3, 0.6, 0.4, 0.5])
  record = best_checkpoint.read_record(workdir)
  assert record['step'] == 2 and record['mean_iou'] == 0.6
  assert_trees_equal(checkpoint.load_variables(_config(data_dir), workdir, 'best')[0],
                         calls[1][1])  # Step 2's weights, not the last ones.
  # Resumed (from step 4): a worse evaluation leaves the earlier best alone ...
  _train(_config(data_dir, 5), workdir, scripted=[0.55])
  with open(best_checkpoint.record_path(workdir)) as f:
    assert json.load(f) == record
  # ... a better one replaces it, and only it is kept.
  calls = _train(_config(data_dir, 6), workdir, scripted=[0.7])
  assert best_checkpoint.read_record(workdir)['step'] == 6
  assert os.listdir(checkpoint.checkpoint_dir(checkpoint.best_dir(workdir))) == ['6']
  assert_trees_equal(checkpoint.load_variables(_config(data_dir), workdir, 'best')[0],
                         calls[0][1])


def test_step_best_without_a_best_checkpoint_is_a_user_error(data_dir, tmp_path):
  config = _config(data_dir)
  model = models.build(config)
  tx, _ = optim.from_config(config, model)
  mngr = checkpoint.manager(str(tmp_path))
  checkpoint.save(mngr, 0, train_step.create_train_state(config, model, tx,
                                                         sharding.make_mesh()))
  checkpoint.wait(mngr)
  mngr.close()
  with pytest.raises(UserError, match=r'no best checkpoint in .*eval_every_steps=N'):
    evaluation.evaluate_checkpoint(config, str(tmp_path), step='best')
  with pytest.raises(UserError, match=r'no best checkpoint'):
    checkpoint.restore_variables(str(tmp_path), 'best')
  with pytest.raises(UserError, match=r"--step must be an integer, 'latest' or 'best'"):
    checkpoint.resolve_step(str(tmp_path), 'bset')
  assert checkpoint.resolve_step(str(tmp_path), '0') == (str(tmp_path), 0)
  assert best_checkpoint.read_record(str(tmp_path)) is None


def test_a_failed_best_write_is_a_checkpoint_write_error(data_dir, tmp_path, monkeypatch):
  from orbax.checkpoint._src.path import async_path  # pylint: disable=import-outside-toplevel
  rename = async_path.rename

  async def full_disk(src, dst, *args, **kwargs):
    if os.sep + os.path.join('best', 'checkpoints') + os.sep in str(dst):
      raise OSError(errno.ENOSPC, 'No space left on device', str(src))
    return await rename(src, dst, *args, **kwargs)

  monkeypatch.setattr(async_path, 'rename', full_disk)
  with pytest.raises(checkpoint.CheckpointWriteError) as info:
    train_lib.train_and_evaluate(_config(data_dir), str(tmp_path))
  message = str(info.value)
  assert 'could not write the checkpoint of step 1' in message
  assert os.path.join(str(tmp_path), 'best', 'checkpoints') in message
  assert 'No space left on device' in message and 'training checkpoints' in message
  assert best_checkpoint.read_record(str(tmp_path)) is None  # Nothing half-written.
  assert not os.path.exists(best_checkpoint.record_path(str(tmp_path)))


def test_two_processes_keep_one_best_checkpoint(data_dir, tmp_path):
  # Orbax's saves are collective: both processes save (and skip) the same
  # best checkpoints, or the run would hang; only process 0 writes pictures.
  port = processes_lib.free_port()
  env = processes_lib.cpu_env(4)
  processes = [subprocess.Popen(
      [sys.executable, 'train.py', '--config=configs/tiny.py:shapes',
       f'--workdir={tmp_path}', f'--config.dataset.data_dir={data_dir}',
       '--config.eval_every_steps=2', '--config.eval.trimap_widths=2',
       f'--coordinator_address=localhost:{port}', '--num_processes=2',
       f'--process_id={i}'], cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True)
               for i in range(2)]
  logs = [err for _, err in processes_lib.wait_all(processes)]
  assert 'eval at step 4: val mIoU' in logs[0] and 'mIoU' in logs[0].split('step 4/4')[1]
  record = best_checkpoint.read_record(str(tmp_path))
  with open(best_checkpoint.record_path(str(tmp_path))) as f:
    assert json.load(f) == record
  assert record['step'] in (2, 4) and record['num_images'] == 8
  assert os.listdir(checkpoint.checkpoint_dir(checkpoint.best_dir(str(tmp_path)))) == [
      str(record['step'])]
  events = _events(str(tmp_path))
  assert [s for s, _ in events['eval/mean_iou']] == [2, 4]
  assert sum(t.startswith('eval/images/') for t in events) == 3  # The default number.
