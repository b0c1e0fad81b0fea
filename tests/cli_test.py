"""Entry points: overrides, and clear errors instead of tracebacks."""

import os
import subprocess
import sys

import pytest
from absl import flags
from ml_collections import config_flags

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = os.path.join(ROOT, 'configs', 'tiny.py')  # :shapes, the demo shrunk.


def _parse(*args):
  argv = ['prog', f'--config={CONFIG}:shapes', *args]
  values = flags.FlagValues()
  config_flags.DEFINE_config_file('config', None, 'test', flag_values=values,
                                  lock_config=True, sys_argv=argv)
  values(argv)
  return values.config


def test_overrides_reach_every_field():
  config = _parse('--config.batch_size=16', '--config.model.head.rates=1,3,5',
                  '--config.optim.base_lr=0.5', '--config.dataset.data_dir=/x')
  assert config.batch_size == 16
  assert tuple(config.model.head.rates) == (1, 3, 5)
  assert config.optim.base_lr == 0.5 and config.dataset.data_dir == '/x'


def test_mistyped_key_is_rejected_in_parsing():
  with pytest.raises(AttributeError, match='Did you mean "batch_size"'):
    _parse('--config.bach_size=8')


def _run(script, *args, data_dir=None):
  env = dict(os.environ)
  extra = [f'--config.dataset.data_dir={data_dir}'] if data_dir else []
  return subprocess.run([sys.executable, os.path.join(ROOT, script), *args, *extra],
                        capture_output=True, text=True, env=env, cwd=ROOT,
                        timeout=300, check=False)


def _assert_clear_error(result, *needles):
  assert result.returncode != 0
  assert 'Traceback' not in result.stderr, result.stderr[-3000:]
  for needle in needles:
    assert needle in result.stderr, result.stderr[-3000:]


def test_cli_mistyped_key_names_it(tmp_path):
  result = _run('train.py', f'--config={CONFIG}:shapes', f'--workdir={tmp_path}',
                '--config.bach_size=8')
  _assert_clear_error(result, 'bach_size', 'Did you mean "batch_size"')


def test_cli_missing_config_file(tmp_path):
  result = _run('train.py', '--config=configs/nope.py', f'--workdir={tmp_path}')
  _assert_clear_error(result, 'configs/nope.py')


def test_cli_unwritable_workdir(tmp_path):
  blocker = tmp_path / 'a_file'
  blocker.write_text('not a directory')
  result = _run('train.py', f'--config={CONFIG}:shapes', f'--workdir={blocker}/run')
  _assert_clear_error(result, 'cannot write to workdir', str(blocker))


def test_cli_batch_not_divisible_by_devices(tmp_path):
  result = _run('train.py', f'--config={CONFIG}:shapes', f'--workdir={tmp_path}',
                '--config.batch_size=12')
  _assert_clear_error(result, 'batch_size=12', 'over 8 devices',
                      '--config.batch_size=8', '--config.batch_size=16')


def test_cli_evaluate_without_checkpoint(tmp_path, data_dir):
  result = _run('evaluate.py', f'--config={CONFIG}:shapes', f'--workdir={tmp_path}',
                data_dir=data_dir)
  _assert_clear_error(result, 'no checkpoint in', str(tmp_path))
