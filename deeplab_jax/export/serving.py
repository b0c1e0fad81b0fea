"""The function every deployment runs: uint8 images in, logits and labels at their size out.

    fn = serving.make_serving_fn(config, model, variables)   # jittable, exportable
    out = fn(images_BxHxWx3_uint8)   # {'logits': float32 BxHxWxC, 'labels': int32 BxHxW}

It is what `predict.py` does to one image, for a batch of same-sized images:
pad each side with the model's mean colour to its bucket (`padded_side`: the
next multiple of 64, or 64 k + 1 with Caffe's corner-aligned grid), infer as
`config.eval` says (whole image or sliding windows, test-time scales, flip;
the model's own normalisation, channel order and MSC fusion are inside the
network), crop the logits back to the image and take the argmax. The batch,
height and width may be `jax.export` symbolic dimensions: the padded side is
then 64 * ceil(h / 64) (+ 1), a multiple of every stride, which is what lets
the networks' size arithmetic stay exact. The inference API
(deeplab_jax/segmenter.py) calls the same function on host-padded batches of
mixed sizes, so exported models and `predict.py` give the same masks.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from deeplab_jax import inference
from deeplab_jax.errors import UserError
from deeplab_jax.models import resize

BUCKET = 64  # Padded sides step by this: few compilations, sizes divisible by 8.
OUTPUTS = ('logits', 'labels', 'probabilities')


def padded_side(n, align_corners):
  """The side an image side n is padded to: with corners aligned (Caffe's
  convention) the next 64 k + 1, so that the output-stride-8 score map's
  last cell lies on the last padded pixel, as at evaluation's 513 (a side of
  64 k would stretch the upsampled scores by up to a pixel); otherwise the
  next multiple of 64. `n` may be a symbolic dimension (with corners
  aligned, one of at least 2: `export.symbolic_specs` says so)."""
  if align_corners:
    if resize.is_static(n):
      n = max(n, 2)  # A 1-pixel side pads to 65 as a 2-pixel one.
    return (n - 1 + BUCKET - 1) // BUCKET * BUCKET + 1
  return (n + BUCKET - 1) // BUCKET * BUCKET


def pad_images(images_BxHxWx3, pad_value, align_corners):
  """float32 images padded at the bottom / right with `pad_value` to their bucket."""
  x = jnp.asarray(images_BxHxWx3).astype(jnp.float32)
  _, h, w, _ = x.shape
  ph, pw = padded_side(h, align_corners), padded_side(w, align_corners)
  canvas = jnp.broadcast_to(jnp.asarray(pad_value, jnp.float32), (x.shape[0], ph, pw, 3))
  return jax.lax.dynamic_update_slice(canvas, x, (0, 0, 0, 0))


def check_outputs(outputs):
  """A UserError unless `outputs` is a non-empty selection of OUTPUTS."""
  if not outputs or any(name not in OUTPUTS for name in outputs):
    raise UserError(f'--outputs {list(outputs)}: choose from {list(OUTPUTS)}')


def make_serving_fn(config, model, variables, outputs=('logits', 'labels')):
  """`fn(images_BxHxWx3) -> {name: array}` for `outputs` (of OUTPUTS).

  `variables` are closed over (constants of an exported program). logits:
  float32 BxHxWxC; labels: int32 BxHxW, their argmax; probabilities: the
  softmax of the logits (what the CRF reads).
  """
  check_outputs(outputs)
  options = inference.options_from_config(config)
  pad_value = inference.pad_colour(config.model)
  align = bool(config.model.align_corners)

  def serve(images_BxHxWx3):
    _, h, w, _ = images_BxHxWx3.shape
    padded = pad_images(images_BxHxWx3, pad_value, align)
    logits = inference.logits_at_image_size(
        lambda x: model.apply(variables, x, train=False), padded, options, pad_value)
    logits = logits[:, :h, :w]
    result = {}
    for name in outputs:
      if name == 'logits':
        result[name] = logits
      elif name == 'labels':
        result[name] = jnp.argmax(logits, axis=-1).astype(jnp.int32)
      else:
        result[name] = jax.nn.softmax(logits, axis=-1)
    return result

  return serve
