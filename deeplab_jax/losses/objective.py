"""The training objective of `config.loss`, as sums over a batch divided once.

    objective = losses.from_config(config)           # checked once
    sums = losses.batch_sums(objective, outputs, labels)   # one dict per map
    loss = losses.finalize(objective, sums)

loss = sum over the model's output maps (MSC: each scale's and the fused
one, the paper's four terms) of

    ce_weight * CE + dice_weight * Dice + lovasz_weight * Lovasz

CE: softmax cross-entropy over the valid pixels (`cross_entropy.py`), each
weighted by its class's weight (`class_weights`) and, with OHEM, only the
hardest; Dice and Lovasz-softmax: `region.py`. `normalize`:
  'batch'  CE = sum of w (-log p) / sum of w over the batch's kept pixels
           (PyTorch's CrossEntropyLoss(weight=...) 'mean'); Dice over the
           whole batch at once; Lovasz per image, averaged.
  'image'  each image's own weighted mean, averaged over the images (Caffe's
           SoftmaxWithLoss at batch 1 x iter_size); Dice, Lovasz per image.
  'sum'    CE undivided (FCN's `normalize: false`); Dice, Lovasz per image.
Void pixels (`ignore_label`) never count in any term.

Everything `batch_sums` returns adds up over images, so the sums of K
micro-batches are the whole batch's: `finalize` of them is the whole batch's
loss, and its gradient is the micro-batches' gradients of
<d finalize / d sums, sums_k> added up (`train_step.py`). Where d finalize /
d sums depends only on the labels (no OHEM with 'batch', no whole-batch Dice)
it is known before the network runs (`label_sums`); else one forward pass
over the micro-batches computes the sums first (`needs_statistics_pass`).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from deeplab_jax.errors import UserError
from deeplab_jax.losses import cross_entropy
from deeplab_jax.losses import labels as labels_lib
from deeplab_jax.losses import region
from deeplab_jax.models.resize import resize_bilinear

NORMALIZE = ('batch', 'image', 'sum')
CLASS_BALANCE = ('', 'inverse', 'inverse_sqrt', 'median_frequency')


@dataclasses.dataclass(frozen=True)
class Objective:
  """`config.loss` checked, with the class weights resolved (see module doc)."""
  normalize: str = 'batch'
  ignore_label: int = 255
  upsample_logits: bool = False
  align_corners: bool = False
  class_weights: tuple[float, ...] | None = None
  ohem: tuple[float, int] | None = None  # (threshold, min_kept per image).
  ce_weight: float = 1.0
  dice_weight: float = 0.0
  lovasz_weight: float = 0.0

  @property
  def needs_statistics_pass(self) -> bool:
    """Whether accumulating micro-batches needs the batch's sums first."""
    return self.normalize == 'batch' and (self.ohem is not None or self.dice_weight > 0)


def from_config(config, class_weights=None) -> Objective:
  """The Objective of `config.loss` (UserError naming a field that cannot be).

  `class_weights`: the resolved weights where `loss.class_balance` asks for
  them (`class_weights.resolve`, which reads the training split); else
  `loss.class_weights` (given, one per class) or none.
  """
  loss = config.loss
  normalize = loss.get('normalize', 'batch')
  if normalize not in NORMALIZE:
    raise UserError(f'loss.normalize={normalize!r} is not one of {NORMALIZE}')
  balance = loss.get('class_balance', '')
  given = tuple(loss.get('class_weights', ()))
  if balance not in CLASS_BALANCE:
    raise UserError(f'loss.class_balance={balance!r} is not one of {CLASS_BALANCE}')
  if balance and given:
    raise UserError('give loss.class_weights or loss.class_balance, not both')
  if balance and class_weights is None:
    raise UserError(f'loss.class_balance={balance!r} needs the weights computed from the '
                    'training split (losses.class_weights.resolve; train.py does this)')
  weights = tuple(float(w) for w in (class_weights if balance else given)) or None
  num_classes = config.dataset.num_classes
  if weights is not None and (len(weights) != num_classes or min(weights) < 0):
    raise UserError(f'loss.class_weights has {len(weights)} weights {weights}; give '
                    f'{num_classes} (one per class, index order), each >= 0')
  ohem = None
  if loss.get('ohem', False):
    threshold, min_kept = float(loss.ohem_threshold), loss.ohem_min_kept
    if not 0 < threshold <= 1 or int(min_kept) != min_kept or min_kept < 0:
      raise UserError(f'loss.ohem_threshold={threshold} must be in (0, 1] and '
                      f'loss.ohem_min_kept={min_kept} an integer >= 0')
    ohem = (threshold, int(min_kept))
  terms = {name: float(loss.get(name, default)) for name, default in
           (('ce_weight', 1.0), ('dice_weight', 0.0), ('lovasz_weight', 0.0))}
  if min(terms.values()) < 0 or not any(terms.values()):
    raise UserError(f'loss term weights {terms}: each must be >= 0, one of them > 0')
  return Objective(normalize=normalize, ignore_label=int(config.dataset.ignore_label),
                   upsample_logits=bool(loss.upsample_logits),
                   align_corners=bool(config.model.align_corners),
                   class_weights=weights, ohem=ohem, **terms)


