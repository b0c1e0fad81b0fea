"""The fully connected CRF of DeepLab (Kraehenbuehl & Koltun 2011), two backends.

    from deeplab_jax import crf
    q = crf.refine(images_BxHxWx3, logits_BxHxWxC, crf.RESNET_V2, backend='jax')
    labels = q.argmax(-1)

`backend='jax'` (`dense_crf.py` + `lattice.py`, `lattice_host.py`): mean-field
on the permutohedral lattice in JAX, batched and jitted, on whatever device
JAX uses, differentiable, its lattices sized to the batch (`sizing.py`).
`backend='host'` (`host.py`): the reference C++ (pydensecrf2,
`pip install -e '.[crf]'`), one image per process. Both give the same labels (tests/dense_crf_test.py). Parameters: `params.py`
(the papers' presets, or `from_config(config.crf)`); `settings(config)`
also checks `config.eval.crf_backend`, and `scores_from_logits` turns the
network's logits into what `params.unary` says the CRF reads.

This module imports no JAX until the JAX backend is used, so the host
backend's worker processes start fast.
"""

from __future__ import annotations

import functools

import numpy as np

from deeplab_jax import xla_flags
from deeplab_jax.crf.params import CRFParams, RESNET_V2, VGG_LARGEFOV, from_config  # pylint: disable=unused-import
from deeplab_jax.errors import UserError

BACKENDS = ('jax', 'host')


def settings(config):
  """(CRFParams, backend) from config.crf / config.eval, checked."""
  params = from_config(config.crf)
  backend = config.eval.crf_backend
  if backend not in BACKENDS:
    raise UserError(f'eval.crf_backend {backend!r} is not one of {BACKENDS}')
  return params, backend


def scores_from_logits(logits_BxHxWxC, params: CRFParams):
  """What the CRF reads from the logits, as `params.unary` says: the logits
  themselves or their softmax probabilities (numpy in, numpy out)."""
  if params.unary == 'logits':
    return logits_BxHxWxC
  if isinstance(logits_BxHxWxC, np.ndarray):
    e = np.exp(logits_BxHxWxC - logits_BxHxWxC.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)
  import jax  # pylint: disable=import-outside-toplevel
  return jax.nn.softmax(logits_BxHxWxC, -1)


@functools.lru_cache(maxsize=8)
def _jax_sort(params: CRFParams):
  import jax  # pylint: disable=import-outside-toplevel
  from deeplab_jax.crf import dense_crf  # pylint: disable=import-outside-toplevel
  return jax.jit(lambda images, valid: dense_crf.sort_bilateral_vertices(images, valid, params),
                 compiler_options=xla_flags.without_cpu_flags())


@functools.lru_cache(maxsize=32)
def _jax_refine(params: CRFParams, max_points: int):
  import jax  # pylint: disable=import-outside-toplevel
  from deeplab_jax.crf import dense_crf  # pylint: disable=import-outside-toplevel

  @functools.partial(jax.jit, compiler_options=xla_flags.without_cpu_flags())
  def run(images, scores, valid, sorted_vertices=None, lattices=None):
    unary = dense_crf.unary_energy(scores, params.unary)
    return dense_crf.mean_field(images, unary, valid, params, max_points=max_points,
                                sorted_vertices=sorted_vertices, lattices=lattices)
  return run


@functools.lru_cache(maxsize=8)
def _sized(params: CRFParams):
  from deeplab_jax.crf import sizing  # pylint: disable=import-outside-toplevel
  return sizing.on_device(_jax_sort(params), functools.partial(_jax_refine, params))


def _refine_jax(images, scores, params, valid, lattice_on_host=None):
  """Mean-field on bilateral lattices of a tight (bucketed) static size
  (`sizing.py`).

  lattice_on_host (default: when JAX runs on the CPU) builds the lattices
  in numpy (`sizing.host_lattices`), several times faster there than XLA's
  sorts; otherwise the device sorts the vertices, `num_points` is read back,
  and the rest of the build runs inside the jitted mean-field.
  """
  import jax  # pylint: disable=import-outside-toplevel
  from deeplab_jax.crf import sizing  # pylint: disable=import-outside-toplevel
  if lattice_on_host is None:
    lattice_on_host = jax.default_backend() == 'cpu'
  if lattice_on_host:
    lattices = sizing.host_lattices(images, valid, params)
    if lattices is not None:
      run = _jax_refine(params, lattices.max_points)
      return np.asarray(run(images, scores, valid, lattices=lattices))
  run, sorted_vertices = _sized(params)(images, valid)
  return np.asarray(run(images, scores, valid, sorted_vertices=sorted_vertices))


def refine(images, scores, params: CRFParams, backend='jax', valid=None,
           processes=None) -> np.ndarray:
  """Q (B x H x W x C float32) for a padded batch.

  images: B x H x W x 3 uint8 RGB; scores: B x H x W x C, logits or
  probabilities as `params.unary` says, at image resolution; valid: B x H x W
  bool (False: padding, each image's real pixels a top-left rectangle),
  default all. Padding gets the unary's softmax. `processes`: host backend's
  pool size (default: all cores).
  """
  from deeplab_jax.crf import host  # pylint: disable=import-outside-toplevel
  images = np.asarray(images)
  scores = np.asarray(scores)
  if images.ndim != 4 or scores.ndim != 4:
    raise UserError(f'crf.refine takes batches: images B x H x W x 3 and scores B x H x W x C, '
                    f'got shapes {images.shape} and {scores.shape}')
  if images.shape[0] != scores.shape[0]:
    raise UserError(f'{images.shape[0]} images but {scores.shape[0]} score maps')
  if valid is None:
    valid = np.ones(images.shape[:3], bool)
  valid = np.asarray(valid, bool)
  if valid.shape != images.shape[:3]:
    raise UserError(f'valid must be B x H x W {images.shape[:3]}, got {valid.shape}')
  for i, (image, score, v) in enumerate(zip(images, scores, valid)):
    h, w = int(v.any(1).sum()), int(v.any(0).sum())
    if image.shape[:2] == score.shape[:2]:  # Padding is not checked.
      image, score = image[:h, :w], score[:h, :w]
    host.check_inputs(image, score, params.unary, i)
  scores = scores.astype(np.float32)
  if backend == 'jax':
    return _refine_jax(images, scores, valid=valid, params=params)
  if backend != 'host':
    raise ValueError(f'CRF backend {backend!r} is not one of {BACKENDS}')
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
