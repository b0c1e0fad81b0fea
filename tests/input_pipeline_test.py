"""tf.data pipelines: shapes, shared random draws, determinism, eval padding."""

import ml_collections
import numpy as np
import pytest
import tensorflow as tf

from deeplab_jax.data import input_pipeline
from deeplab_jax.errors import UserError

MEAN = np.asarray((123.675, 116.28, 103.53), np.float32)


def _take(iterator, n):
  return [next(iterator) for _ in range(n)]


def test_train_batches_shapes_and_ranges(tiny_config, tiny_builder):
  batch = next(iter(input_pipeline.train_iterator(tiny_config, tiny_builder, 8)))
  assert batch['image'].shape == (8, 32, 32, 3) and batch['image'].dtype == np.uint8
  assert batch['label'].shape == (8, 32, 32) and batch['label'].dtype == np.int32
  assert set(np.unique(batch["label"]).tolist()) <= set(range(5)) | {255}


def test_train_stream_is_deterministic_and_resumable(tiny_config, tiny_builder):
  first = _take(iter(input_pipeline.train_iterator(tiny_config, tiny_builder, 4)), 5)
  again = _take(iter(input_pipeline.train_iterator(tiny_config, tiny_builder, 4)), 5)
  resumed = _take(iter(input_pipeline.train_iterator(
      tiny_config, tiny_builder, 4, start_step=3)), 2)
  for a, b in zip(first, again):
    np.testing.assert_array_equal(a['image'], b['image'])
    np.testing.assert_array_equal(a['label'], b['label'])
  for a, b in zip(first[3:], resumed):
    np.testing.assert_array_equal(a['image'], b['image'])
    np.testing.assert_array_equal(a['label'], b['label'])
  tiny_config.seed += 1  # Another seed than the config's own.
  other = next(iter(input_pipeline.train_iterator(tiny_config, tiny_builder, 4)))
  assert not np.array_equal(other['image'], first[0]['image'])


def _coded_example(height=40, width=56):
  """Image whose red channel is 10 * label, with labels varying by position."""
  rows, cols = np.mgrid[0:height, 0:width]
  label = ((rows // 8 + cols // 8) % 6).astype(np.int32)
  image = np.stack([label * 10.0, rows * 2.0, cols * 2.0], -1).astype(np.float32)
  return {'image': tf.constant(image), 'label': tf.constant(label[..., None])}


def test_image_and_label_share_scale_crop_and_flip(tiny_config):
  cfg = tiny_config.input
  cfg.scale_range = (1.0, 1.0)  # Exact pixels, so image and label can be compared.
  cfg.crop_size = 48  # Larger than the 40-pixel height: exercises padding too.
  saw_flip = saw_pad = False
  for position in range(12):
    out = input_pipeline.train_preprocess(
        _coded_example(), tf.constant([5, position], tf.int64), cfg, MEAN)
    image, label = out['image'].numpy(), out['label'].numpy()
    valid = label != 255
    np.testing.assert_array_equal(image[..., 0][valid], label[valid] * 10)
    # Padding: label 255, image = the mean colour (rounded).
    np.testing.assert_array_equal(image[~valid], np.broadcast_to(
        np.round(MEAN).astype(np.uint8), image[~valid].shape))
    saw_pad |= bool((~valid).any())
    # Blue is 2 * column: decreasing along a row means the crop was flipped.
    row = image[0, :, 2][valid[0]].astype(int)
    saw_flip |= bool(len(row) > 1 and np.all(np.diff(row) < 0))
  assert saw_pad and saw_flip


def test_eval_batches_pad_mask_and_partial_batch(tiny_config, tiny_builder):
  batches = list(input_pipeline.eval_iterator(tiny_config, tiny_builder, 'val', 3))
  assert len(batches) == input_pipeline.eval_num_batches(tiny_builder, 'val', 3) == 3
  sizes = np.concatenate([b['size'] for b in batches])
  valid = np.concatenate([b['valid'] for b in batches])
  label = np.concatenate([b['label'] for b in batches])
  assert valid.shape == (9, 64, 64)
  assert (sizes[8] == 0).all() and not valid[8].any()  # The 9th is filler.
  for (h, w), v, lab in zip(sizes[:8], valid[:8], label[:8]):
    assert v[:h, :w].all() and v.sum() == h * w
    assert (lab[~v] == 255).all()


def test_eval_image_larger_than_eval_size_is_an_error(tiny_config, tiny_builder):
  tiny_config.input.eval_size = 16
  with pytest.raises(UserError, match=r'larger than input.eval_size=16'):
    list(input_pipeline.eval_iterator(tiny_config, tiny_builder, 'val', 2))


def test_eval_size_can_be_height_by_width(tiny_config, tiny_builder):
  # Cityscapes-like: wider than high (a config's eval_size field is either kind).
  tiny_config.input = ml_collections.ConfigDict(
      {**tiny_config.input.to_dict(), 'eval_size': (64, 80)})
  batch = next(input_pipeline.eval_iterator(tiny_config, tiny_builder, 'val', 2))
  assert batch['image'].shape == (2, 64, 80, 3) and batch['valid'].shape == (2, 64, 80)
  for (h, w), v in zip(batch['size'], batch['valid']):
    assert v.sum() == h * w and v[:h, :w].all()


def test_pipelines_are_not_autotuned(tiny_config, tiny_builder):
  # Destroying an autotuned iterator (after evaluation's last batch, at the
  # end of training) waits for tf.data's optimisation thread: 24-50 s,
  # measured. Both pipelines run with fixed parallelism instead.
  for ds in (input_pipeline.eval_dataset(tiny_config, tiny_builder, 'val', 4),
             input_pipeline.train_dataset(tiny_config, tiny_builder, 4)):
    assert ds.options().autotune.enabled is False
  assert input_pipeline.train_dataset(tiny_config, tiny_builder, 4).options().deterministic
