"""The dense CRF as the network's last layer, trained through (CRF-as-RNN).

    config.model.crf_layer = True        # models.build puts it on the output
    scores = model.apply(variables, images_BxHxWx3, train=False)  # B x H x W x C

`CRFLayer` upsamples the network's output-stride-8 logits bilinearly to the
image size (`model.align_corners`' convention), unrolls
`model.crf_layer_iterations` mean-field updates of the dense CRF
(`crf/dense_crf.py`, permutohedral lattice) with the unary U = -logits, and
returns log Q (float32, B x H x W x C, image resolution). The loss and
evaluation take log Q unchanged: softmax(log Q) = Q, so the cross entropy is
-log Q of the true label, argmax(log Q) is the CRF's labelling, and resizing
to the label size is the identity. log Q is clipped below at log(float32
tiny) = -87.3 so a probability that underflows to 0 costs a finite loss.

Learned: the two kernel weights w1 (bilateral) and w2 (spatial), as
w = softplus(raw) >= 0 with params `crf/raw_w1` and `crf/raw_w2` (scalars,
initialised so that w equals `config.crf`'s w1 and w2; a configured 0 starts
at 1e-6, where its gradient is ~0, so it stays off). Gradients also flow
through the CRF into the logits, i.e. the whole network. Fixed: the sigmas
and the normalisation, from `config.crf` (without a `crf` section, the v2
ResNet preset `crf.RESNET_V2`). `config.crf.unary` is not used: the layer's
unary is always the logits (no probability clipping, whose gradient is 0).

Multi-scale (MSC) models: only the fused map goes through the CRF. In
training the output is [per-scale maps..., log Q of the fused map]; the
per-scale maps keep their own (stride-8) resolution and their loss terms
supervise the network alone, as without the layer. At test: log Q.

Padding: the model never sees the batch's `valid` mask, so every pixel takes
part in the CRF (valid all True). Training crops are padded only where an
image is smaller than the crop; eval images are padded bottom/right to
`input.eval_size`. Padding has the mean colour (`input_pipeline.pad_colour`),
so the bilateral kernel links it mainly to greyish pixels near it, and the
spatial kernel (sigma_gamma 1-3 px) reaches a few pixels across the border:
pixels near the padding are pulled a little toward what the network predicts
on it (usually background). Padding itself is not scored. Post-hoc
`crf.refine(..., valid=...)` excludes padding exactly.

Use it to fine-tune a trained network (converted official weights, or
`with_fresh_layer` on a run's weights): from random init the messages (up
to w1 + w2 per label) swamp the near-zero logits, the CRF settles on few
labels and the loss climbs (seen on configs/tiny.py:shapes at lr 0.1).

Cost: the lattice is built per image and kernel and each unrolled iteration
filters twice; the backward pass stores every iteration's Q. See the
README's Dense CRF section for measured step times.
"""

from __future__ import annotations

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from deeplab_jax.crf import dense_crf
from deeplab_jax.crf import params as crf_params
from deeplab_jax.models.resize import resize_bilinear

SCOPE = 'crf'  # The layer's name in the model: its params are params/crf/*.
_MIN_WEIGHT = 1e-6  # A configured weight of 0 starts here (softplus^-1(0) = -inf).
_LOG_FLOOR = float(np.log(np.finfo(np.float32).tiny))


def inverse_softplus(w: float) -> float:
  """raw with softplus(raw) = w (w floored at 1e-6)."""
  w = max(float(w), _MIN_WEIGHT)
  return float(w + np.log(-np.expm1(-w)))  # log(exp(w) - 1), stable for large w.


def is_layer_variable(path: str) -> bool:
  """Whether a '{collection}/{path}' leaf ('params/crf/raw_w1') is the layer's."""
  parts = path.split('/')
  return len(parts) > 2 and parts[1] == SCOPE


def with_fresh_layer(variables, fresh_variables):
  """`variables` with the layer's params[SCOPE] from `fresh_variables` where it
  has none (weights of a network trained without the layer): how a run with
  `model.crf_layer` starts from such weights; anything else is unchanged.

      variables = with_fresh_layer(checkpoint.restore_variables(workdir),
                                   state.variables())   # state: the new run's.
  """
  params = variables['params']
  if SCOPE in params or SCOPE not in fresh_variables['params']:
    return variables
  return {**variables, 'params': {**params, SCOPE: fresh_variables['params'][SCOPE]}}


class CRFLayer(nn.Module):
  """log Q of the dense CRF on upsampled logits, kernel weights learned.

  Attributes:
    crf: the CRF's parameters: sigmas, normalisation and `iterations` (the
      unrolled mean-field steps) are used as given; w1 and w2 only initialise
      the learned weights.
    align_corners: the bilinear upsampling convention (model.align_corners).
    method: 'lattice' (permutohedral, any size) or 'exact' (O(N^2) sums,
      tiny images only), as `dense_crf.mean_field`.
  """
  crf: crf_params.CRFParams
  align_corners: bool = False
  method: str = 'lattice'

  def weights(self):
    """(w1, w2): the current kernel weights, float32 scalars >= 0."""
    raw_w1 = self.param('raw_w1', nn.initializers.constant(inverse_softplus(self.crf.w1)),
                        (), jnp.float32)
    raw_w2 = self.param('raw_w2', nn.initializers.constant(inverse_softplus(self.crf.w2)),
                        (), jnp.float32)
    return jax.nn.softplus(raw_w1), jax.nn.softplus(raw_w2)

  @nn.compact
  def __call__(self, images_BxHxWx3, logits_BxhxwxC):
    """log Q, B x H x W x C float32, from RGB 0-255 images and stride-8 logits."""
    weights = self.weights()
    size = images_BxHxWx3.shape[1:3]
    logits = resize_bilinear(logits_BxhxwxC.astype(jnp.float32), size, self.align_corners)
    if self.is_initializing():  # init only creates the weights: skip the CRF's compile.
      return jax.nn.log_softmax(logits, axis=-1)
    valid = jnp.ones(images_BxHxWx3.shape[:3], bool)
    q = dense_crf.mean_field(images_BxHxWx3.astype(jnp.float32),
                             dense_crf.unary_energy(logits, 'logits'), valid,
                             self.crf, method=self.method, weights=weights)
    return jnp.log(jnp.maximum(q, jnp.finfo(jnp.float32).tiny))


def crf_params_of(config) -> crf_params.CRFParams:
  """The layer's CRFParams: `config.crf` (or crf.RESNET_V2 where a config has
  no `crf` section) with `model.crf_layer_iterations` iterations."""
  crf_config = config.get('crf')
  base = crf_params.RESNET_V2 if crf_config is None else crf_params.from_config(crf_config)
  return dataclasses.replace(base, iterations=config.model.crf_layer_iterations)


def from_config(config) -> CRFLayer:
  """The CRF layer of `config` (named SCOPE inside the model)."""
  return CRFLayer(crf=crf_params_of(config), align_corners=config.model.align_corners)
