"""crf.refine's input checks: both backends raise UserError naming the
offending shape or value, before any CRF runs."""

import dataclasses

import numpy as np
import pytest

from deeplab_jax import crf
from deeplab_jax.testing import scenes
from deeplab_jax.errors import UserError

PROBS = dataclasses.replace(crf.RESNET_V2, unary='probs')


def _batch():
  image, _, probs = scenes.natural_image_and_unaries(np.random.default_rng(0), 20, 30, 4)
  return image[None], probs[None]


@pytest.mark.parametrize('backend', ['jax', 'host'])
def test_bad_inputs_are_user_errors(backend):
  images, probs = _batch()
  refine = lambda im, sc, params=PROBS: crf.refine(im, sc, params, backend=backend, processes=1)
  with pytest.raises(UserError, match=r'sum to 1\.5'):
    refine(images, probs * 1.5)
  nan = probs.copy()
  nan[0, 3, 4, 1] = np.nan
  with pytest.raises(UserError, match=r'NaN \(first at \(3, 4, 1\)\)'):
    refine(images, nan)
  with pytest.raises(UserError, match='NaN'):  # Logits too.
    refine(images, nan, crf.RESNET_V2)
  with pytest.raises(UserError, match=r"image's HxW \(20, 30\), got shape \(19, 30, 4\)"):
    refine(images, probs[:, :19])
  with pytest.raises(UserError, match='uint8.*float32'):
    refine(images.astype(np.float32), probs)
  with pytest.raises(UserError, match=r'HxWx3.*\(20, 30, 4\)'):
    refine(np.zeros((1, 20, 30, 4), np.uint8), probs)
  with pytest.raises(UserError, match=r'batches.*\(20, 30, 3\)'):
    refine(images[0], probs[0])
  with pytest.raises(UserError, match='1 images but 2'):
    refine(images, np.concatenate([probs, probs]))
  # Logits need not sum to one.
  q = refine(images, np.log(probs) + 2.0, crf.RESNET_V2)
  assert q.shape == probs.shape