def map_sums(objective, logits_BxhxwxC, labels_BxHxW):
  """The sums (see module doc) of one output map against full-size labels:
  the logits upsampled to the labels, or the labels shrunk to the map."""
  o = objective
  logits = logits_BxhxwxC
  if o.upsample_logits:
    logits = resize_bilinear(logits.astype(jnp.float32), labels_BxHxW.shape[1:3],
                             o.align_corners)
  labels = labels_lib.loss_labels(labels_BxHxW, logits_BxhxwxC.shape, o.upsample_logits,
                                  o.align_corners)
  sums = cross_entropy.cross_entropy_sums(logits, labels, o.normalize, o.ignore_label,
                                          o.class_weights, o.ohem)
  sums['images'] = jnp.asarray(labels.shape[0], jnp.float32)
  if o.dice_weight:
    sums.update(region.dice_sums(logits, labels, o.normalize, o.ignore_label))
  if o.lovasz_weight:
    sums.update(region.lovasz_sums(logits, labels, o.ignore_label))
  return sums


def batch_sums(objective, outputs, labels_BxHxW):
  """`map_sums` of each output map (a list; one map or MSC's several)."""
  outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
  return [map_sums(objective, out, labels_BxHxW) for out in outputs]


def label_sums(objective, map_shapes, labels_BxHxW):
  """The sums `finalize`'s gradient needs, from the labels alone (zeros for
  the terms that need the network): valid where not `needs_statistics_pass`.
  `map_shapes`: the output maps' shapes (B x h x w x C each)."""
  o = objective
  result = []
  for shape in map_shapes:
    labels = labels_lib.loss_labels(labels_BxHxW, shape, o.upsample_logits, o.align_corners)
    valid = labels != o.ignore_label
    zero = jnp.zeros((), jnp.float32)
    sums = {'ce': zero, 'valid': valid.sum().astype(jnp.float32),
            'ce_weight': cross_entropy.pixel_weights(labels, valid, o.class_weights).sum(),
            'images': jnp.asarray(labels.shape[0], jnp.float32)}
    if o.dice_weight:
      sums['dice'] = zero
    if o.lovasz_weight:
      sums['lovasz'] = zero
    result.append(sums)
  return result


def _safe_divide(a, b):
  return jnp.where(b > 0, a / jnp.where(b > 0, b, 1.0), 0.0)


def finalize(objective, sums_list):
  """The loss from the batch's sums (one dict per output map, summed)."""
  o = objective
  total = jnp.zeros((), jnp.float32)
  for s in sums_list:
    images = s['images']
    if o.ce_weight:
      ce = {'batch': lambda: _safe_divide(s['ce'], s['ce_weight']),
            'image': lambda: _safe_divide(s['ce'], images),
            'sum': lambda: s['ce']}[o.normalize]()
      total = total + o.ce_weight * ce
    if o.dice_weight:
      dice = (region.dice_from_terms(s['dice_i'], s['dice_p'], s['dice_t'])
              if o.normalize == 'batch' else _safe_divide(s['dice'], images))
      total = total + o.dice_weight * dice
    if o.lovasz_weight:
      total = total + o.lovasz_weight * _safe_divide(s['lovasz'], images)
  return total


def add_sums(a, b):
  """Elementwise sum of two `batch_sums` results (micro-batch accumulation)."""
  return jax.tree_util.tree_map(jnp.add, a, b)


def loss_and_valid(objective, outputs, labels_BxHxW):
  """(loss, valid pixels of the first map) of a batch: `finalize(batch_sums)`."""
  sums = batch_sums(objective, outputs, labels_BxHxW)
  return finalize(objective, sums), sums[0]['valid']
