"""Multi-process training: 2 processes x 4 CPU devices (JAX's distributed
runtime, gloo collectives) give the parameters of 1 process x 8 devices fed
the same global batches."""

import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from configs import tiny
from deeplab_jax import checkpoint
from deeplab_jax import crf
from deeplab_jax import distributed
from deeplab_jax import evaluation
from deeplab_jax import models
from deeplab_jax import optim
from deeplab_jax import sharding
from deeplab_jax import train_lib
from deeplab_jax import train_step
from deeplab_jax.crf import dense_crf
from deeplab_jax.crf import lattice
from deeplab_jax.data import input_pipeline
from deeplab_jax.errors import UserError
from deeplab_jax.testing import processes as processes_lib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The same programs partitioned over 2 processes: the cross-process
# all-reduce (gloo) adds the per-device partial sums in another order.
# Measured: at most 2.4e-7 absolute after 4 steps; tolerance (as train_test's
# 1 vs 8 devices):
RTOL, ATOL = 2e-5, 2e-6


def _state(config, workdir):
  model = models.build(config)
  tx, _ = optim.create_optimizer(config.optim, config.num_train_steps, classifiers=models.classifier_paths(config))
  mngr = checkpoint.manager(workdir, read_only=True)
  return jax.device_get(checkpoint.restore(
      mngr, train_step.abstract_train_state(config, model, tx, sharding.make_mesh())))


def test_two_processes_train_like_one(tiny_config, data_dir, tmp_path, monkeypatch):
  port = processes_lib.free_port()
  env = processes_lib.cpu_env(4)
  workdir = tmp_path / 'two'
  processes = [subprocess.Popen(
      [sys.executable, 'train.py', '--config=configs/tiny.py:shapes',
       f'--workdir={workdir}', f'--config.dataset.data_dir={data_dir}',
       f'--coordinator_address=localhost:{port}', '--num_processes=2',
       f'--process_id={i}'], cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True)
               for i in range(2)]

  # Meanwhile, here: 1 process, 8 devices, each global batch the two
  # processes' shards side by side (process 0's rows first, as
  # make_array_from_process_local_data lays them out).
  original = input_pipeline.train_iterator

  def both_shards(config, builder, local_batch_size, start_step=0, start_position=None):
    del local_batch_size
    shards = [iter(original(
        config, builder, 4, start_step, start_position, process_index=i, process_count=2))
              for i in range(2)]
    while True:
      parts = [next(s) for s in shards]
      yield {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}

  monkeypatch.setattr(input_pipeline, 'train_iterator', both_shards)
  with processes_lib.killed_on_error(processes):
    one = jax.device_get(train_lib.train_and_evaluate(tiny_config, str(tmp_path / 'one')))
  logs = [err for _, err in processes_lib.wait_all(processes)]
  assert 'process(es)' in logs[0] and 'step 4/4' in logs[0]
  assert 'step 4/4' not in logs[1]  # Only process 0 logs progress.
  assert sorted(checkpoint.manager(str(workdir), read_only=True).all_steps()) == [2, 4]
  two = _state(tiny_config, str(workdir))
  assert int(two.step) == 4
  for (path, x), y in zip(jax.tree_util.tree_leaves_with_path(two),
                          jax.tree_util.tree_leaves(one)):
    np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=RTOL, atol=ATOL,
                               err_msg=jax.tree_util.keystr(path))


def test_process_layout_from_flags_and_environments():
  layout = distributed.process_layout('host0:1234', 2, 1, environ={})
  assert layout == {'coordinator_address': 'host0:1234', 'num_processes': 2,
                    'process_id': 1}
  torchrun = {'MASTER_ADDR': 'node7', 'MASTER_PORT': '29500', 'WORLD_SIZE': '16',
              'RANK': '5', 'LOCAL_WORLD_SIZE': '8', 'LOCAL_RANK': '5'}
  assert distributed.process_layout(environ=torchrun) == {
      'coordinator_address': 'node7:29500', 'num_processes': 16, 'process_id': 5,
      'local_device_ids': [5]}
  slurm = {'SLURM_JOB_ID': '42', 'SLURM_PROCID': '0', 'SLURM_NTASKS': '4'}
  assert distributed.process_layout(environ=slurm) == {}  # JAX detects the rest.
  assert distributed.process_layout(environ={**slurm, 'SLURM_NTASKS': '1'}) is None
  assert distributed.process_layout(environ={'TPU_WORKER_HOSTNAMES': 'a,b,c,d'}) == {}
  assert distributed.process_layout(environ={}) is None
  assert distributed.initialize(environ={}) == 1  # One process: nothing started.
  with pytest.raises(UserError, match='missing --process_id'):
    distributed.process_layout('host0:1234', 2, None, environ={})
  with pytest.raises(UserError, match='must be in 0..1'):
    distributed.process_layout('host0:1234', 2, 2, environ={})


