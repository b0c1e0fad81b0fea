"""Region losses for binary and small-object tasks: soft Dice, Lovasz-softmax.

Both compare softmax probabilities with one-hot labels over the valid
(non-void) pixels, class by class, and average over the classes PRESENT in
the ground truth (a class an image lacks has no overlap to score; its false
positives still lower the present classes' scores). As in `cross_entropy.py`
they return sums over the batch, which `objective.py` divides once.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

DICE_EPS = 1.0  # Added to numerator and denominator (the smoothed "soft Dice").


def _probs_and_onehot(logits_BxHxWxC, labels_BxHxW, ignore_label):
  num_classes = logits_BxHxWxC.shape[-1]
  valid = labels_BxHxW != ignore_label
  probs = jax.nn.softmax(logits_BxHxWxC.astype(jnp.float32), axis=-1)
  probs = probs * valid[..., None]
  onehot = jax.nn.one_hot(jnp.where(valid, labels_BxHxW, 0), num_classes) * valid[..., None]
  return probs, onehot, valid


def dice_terms(logits_BxHxWxC, labels_BxHxW, ignore_label=255):
  """Per image and class: (intersection sum p y, sum p, sum y), each B x C."""
  probs, onehot, _ = _probs_and_onehot(logits_BxHxWxC, labels_BxHxW, ignore_label)
  return ((probs * onehot).sum((1, 2)), probs.sum((1, 2)), onehot.sum((1, 2)))


def dice_from_terms(intersection_xC, pred_xC, true_xC):
  """1 - mean over present classes of (2 I + eps) / (P + T + eps); 0 if none
  is present. Works on the last axis (per image: B x C; whole batch: C)."""
  score = (2 * intersection_xC + DICE_EPS) / (pred_xC + true_xC + DICE_EPS)
  present = true_xC > 0
  count = present.sum(-1)
  mean = jnp.where(present, score, 0.0).sum(-1) / jnp.maximum(count, 1)
  return jnp.where(count > 0, 1.0 - mean, 0.0)


def dice_sums(logits_BxHxWxC, labels_BxHxW, normalize, ignore_label=255):
  """'image' (and 'sum'): {'dice': sum over images of each image's Dice
  loss}; 'batch': the batch's per-class sums {'dice_i', 'dice_p', 'dice_t'}
  (C each), one Dice over the whole batch (`dice_from_terms`)."""
  inter, pred, true = dice_terms(logits_BxHxWxC, labels_BxHxW, ignore_label)
  if normalize == 'batch':
    return {'dice_i': inter.sum(0), 'dice_p': pred.sum(0), 'dice_t': true.sum(0)}
  return {'dice': dice_from_terms(inter, pred, true).sum()}


def lovasz_grad(gt_sorted_N):
  """The Jaccard loss's increments along errors sorted in decreasing order
  (Berman et al. 2018, Algorithm 1): g_i = dJ({1..i}) - dJ({1..i-1}), with
  dJ(M) = |M| / |G u M| for the ground-truth set G."""
  gts = gt_sorted_N.sum()
  intersection = gts - jnp.cumsum(gt_sorted_N)
  union = gts + jnp.cumsum(1.0 - gt_sorted_N)
  jaccard = 1.0 - intersection / jnp.maximum(union, 1e-12)
  return jnp.concatenate([jaccard[:1], jaccard[1:] - jaccard[:-1]])


def lovasz_softmax_image(probs_NxC, onehot_NxC, valid_N):
  """Lovasz-softmax of one image's pixels: the mean over present classes of
  the Lovasz extension of the Jaccard loss at the errors |y - p_c|."""
  def per_class(p_N, y_N):
    errors = jnp.where(valid_N, jnp.abs(y_N - p_N), -1.0)  # Void sorts last.
    order = jnp.argsort(-jax.lax.stop_gradient(errors))
    errors_sorted = jnp.maximum(errors[order], 0.0)
    return jnp.dot(errors_sorted, jax.lax.stop_gradient(lovasz_grad(y_N[order])))

  losses_C = jax.vmap(per_class, in_axes=(1, 1))(probs_NxC, onehot_NxC)
  present = onehot_NxC.sum(0) > 0
  count = present.sum()
  return jnp.where(count > 0, jnp.where(present, losses_C, 0.0).sum() / jnp.maximum(count, 1),
                   0.0)


def lovasz_sums(logits_BxHxWxC, labels_BxHxW, ignore_label=255):
  """{'lovasz': sum over images of each image's Lovasz-softmax} (always per
  image, the original's `per_image=True`: a whole-batch Lovasz has no sum a
  micro-batch can contribute to)."""
  probs, onehot, valid = _probs_and_onehot(logits_BxHxWxC, labels_BxHxW, ignore_label)
  batch, num_classes = probs.shape[0], probs.shape[-1]
  per_image = jax.vmap(lovasz_softmax_image)(probs.reshape(batch, -1, num_classes),
                                             onehot.reshape(batch, -1, num_classes),
                                             valid.reshape(batch, -1))
  return {'lovasz': per_image.sum()}
