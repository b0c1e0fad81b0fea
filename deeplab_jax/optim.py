"""SGD with momentum, poly (v2) or step (v1) learning-rate decay and DeepLab's
per-group rates.

Parameter groups (labels): `backbone`, `backbone_bias`, `classifier_kernel`,
`classifier_bias`; the classifier is every module named `*classifier*` (the
layers the paper trains at 10x / 20x the base rate: VGG's fc8, every ResNet
ASPP branch). `backbone_bias` is every other conv's bias, which Caffe's
prototxts train at 2x (`lr_mult: 1` weights, `lr_mult: 2` biases: VGG's
conv1_1 to fc7; ResNet's convs have none). BatchNorm's scale and offset
(modules named `bn`) stay `backbone`, or with frozen BatchNorm form a `frozen`
group that is never updated and holds no optimizer state. Weight decay
applies to conv kernels only (Caffe's `decay_mult: 0` on biases).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from deeplab_jax.errors import UserError

GROUPS = ('backbone', 'backbone_bias', 'classifier_kernel', 'classifier_bias', 'frozen')


def poly_schedule(base_lr, num_steps, power=0.9, warmup_steps=0):
  """lr(step) = base_lr * (1 - step / num_steps) ** power, after linear warm-up."""
  def schedule(step):
    step = jnp.asarray(step, jnp.float32)
    decay = jnp.clip(1.0 - step / num_steps, 0.0, 1.0) ** power
    if warmup_steps:
      decay = decay * jnp.minimum(1.0, (step + 1.0) / warmup_steps)
    return base_lr * decay
  return schedule


def step_schedule(base_lr, step_every, gamma=0.1, warmup_steps=0):
  """lr(step) = base_lr * gamma ** (step // step_every), after linear warm-up
  (Caffe's lr_policy "step": v1 DeepLab's x0.1 every 2000 iterations)."""
  def schedule(step):
    step = jnp.asarray(step, jnp.float32)
    lr = base_lr * gamma ** jnp.floor(step / step_every)
    if warmup_steps:
      lr = lr * jnp.minimum(1.0, (step + 1.0) / warmup_steps)
    return lr
  return schedule


SCHEDULES = ('poly', 'step')


def schedule_from_config(optim_config, num_steps):
  """The base learning-rate schedule `optim.schedule` names."""
  kind = optim_config.get('schedule', 'poly')
  if kind == 'poly':
    return poly_schedule(optim_config.base_lr, num_steps, optim_config.power,
                         optim_config.warmup_steps)
  if kind == 'step':
    return step_schedule(optim_config.base_lr, optim_config.step_every,
                         optim_config.step_gamma, optim_config.warmup_steps)
  raise UserError(f'optim.schedule={kind!r} is not one of {SCHEDULES}')


def param_labels(params, frozen_batch_norm=False):
  """A tree like `params` with each leaf's group name."""
  def label(path, _):
    names = [str(getattr(k, 'key', k)) for k in path]
    batch_norm = 'bn' in names[:-1]
    if frozen_batch_norm and batch_norm:
      return 'frozen'
    if any('classifier' in n for n in names[:-1]):
      return 'classifier_bias' if names[-1] == 'bias' else 'classifier_kernel'
    if names[-1] == 'bias' and not batch_norm:
      return 'backbone_bias'
    return 'backbone'
  return jax.tree_util.tree_map_with_path(label, params)


def _is_kernel(params):
  return jax.tree_util.tree_map_with_path(
      lambda path, _: str(getattr(path[-1], 'key', path[-1])) == 'kernel', params)


def create_optimizer(optim_config, num_steps, frozen_batch_norm=False):
  """Returns (optax transformation, base learning-rate schedule).

  `frozen_batch_norm` (config.model.batch_norm == 'frozen') puts BatchNorm's
  scale and offset in the `frozen` group.
  """
  schedule = schedule_from_config(optim_config, num_steps)
  mults = {'backbone': 1.0,
           'backbone_bias': optim_config.backbone_bias_lr_mult,
           'classifier_kernel': optim_config.classifier_kernel_lr_mult,
           'classifier_bias': optim_config.classifier_bias_lr_mult}
  # Caffe's SGD: history = momentum * history + lr_t * grad; w -= history.
  # The rate scales each gradient as it enters the momentum buffer (optax.sgd
  # scales the whole buffer by the current rate instead: different right
  # after a step drop).
  groups = {
      name: optax.chain(
          optax.scale_by_schedule(lambda step, m=mult: -m * schedule(step)),
          optax.trace(decay=optim_config.momentum))
      for name, mult in mults.items()
  }
  groups['frozen'] = optax.set_to_zero()
  tx = optax.chain(
      optax.add_decayed_weights(optim_config.weight_decay, mask=_is_kernel),
      optax.multi_transform(
          groups, lambda p: param_labels(p, frozen_batch_norm)),
  )
  return tx, schedule
