"""tf.data pipelines for training and evaluation (host side, TF hidden from GPUs).

Every op is a `dict -> dict` function; image and label share one random draw.
Randomness is stateless and keyed by (seed, process, example position), so the
stream of batches is a pure function of the config: a resumed run skips to its
step and sees exactly the batches it would have seen.

Train: random scale -> pad (image with the mean, label with 255) to the crop ->
random crop -> random horizontal flip. Labels are resized by nearest only.
Eval: each image padded to `eval_size` with a validity mask; its original size
is kept so predictions can be cropped back and padding never counts.
"""

from __future__ import annotations

import math
import os

import jax
import numpy as np
from absl import logging

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')  # Before TF loads.
import tensorflow as tf  # pylint: disable=g-import-not-at-top
import tensorflow_datasets as tfds

from deeplab_jax.errors import UserError

tf.config.set_visible_devices([], 'GPU')  # Keep TF off the accelerators.


def get_builder(dataset_config):
  """The TFDS builder for `config.dataset`, prepared (built) if needed."""
  if dataset_config.name == 'synthetic_shapes':
    from deeplab_jax.data import shapes  # pylint: disable=unused-import,import-outside-toplevel  # Registers it.
  name = dataset_config.name
  if dataset_config.builder_config:
    name = f'{name}/{dataset_config.builder_config}'
  try:
    builder = tfds.builder(name, data_dir=dataset_config.data_dir)
  except Exception as e:  # TFDS raises several types for unknown names.
    raise UserError(f'cannot load dataset {name!r}: {e}') from e
  if not tf.io.gfile.exists(os.path.join(builder.data_dir, 'dataset_info.json')):
    logging.info('Preparing %s in %s (first use only).', name, builder.data_dir)
  builder.download_and_prepare()
  return builder


def _rgb_mean(model_config):
  mean = np.asarray(model_config.pixel_mean, np.float32)
  return mean[::-1] if model_config.channel_order == 'bgr' else mean


def _decode(example):
  return {'image': tf.cast(example['image'], tf.float32),
          'label': tf.cast(example['segmentation_mask'], tf.int32)}


def _pad_to(image, label, height, width, mean):
  """Pads bottom/right: image with `mean`, label with 255."""
  h, w = tf.shape(image)[0], tf.shape(image)[1]
  paddings = [[0, tf.maximum(height - h, 0)], [0, tf.maximum(width - w, 0)], [0, 0]]
  image = tf.pad(image - mean, paddings) + mean
  label = tf.pad(label, paddings, constant_values=255)
  return image, label


def train_preprocess(example, seed, input_config, mean):
  """Random scale, pad, crop, flip; `seed` is a stateless seed (2,) int."""
  seeds = tf.random.experimental.stateless_split(seed, 5)
  image, label = example['image'], example['label']
  if input_config.scales:
    scales = tf.constant(input_config.scales, tf.float32)
    index = tf.random.stateless_uniform([], seeds[0], 0, len(input_config.scales),
                                        dtype=tf.int32)
    scale = scales[index]
  else:
    low, high = input_config.scale_range
    scale = tf.random.stateless_uniform([], seeds[0], low, high)
  size = tf.cast(tf.round(tf.cast(tf.shape(image)[:2], tf.float32) * scale), tf.int32)
  image = tf.image.resize(image, size, method='bilinear')
  label = tf.image.resize(label, size, method='nearest')

  crop = input_config.crop_size
  image, label = _pad_to(image, label, crop, crop, mean)
  h, w = tf.shape(image)[0], tf.shape(image)[1]
  top = tf.random.stateless_uniform([], seeds[1], 0, h - crop + 1, dtype=tf.int32)
  left = tf.random.stateless_uniform([], seeds[2], 0, w - crop + 1, dtype=tf.int32)
  image = image[top:top + crop, left:left + crop]
  label = label[top:top + crop, left:left + crop]

  if input_config.flip:
    flip = tf.random.stateless_uniform([], seeds[3]) < 0.5
    image = tf.cond(flip, lambda: tf.reverse(image, [1]), lambda: image)
    label = tf.cond(flip, lambda: tf.reverse(label, [1]), lambda: label)
  image = tf.cast(tf.clip_by_value(tf.round(image), 0, 255), tf.uint8)
  return {'image': tf.ensure_shape(image, [crop, crop, 3]),
          'label': tf.ensure_shape(label[..., 0], [crop, crop])}


