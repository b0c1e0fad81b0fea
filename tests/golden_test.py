"""Outputs recorded before the open-architecture refactor (issue 17) stay the same.

Every paper config's tiny network (configs/tiny.py) is built, initialised (seed 0) and run
on one fixed odd-sized batch, in test and in training mode; its parameters,
its logits and each parameter's learning-rate multiplier are compared with
`tests/golden/models.json`, and the generated official Caffe files (written
by `fake_caffe` from seeded weights) convert to the arrays recorded in
`tests/golden/convert.json`. The records were written by the code as it was
before the refactor (commit given in each file) with

    DEEPLAB_JAX_WRITE_GOLDEN=1 .venv/bin/python -m pytest -q tests/golden_test.py

and must not be rewritten to make a change pass: a change of behaviour is a
bug here. Parameters are held to their sums, sums of squares and first
values, logits to their values (every k-th of a large map); the tolerances allow only float rounding
between CPUs; `DEEPLAB_JAX_GOLDEN_EXACT=1` compares every array bit for bit
(sha256), on the machine that wrote them.
"""

import hashlib
import json
import os
import subprocess

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import tiny
from deeplab_jax import models
from deeplab_jax import optim
from deeplab_jax import convert
from deeplab_jax.testing import fake_caffe

GOLDEN = os.path.join(os.path.dirname(__file__), 'golden')
WRITE = os.environ.get('DEEPLAB_JAX_WRITE_GOLDEN') == '1'
# DEEPLAB_JAX_GOLDEN_EXACT=1: every array bit for bit (sha256), for a run on
# the machine that wrote the records.
EXACT = os.environ.get('DEEPLAB_JAX_GOLDEN_EXACT') == '1'

# Config module -> the tiny network checked.
CONFIGS = ('shapes', 'voc_largefov', 'voc_deeplab_v1', 'voc_largefov_v1',
           'voc_msc_largefov', 'voc_msc', 'voc_vgg_aspp', 'voc_aspp',
           'cityscapes_aspp')
# (release, config module, model overrides): the generated official files.
RELEASES = (('deeplab_v2_resnet', 'voc_aspp', {'batch_norm': 'frozen'}),
            ('deeplab_v2_vgg', 'voc_largefov', {}),
            ('deeplab_v2_vgg', 'voc_vgg_aspp', {}),
            ('imagenet_resnet', 'voc_aspp', {'batch_norm': 'frozen'}),
            ('deeplab_v2_coco_init', 'voc_aspp', {'batch_norm': 'frozen'}))


def tiny_config(name):
  """configs/{name}.py shrunk by configs/tiny.py."""
  return tiny.get_config(name)


def _flat(tree):
  return {jax.tree_util.keystr(k): np.asarray(v, np.float64)
          for k, v in jax.tree_util.tree_leaves_with_path(tree)}


def _summary(array):
  array = np.asarray(array, np.float64)
  return {'shape': list(array.shape), 'sum': float(array.sum()),
          'sum_sq': float((array ** 2).sum()),
          'first': array.reshape(-1)[:6].tolist(),
          'sha256': hashlib.sha256(np.ascontiguousarray(array, np.float32).tobytes()).hexdigest()}


