"""Per-pixel softmax cross-entropy: void ignored, class weights, OHEM.

Every function here returns SUMS over a batch (per-pixel or per-image terms
added up), never means: `objective.py` divides once, at the end, by the sums
of the whole batch, so K micro-batches give the whole batch's loss
(`train_step.py`'s gradient accumulation).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def pixel_nll(logits_BxHxWxC, labels_BxHxW, ignore_label=255):
  """(-log p(label) per pixel, valid mask, p(label) per pixel); 0 where void."""
  logits = logits_BxHxWxC.astype(jnp.float32)
  valid = labels_BxHxW != ignore_label
  safe = jnp.where(valid, labels_BxHxW, 0)
  log_probs = jax.nn.log_softmax(logits, axis=-1)
  log_p = jnp.take_along_axis(log_probs, safe[..., None], axis=-1)[..., 0]
  return jnp.where(valid, -log_p, 0.0), valid, jnp.exp(log_p)


def pixel_weights(labels_BxHxW, valid_BxHxW, class_weights=None):
  """Each valid pixel's weight: its class's (`class_weights`, one per class)
  or 1; 0 on void."""
  if class_weights is None:
    return valid_BxHxW.astype(jnp.float32)
  table = jnp.asarray(class_weights, jnp.float32)
  return jnp.where(valid_BxHxW, table[jnp.where(valid_BxHxW, labels_BxHxW, 0)], 0.0)


def ohem_keep(p_true_BxHxW, valid_BxHxW, threshold, min_kept):
  """Online hard example mining, per image: the valid pixels whose
  probability of their true class is below `threshold`, and at least the
  `min_kept` lowest of each image (all of them where it has fewer).

  The rule of mmsegmentation's OHEMPixelSampler (thresh 0.7, min_kept
  100,000 in its configs), with two differences: it is applied per image
  (mmseg: once over the batch, min_kept x batch size), so a micro-batch
  selects what the whole batch does; and the `min_kept` hardest are kept by
  rank, ties broken by position (mmseg raises the threshold to the
  min_kept-th probability and keeps what is strictly below it). The
  selection is not differentiated (as there).
  """
  p = jax.lax.stop_gradient(p_true_BxHxW)
  batch = p.shape[0]
  flat = jnp.where(valid_BxHxW, p, jnp.inf).reshape(batch, -1)
  # rank[i] = position of pixel i in ascending order (stable: ties by index).
  order = jnp.argsort(flat, axis=-1, stable=True)
  rank = jnp.argsort(order, axis=-1, stable=True).reshape(p.shape)
  return valid_BxHxW & ((p < threshold) | (rank < min_kept))


def cross_entropy_sums(logits_BxHxWxC, labels_BxHxW, normalize, ignore_label=255,
                       class_weights=None, ohem=None):
  """The cross-entropy's sums over a batch (dict of float32 scalars).

  'ce': 'batch' / 'sum': sum of weight x (-log p) over the kept pixels;
  'image': the sum over images of each image's weighted mean over its own
  kept pixels (0 for an image with none). 'ce_weight': sum of the kept
  pixels' weights ('batch''s divisor). 'valid': valid (non-void) pixels.
  `ohem`: None, or (threshold, min_kept) for `ohem_keep`.
  """
  nll, valid, p_true = pixel_nll(logits_BxHxWxC, labels_BxHxW, ignore_label)
  kept = valid if ohem is None else ohem_keep(p_true, valid, *ohem)
  weight = jax.lax.stop_gradient(pixel_weights(labels_BxHxW, kept, class_weights))
  weighted = nll * weight
  if normalize == 'image':
    per_image = weighted.sum((1, 2)) / jnp.maximum(weight.sum((1, 2)), 1e-12)
    ce = jnp.where(weight.sum((1, 2)) > 0, per_image, 0.0).sum()
  else:
    ce = weighted.sum()
  return {'ce': ce, 'ce_weight': weight.sum(),
          'valid': valid.sum().astype(jnp.float32)}


def softmax_cross_entropy(logits_BxHxWxC, labels_BxHxW, ignore_label=255,
                          normalize='batch', class_weights=None, ohem=None):
  """(loss, valid pixels) of one map at the labels' size, normalised as
  `objective.py` describes ('batch', 'image' or 'sum'); 0 when none is valid."""
  if normalize not in ('batch', 'image', 'sum'):
    raise ValueError(f'loss normalize {normalize!r} is not one of batch, image, sum')
  sums = cross_entropy_sums(logits_BxHxWxC, labels_BxHxW, normalize, ignore_label,
                            class_weights, ohem)
  divisor = {'batch': sums['ce_weight'], 'image': float(labels_BxHxW.shape[0]),
             'sum': 1.0}[normalize]
  loss = jnp.where(divisor > 0, sums['ce'] / jnp.maximum(divisor, 1e-12), 0.0)
  return loss, sums['valid'].astype(jnp.int32)
