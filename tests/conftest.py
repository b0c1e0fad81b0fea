"""Test setup: 8 fake CPU devices (before JAX starts) and a tiny built dataset."""

import os
import sys
import tempfile

os.environ['XLA_FLAGS'] = ' '.join(
    [os.environ.get('XLA_FLAGS', ''), '--xla_force_host_platform_device_count=8']).strip()
os.environ['JAX_PLATFORMS'] = 'cpu'

from deeplab_jax import xla_flags  # pylint: disable=g-import-not-at-top

xla_flags.set_defaults()  # Tests run what train.py / evaluate.py run.
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
# Compiled programs are shared between tests and the CLI subprocesses.
os.environ.setdefault('JAX_COMPILATION_CACHE_DIR',
                      os.path.join(tempfile.gettempdir(), 'deeplab_jax_test_xla_cache'))
os.environ.setdefault('JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS', '0')

import jax  # pylint: disable=g-import-not-at-top
import pytest  # pylint: disable=g-import-not-at-top

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from configs import shapes as shapes_config  # pylint: disable=g-import-not-at-top
from configs import tiny  # pylint: disable=g-import-not-at-top
from deeplab_jax.data import input_pipeline  # pylint: disable=g-import-not-at-top

assert jax.device_count() == 8, 'tests expect 8 fake CPU devices'


@pytest.fixture(scope='session')
def data_dir(tmp_path_factory):
  """A TFDS data dir holding the built `synthetic_shapes/tiny`."""
  path = str(tmp_path_factory.mktemp('tfds'))
  config = tiny.get_config(shapes_config)
  config.dataset.data_dir = path
  input_pipeline.get_builder(config.dataset)
  return path


@pytest.fixture
def tiny_config(data_dir):
  config = tiny.get_config(shapes_config)
  config.dataset.data_dir = data_dir
  return config


@pytest.fixture(scope='session')
def tiny_builder(data_dir):
  config = tiny.get_config(shapes_config)
  config.dataset.data_dir = data_dir
  return input_pipeline.get_builder(config.dataset)