def _values(array):
  """Every value of a small map; of a larger one (v1 MSc's full-size test
  output) every k-th, 1,500 at most, with the whole map's summary."""
  flat = np.asarray(array, np.float64).reshape(-1)
  step = -(-flat.size // 1500)
  return {'summary': _summary(array), 'step': step, 'values': flat[::step].tolist()}


def _compare_values(got, expected, what):
  assert got['summary']['shape'] == expected['summary']['shape'], what
  assert got['step'] == expected['step'], what
  np.testing.assert_allclose(got['values'], expected['values'], rtol=1e-4, atol=1e-5,
                             err_msg=what)
  np.testing.assert_allclose(got['summary']['sum'], expected['summary']['sum'],
                             rtol=1e-4, atol=1e-3, err_msg=what)
  if EXACT:
    assert got['summary']['sha256'] == expected['summary']['sha256'], f'{what} exact'


def _images(config):
  del config
  rng = np.random.default_rng(0)
  return jnp.asarray(rng.integers(0, 256, (2, 37, 45, 3)), jnp.uint8)


def _record_model(name):
  config = tiny_config(name)
  model = models.build(config)
  size = config.input.crop_size
  variables = model.init({'params': jax.random.key(0)},
                         jnp.zeros((1, size, size, 3), jnp.uint8), train=False)
  images = _images(config)
  test_logits = model.apply(variables, images, train=False)
  train_out, _ = model.apply(variables, images, train=True,
                             rngs={'dropout': jax.random.key(1)}, mutable=['batch_stats'])
  train_out = train_out if isinstance(train_out, list) else [train_out]
  mults = optim.lr_multipliers(variables['params'], config.optim,
                               frozen_batch_norm=config.model.batch_norm == 'frozen',
                               classifiers=model.classifier_paths())
  return {'variables': {k: _summary(v) for k, v in _flat(variables).items()},
          'test_logits': _values(test_logits),
          'train_outputs': [_values(t) for t in train_out],
          'lr_mults': {k: float(v) for k, v in _flat(mults).items()}}


def _record_release(tmp_path, release, name, overrides):
  config = tiny_config(name)
  for key, value in overrides.items():
    config.model[key] = value
  config.model.input_scales = (1.0,)
  variables = fake_caffe.random_variables(config, seed=7)
  path = str(tmp_path / f'{release}_{name}.caffemodel')
  fake_caffe.write_caffemodel(path, fake_caffe.layers_from_flax(variables, config, release))
  out = convert.from_file(path, config)
  return {'file_sha256': convert.sha256(path),
          'variables': {k: _summary(v) for k, v in _flat(out).items()}}


def _commit():
  try:
    return subprocess.run(['git', 'rev-parse', 'HEAD'], capture_output=True, text=True,
                          cwd=os.path.dirname(__file__), check=True).stdout.strip()
  except (OSError, subprocess.CalledProcessError):
    return 'unknown'


def _check_or_write(file_name, key, got):
  path = os.path.join(GOLDEN, file_name)
  records = json.load(open(path)) if os.path.exists(path) else {'written_at': _commit()}
  if WRITE:
    records[key] = got
    os.makedirs(GOLDEN, exist_ok=True)
    with open(path, 'w') as f:
      json.dump(records, f, indent=0, sort_keys=True)
    return
  assert key in records, f'{key} has no record in {path}'
  expected = records[key]
  _compare_summaries(got['variables'], expected['variables'], key)
  if EXACT:
    assert got.get('file_sha256') == expected.get('file_sha256'), f'{key} file'
    for leaf, summary in expected['variables'].items():
      assert got['variables'][leaf]['sha256'] == summary['sha256'], f'{key} {leaf}'
  if 'lr_mults' in expected:
    assert got['lr_mults'] == expected['lr_mults'], f'{key} lr_mults'
  if 'test_logits' in expected:
    _compare_values(got['test_logits'], expected['test_logits'], f'{key} test_logits')
  if 'train_outputs' in expected:
    assert len(got['train_outputs']) == len(expected['train_outputs']), key
    for i, (g, e) in enumerate(zip(got['train_outputs'], expected['train_outputs'])):
      _compare_values(g, e, f'{key} train output {i}')


def _compare_summaries(got, expected, key):
  assert sorted(got) == sorted(expected), (
      f'{key}: variables differ: missing {sorted(set(expected) - set(got))[:5]}, '
      f'new {sorted(set(got) - set(expected))[:5]}')
  for leaf, summary in expected.items():
    g = got[leaf]
    assert g['shape'] == summary['shape'], f'{key} {leaf}'
    for field in ('sum', 'sum_sq', 'first'):
      np.testing.assert_allclose(g[field], summary[field], rtol=1e-6, atol=1e-6,
                                 err_msg=f'{key} {leaf} {field}')


@pytest.mark.parametrize('name', CONFIGS)
def test_model_outputs_unchanged(name):
  _check_or_write('models.json', name, _record_model(name))


@pytest.mark.parametrize('release,name,overrides', RELEASES,
                         ids=[f'{r}-{n}' for r, n, _ in RELEASES])
def test_conversion_unchanged(tmp_path, release, name, overrides):
  _check_or_write('convert.json', f'{release}/{name}',
                  _record_release(tmp_path, release, name, overrides))
