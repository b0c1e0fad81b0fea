"""The inference API (deeplab_jax/segmenter.py): predict.py's masks, any input, batched, exported.

The reference is computed here without the Segmenter: each image padded by
hand to the bucket the test states (64 k, the model's mean colour), run
through `inference.make_predict_fn` (evaluation's inference), cropped.
"""

import os

import jax
import numpy as np
import pytest
from PIL import Image

from configs import tiny
from deeplab_jax import checkpoint
from deeplab_jax import crf as crf_lib
from deeplab_jax import export
from deeplab_jax import inference
from deeplab_jax import models
from deeplab_jax import predict_lib
from deeplab_jax import sharding
from deeplab_jax.errors import UserError
from deeplab_jax.testing import checkpoints
from deeplab_jax.segmenter import Segmenter

SIZES = ((37, 50), (64, 64), (70, 41), (37, 50), (5, 130))
BUCKETS = {37: 64, 50: 64, 64: 64, 70: 128, 41: 64, 5: 64, 130: 192}


@pytest.fixture(scope='module')
def run(tmp_path_factory):
  """(config, workdir): the tiny demo model's initial weights, perturbed."""
  from configs import shapes  # pylint: disable=import-outside-toplevel
  config = tiny.get_config(shapes)
  workdir = str(tmp_path_factory.mktemp('segmenter_run'))
  checkpoints.write_initial(config, workdir, noise=0.05)
  return config, workdir


def _images(seed=0):
  rng = np.random.RandomState(seed)
  return [rng.randint(0, 256, size + (3,)).astype(np.uint8) for size in SIZES]


def _reference(config, workdir, image):
  mesh = sharding.make_mesh(jax.devices()[:1])
  variables, _ = checkpoint.load_variables(config, workdir, None, mesh)
  fn = inference.make_predict_fn(config, models.build(config))
  h, w = image.shape[:2]
  padded = np.empty((1, BUCKETS[h], BUCKETS[w], 3), np.float32)
  padded[:] = inference.pad_colour(config.model)
  padded[0, :h, :w] = image
  return np.asarray(fn(jax.device_get(variables), padded))[0, :h, :w]


@pytest.fixture(scope='module')
def segmenter(run):
  return Segmenter.from_workdir(*run)


def test_batched_mixed_sizes_give_the_reference_logits_and_labels(run, segmenter):
  images = _images()
  results = segmenter(images)
  assert len(results) == len(images)
  for image, result in zip(images, results):
    want = _reference(*run, image)
    assert result.labels.shape == image.shape[:2] and result.labels.dtype == np.uint8
    np.testing.assert_allclose(result.logits, want, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(result.labels, want.argmax(-1))
  one = segmenter(images[2])  # A single image: a single result, the same numbers.
  np.testing.assert_array_equal(one.labels, results[2].labels)


def test_probabilities_shares_and_crf(run, segmenter):
  config, _ = run
  image = _images(1)[0]
  result = segmenter(image, probabilities=True, crf=True)
  np.testing.assert_allclose(result.probabilities.sum(-1), 1.0, rtol=1e-5)
  shares = result.class_shares()
  assert list(shares) == list(config.dataset.class_names)
  assert abs(sum(shares.values()) - 1.0) < 1e-9
  counts = np.bincount(result.labels.ravel(), minlength=len(shares))
  assert shares[config.dataset.class_names[0]] == counts[0] / result.labels.size
  params, backend = crf_lib.settings(config)
  q = crf_lib.refine(image[None], crf_lib.scores_from_logits(result.logits, params)[None],
                     params, backend=backend)[0]
  np.testing.assert_array_equal(result.labels, q.argmax(-1))
  assert result.crf_seconds > 0


def test_any_input_kind(tmp_path, segmenter):
  image = _images(2)[0]
  want = segmenter(image).labels
  path = str(tmp_path / 'a.png')
  Image.fromarray(image).save(path)
  rgba = np.concatenate([image, np.full(image.shape[:2] + (1,), 7, np.uint8)], -1)
  for item in (path, Image.fromarray(image), rgba, image.astype(np.int32)):
    np.testing.assert_array_equal(segmenter(item).labels, want)
  grey = image[:, :, 0]
  np.testing.assert_array_equal(segmenter(grey).labels,
                                segmenter(np.repeat(grey[:, :, None], 3, 2)).labels)


@pytest.mark.parametrize('item, match', [
    (np.zeros((4, 4, 3), np.uint16) + 1000, 'uint8 RGB'),
    (Image.fromarray(np.zeros((4, 4), np.uint16) + 1000), '16/32-bit'),
    (np.zeros((4, 4, 2), np.uint8), 'expected HxWx3'),
    (np.zeros((0, 4, 3), np.uint8), 'empty'),
    ('/nonexistent.png', 'cannot read image'),
])
def test_bad_inputs_are_clear_errors(segmenter, item, match):
  with pytest.raises(UserError, match=match):
    segmenter(item)


def test_predict_writes_the_segmenters_masks(run, segmenter, tmp_path):
  images = _images(3)[:3]
  folder = tmp_path / 'in'
  folder.mkdir()
  for i, image in enumerate(images):
    Image.fromarray(image).save(folder / f'{i}.png')
  written = predict_lib.predict(*run, [str(folder)], str(tmp_path / 'out'), overlays=False)
  for image, path in zip(images, written):
    mask = np.asarray(Image.open(path))
    np.testing.assert_array_equal(mask, _reference(*run, image).argmax(-1))


def test_exported_models_give_the_same_labels(run, segmenter, tmp_path):
  config, workdir = run
  mesh = sharding.make_mesh(jax.devices()[:1])
  variables = jax.device_get(checkpoint.load_variables(config, workdir, None, mesh)[0])
  images = _images(4)
  want = segmenter(images)
  path = str(tmp_path / 'm.stablehlo')
  export.export(config, variables, 'stablehlo', path)
  for got, expected in zip(Segmenter.from_exported(path)(images), want):
    np.testing.assert_array_equal(got.labels, expected.labels)
    np.testing.assert_allclose(got.logits, expected.logits, rtol=1e-4, atol=1e-4)
  path = str(tmp_path / 'm.onnx')
  export.export(config, variables, 'onnx', path, export.InputSpec(None, 37, 50))
  fixed = Segmenter.from_exported(path)
  np.testing.assert_array_equal(fixed([images[0], images[3]])[1].labels, want[3].labels)
  with pytest.raises(UserError, match='takes 37x50 images'):
    fixed(images[1])
  os.remove(path + '.json')
  with pytest.raises(UserError, match='no deeplab_jax metadata'):
    Segmenter.from_exported(path)
