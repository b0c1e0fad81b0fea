"""The labels a loss compares with each output map: shrunk, or cropped as Caffe did."""

from __future__ import annotations

from deeplab_jax.errors import UserError
from deeplab_jax.models.resize import resize_nearest_labels



def loss_labels(labels_BxHxW, logits_shape, upsample_logits, align_corners=False):
  """The labels a loss compares with a map of `logits_shape`:
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
