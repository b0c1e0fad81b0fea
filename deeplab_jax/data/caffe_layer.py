"""DeepLab's Caffe data layer in TF ops: OpenCV's resizing and the crop it feeds.

`input.resize='caffe'` (the VOC configs) trains on these pixels;
`input_pipeline` draws the augmentation and calls `apply_augmentation`.
Every function works eagerly and inside tf.data.

Caffe's data layer, as read in DeepLab v2's source (deeplab-public-ver2,
src/caffe/data_transformer.cpp, `TransformImgAndSeg`; the image layer
src/caffe/layers/image_seg_data_layer.cpp, `load_batch`, feeds it OpenCV
uint8 images read unresized and the label PNG, and passes its `ignore_label`):
  - mirror drawn first, `param_.mirror() && Rand(2)` (l. 503);
  - the scale drawn next, uniformly from `scale_factors` (`Rand(n)`, l.
    532-534), and applied only when it is not 1: `img_height *= scale` on an
    int, so the scaled size is float(h) * scale TRUNCATED (l. 537-538), the
    image resized by `cv::resize(..., INTER_LINEAR)` (OpenCV's half-pixel
    bilinear, fixed-point on uint8, l. 539) and the label by INTER_NEAREST
    (source pixel floor(i * h / h'), l. 541);
  - the image converted to double (l. 557), then padded bottom/right up to
    the crop with the mean values and the label with `ignore_label`
    (`copyMakeBorder`, l. 561-569);
  - the crop's top-left drawn uniformly over the padded image,
    `h_off = Rand(height - crop + 1)` then `w_off` (l. 583-585; the TEST
    phase takes the middle, l. 588);
  - the crop copied out with the mirror applied to it (so after the crop,
    l. 616-619 and 637-640) and the mean subtracted in floating point (l.
    628-629): padded pixels are exactly 0 at the network's input.
`Rand(n)` is the layer's RNG modulo n (l. 742-747). Here every draw is
stateless (same distributions, not Caffe's random numbers).
DeepLab v1's layer (corenel/deeplab-public, src/caffe/data_transformer.cpp,
`TransformImgAndSeg`, l. 309-458) has no scaling: mirror drawn (l. 344),
converted to double and padded with the mean (l. 374-393), cropped (l.
396-411), mirrored and the mean subtracted (l. 433-449), i.e. v2's layer at
scale 1; the v1 configs train at scale 1 with `input.resize='caffe'`.
"""

from __future__ import annotations

import tensorflow as tf

# OpenCV's resizing, in TF ops, on any rows / columns of the resized image
# (so only the crop is computed). OpenCV's imgproc resize.cpp (`resize`,
# `resizeNN`; Caffe linked OpenCV 2.4/3.x, tested here against cv2 5.0):
#   INTER_NEAREST: output i takes source min(floor(i * (1 / (h' / h))), h - 1),
#     in double (not half-pixel);
#   INTER_LINEAR: output i samples f = float((i + 0.5) * (1 / (h' / h)) - 0.5)
#     with weights 1 - frac(f), frac(f) on rows floor(f), floor(f) + 1 clamped
#     to the image; on uint8 the weights are fixed point (x 2048, rounded),
#     the horizontal pass sums to int, the vertical one is
#     ((b0 * (r0 >> 4)) >> 16) + ((b1 * (r1 >> 4)) >> 16) + 2) >> 2.
# Equal to cv2.resize bit for bit (tests/caffe_data_layer_test.py).

_COEF_SCALE = 2048  # OpenCV's INTER_RESIZE_COEF_SCALE (11 bits).


def _inverse_scale(source, size):
  """OpenCV's 1 / (dst / src), in float64."""
  return 1.0 / (tf.cast(size, tf.float64) / tf.cast(source, tf.float64))


def _nearest_index(out_index, source, size):
  """INTER_NEAREST's source pixel for output pixels `out_index` (int32)."""
  index = tf.floor(tf.cast(out_index, tf.float64) * _inverse_scale(source, size))
  return tf.minimum(tf.cast(index, tf.int32), source - 1)


def _linear_taps(out_index, source, size, clamp_weight):
  """INTER_LINEAR's (first source index, fixed-point weights w0, w1) per output.

  `clamp_weight`: the horizontal pass's rule (an index before 0 or from the
  last pixel on reads that pixel alone); the vertical pass only clamps rows.
  """
  f = tf.cast((tf.cast(out_index, tf.float64) + 0.5) * _inverse_scale(source, size)
              - 0.5, tf.float32)
  first = tf.floor(f)
  frac = f - first
  first = tf.cast(first, tf.int32)
  if clamp_weight:
    outside = tf.logical_or(first < 0, first >= source - 1)
    frac = tf.where(outside, 0.0, frac)
    first = tf.clip_by_value(first, 0, source - 1)
  w0 = tf.cast(tf.round((1.0 - frac) * _COEF_SCALE), tf.int32)  # cvRound: half to even.
  w1 = tf.cast(tf.round(frac * _COEF_SCALE), tf.int32)
  return first, w0, w1


