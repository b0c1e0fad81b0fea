"""Segmentation losses: cross-entropy (class weights, OHEM), Dice, Lovasz.

One job per module:
  labels.py         the labels each output map is compared with (shrunk to
                    the map, Caffe's label_shrink border)
  cross_entropy.py  softmax cross-entropy sums: void ignored, class weights, OHEM
  region.py         soft Dice and Lovasz-softmax sums
  objective.py      `config.loss` -> Objective; the sums of a batch and the
                    loss from them (`finalize`), exact under accumulation
  class_weights.py  weights from the training split's class frequencies
                    (inverse, inverse square root, median frequency)

    objective = losses.from_config(config)
    loss, valid = losses.loss_and_valid(objective, model_outputs, labels)
"""

from deeplab_jax.losses.cross_entropy import softmax_cross_entropy
from deeplab_jax.losses.labels import check_label_offset, drop_label_border, loss_labels
from deeplab_jax.losses.objective import (CLASS_BALANCE, NORMALIZE, Objective, add_sums,
                                          batch_sums, finalize, from_config, label_sums,
                                          loss_and_valid, map_sums)


def segmentation_loss(logits_BxhxwxC, labels_BxHxW, upsample_logits,
                      align_corners=False, ignore_label=255, normalize='batch'):
  """(cross-entropy, valid pixels) of one map against full-size labels: the
  logits upsampled bilinearly to the labels, or the labels shrunk by nearest
  to the logits (`upsample_logits=False`, the paper's way)."""
  return total_loss(logits_BxhxwxC, labels_BxHxW, upsample_logits, align_corners,
                    ignore_label, normalize)


def total_loss(outputs, labels_BxHxW, upsample_logits, align_corners=False,
               ignore_label=255, normalize='batch'):
  """The plain cross-entropy of one map or the SUM over a list of maps (MSC:
  each scale's and the fused map, each against the labels resized to it).
  Returns (loss, valid pixels of the first map)."""
  objective = Objective(normalize=normalize, ignore_label=ignore_label,
                        upsample_logits=upsample_logits, align_corners=align_corners)
  loss, valid = loss_and_valid(objective, outputs, labels_BxHxW)
  return loss, valid.astype('int32')


__all__ = ['CLASS_BALANCE', 'NORMALIZE', 'Objective', 'add_sums', 'batch_sums',
           'check_label_offset', 'drop_label_border', 'finalize', 'from_config',
           'label_sums', 'loss_and_valid', 'loss_labels', 'map_sums',
           'segmentation_loss', 'softmax_cross_entropy', 'total_loss']
