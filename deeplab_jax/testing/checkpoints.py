"""A checkpoint of a config's initial weights in a workdir, for tests of what reads one."""

from __future__ import annotations

import jax
import numpy as np

from deeplab_jax import checkpoint
from deeplab_jax import models
from deeplab_jax import optim
from deeplab_jax import sharding
from deeplab_jax import train_step


def write_initial(config, workdir, noise=0.0, seed=0):
  """Saves step 0 of `config`'s model in `workdir`; `noise` adds N(0, noise) to
  every parameter (so that zero-initialised layers give non-zero logits)."""
  model = models.build(config)
  tx, _ = optim.create_optimizer(config.optim, config.num_train_steps,
                                 classifiers=models.classifier_paths(config))
  mesh = sharding.make_mesh()
  state = train_step.create_train_state(config, model, tx, mesh)
  if noise:
    rng = np.random.RandomState(seed)
    params = jax.tree_util.tree_map(
        lambda p: p + rng.normal(0, noise, p.shape).astype(p.dtype),
        jax.device_get(state.params))
    state = state.replace(params=jax.device_put(params, sharding.replicated(mesh)))
  mngr = checkpoint.manager(workdir)
  checkpoint.save(mngr, 0, state)
  mngr.wait_until_finished()
  mngr.close()
  return workdir
