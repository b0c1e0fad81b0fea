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

from deeplab_jax import xla_flags
from deeplab_jax.crf.params import CRFParams, RESNET_V2, VGG_LARGEFOV, from_config  # pylint: disable=unused-import

BACKENDS = ('jax', 'host')


@functools.lru_cache(maxsize=8)
def _jax_sort(params: CRFParams):
  import jax  # pylint: disable=import-outside-toplevel
  from deeplab_jax.crf import dense_crf  # pylint: disable=import-outside-toplevel
  return jax.jit(lambda images, valid: dense_crf.sort_bilateral_vertices(images, valid, params),
                 compiler_options=xla_flags.without_cpu_flags())


@functools.lru_cache(maxsize=8)
def _jax_embed(params: CRFParams):
  import jax  # pylint: disable=import-outside-toplevel
  from deeplab_jax.crf import dense_crf  # pylint: disable=import-outside-toplevel
  from deeplab_jax.crf import lattice  # pylint: disable=import-outside-toplevel
  embed = lambda features, valid, pack: lattice.embed(features, valid)
  return jax.jit(lambda images, valid: dense_crf.per_image_bilateral(embed, images, valid, params),
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


def host_lattices(images, valid, params: CRFParams):
  """The batch's bilateral lattices built in numpy (`lattice.build_host`),
  stacked, all of one bucketed size; None if one cannot be packed.

  The embedding runs jitted; deduplication and the neighbour tables run in
  numpy, one thread per image (numpy's sorts release the GIL).
  """
  import jax  # pylint: disable=import-outside-toplevel
  from deeplab_jax.crf import lattice  # pylint: disable=import-outside-toplevel
  keys, weights = jax.device_get(_jax_embed(params)(images, valid))
  with _threads(len(keys)) as pool:
    points = list(pool.map(lattice.dedup_host, keys))
    if any(p is None for p in points):
      return None
    m = lattice.bucket(max(p.num_points for p in points))
    built = list(pool.map(lambda a: lattice.build_host(a[0], a[1], m, points=a[2]),
                          zip(keys, weights, points)))
  return jax.tree_util.tree_map(lambda *xs: np.stack(xs), *built)


def _threads(count):
  import concurrent.futures  # pylint: disable=import-outside-toplevel
  import os  # pylint: disable=import-outside-toplevel
  return concurrent.futures.ThreadPoolExecutor(max(1, min(count, os.cpu_count() or 1)))


def _refine_jax(images, scores, params, valid, lattice_on_host=None):
  """Mean-field on bilateral lattices of a tight (bucketed) static size.

  lattice_on_host (default: when JAX runs on the CPU) builds the lattices
  in numpy (`host_lattices`), several times faster there than XLA's sorts;
  otherwise the device sorts the vertices, `num_points` is read back, and
  the rest of the build runs inside the jitted mean-field.
  """
  import jax  # pylint: disable=import-outside-toplevel
  from deeplab_jax.crf import lattice  # pylint: disable=import-outside-toplevel
  if lattice_on_host is None:
    lattice_on_host = jax.default_backend() == 'cpu'
  if lattice_on_host:
    lattices = host_lattices(images, valid, params)
    if lattices is not None:
      run = _jax_refine(params, lattices.max_points)
      return np.asarray(run(images, scores, valid, lattices=lattices))
  sorted_vertices = _jax_sort(params)(images, valid)
  needed = int(np.max(sorted_vertices.num_points))
  run = _jax_refine(params, lattice.bucket(needed))
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
  from deeplab_jax.errors import UserError  # pylint: disable=import-outside-toplevel
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
