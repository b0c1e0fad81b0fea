"""Test-time inference modes: whole image or sliding windows, scales, flip.

`logits_at_image_size(apply_fn, images, options, pad_value)` turns a model's
output-stride-8 logits into float32 logits at the input's height and width
(the eval batch's padded size), by:

  mode 'whole'    one pass over the image; the stride-8 map is upsampled
                  bilinearly straight to the image size.
  mode 'sliding'  windows of `window` pixels at 0, stride, 2 * stride, ... on
                  each axis, the last one aligned to the image's end so every
                  pixel is covered; each window's map is upsampled to the window
                  size, and the overlapping windows' logits are summed and
                  divided by the number of windows covering each pixel. An
                  image (or scaled image) smaller than the window is padded at
                  the bottom / right with `pad_value` up to the window and the
                  padding cropped off afterwards, so the network always sees
                  window-sized inputs, as in training (crops padded with the
                  mean colour) and as the eval pipeline pads its images.
  scales          the image is resized by each scale (`resize_by_scale`: the
                  conventions of the model's own MSC), inferred as above, the
                  logits resized to the image size and averaged over scales.
  flip            the mirrored image goes through the same pipeline at each
                  scale (resized, then whole or its own windows: padding then
                  sits on the mirrored image's right); its logits at the
                  image size are mirrored back and averaged with the
                  unmirrored ones. A mirror-symmetric image thus gets
                  mirror-symmetric logits in every mode and convention.

Averaging is of logits, not probabilities: every fusion step is then linear,
like the bilinear upsampling it sits between (averaging before or after a
resize gives the same map, so where the upsampling happens does not change
the fusion), and the output stays logits that the argmax and the CRF's
softmax read unchanged.
(Averaging softmax probabilities instead, as some codebases do, changes labels
only where the passes disagree; `argmax` of mean logits is the argmax of the
geometric mean of the passes' probabilities.)

The test-time scales are separate from the model's own `input_scales` (v2's
MSC, max-fused inside the network), which still apply within every pass.
Everything here is static-shape: window positions come from the (static)
image size in Python, the windows of one pass run one after another through a
`lax.scan` (the network is traced and compiled once, and only one window of
the batch is in flight: Cityscapes' 1024x2048 with 513 windows at stride 342
is 3 x 6 = 18 windows, one batch-sized pass each), and the logits accumulate
in one float32 canvas per pass (a scale, or its mirror). Each pass costs a
trace of `apply_fn`: len(scales) x (2 if flip) copies of the network in the
program.
"""

from __future__ import annotations

import dataclasses
import numbers
from typing import Callable, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from deeplab_jax import sharding
from deeplab_jax import xla_flags
from deeplab_jax.errors import UserError
from deeplab_jax.models.resize import (resize_bilinear, resize_by_scale, scaled_size,
                                       upsample_scores)

MODES = ('whole', 'sliding')


@dataclasses.dataclass(frozen=True)
class InferenceOptions:
  """How eval/predict turn images into logits (see the module docstring).

  window, stride: (height, width) in pixels, used in mode 'sliding' only.
  scales: test-time input scales, averaged. flip: add the mirrored input.
  align_corners: the bilinear convention of every resize (the model's).
  score_offset: pixels cropped at the top / left of the x8 corner-aligned
    zoom of the score map (v1 DeepLab's test prototxt: 7); 0 = the usual
    resize to the image size (`resize.upsample_scores`).
  """
  mode: str = 'whole'
  window: tuple[int, int] = (513, 513)
  stride: tuple[int, int] = (342, 342)
  scales: tuple[float, ...] = (1.0,)
  flip: bool = False
  align_corners: bool = False
  score_offset: int = 0


def _pair(value, name):
  """(h, w) positive ints from an int (a square) or a pair; UserError otherwise."""
  if isinstance(value, numbers.Integral) and not isinstance(value, bool):
    value = (value, value)
  try:
    pair = tuple(value)
  except TypeError:
    pair = ()
  if (len(pair) != 2 or any(isinstance(v, bool) or not isinstance(v, numbers.Integral)
                            for v in pair)):
    raise UserError(f'eval.{name}={value!r} must be a (height, width) pair of '
                    f'pixels or one int for a square, e.g. --config.eval.{name}=513,513')
  if min(pair) <= 0:
    raise UserError(f'eval.{name}={pair} must be positive, e.g. '
                    f'--config.eval.{name}=513,513')
  return int(pair[0]), int(pair[1])


