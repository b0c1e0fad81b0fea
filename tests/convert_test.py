"""The conversion front end: format detection, fitting a file's weights to the
model (fresh classifier where allowed), the checkpoint it writes, and training
and evaluation from it. The Caffe and PyTorch readers have their own tests."""

import json
import os
import pickle
import zipfile

import jax
import numpy as np
import pytest

from configs import tiny
from deeplab_jax import checkpoint
from deeplab_jax import convert
from deeplab_jax import evaluation
from deeplab_jax import train_lib
from deeplab_jax import variables_tree
from deeplab_jax.errors import UserError


def _flat(tree):
  return {jax.tree_util.keystr(k): np.asarray(v)
          for k, v in jax.tree_util.tree_leaves_with_path(tree)}


@pytest.fixture(scope='module')
def weights(tmp_path_factory):
  """Variables of the tiny shapes model from another seed: 'a file's weights'."""
  from configs import shapes  # pylint: disable=import-outside-toplevel
  return convert.init_variables(tiny.get_config(shapes), seed=123)


def _classifier_paths(variables):
  config = tiny.get_config('shapes')
  return [k for k in convert.flatten(variables) if convert.is_classifier(k, config)]


def test_assemble_takes_every_leaf_from_the_file(weights, tiny_config):
  variables, reinit = convert.assemble(convert.Converted(weights), tiny_config)
  assert reinit == []
  for (k, a), (_, b) in zip(sorted(_flat(variables).items()), sorted(_flat(weights).items())):
    np.testing.assert_array_equal(a, b, err_msg=k)


def test_absent_classifier_is_initialised_afresh(weights, tiny_config):
  flat = convert.flatten(weights)
  absent = frozenset(_classifier_paths(weights))
  assert absent
  partial = convert.unflatten({k: v for k, v in flat.items() if k not in absent})
  variables, reinit = convert.assemble(convert.Converted(partial, absent), tiny_config)
  assert reinit == sorted(absent)
  fresh = convert.flatten(convert.init_variables(tiny_config))
  out = convert.flatten(variables)
  for k in absent:
    np.testing.assert_array_equal(out[k], fresh[k])


def test_other_class_count_needs_reinit_classifier(weights, tiny_config):
  flat = dict(convert.flatten(weights))
  for k in _classifier_paths(weights):  # A 60-class file.
    flat[k] = np.zeros(flat[k].shape[:-1] + (60,), np.float32)
  other = convert.Converted(convert.unflatten(flat), source='test')
  with pytest.raises(UserError, match=r'(?s)another number of classes.*--reinit_classifier'):
    convert.assemble(other, tiny_config)
  variables, reinit = convert.assemble(other, tiny_config, reinit_classifier=True)
  assert reinit == sorted(_classifier_paths(weights))
  for k in _classifier_paths(weights):
    assert convert.flatten(variables)[k].shape[-1] == 5


def test_missing_and_unexpected_leaves_are_named(weights, tiny_config):
  flat = dict(convert.flatten(weights))
  gone = next(k for k in flat if not convert.is_classifier(k, tiny_config))
  del flat[gone]
  flat['params/extra/kernel'] = np.zeros(3)
  with pytest.raises(UserError) as e:
    convert.assemble(convert.Converted(convert.unflatten(flat)), tiny_config)
  assert gone in str(e.value) and 'params/extra/kernel' in str(e.value)