# Two processes x 4 devices run the JAX CRF step on the mesh (lattices sorted
# on the devices, the largest lattice read back as a maximum over processes):
# process `pid` feeds its 4 rows of the global batch of `_crf_batch`.
_CRF_STEP = '''
import json, sys
import jax
import numpy as np
from deeplab_jax import distributed, evaluation, sharding
from deeplab_jax.crf import lattice
from tests.multihost_test import _crf_batch, _crf_config
asked = []  # The lattice sizes the step asks for.
bucket = lattice.bucket
lattice.bucket = lambda num_points: asked.append(num_points) or bucket(num_points)
distributed.initialize(sys.argv[1], 2, int(sys.argv[2]))
mesh = sharding.make_mesh()
rows = slice(4 * jax.process_index(), 4 * jax.process_index() + 4)
batch = [jax.make_array_from_process_local_data(sharding.batch_sharded(mesh), x[rows])
         for x in _crf_batch()]
step = evaluation.make_crf_step(_crf_config(), mesh, lattice_on_host=False)
preds, confusion = step(*batch)
print(json.dumps({'asked': asked, 'confusion': np.asarray(confusion).tolist(),
                  'preds': np.asarray(sharding.local_rows(preds)).tolist()}))
'''


def _crf_config():
  from configs import shapes  # pylint: disable=import-outside-toplevel
  config = tiny.get_config(shapes)
  config.eval.crf = True
  return config


def _crf_batch():
  """8 images (24 x 32, padded) of different sizes: the images needing the
  most lattice points are all on process 1's rows."""
  from deeplab_jax.testing import scenes  # pylint: disable=import-outside-toplevel
  sizes = [(12, 16), (16, 12), (20, 20), (12, 30), (24, 32), (22, 32), (24, 28), (24, 30)]
  images = np.zeros((8, 24, 32, 3), np.uint8)
  logits = np.zeros((8, 24, 32, 5), np.float32)
  labels = np.zeros((8, 24, 32), np.int32)
  valid = np.zeros((8, 24, 32), bool)
  for i, (h, w) in enumerate(sizes):
    image, truth, probs = scenes.natural_image_and_unaries(np.random.default_rng(i), h, w, 5)
    images[i, :h, :w], labels[i, :h, :w], valid[i, :h, :w] = image, truth, True
    logits[i, :h, :w] = np.log(probs)
  return images, logits, labels, valid


def test_two_processes_run_the_device_crf_step_like_one():
  port = processes_lib.free_port()
  env = processes_lib.cpu_env(4, PYTHONPATH=ROOT)
  processes = [subprocess.Popen(
      [sys.executable, '-c', _CRF_STEP, f'localhost:{port}', str(i)], cwd=ROOT, env=env,
      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(2)]
  with processes_lib.killed_on_error(processes):
    # Meanwhile, here: 1 process, 8 devices, the same global batch.
    mesh = sharding.make_mesh()
    batch = [jax.device_put(x, sharding.batch_sharded(mesh)) for x in _crf_batch()]
    preds, confusion = evaluation.make_crf_step(_crf_config(), mesh, lattice_on_host=False)(*batch)
  outs = processes_lib.wait_all(processes)
  results = [json.loads(out.strip().splitlines()[-1]) for out, _ in outs]
  preds = np.asarray(preds)
  # Both size the lattices for the largest image of the global batch (on
  # process 1), so that both compile the same program.
  images, _, _, valid = _crf_batch()
  params = crf.settings(_crf_config())[0]
  points = np.asarray(dense_crf.sort_bilateral_vertices(images, valid, params).num_points)
  assert lattice.bucket(points[:4].max()) < lattice.bucket(points[4:].max())
  for i, result in enumerate(results):
    assert result['asked'] == [int(points.max())]
    np.testing.assert_array_equal(result['confusion'], np.asarray(confusion))
    np.testing.assert_array_equal(result['preds'], preds[4 * i:4 * i + 4])
  assert np.asarray(confusion).sum() == _crf_batch()[3].sum()
