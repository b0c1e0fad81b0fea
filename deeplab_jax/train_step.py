"""The train state and the jitted, data-parallel train step (no TensorFlow).

Kept apart from the training loop so models, the step and benchmarks import
without the input pipeline's TensorFlow.
"""

from __future__ import annotations

from typing import Any

import flax
import jax
import jax.numpy as jnp

from deeplab_jax import losses
from deeplab_jax import sharding
from deeplab_jax.errors import UserError


class TrainState(flax.struct.PyTreeNode):
  step: jax.Array
  params: Any
  batch_stats: Any
  opt_state: Any

  def variables(self):
    return {'params': self.params, 'batch_stats': self.batch_stats}


# ---------------------------------------------------------------- state ----

def initial_state(config, model, tx):
  """A fresh TrainState (params from `config.seed`); trace under jit/eval_shape."""
  size = config.input.crop_size
  dummy = jnp.zeros((1, size, size, 3), jnp.uint8)
  variables = model.init({'params': jax.random.key(config.seed)}, dummy,
                         train=False)
  params = variables['params']
  return TrainState(step=jnp.zeros((), jnp.int32), params=params,
                    batch_stats=variables.get('batch_stats', {}),
                    opt_state=tx.init(params))


def create_train_state(config, model, tx, mesh):
  """Initialises a replicated TrainState directly on the mesh."""
  return jax.jit(lambda: initial_state(config, model, tx),
                 out_shardings=sharding.replicated(mesh))()


def abstract_train_state(config, model, tx, mesh):
  """Shapes, dtypes and shardings of the TrainState, allocating nothing."""
  shapes = jax.eval_shape(lambda: initial_state(config, model, tx))
  repl = sharding.replicated(mesh)
  return jax.tree_util.tree_map(
      lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=repl), shapes)


def with_variables(state, variables, mesh):
  """`state` with params and batch_stats from `variables` (e.g. converted
  official weights), replicated over the mesh; step and optimizer state kept.

  Raises UserError naming every leaf whose shape differs or that is missing.
  """
  want = {'params': state.params, 'batch_stats': state.batch_stats}
  got = {'params': variables['params'], 'batch_stats': variables.get('batch_stats', {})}
  want_flat = dict(jax.tree_util.tree_leaves_with_path(want))
  got_flat = dict(jax.tree_util.tree_leaves_with_path(got))
  bad = [f'{jax.tree_util.keystr(k)}: have {tuple(jnp.shape(got_flat[k])) if k in got_flat else "nothing"}, '
         f'model {tuple(v.shape)}'
         for k, v in want_flat.items() if k not in got_flat or jnp.shape(got_flat[k]) != v.shape]
  bad += [f'{jax.tree_util.keystr(k)}: not in the model' for k in got_flat if k not in want_flat]
  if bad:
    raise UserError('the initial weights do not fit this config\'s model:\n  ' +
                    '\n  '.join(bad))
  got = jax.tree_util.tree_map(lambda g, w: jnp.asarray(g, w.dtype), got, want)
  got = jax.device_put(got, sharding.replicated(mesh))
  return state.replace(params=got['params'], batch_stats=got['batch_stats'])


# ----------------------------------------------------------- train step ----

def make_train_step(config, model, tx, schedule, mesh):
  """Returns jitted `step(state, batch) -> (state, metrics)` over the mesh."""
  base_rng = jax.random.key(config.seed + 1)

  def train_step(state, batch):
    rng = jax.random.fold_in(base_rng, state.step)

    def loss_fn(params):
      logits, updates = model.apply(
          {'params': params, 'batch_stats': state.batch_stats},
          batch['image'], train=True, mutable=['batch_stats'],
          rngs={'dropout': rng})
      loss, num_valid = losses.total_loss(
          logits, batch['label'], config.loss.upsample_logits,
          config.model.align_corners, config.dataset.ignore_label)
      return loss, (updates.get('batch_stats', {}), num_valid)

    (loss, (batch_stats, num_valid)), grads = jax.value_and_grad(
        loss_fn, has_aux=True)(state.params)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = jax.tree_util.tree_map(jnp.add, state.params, updates)
    new_state = state.replace(step=state.step + 1, params=params,
                              batch_stats=batch_stats, opt_state=opt_state)
    metrics = {'loss': loss, 'learning_rate': schedule(state.step),
               'valid_pixels': num_valid}
    return new_state, metrics

  repl = sharding.replicated(mesh)
  return jax.jit(train_step,
                 in_shardings=(repl, sharding.batch_sharded(mesh)),
                 out_shardings=(repl, repl), donate_argnums=(0,))
