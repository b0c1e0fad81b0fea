"""The fully connected CRF of DeepLab (Kraehenbuehl & Koltun 2011), two backends.

    from deeplab_jax import crf
    q = crf.refine(images_BxHxWx3, logits_BxHxWxC, crf.RESNET_V2, backend='jax')
    labels = q.argmax(-1)

`backend='jax'` (`dense_crf.py` + `lattice.py`): mean-field on the
permutohedral lattice in JAX, batched and jitted, on whatever device JAX
uses, differentiable. `backend='host'` (`host.py`): the reference C++
(pydensecrf2, `pip install -e '.[crf]'`), one image per process. Both give
the same labels (tests/dense_crf_test.py). Parameters: `params.py`
(the papers' presets, or `from_config(config.crf)`).

This module imports no JAX until the JAX backend is used, so the host
backend's worker processes start fast.
"""

from __future__ import annotations

import functools

import numpy as np

from deeplab_jax.crf.params import CRFParams, RESNET_V2, VGG_LARGEFOV, from_config  # pylint: disable=unused-import

BACKENDS = ('jax', 'host')


@functools.lru_cache(maxsize=8)
def _jax_refine(params: CRFParams):
  import jax  # pylint: disable=import-outside-toplevel
  from deeplab_jax.crf import dense_crf  # pylint: disable=import-outside-toplevel

  @jax.jit
  def run(images, scores, valid):
    unary = dense_crf.unary_energy(scores, params.unary)
    return dense_crf.mean_field(images, unary, valid, params)
  return run


def refine(images, scores, params: CRFParams, backend='jax', valid=None,
           processes=None) -> np.ndarray:
  """Q (B x H x W x C float32) for a padded batch.

  images: B x H x W x 3 uint8 RGB; scores: B x H x W x C, logits or
  probabilities as `params.unary` says, at image resolution; valid: B x H x W
  bool (False: padding, each image's real pixels a top-left rectangle),
  default all. Padding gets the unary's softmax. `processes`: host backend's
  pool size (default: all cores).
  """
  images = np.asarray(images)
  scores = np.asarray(scores, np.float32)
  if valid is None:
    valid = np.ones(images.shape[:3], bool)
  valid = np.asarray(valid, bool)
  if backend == 'jax':
    return np.asarray(_jax_refine(params)(images, scores, valid))
  if backend != 'host':
    raise ValueError(f'CRF backend {backend!r} is not one of {BACKENDS}')
  from deeplab_jax.crf import host  # pylint: disable=import-outside-toplevel
  sizes = [(int(v.any(1).sum()), int(v.any(0).sum())) for v in valid]
  real = [i for i, (h, w) in enumerate(sizes) if h and w]  # Not all padding.
  refined = host.refine([images[i, :sizes[i][0], :sizes[i][1]] for i in real],
                        [scores[i, :sizes[i][0], :sizes[i][1]] for i in real],
                        params, processes=processes)
  unary = host.unary_energy(scores, params.unary)
  out = np.exp(-unary - (-unary).max(-1, keepdims=True))
  out /= out.sum(-1, keepdims=True)
  for i, q in zip(real, refined):
    out[i, :sizes[i][0], :sizes[i][1]] = q
  return out.astype(np.float32)
