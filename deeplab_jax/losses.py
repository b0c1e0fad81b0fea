"""Per-pixel softmax cross-entropy with the void label ignored."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from deeplab_jax.errors import UserError
from deeplab_jax.models.resize import resize_bilinear, resize_nearest_labels


NORMALIZE = ('batch', 'image', 'sum')


def softmax_cross_entropy(logits_BxHxWxC, labels_BxHxW, ignore_label=255,
                          normalize='batch'):
  """Mean cross-entropy over the pixels whose label is not `ignore_label`.

  normalize='batch': the mean over the whole batch's valid pixels; 'image':
  each image's mean over its own valid pixels, averaged over the batch's
  images (Caffe's SoftmaxWithLoss at batch 1 with iter_size: an image
  scaled down to a fraction of the crop weighs as much as a full one; an
  image with no valid pixel adds 0); 'sum': the sum over the batch's valid
  pixels, not divided (SoftmaxWithLoss with `normalize: false`, FCN's
  voc-fcn*/net.py, whose learning rates 1e-10 .. 1e-14 are for this loss).
  Returns (loss, number of valid pixels); the loss is 0 when none is valid.
  """
  logits = logits_BxHxWxC.astype(jnp.float32)
  valid = labels_BxHxW != ignore_label
  safe_labels = jnp.where(valid, labels_BxHxW, 0)
  log_probs = jax.nn.log_softmax(logits, axis=-1)
  nll = -jnp.take_along_axis(log_probs, safe_labels[..., None], axis=-1)[..., 0]
  count = valid.sum()
  nll = jnp.where(valid, nll, 0.0)
  if normalize == 'batch':
    return nll.sum() / jnp.maximum(count, 1), count
  if normalize == 'image':
    per_image_B = nll.sum((1, 2)) / jnp.maximum(valid.sum((1, 2)), 1)
    return per_image_B.mean(), count
  if normalize == 'sum':
    return nll.sum(), count
  raise ValueError(f'loss normalize {normalize!r} is not one of {NORMALIZE}')


def segmentation_loss(logits_BxhxwxC, labels_BxHxW, upsample_logits,
                      align_corners=False, ignore_label=255, normalize='batch'):
  """Loss between output-stride-8 logits and full-size labels.

  `upsample_logits=True` resizes the logits bilinearly to the labels' size;
  False shrinks the labels by nearest to the logits' size (the paper's way).
  `normalize`: see `softmax_cross_entropy`.
  """
  logits = logits_BxhxwxC
  if upsample_logits:
    logits = resize_bilinear(logits.astype(jnp.float32), labels_BxHxW.shape[1:3],
                             align_corners)
  labels = loss_labels(labels_BxHxW, logits_BxhxwxC.shape, upsample_logits, align_corners)
  return softmax_cross_entropy(logits, labels, ignore_label, normalize)


def loss_labels(labels_BxHxW, logits_shape, upsample_logits, align_corners=False):
  """The labels `segmentation_loss` compares with a map of `logits_shape`:
  as they are (logits upsampled), or shrunk by nearest to the map's size."""
  if upsample_logits:
    return labels_BxHxW
  return resize_nearest_labels(labels_BxHxW, logits_shape[1:3], align_corners)


def drop_label_border(labels_BxHxW, offset):
  """Labels without their first `offset` rows and columns.

  Caffe's label_shrink Interp with `pad_beg: -offset` crops them before it
  shrinks by 8 with corners aligned, so score cell j is compared with pixel
  offset + 8 j: v1 DeepLab's `vgg128_noup/train.prototxt` sets pad_beg -1
  (306 -> 305 -> 39 cells on pixels 1, 9, ..., 305), LargeFOV's 0.
  """
  if offset == 0:
    return labels_BxHxW
  return labels_BxHxW[:, offset:, offset:]


def check_label_offset(loss_config, align_corners) -> int:
  """`loss.label_offset` as an int; a UserError where it cannot apply."""
  offset = loss_config.get('label_offset', 0)
  if int(offset) != offset or offset < 0:
    raise UserError(f'loss.label_offset={offset!r} must be an integer >= 0')
  if offset and (loss_config.upsample_logits or not align_corners):
    raise UserError('loss.label_offset (Caffe\'s label_shrink pad_beg) needs labels '
                    'shrunk on Caffe\'s grid: --config.loss.upsample_logits=False '
                    'and --config.model.align_corners=True')
  return int(offset)


def total_loss(outputs, labels_BxHxW, upsample_logits, align_corners=False,
               ignore_label=255, normalize='batch'):
  """`segmentation_loss` of one logits map, or the SUM over a list of maps.

  Multi-scale (MSC) models return [each scale's map..., fused map] in
  training; the paper sums their four losses, each against the labels resized
  to its own map. Returns (loss, valid pixels of the first map).
  """
  if not isinstance(outputs, (list, tuple)):
    outputs = [outputs]
  terms = [segmentation_loss(o, labels_BxHxW, upsample_logits, align_corners,
                             ignore_label, normalize) for o in outputs]
  return sum(loss for loss, _ in terms), terms[0][1]