def eval_preprocess(example, eval_size, mean):
  """Pads to eval_size x eval_size; keeps a validity mask and the true size."""
  image, label = example['image'], example['label']
  h, w = tf.shape(image)[0], tf.shape(image)[1]
  check = tf.debugging.assert_less_equal(
      tf.maximum(h, w), eval_size,
      message=f'an eval image is larger than input.eval_size={eval_size}; '
              'raise --config.input.eval_size')
  with tf.control_dependencies([check]):
    image, label = _pad_to(image, label, eval_size, eval_size, mean)
  valid = tf.logical_and(tf.range(eval_size)[:, None] < h,
                         tf.range(eval_size)[None, :] < w)
  return {'image': tf.cast(tf.round(image), tf.uint8),
          'label': label[..., 0],
          'valid': valid,
          'size': tf.stack([h, w])}


def train_iterator(config, builder, local_batch_size, start_step=0):
  """Endless iterator of numpy batches, starting at `start_step`'s batch."""
  split = tfds.split_for_jax_process(config.dataset.train_split)
  ds = builder.as_dataset(split=split, shuffle_files=False)
  ds = ds.map(_decode, num_parallel_calls=tf.data.AUTOTUNE)
  if config.input.cache:
    ds = ds.cache()
  process_seed = config.seed * 1000 + jax.process_index()
  ds = ds.repeat().shuffle(config.input.shuffle_buffer, seed=process_seed)
  ds = ds.enumerate().skip(start_step * local_batch_size)
  mean = _rgb_mean(config.model)

  def preprocess(position, example):
    seed = tf.stack([tf.constant(process_seed, tf.int64), position])
    return train_preprocess(example, seed, config.input, mean)

  ds = ds.map(preprocess, num_parallel_calls=tf.data.AUTOTUNE)
  ds = ds.batch(local_batch_size, drop_remainder=True)
  ds = ds.prefetch(tf.data.AUTOTUNE)
  options = tf.data.Options()
  options.deterministic = True
  return tfds.as_numpy(ds.with_options(options))


def eval_num_batches(builder, split, local_batch_size):
  """Batches per process: the same on every process (the largest shard's)."""
  total = builder.info.splits[split].num_examples
  per_process = math.ceil(total / jax.process_count())
  return math.ceil(per_process / local_batch_size)


def eval_iterator(config, builder, split, local_batch_size):
  """Finite iterator of full-size numpy batches; padding examples have valid=0."""
  ds = builder.as_dataset(split=tfds.split_for_jax_process(split), shuffle_files=False)
  mean = _rgb_mean(config.model)
  size = config.input.eval_size
  ds = ds.map(lambda ex: eval_preprocess(_decode(ex), size, mean),
              num_parallel_calls=tf.data.AUTOTUNE)
  ds = ds.batch(local_batch_size).prefetch(tf.data.AUTOTUNE)
  num_batches = eval_num_batches(builder, split, local_batch_size)
  empty = {'image': np.zeros((local_batch_size, size, size, 3), np.uint8),
           'label': np.full((local_batch_size, size, size), 255, np.int32),
           'valid': np.zeros((local_batch_size, size, size), bool),
           'size': np.zeros((local_batch_size, 2), np.int32)}
  batches = iter(tfds.as_numpy(ds))
  for _ in range(num_batches):
    batch = next(batches, None)
    if batch is None:
      yield empty
      continue
    n = len(batch['image'])
    if n < local_batch_size:
      batch = {k: np.concatenate([v, empty[k][n:]]) for k, v in batch.items()}
    yield batch