def cv_resize_linear(image, size, rows=None, cols=None):
  """`cv2.resize(image, (w', h'), interpolation=cv2.INTER_LINEAR)` on uint8
  values (HxWxC, any dtype holding 0-255 integers), bit for bit, as int32.

  `size`: (h', w'). `rows` / `cols`: the output rows / columns to compute
  (int32 vectors, all in [0, h') / [0, w')); default all of them.
  """
  image = tf.cast(image, tf.int32)
  height, width = tf.shape(image)[0], tf.shape(image)[1]
  rows = tf.range(size[0]) if rows is None else rows
  cols = tf.range(size[1]) if cols is None else cols
  x0, a0, a1 = _linear_taps(cols, width, size[1], clamp_weight=True)
  x1 = tf.minimum(x0 + 1, width - 1)
  y0, b0, b1 = _linear_taps(rows, height, size[0], clamp_weight=False)

  def horizontal(y):  # Rows y (clamped) resized along x: int32 x 2048.
    r = tf.gather(image, tf.clip_by_value(y, 0, height - 1))
    return (tf.gather(r, x0, axis=1) * a0[None, :, None] +
            tf.gather(r, x1, axis=1) * a1[None, :, None])

  shift = tf.bitwise.right_shift
  r0, r1 = horizontal(y0), horizontal(y0 + 1)
  out = (shift(b0[:, None, None] * shift(r0, 4), 16) +
         shift(b1[:, None, None] * shift(r1, 4), 16) + 2)
  return shift(out, 2)


def cv_resize_nearest(label, size, rows=None, cols=None):
  """`cv2.resize(label, (w', h'), interpolation=cv2.INTER_NEAREST)` (HxWxC),
  exactly; `rows` / `cols` as in `cv_resize_linear`."""
  height, width = tf.shape(label)[0], tf.shape(label)[1]
  rows = tf.range(size[0]) if rows is None else rows
  cols = tf.range(size[1]) if cols is None else cols
  label = tf.gather(label, _nearest_index(rows, height, size[0]))
  return tf.gather(label, _nearest_index(cols, width, size[1]), axis=1)


def apply_augmentation(example, draw, crop, mean):
  """`input_pipeline.apply_augmentation` as Caffe's data layer does it (`input.resize='caffe'`).

  Resize the image with OpenCV's INTER_LINEAR (uint8 in, uint8 values out)
  and the label with INTER_NEAREST to `draw['size']` (truncated, see
  `input_pipeline.draw_augmentation`), pad bottom/right to the crop (label with 255), take
  the crop at (top, left), mirror it if `flip` (data_transformer.cpp l.
  531-645; module docstring). Only the crop's pixels are computed. Returns
  float32 'image' (padding = `mean`), int32 'label' (crop x crop x 1) and
  bool 'valid' (crop x crop, False on padding: Caffe's padding is exactly 0
  after the mean is subtracted, which uint8 cannot carry; the model zeroes
  these pixels).
  """
  image, label = example['image'], example['label']
  size = tf.cast(draw['size'], tf.int32)
  rows = draw['top'] + tf.range(crop)
  cols = draw['left'] + tf.range(crop)
  row_in, col_in = rows < size[0], cols < size[1]
  # Clamp the padding's rows / columns onto the image; masked out below.
  rows_c = tf.minimum(rows, size[0] - 1)
  cols_c = tf.minimum(cols, size[1] - 1)
  if image.dtype.is_floating:
    image = tf.round(tf.clip_by_value(image, 0.0, 255.0))
  scaled = tf.cast(cv_resize_linear(image, size, rows_c, cols_c), tf.float32)
  scaled_label = cv_resize_nearest(label, size, rows_c, cols_c)
  # (Caffe skips resizing at scale 1, l. 536: at scale 1 these are the pixels.)
  valid = tf.logical_and(row_in[:, None], col_in[None, :])
  scaled = tf.where(valid[..., None], scaled, tf.constant(mean, tf.float32))
  scaled_label = tf.where(valid[..., None], tf.cast(scaled_label, tf.int32), 255)
  scaled, scaled_label, valid = tf.cond(
      draw['flip'],
      lambda: (scaled[:, ::-1], scaled_label[:, ::-1], valid[:, ::-1]),
      lambda: (scaled, scaled_label, valid))
  return {**example, 'image': scaled, 'label': scaled_label, 'valid': valid}