def test_variables_tree_round_trips_and_lists_every_mismatch(weights, tiny_config):
  flat = variables_tree.flatten(weights)
  assert variables_tree.flatten(flat) == flat  # Already flat: unchanged.
  again = variables_tree.unflatten(flat)
  assert _flat(again).keys() == _flat(weights).keys()
  assert variables_tree.unflatten({}, roots=('params', 'batch_stats')) == {
      'params': {}, 'batch_stats': {}}
  from deeplab_jax import models  # pylint: disable=import-outside-toplevel
  want = models.variable_shapes(tiny_config)
  assert variables_tree.mismatches(variables_tree.shapes(weights), want) == []
  gone, bent = sorted(want)[:2]
  have = dict(variables_tree.shapes(weights))
  del have[gone]
  have[bent] = have[bent] + (2,)
  have['params/extra/kernel'] = (3,)
  M = variables_tree.Mismatch  # pylint: disable=invalid-name
  assert sorted(variables_tree.mismatches(have, want), key=lambda m: m.path) == sorted([
      M(gone, variables_tree.MISSING, None, want[gone]),
      M(bent, variables_tree.SHAPE, want[bent] + (2,), want[bent]),
      M('params/extra/kernel', variables_tree.UNEXPECTED, (3,), None)],
      key=lambda m: m.path)


def test_detect_formats(tmp_path):
  caffemodel = tmp_path / 'a.caffemodel'
  caffemodel.write_bytes(b'\x0a\x03net')
  assert convert.detect(str(caffemodel)) == convert.CAFFE
  renamed = tmp_path / 'a.bin'
  renamed.write_bytes(b'\x0a\x03net')
  assert convert.detect(str(renamed)) == convert.CAFFE
  with zipfile.ZipFile(tmp_path / 'b.pth', 'w') as z:
    z.writestr('archive/data.pkl', b'')
  assert convert.detect(str(tmp_path / 'b.pth')) == convert.PYTORCH
  (tmp_path / 'c.pth').write_bytes(pickle.dumps({'a': 1}))
  assert convert.detect(str(tmp_path / 'c.pth')) == convert.PYTORCH
  (tmp_path / 'd.txt').write_text('hello')
  with pytest.raises(UserError, match='d.txt: neither'):
    convert.detect(str(tmp_path / 'd.txt'))
  with pytest.raises(UserError, match='no such file'):
    convert.detect(str(tmp_path / 'missing.pth'))


@pytest.fixture(scope='module')
def converted_dir(tmp_path_factory, weights):
  """A workdir written by convert_to_workdir from 'a file' holding `weights`."""
  from configs import shapes  # pylint: disable=import-outside-toplevel
  source = tmp_path_factory.mktemp('src') / 'weights.pth'
  source.write_bytes(pickle.dumps({}))
  output = str(tmp_path_factory.mktemp('converted'))
  original = convert.read
  convert.read = lambda path, config, *_: convert.Converted(weights, source='test weights')
  try:
    record = convert.convert_to_workdir(str(source), tiny.get_config(shapes), output)
  finally:
    convert.read = original
  return output, record


def test_converted_workdir_holds_the_weights_at_step_0(converted_dir, weights):
  output, record = converted_dir
  assert sorted(os.listdir(checkpoint.checkpoint_dir(output))) == ['0']
  saved = json.load(open(os.path.join(output, 'converted.json')))
  assert saved == record and saved['format'] == convert.PYTORCH
  assert saved['initialised_afresh'] == [] and len(saved['sha256']) == 64
  restored = checkpoint.restore_variables(output)
  for (k, a), (_, b) in zip(sorted(_flat(restored).items()), sorted(_flat(weights).items())):
    np.testing.assert_array_equal(a, b, err_msg=k)
  with pytest.raises(UserError, match='already holds checkpoints'):
    convert.convert_to_workdir('x', None, output)


def test_evaluate_and_train_from_converted_weights(converted_dir, weights, tiny_config,
                                                   tmp_path):
  output, _ = converted_dir
  summary = evaluation.evaluate_checkpoint(tiny_config, output)
  assert summary['step'] == 0 and 0.0 <= summary['mean_iou'] <= 1.0
  tiny_config.init_from = output
  tiny_config.num_train_steps = 1
  tiny_config.optim.base_lr = 0.0  # No update: the params stay the converted ones.
  state = train_lib.train_and_evaluate(tiny_config, str(tmp_path))
  for (k, a), (_, b) in zip(sorted(_flat(state.params).items()),
                            sorted(_flat(weights['params']).items())):
    np.testing.assert_array_equal(a, b, err_msg=k)