def make_options(mode='whole', window=(513, 513), stride=(342, 342), scales=(1.0,),
                 flip=False, align_corners=False, score_offset=0) -> InferenceOptions:
  """Validated `InferenceOptions`; errors name the `config.eval` field to fix."""
  if mode not in MODES:
    raise UserError(f'eval.mode={mode!r} is not one of {list(MODES)}; set '
                    "--config.eval.mode=whole (one pass) or =sliding (windows)")
  window = _pair(window, 'window')
  stride = _pair(stride, 'stride')
  if stride[0] > window[0] or stride[1] > window[1]:
    raise UserError(f'eval.stride={stride} is larger than eval.window={window}: '
                    'pixels between windows would get no logits; set a stride '
                    f'<= the window, e.g. --config.eval.stride='
                    f'{-(-window[0] * 2 // 3)},{-(-window[1] * 2 // 3)}')
  if isinstance(scales, numbers.Real):
    scales = (scales,)
  try:
    scales = tuple(float(s) for s in scales)
  except (TypeError, ValueError):
    scales = ()
  if not scales or any(not np.isfinite(s) or s <= 0 for s in scales):
    raise UserError(f'eval.scales={scales!r} must be one or more positive numbers, '
                    'e.g. --config.eval.scales=1.0 or =0.5,0.75,1.0,1.25,1.5')
  if not isinstance(flip, (bool, np.bool_)):
    raise UserError(f'eval.flip={flip!r} must be True or False')
  if not isinstance(align_corners, (bool, np.bool_)):
    raise UserError(f'model.align_corners={align_corners!r} must be True or False')
  if (isinstance(score_offset, bool) or not isinstance(score_offset, numbers.Integral)
      or score_offset < 0):
    raise UserError(f'eval.score_offset={score_offset!r} must be an integer >= 0')
  if score_offset and not align_corners:
    raise UserError('eval.score_offset (Caffe\'s zoom-then-crop) needs Caffe\'s '
                    'grid: --config.model.align_corners=True')
  return InferenceOptions(mode=mode, window=window, stride=stride, scales=scales,
                          flip=bool(flip), align_corners=bool(align_corners),
                          score_offset=int(score_offset))


def options_from_config(config) -> InferenceOptions:
  """`InferenceOptions` from `config.eval` and `config.model.align_corners`.

  A config without an `eval` section gets the defaults: one whole-image pass
  at scale 1, no flip (what evaluation did before these options existed).
  """
  section = config.get('eval') if hasattr(config, 'get') else None
  fields = {} if section is None else {
      k: section[k] for k in ('mode', 'window', 'stride', 'scales', 'flip', 'score_offset')
      if k in section}
  return make_options(align_corners=config.model.align_corners, **fields)


def eval_hw(eval_size) -> tuple[int, int]:
  """(height, width) from `input.eval_size`: a square side or a (height, width) pair."""
  if isinstance(eval_size, int):
    return eval_size, eval_size
  height, width = eval_size
  return int(height), int(width)


def pad_colour(model_config) -> tuple[float, float, float]:
  """The model's `pixel_mean` as an RGB colour (what eval images are padded with).

  The same colour as `data.input_pipeline.pad_colour`, here without TensorFlow.
  """
  mean = [float(v) for v in model_config.pixel_mean]
  return tuple(mean[::-1] if model_config.channel_order == 'bgr' else mean)


