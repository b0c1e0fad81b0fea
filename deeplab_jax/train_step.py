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
from deeplab_jax import variables_tree
from deeplab_jax import xla_flags
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
  """Initialises a replicated TrainState directly on the mesh.

  Compiled with XLA's default CPU fusions (xla_flags.without_cpu_flags): with
  the YNN elementwise fusion the initialisers of a full ResNet-50 replicated
  on 8 CPU devices peak at ~19 GB of host memory, ~5 GB without (measured,
  jaxlib 0.10.2); it runs once, so its speed does not matter.
  """
  return jax.jit(lambda: initial_state(config, model, tx),
                 out_shardings=sharding.replicated(mesh),
                 compiler_options=xla_flags.without_cpu_flags())()


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
  shapes = lambda tree: {jax.tree_util.keystr(k): tuple(jnp.shape(v))
                         for k, v in jax.tree_util.tree_leaves_with_path(tree)}
  bad = [f'{m.path}: not in the model' if m.problem == variables_tree.UNEXPECTED else
         f'{m.path}: have {"nothing" if m.have is None else m.have}, model {m.want}'
         for m in variables_tree.mismatches(shapes(got), shapes(want))]
  if bad:
    raise UserError('the initial weights do not fit this config\'s model:\n  ' +
                    '\n  '.join(bad))
  got = jax.tree_util.tree_map(lambda g, w: jnp.asarray(g, w.dtype), got, want)
  got = jax.device_put(got, sharding.replicated(mesh))
  return state.replace(params=got['params'], batch_stats=got['batch_stats'])


# ----------------------------------------------------------- train step ----

def check_grad_accum(config, mesh):
  """Raises a UserError unless each micro-batch splits evenly over the mesh."""
  steps = config.get('grad_accum_steps', 1)
  if steps < 1:
    raise UserError(f'grad_accum_steps={steps}; use 1 (no accumulation) or more.')
  per_update = steps * mesh.size
  if config.batch_size % per_update:
    lower = max(per_update, config.batch_size // per_update * per_update)
    raise UserError(
        f'batch_size={config.batch_size} cannot be split into grad_accum_steps='
        f'{steps} micro-batches over {mesh.size} devices; use a multiple of '
        f'{per_update}, for example --config.batch_size={lower} or '
        f'--config.batch_size={lower + per_update}, or change grad_accum_steps.')


def split_micro_batches(x_BxN, steps, mesh):
  """(B, ...) -> (steps, B / steps, ...): micro-batch k holds examples k, k +
  steps, k + 2 * steps, ... so every device keeps its own rows (no copies)."""
  x = x_BxN.reshape((x_BxN.shape[0] // steps, steps) + x_BxN.shape[1:])
  x = jnp.swapaxes(x, 0, 1)
  spec = jax.sharding.PartitionSpec(None, sharding.AXIS)
  return jax.lax.with_sharding_constraint(x, jax.sharding.NamedSharding(mesh, spec))


def all_finite(tree):
  """One device bool: every element of every leaf is finite."""
  return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x))
                            for x in jax.tree_util.tree_leaves(tree)]))