def test_init_from_a_model_of_another_shape_is_an_error(converted_dir, tiny_config, tmp_path):
  output, _ = converted_dir
  tiny_config.init_from = output
  tiny_config.model.head.hidden = (16,)
  with pytest.raises(UserError, match='do not fit'):
    train_lib.train_and_evaluate(tiny_config, str(tmp_path))


def test_cli_converts_a_caffemodel_that_evaluate_then_reads(tmp_path, data_dir):
  """`python -m deeplab_jax.convert` then `evaluate.py`, as the README says."""
  import subprocess  # pylint: disable=import-outside-toplevel
  import sys  # pylint: disable=import-outside-toplevel
  from configs import voc_aspp  # pylint: disable=import-outside-toplevel
  from deeplab_jax.testing import fake_caffe  # pylint: disable=import-outside-toplevel
  config = tiny.get_config(voc_aspp)
  variables = fake_caffe.random_variables(config, seed=3)
  model_file = str(tmp_path / 'train_iter_20000.caffemodel')
  fake_caffe.write_caffemodel(model_file, fake_caffe.layers_from_flax(
      variables, config, 'deeplab_v2_resnet', classifier_tag='voc12'))
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  output = str(tmp_path / 'converted')
  common = ['--config', 'configs/tiny.py:voc_aspp', f'--config.dataset.data_dir={data_dir}']
  run = lambda *args, extra=(): subprocess.run(
      [sys.executable, *args, *common, *extra], cwd=root, capture_output=True,
      text=True, timeout=600)
  done = run('-m', 'deeplab_jax.convert', '--input', model_file, '--output', output)
  assert done.returncode == 0, done.stderr[-2000:]
  record = json.load(open(os.path.join(output, 'converted.json')))
  assert record['format'] == 'caffe'
  # The tiny config scales its inputs (random init); Caffe weights take std 1.
  assert [w.split(' is')[0] for w in record['input_warnings']] == ['model.pixel_std']
  restored = checkpoint.restore_variables(output)
  for (k, a), (_, b) in zip(sorted(_flat(restored).items()), sorted(_flat(variables).items())):
    np.testing.assert_allclose(a, b, rtol=1e-6, err_msg=k)
  assert 'converted ' in done.stdout and record['converted_tensors'] == len(_flat(variables))
  # evaluate.py's loader (the full train state) gives the same logits.
  from deeplab_jax import models, optim, sharding, train_step  # pylint: disable=import-outside-toplevel,g-multiple-import
  config.dataset.data_dir = data_dir
  mesh = sharding.make_mesh()
  tx, _ = optim.from_config(config)
  mngr = checkpoint.manager(output, read_only=True)
  state = checkpoint.restore(mngr, train_step.abstract_train_state(
      config, models.build(config), tx, mesh))
  mngr.close()
  images = np.random.default_rng(0).integers(0, 256, (2, 40, 48, 3), np.uint8)
  model = models.build(config)
  np.testing.assert_allclose(
      model.apply(state.variables(), images, train=False),
      model.apply(convert.from_file(model_file, config), images, train=False),
      rtol=1e-6, atol=1e-6)
  done = run('evaluate.py', '--workdir', output)
  assert done.returncode == 0, done.stderr[-2000:]
  assert 'mean IoU' in done.stdout
  # A config feeding RGB to Caffe weights: the CLI says so.
  other = run('-m', 'deeplab_jax.convert', '--input', model_file, '--output',
              str(tmp_path / 'rgb'), extra=['--config.model.channel_order=rgb'])
  assert other.returncode == 0 and 'warning: model.channel_order is' in other.stdout
  again = run('-m', 'deeplab_jax.convert', '--input', model_file, '--output', output)
  assert again.returncode == 1 and 'error: ' in again.stderr and 'already holds' in again.stderr
