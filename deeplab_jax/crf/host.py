"""The dense CRF on the host: a thin wrapper over pydensecrf2 (Kraehenbuehl's
C++ densecrf), the reference the accelerator CRF is checked against.

    from deeplab_jax.crf import host, params
    probs_HxWxC = host.refine_one(image_HxWx3_uint8, probs_HxWxC, params.RESNET_V2)
    outs = host.refine(images, scores, params.RESNET_V2)  # list, in order, in parallel

`scores` are probabilities when params.unary == 'probs' and logits when it is
'logits'; the result is always the CRF's marginals Q (float32 probabilities,
HxWxC). Images are RGB uint8. One image takes about a second per 500x375
image, 21 labels, 10 iterations, on one core; `refine` spreads a batch over a
process pool started with 'forkserver' (or 'spawn' where there is no
forkserver), never 'fork', so JAX / TensorFlow threads in the caller are not
forked.

pydensecrf2 is an optional dependency (`pip install -e '.[crf]'`); it is
imported only when a CRF runs.
"""

from __future__ import annotations

import multiprocessing
import os
from typing import Sequence

import numpy as np

from deeplab_jax.crf.params import CRFParams, PROB_CLIP
from deeplab_jax.errors import UserError

_MISSING = "the host CRF needs pydensecrf2: pip install -e '.[crf]'"


def _densecrf():
  """The pydensecrf.densecrf module, or a UserError saying how to install it."""
  try:
    from pydensecrf import densecrf  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise UserError(_MISSING) from e
  return densecrf


def _normalization(densecrf, name):
  return {
      'symmetric': densecrf.NORMALIZE_SYMMETRIC,  # D^-1/2 K D^-1/2
      'before': densecrf.NORMALIZE_BEFORE,  # K D^-1
      'after': densecrf.NORMALIZE_AFTER,  # D^-1 K
  }[name]


def unary_energy(scores_HxWxC, unary: str) -> np.ndarray:
  """U (float32, HxWxC): -logits, or -log(clip(p, PROB_CLIP, 1)) for 'probs'."""
  scores = np.asarray(scores_HxWxC, np.float32)
  if unary == 'logits':
    return -scores
  if unary == 'probs':
    return -np.log(np.clip(scores, PROB_CLIP, 1.0))
  raise UserError(f"unary {unary!r} is not 'logits' or 'probs'")


def check_inputs(image, scores, unary: str, index=None):
  """UserError for inputs a user can fix: ranks, sizes, dtypes, NaN, and
  probabilities (unary='probs') that do not sum to one."""
  where = '' if index is None else f' (image {index})'
  image = np.asarray(image)
  scores = np.asarray(scores)
  if image.ndim != 3 or image.shape[-1] != 3:
    raise UserError(f'image{where} must be HxWx3 (RGB), got shape {image.shape}')
  if image.dtype != np.uint8:
    raise UserError(f'image{where} must be uint8 (0..255), got {image.dtype}')
  if scores.ndim != 3 or scores.shape[-1] < 1:
    raise UserError(f'scores{where} must be HxWxC, got shape {scores.shape}')
  if scores.shape[:2] != image.shape[:2]:
    raise UserError(f'scores{where} must be HxWxC with the image\'s HxW {image.shape[:2]}, '
                    f'got shape {scores.shape}')
  if np.isnan(scores).any():
    first = tuple(int(i) for i in np.argwhere(np.isnan(scores))[0])
    raise UserError(f'scores{where} contain NaN (first at {first})')
  if unary == 'probs':
    sums = scores.astype(np.float64).sum(-1)
    worst = np.unravel_index(np.argmax(np.abs(sums - 1)), sums.shape)
    if abs(sums[worst] - 1) > 1e-3 or scores.min() < 0:
      raise UserError(f'scores{where} are probabilities (crf unary=\'probs\') but sum to '
                      f'{sums[worst]:.6g} at pixel {tuple(int(i) for i in worst)} '
                      f'(min {scores.min():.6g}); pass logits with unary=\'logits\'')


def _check(image, scores, unary='logits'):
  check_inputs(image, scores, unary)


