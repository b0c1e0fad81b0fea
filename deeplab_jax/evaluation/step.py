"""The jitted evaluation step: logits, labels and confusion counts of one batch.

Per batch of images padded to `input.eval_size`: logits at the padded size
(`inference.py`: whole image or sliding windows, test-time scales and flip,
bilinear upsampling with `model.align_corners`), argmax, confusion counts of
the valid, non-void pixels (`metrics.py`).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from deeplab_jax import inference
from deeplab_jax import metrics
from deeplab_jax import sharding


def eval_batch_size(config, mesh):
  """config.eval_batch_size rounded up to a multiple of the device count."""
  return math.ceil(config.eval_batch_size / mesh.size) * mesh.size


def label_dtype(num_classes):
  """The dtype predicted labels come back in: uint8 where the classes fit."""
  return jnp.uint8 if num_classes <= 255 else jnp.int32


def make_eval_step(config, model, mesh):
  """Jitted pieces, compiled once: `step(variables, batch) -> dict`.

  The dict holds 'logits' (B x H x W x C float32 at the padded size),
  'preds' (B x H x W labels) and 'confusion' (C x C counts of the valid
  pixels), the first two sharded over the batch like the input.

  With `config.input.resize='caffe'` the padding (batch 'valid' False) is
  set to the mean colour in float32 before inference, so the model's
  normalisation makes it exactly 0 (Caffe's test-phase data layer pads with
  the mean in double: data_transformer.cpp l. 557-566, 628-629), as
  `model(..., valid=...)` does in training; the uint8 mean colour the
  pipeline pads with is off by up to 0.5. In float it also stays exact
  through eval.mode 'sliding' (whose window padding is that colour) and
  through test-time scales and flip.
  """
  num_classes = config.dataset.num_classes
  predict = inference.make_predict_fn(config, model, mesh)
  zero_padding = config.input.get('resize', 'aligned') == 'caffe'
  pad = jnp.asarray(inference.pad_colour(config.model), jnp.float32)

  def score(logits, labels, valid):
    preds = jnp.argmax(logits, axis=-1).astype(jnp.int32)
    confusion = metrics.confusion_matrix(labels, preds, num_classes, valid,
                                         config.dataset.ignore_label)
    return preds.astype(label_dtype(num_classes)), confusion

  batch = sharding.batch_sharded(mesh)
  score = jax.jit(score, in_shardings=(batch, batch, batch),
                  out_shardings=(batch, sharding.replicated(mesh)))

  fill = jax.jit(lambda images, valid: jnp.where(valid[..., None], images.astype(jnp.float32), pad),
                 in_shardings=(batch, batch), out_shardings=batch)

  def step(variables, batch):
    images = fill(batch['image'], batch['valid']) if zero_padding else batch['image']
    logits = predict(variables, images)
    preds, confusion = score(logits, batch['label'], batch['valid'])
    return {'logits': logits, 'preds': preds, 'confusion': confusion}
  return step
