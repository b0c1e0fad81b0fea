"""Multi-process training: 2 processes x 4 CPU devices (JAX's distributed
runtime, gloo collectives) give the parameters of 1 process x 8 devices fed
the same global batches."""

import os
import re
import socket
import subprocess
import sys

import jax
import numpy as np
import pytest

from deeplab_jax import checkpoint
from deeplab_jax import distributed
from deeplab_jax import models
from deeplab_jax import optim
from deeplab_jax import sharding
from deeplab_jax import train_lib
from deeplab_jax import train_step
from deeplab_jax.data import input_pipeline
from deeplab_jax.errors import UserError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The same programs partitioned over 2 processes: the cross-process
# all-reduce (gloo) adds the per-device partial sums in another order.
# Measured: at most 2.4e-7 absolute after 4 steps; tolerance (as train_test's
# 1 vs 8 devices):
RTOL, ATOL = 2e-5, 2e-6


def _free_port():
  with socket.socket() as s:
    s.bind(('localhost', 0))
    return s.getsockname()[1]


def _state(config, workdir):
  model = models.build(config)
  tx, _ = optim.create_optimizer(config.optim, config.num_train_steps)
  mngr = checkpoint.manager(workdir, read_only=True)
  return jax.device_get(checkpoint.restore(
      mngr, train_step.abstract_train_state(config, model, tx, sharding.make_mesh())))


def test_two_processes_train_like_one(tiny_config, data_dir, tmp_path, monkeypatch):
  port = _free_port()
  env = dict(os.environ, JAX_PLATFORMS='cpu', XLA_FLAGS=re.sub(
      r'--xla_force_host_platform_device_count=\d+', '', os.environ['XLA_FLAGS'])
             + ' --xla_force_host_platform_device_count=4')
  workdir = tmp_path / 'two'
  processes = [subprocess.Popen(
      [sys.executable, 'train.py', '--config=configs/shapes.py:tiny',
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
  try:
    one = jax.device_get(train_lib.train_and_evaluate(tiny_config, str(tmp_path / 'one')))
    logs = [process.communicate(timeout=300)[1] for process in processes]
  finally:
    for process in processes:
      if process.poll() is None:
        process.kill()
  for process, err in zip(processes, logs):
    assert process.returncode == 0, err
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
