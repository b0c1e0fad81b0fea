"""SGD with momentum, poly (v2) or step (v1) learning-rate decay and DeepLab's
per-group rates.

Parameter groups (labels): `backbone`, `backbone_bias`, `classifier_kernel`,
`classifier_bias`; the classifier is the modules the model's parts declare
(`models.classifier_paths(config)`, e.g. 'head/branch0_classifier': the
layers the paper trains at 10x / 20x the base rate, VGG's fc8, every ResNet
ASPP branch), passed in as `classifiers`, never guessed from names. `backbone_bias` is every other conv's bias, which Caffe's
prototxts train at 2x (`lr_mult: 1` weights, `lr_mult: 2` biases: VGG's
conv1_1 to fc7; ResNet's convs have none). BatchNorm's scale and offset
(modules named `bn`) stay `backbone`, or with frozen BatchNorm form a `frozen`
group that is never updated and holds no optimizer state. Weight decay
applies to conv kernels only (Caffe's `decay_mult: 0` on biases).

Per-layer rates (`optim.lr_mults`, Caffe's `blobs_lr` / `lr_mult` pairs): a
tuple of (pattern, kernel_mult, bias_mult) rows; the first row whose regex
`re.match`es a parameter's module path ('trunk/conv1_1', 'head/branch0_classifier',
'multilayer/pool3_ms': the path without 'params/' and the leaf) sets its
rate to base_lr x kernel_mult (leaf 'kernel', and BatchNorm's 'scale') or x
bias_mult (leaf 'bias'), replacing the group multipliers above; a 0 puts the
leaf in `frozen` (never updated, no optimizer state: Caffe's `blobs_lr: 0`,
where weight decay moves nothing either). Unmatched parameters keep their
group. v1's MSc fine-tuning stage (configs/voc_msc_largefov.py):

    lr_mults = (('trunk/', 0, 0), ('head/', 0, 0), ('multilayer/', 1, 2))

`lr_multipliers(params, optim_config, classifiers=...)` gives every leaf's
resulting multiplier.
"""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import optax

from deeplab_jax import models
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


def _mult_label(mult) -> str:
  """The group of a per-layer multiplier: 'frozen' for 0, else 'lr_x{mult}'."""
  return 'frozen' if mult == 0 else f'lr_x{float(mult):g}'


def _layer_rows(lr_mults):
  rows = []
  for row in tuple(lr_mults or ()):
    if len(row) != 3:
      raise UserError(f'optim.lr_mults rows are (pattern, kernel_mult, bias_mult), not {row!r}')
    pattern, kernel_mult, bias_mult = row
    try:
      compiled = re.compile(str(pattern))
    except re.error as e:
      raise UserError(f'optim.lr_mults pattern {pattern!r} is not a regex: {e}') from None
    if float(kernel_mult) < 0 or float(bias_mult) < 0:
      raise UserError(f'optim.lr_mults row {row!r}: multipliers must be >= 0')
    rows.append((compiled, float(kernel_mult), float(bias_mult)))
  return rows


def param_labels(params, frozen_batch_norm=False, lr_mults=(), *, classifiers):
  """A tree like `params` with each leaf's group name.

  `classifiers`: the classifier layers' module paths (models.classifier_paths).
  `lr_mults`: optim.lr_mults rows (see the module docstring); a matched leaf's
  group is 'lr_x{mult}' ('lr_x2') or 'frozen' for 0.
  """
  classifiers = tuple(classifiers)
  rows = _layer_rows(lr_mults)

  def label(path, _):
    names = [str(getattr(k, 'key', k)) for k in path]
    batch_norm = 'bn' in names[:-1]
    if frozen_batch_norm and batch_norm:
      return 'frozen'
    module = '/'.join(names[:-1])
    for pattern, kernel_mult, bias_mult in rows:
      if pattern.match(module):
        return _mult_label(bias_mult if names[-1] == 'bias' else kernel_mult)
    if models.is_classifier('/'.join(names), classifiers):
      return 'classifier_bias' if names[-1] == 'bias' else 'classifier_kernel'
    if names[-1] == 'bias' and not batch_norm:
      return 'backbone_bias'
    return 'backbone'
  return jax.tree_util.tree_map_with_path(label, params)


def _group_mults(optim_config) -> dict:
  """Group name -> learning-rate multiplier (no 'frozen': it never moves)."""
  mults = {'backbone': 1.0,
           'backbone_bias': optim_config.backbone_bias_lr_mult,
           'classifier_kernel': optim_config.classifier_kernel_lr_mult,
           'classifier_bias': optim_config.classifier_bias_lr_mult}
  for _, kernel_mult, bias_mult in _layer_rows(optim_config.get('lr_mults', ())):
    for mult in (kernel_mult, bias_mult):
      if mult != 0:
        mults[_mult_label(mult)] = mult
  return mults


def lr_multipliers(params, optim_config, frozen_batch_norm=False, *, classifiers):
  """A tree like `params` with each leaf's multiplier of the base rate (0: frozen)."""
  mults = _group_mults(optim_config)
  labels = param_labels(params, frozen_batch_norm, optim_config.get('lr_mults', ()),
                        classifiers=classifiers)
  return jax.tree_util.tree_map(lambda name: 0.0 if name == 'frozen' else float(mults[name]),
                                labels)


def _is_kernel(params):
  return jax.tree_util.tree_map_with_path(
      lambda path, _: str(getattr(path[-1], 'key', path[-1])) == 'kernel', params)


def create_optimizer(optim_config, num_steps, frozen_batch_norm=False, *, classifiers):
  """Returns (optax transformation, base learning-rate schedule).

  `classifiers`: the model's classifier module paths (models.classifier_paths).

  `frozen_batch_norm` (config.model.batch_norm == 'frozen') puts BatchNorm's
  scale and offset in the `frozen` group; `optim_config.lr_mults` (optional)
  sets per-layer rates (module docstring).
  """
  schedule = schedule_from_config(optim_config, num_steps)
  mults = _group_mults(optim_config)
  lr_mults = optim_config.get('lr_mults', ())
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
          groups, lambda p: param_labels(p, frozen_batch_norm, lr_mults,
                                         classifiers=classifiers)),
  )
  return tx, schedule


def from_config(config, model=None):
  """`create_optimizer` for `config`: its schedule, frozen BatchNorm and the
  classifier layers its model's parts declare (`model`: built if None)."""
  model = models.build(config) if model is None else model
  return create_optimizer(config.optim, config.num_train_steps,
                          config.model.batch_norm == 'frozen',
                          classifiers=model.classifier_paths())