def refine_one(image_HxWx3, scores_HxWxC, params: CRFParams) -> np.ndarray:
  """Mean-field marginals of the dense CRF for one image, with pydensecrf2.

    q = refine_one(image_uint8, softmax_probs, dataclasses.replace(RESNET_V2, unary='probs'))
    labels = q.argmax(-1)

  Args:
    image_HxWx3: RGB uint8 image.
    scores_HxWxC: the network's output at the image's resolution: logits, or
      probabilities, as params.unary says.
    params: the CRF (kernels, iterations, normalisation, unary).

  Returns:
    Q, float32 HxWxC, each pixel's label distribution after
    params.iterations mean-field updates (softmax(-U) for 0 iterations).

  Raises:
    UserError: pydensecrf2 is not installed.
    UserError: wrong shapes or image dtype, NaN scores, probabilities not
      summing to one.
  """
  _check(image_HxWx3, scores_HxWxC, params.unary)
  densecrf = _densecrf()
  height, width, num_labels = np.shape(scores_HxWxC)
  unary = unary_energy(scores_HxWxC, params.unary)
  # pydensecrf indexes pixels row-major (i = y * W + x) and wants C x N.
  unary_CxN = np.ascontiguousarray(unary.reshape(height * width, num_labels).T)
  image = np.ascontiguousarray(image_HxWx3, dtype=np.uint8)
  normalization = _normalization(densecrf, params.normalization)

  crf = densecrf.DenseCRF2D(width, height, num_labels)
  crf.setUnaryEnergy(unary_CxN)
  crf.addPairwiseGaussian(sxy=params.sigma_gamma, compat=params.w2,
                          kernel=densecrf.DIAG_KERNEL, normalization=normalization)
  crf.addPairwiseBilateral(sxy=params.sigma_alpha, srgb=params.sigma_beta, rgbim=image,
                           compat=params.w1, kernel=densecrf.DIAG_KERNEL,
                           normalization=normalization)
  q_CxN = np.asarray(crf.inference(int(params.iterations)), np.float32)
  return np.ascontiguousarray(q_CxN.reshape(num_labels, height, width).transpose(1, 2, 0))


def _refine_args(args):
  return refine_one(*args)


def _context():
  methods = multiprocessing.get_all_start_methods()
  return multiprocessing.get_context('forkserver' if 'forkserver' in methods else 'spawn')


def refine(images: Sequence[np.ndarray], scores: Sequence[np.ndarray], params: CRFParams,
           processes: int | None = None) -> list[np.ndarray]:
  """refine_one over many images (sizes may differ), in a process pool.

    qs = refine(images, probs, dataclasses.replace(VGG_LARGEFOV, unary='probs'))
    qs = refine(images_BxHxWx3, logits_BxHxWxC, RESNET_V2, processes=1)  # inline

  Args:
    images: RGB uint8 HxWx3 images, a list or an array batched on axis 0.
    scores: one HxWxC array per image (logits or probabilities, as
      params.unary says), with its image's HxW.
    params: the CRF.
    processes: worker processes; None is os.cpu_count(). Never more than
      there are images; 1 (or a single image) runs in this process. Workers
      start with 'forkserver' ('spawn' where it is missing) and import this
      module, which costs about a second before the first image.

  Returns:
    One float32 HxWxC array of marginals per image, in the input order.

  Raises:
    UserError: pydensecrf2 is not installed.
    UserError: different numbers of images and scores, wrong shapes or
      dtypes, NaN scores, probabilities not summing to one.
  """
  images = list(images)
  scores = list(scores)
  if len(images) != len(scores):
    raise UserError(f'{len(images)} images but {len(scores)} score maps')
  for i, (image, score) in enumerate(zip(images, scores)):
    check_inputs(image, score, params.unary, i)
  _densecrf()  # Fail here, not in a worker.
  if processes is not None and processes < 1:
    raise ValueError(f'processes must be >= 1, got {processes}')
  processes = min(processes or os.cpu_count() or 1, len(images))
  jobs = [(image, score, params) for image, score in zip(images, scores)]
  if processes <= 1:
    return [refine_one(*job) for job in jobs]
  with _context().Pool(processes) as pool:
    return pool.map(_refine_args, jobs, chunksize=1)