def window_positions(size: int, window: int, stride: int) -> list[int]:
  """Start offsets of windows along one axis: 0, stride, ..., size - window.

  The last window is aligned to the end (so it may overlap its neighbour by
  more than window - stride); a side <= window gets the one offset 0.
  """
  if size <= window:
    return [0]
  count = -(-(size - window) // stride) + 1
  return [min(i * stride, size - window) for i in range(count)]


def window_counts(size_hw, window_hw, stride_hw) -> np.ndarray:
  """(H, W) float32: how many sliding windows cover each pixel (>= 1)."""
  counts = []
  for size, window, stride in zip(size_hw, window_hw, stride_hw):
    count = np.zeros(max(size, window), np.float32)
    for start in window_positions(size, window, stride):
      count[start:start + window] += 1
    counts.append(count)
  return counts[0][:, None] * counts[1][None, :]


def _mirror(x_BxHxWxC):
  return x_BxHxWxC[:, :, ::-1]


def _sliding_logits(apply_fn, x_BxHxWx3, options, pad_value):
  """Window-averaged logits BxHxWxC at x's size (padded up to the window)."""
  b, h, w, _ = x_BxHxWx3.shape
  wh, ww = options.window
  full_h, full_w = max(h, wh), max(w, ww)
  if (full_h, full_w) != (h, w):
    if pad_value is None:
      raise ValueError(
          f'a {h}x{w} image is smaller than the {wh}x{ww} window: pass pad_value '
          '(an RGB colour, e.g. inference.pad_colour(config.model))')
    canvas = jnp.broadcast_to(jnp.asarray(pad_value, x_BxHxWx3.dtype),
                              (b, full_h, full_w, 3))
    x_BxHxWx3 = jax.lax.dynamic_update_slice(canvas, x_BxHxWx3, (0, 0, 0, 0))
  ys = window_positions(full_h, wh, options.stride[0])
  xs = window_positions(full_w, ww, options.stride[1])
  if len(ys) == len(xs) == 1:  # One window: the (padded) image itself.
    logits = upsample_scores(apply_fn(x_BxHxWx3), (wh, ww), options.align_corners,
                             options.score_offset)
    return logits[:, :h, :w]

  starts = np.array([(y, x) for y in ys for x in xs], np.int32)
  window_shape = (b, wh, ww, 3)
  num_classes = jax.eval_shape(
      apply_fn, jax.ShapeDtypeStruct(window_shape, x_BxHxWx3.dtype)).shape[-1]

  def add_window(sums, start):
    corner = (0, start[0], start[1], 0)
    crop = jax.lax.dynamic_slice(x_BxHxWx3, corner, window_shape)
    logits = upsample_scores(apply_fn(crop), (wh, ww), options.align_corners,
                             options.score_offset)
    current = jax.lax.dynamic_slice(sums, corner, logits.shape)
    return jax.lax.dynamic_update_slice(sums, current + logits, corner), None

  sums = jnp.zeros((b, full_h, full_w, num_classes), jnp.float32)
  sums, _ = jax.lax.scan(add_window, sums, jnp.asarray(starts))
  counts = window_counts((full_h, full_w), options.window, options.stride)
  return (sums / jnp.asarray(counts)[None, :, :, None])[:, :h, :w]


def _one_pass(apply_fn, x_BxhxWx3, size, options, pad_value):
  """Logits of one (scaled, maybe mirrored) image, resized to `size`."""
  if options.mode == 'whole':
    logits = apply_fn(x_BxhxWx3)  # Stride 8: straight to `size`, one resize.
    if options.score_offset:  # The release's own zoom and crop, at x's size.
      logits = upsample_scores(logits, x_BxhxWx3.shape[1:3], True, options.score_offset)
  else:
    logits = _sliding_logits(apply_fn, x_BxhxWx3, options, pad_value)
  return resize_bilinear(logits, size, options.align_corners)


def logits_at_image_size(apply_fn: Callable[[jax.Array], jax.Array],
                         images_BxHxWx3, options: InferenceOptions,
                         pad_value: Optional[Sequence[float]] = None) -> jax.Array:
  """float32 logits BxHxWxC at the images' own (padded) height and width.

  `apply_fn(images_float_BxhxWx3) -> logits Bxh'xw'xC` at output stride 8
  (e.g. `lambda x: model.apply(variables, x, train=False)`); it gets float32
  0-255 RGB images, of the window size in mode 'sliding', of each scaled image
  size in mode 'whole'. `images_BxHxWx3`: uint8 or float 0-255 RGB.
  `pad_value`: RGB colour (0-255) filling a (scaled) image up to the window in
  mode 'sliding' when it is smaller; required only then. Jittable: all
  shapes and window positions are static.
  """
  x_BxHxWx3 = jnp.asarray(images_BxHxWx3).astype(jnp.float32)
  _, h, w, _ = x_BxHxWx3.shape
  total = None
  for scale in options.scales:
    size = (scaled_size(h, scale, options.align_corners),
            scaled_size(w, scale, options.align_corners))
    if any(side < 1 for side in size):
      raise UserError(f'eval.scales: scale {scale} shrinks a {h}x{w} image to '
                      f'{size[0]}x{size[1]} pixels; use larger scales')
    scaled = resize_by_scale(x_BxHxWx3, scale, options.align_corners)
    logits = _one_pass(apply_fn, scaled, (h, w), options, pad_value)
    if options.flip:  # Mirrored before scaling: resizing need not commute with it.
      scaled = resize_by_scale(_mirror(x_BxHxWx3), scale, options.align_corners)
      mirrored = _one_pass(apply_fn, scaled, (h, w), options, pad_value)
      logits = 0.5 * (logits + _mirror(mirrored))
    total = logits if total is None else total + logits
  if len(options.scales) > 1:
    total = total / len(options.scales)
  return total


def make_predict_fn(config, model, mesh=None,
                    options: Optional[InferenceOptions] = None):
  """Jitted `fn(variables, images_BxHxWx3) -> float32 logits BxHxWxC`.

  The logits are at the batch's own height and width, by `config.eval`'s
  mode, scales and flip (or `options`), padding with the model's mean colour.
  With a `mesh`, the batch is sharded over its 'data' axis (B a multiple of
  its size), the variables replicated, and the logits come back sharded like
  the batch. Compiled with `xla_flags.model_compiler_options` (MobileNetV3 on
  CPU: XLA's default fusions), so call it at top level, not inside another
  jit (JAX refuses compiler options on a nested jit).
  """
  options = options_from_config(config) if options is None else options
  pad_value = pad_colour(config.model)

  def predict(variables, images_BxHxWx3):
    return logits_at_image_size(
        lambda x: model.apply(variables, x, train=False), images_BxHxWx3,
        options, pad_value)

  compiler_options = xla_flags.model_compiler_options(config.model)
  if mesh is None:
    return jax.jit(predict, compiler_options=compiler_options)
  batch = sharding.batch_sharded(mesh)
  return jax.jit(predict, in_shardings=(sharding.replicated(mesh), batch),
                 out_shardings=batch, compiler_options=compiler_options)