def make_train_step(config, model, tx, schedule, mesh, objective=None):
  """Returns jitted `step(state, batch) -> (state, metrics)` over the mesh.

  One call is one optimizer update on the global batch. The loss is
  `objective` (default `losses.from_config(config)`; train_lib passes one
  with class weights computed from the training split). With
  `config.grad_accum_steps` K > 1 the batch is processed as K micro-batches
  of batch_size / K (a `lax.scan`: activations for one micro-batch at a
  time). Each micro-batch's loss sums (`losses.batch_sums`: cross-entropy,
  weights, Dice and Lovasz terms, all adding up over images) are weighted by
  the whole batch's d loss / d sums and their gradients summed, so loss and
  gradients equal the whole batch's (up to float summation order) for every
  loss option; where those weights depend on the network's output (OHEM or
  Dice with 'batch' normalisation) a forward-only pass over the
  micro-batches computes the batch's sums first. Not equal with BatchNorm in
  'train' mode: its statistics are each micro-batch's, and its moving
  averages advance once per micro-batch (as Caffe's iter_size does); dropout
  masks differ too (one key per micro-batch).

  metrics: 'loss', 'learning_rate', 'valid_pixels', and 'finite' (loss and
  every gradient finite; a device bool, fetched by the loop only when it
  logs or checkpoints).

  With `config.input.resize='caffe'` the batch's 'valid' (B x H x W bool,
  False on the crop's padding; the pipeline adds it) goes to the model,
  which sets the normalised padding to exactly 0 as Caffe's data layer does;
  a batch without 'valid' (synthetic benchmark batches) is used as it is.
  """
  base_rng = jax.random.key(config.seed + 1)
  accum = config.get('grad_accum_steps', 1)
  objective = losses.from_config(config) if objective is None else objective
  check_grad_accum(config, mesh)
  zero_padding = config.input.get('resize', 'aligned') == 'caffe'
  label_offset = losses.check_label_offset(config.loss, config.model.align_corners)

  def forward(params, batch_stats, images, rng, valid=None):
    kwargs = {} if valid is None else {'valid': valid}
    return model.apply({'params': params, 'batch_stats': batch_stats},
                       images, train=True, mutable=['batch_stats'],
                       rngs={'dropout': rng}, **kwargs)

  def padding_mask(batch):  # None: the model normalises every pixel.
    return batch.get('valid') if zero_padding else None

  def whole_batch_grads(state, batch, rng):
    def loss_fn(params):
      outputs, updates = forward(params, state.batch_stats, batch['image'], rng,
                                 padding_mask(batch))
      loss, num_valid = losses.loss_and_valid(objective, outputs, batch['label'])
      return loss, (updates.get('batch_stats', {}), num_valid)

    (loss, (batch_stats, num_valid)), grads = jax.value_and_grad(
        loss_fn, has_aux=True)(state.params)
    return loss, grads, batch_stats, num_valid

  def accumulated_grads(state, batch, rng):
    images = split_micro_batches(batch['image'], accum, mesh)
    labels = split_micro_batches(batch['label'], accum, mesh)
    valid = padding_mask(batch)
    valid = None if valid is None else split_micro_batches(valid, accum, mesh)
    xs = (images, labels, valid, jnp.arange(accum))  # valid None without a mask.

    def micro_sums(params, batch_stats, images_k, labels_k, valid_k, k):
      outputs, updates = forward(params, batch_stats, images_k, jax.random.fold_in(rng, k),
                                 valid_k)
      return (losses.batch_sums(objective, outputs, labels_k),
              updates.get('batch_stats', batch_stats))

    first = jax.tree_util.tree_map(lambda x: x[0], xs)
    zero_sums = jax.tree_util.tree_map(
        lambda x: jnp.zeros(x.shape, x.dtype),
        jax.eval_shape(micro_sums, state.params, state.batch_stats, *first)[0])
    if objective.needs_statistics_pass:
      # d loss / d sums depends on the batch's sums (OHEM's kept pixels, the
      # batch's Dice): a forward pass over the micro-batches computes them.
      def sums_body(total, xs_k):
        return losses.add_sums(total, micro_sums(state.params, state.batch_stats, *xs_k)[0]), None
      batch_totals, _ = jax.lax.scan(sums_body, zero_sums, xs)
    else:
      outputs, _ = jax.eval_shape(forward, state.params, state.batch_stats, images[0], rng)
      shapes = [o.shape for o in (outputs if isinstance(outputs, (list, tuple)) else [outputs])]
      batch_totals = losses.label_sums(objective, shapes, batch['label'])
    cotangent = jax.grad(lambda sums: losses.finalize(objective, sums))(batch_totals)

    def micro_loss(params, batch_stats, *xs_k):
      sums_k, batch_stats = micro_sums(params, batch_stats, *xs_k)
      dot = sum(jnp.vdot(cotangent[m][key], value)
                for m, sums in enumerate(sums_k) for key, value in sums.items())
      return dot, (sums_k, batch_stats)

    def body(carry, xs_k):
      grads, total, batch_stats = carry
      (_, (sums_k, batch_stats)), grads_k = jax.value_and_grad(micro_loss, has_aux=True)(
          state.params, batch_stats, *xs_k)
      grads = jax.tree_util.tree_map(jnp.add, grads, grads_k)
      total = losses.add_sums(total, sums_k)
      return (grads, total, batch_stats), None

    zeros = jax.tree_util.tree_map(jnp.zeros_like, state.params)
    (grads, total, batch_stats), _ = jax.lax.scan(
        body, (zeros, zero_sums, state.batch_stats), xs)
    return losses.finalize(objective, total), grads, batch_stats, total[0]['valid']

  def train_step(state, batch):
    rng = jax.random.fold_in(base_rng, state.step)
    batch = {**batch, 'label': losses.drop_label_border(batch['label'], label_offset)}
    grads_fn = whole_batch_grads if accum == 1 else accumulated_grads
    loss, grads, batch_stats, num_valid = grads_fn(state, batch, rng)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = jax.tree_util.tree_map(jnp.add, state.params, updates)
    new_state = state.replace(step=state.step + 1, params=params,
                              batch_stats=batch_stats, opt_state=opt_state)
    metrics = {'loss': loss, 'learning_rate': schedule(state.step),
               'valid_pixels': num_valid.astype(jnp.int32),
               'finite': jnp.isfinite(loss) & all_finite(grads)}
    return new_state, metrics

  repl = sharding.replicated(mesh)
  return jax.jit(train_step,
                 in_shardings=(repl, sharding.batch_sharded(mesh)),
                 out_shardings=(repl, repl), donate_argnums=(0,),
                 compiler_options=xla_flags.model_compiler_options(config.model))
