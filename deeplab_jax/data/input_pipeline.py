"""tf.data pipelines for training and evaluation (host side, TF hidden from GPUs).

Every op is a `dict -> dict` function; image and label share one random draw.
Randomness is stateless and keyed by (seed, process, example position), so the
stream of batches is a pure function of the config: a resumed run skips to its
step and sees exactly the batches it would have seen.

Train: random scale -> pad (image with the mean, label with 255) to the crop ->
random crop -> random horizontal flip, drawn once and applied in one pass that
computes only the crop. Labels are resized by nearest only. How the image is
scaled is `input.resize` (`RESIZE_MODES`): 'caffe' is DeepLab's Caffe data
layer (truncated scaled size, OpenCV's INTER_LINEAR / INTER_NEAREST, padding
exactly 0 at the network's input through the batch's 'valid' mask), 'aligned'
this pipeline's own corner-aligned resampling (not Caffe's).
Eval: each image padded to `eval_size` (a square or height x width) with a validity mask; its original size
is kept so predictions can be cropped back and padding never counts.

Images are read with TFDS's decoding skipped and decoded here
(`decode_image`): JPEGs with the accurate integer IDCT, the pixels OpenCV
(Caffe's data layer), PIL (predict.py) and the PyTorch port see; TF's default
fast IDCT is off by up to a few levels on most pixels.

Caffe's data layer itself, read from DeepLab v2's C++: `caffe_layer`.
"""

from __future__ import annotations

import math
import os
import re

import jax
import numpy as np

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')  # Before TF loads.
import tensorflow as tf  # pylint: disable=g-import-not-at-top
import tensorflow_datasets as tfds

from deeplab_jax.data import caffe_layer
from deeplab_jax.data import datasets
from deeplab_jax.errors import UserError
from deeplab_jax.inference import eval_hw

tf.config.set_visible_devices([], 'GPU')  # Keep TF off the accelerators.

ID_FEATURE = 'image_id'  # Every built-in dataset's example id (text).


def get_builder(dataset_config):
  """The TFDS builder for `config.dataset`, prepared (built) if needed."""
  return datasets.builder(dataset_config)


def pad_colour(model_config):
  """The model's `pixel_mean` as an RGB colour: what padding is filled with."""
  mean = np.asarray(model_config.pixel_mean, np.float32)
  return mean[::-1] if model_config.channel_order == 'bgr' else mean


# Both pipelines run with fixed parallelism (a map call per core) and no
# tf.data autotuning: destroying an autotuned iterator (after evaluation's
# last batch, at the end of training) waits for tf.data's optimisation
# thread to wake, up to its period of ~1 minute (stack: RootDataset::Iterator
# ::~Iterator -> ~LogicalThreadWrapper); measured 24 s in 3 of 5 loaded runs,
# ~50 s at the end of evaluate.py. Throughput is the same within noise.
_PARALLEL_CALLS = os.cpu_count() or 1
_PREFETCH_BATCHES = 2


def _without_autotune():
  options = tf.data.Options()
  options.autotune.enabled = False
  return options


def decode_image(data):
  """uint8 HxWx3 from encoded image bytes (a scalar tf.string).

  JPEGs with the accurate integer IDCT (`dct_method='INTEGER_ACCURATE'`),
  pixel for pixel what libjpeg gives OpenCV and PIL; other formats (PNG,
  ...) by `tf.io.decode_image`. Greyscale becomes RGB.
  """
  image = tf.cond(
      tf.io.is_jpeg(data),
      lambda: tf.io.decode_jpeg(data, channels=3, dct_method='INTEGER_ACCURATE'),
      lambda: tf.io.decode_image(data, channels=3, expand_animations=False))
  image.set_shape([None, None, 3])
  return image


def skip_image_decoding(features: datasets.Features):
  """`as_dataset(decoders=...)` that leaves the image encoded for `decoder`."""
  return {features.image: tfds.decode.SkipDecoding()}


def decoder(features: datasets.Features):
  """`example -> {'image': uint8 HxWx3, 'label': int32 HxWx1}` for a dataset
  read with `skip_image_decoding(features)` (the image still encoded bytes,
  decoded by `decode_image`; the label decoded by TFDS).

  Stored label values go through `features.label_table` when there is one
  (Cityscapes: label ids -> train ids, the rest 255).
  """
  table = None
  if features.label_table is not None:
    table = tf.constant(np.asarray(features.label_table, np.int32))

  def decode(example):
    label = tf.cast(example[features.label], tf.int32)
    if table is not None:
      label = tf.gather(table, label)
    return {'image': decode_image(example[features.image]), 'label': label}

  return decode


# `input.resize`: how training scales images and labels (the augmentation).
RESIZE_MODES = ('aligned', 'caffe')


def resize_mode(input_config):
  """`input_config.resize`, checked ('aligned' when the field is absent)."""
  mode = input_config.get('resize', 'aligned') if hasattr(input_config, 'get') else 'aligned'
  if mode not in RESIZE_MODES:
    raise UserError(f'input.resize={mode!r} is not one of {list(RESIZE_MODES)}; '
                    "use --config.input.resize=caffe (Caffe's data layer) or "
                    '=aligned (corner-aligned resampling)')
  return mode


def pad_to(example, height, width, mean):
  """Pads bottom/right up to height x width: image with `mean`, label with 255."""
  image, label = tf.cast(example['image'], tf.float32), example['label']
  h, w = tf.shape(image)[0], tf.shape(image)[1]
  paddings = [[0, tf.maximum(height - h, 0)], [0, tf.maximum(width - w, 0)], [0, 0]]
  return {**example,
          'image': tf.pad(image - mean, paddings) + mean,
          'label': tf.pad(label, paddings, constant_values=255)}


# Training augmentation: one random draw (scale, crop place, flip) shared by
# image and label, then applied in one pass that computes only the crop's
# pixels. Both functions work eagerly and inside tf.data.

def draw_augmentation(seed, height, width, input_config):
  """The random part: {'size': scaled (h, w), 'top', 'left', 'flip'}.

  `seed` is a stateless seed (2,) int: the same seed, the same draw. The scale
  is one of `input_config.scales` (the paper's discrete set) or, when that is
  empty, uniform in `scale_range`. The scaled size is float32(h) * scale
  rounded, or truncated with `input_config.resize='caffe'` (Caffe's
  `img_height *= scale` on an int: data_transformer.cpp l. 537). The crop's
  top-left is uniform over the places where a crop fits in the scaled image
  padded (bottom/right) up to the crop size, as Caffe's `Rand(padded - crop
  + 1)` (l. 584-585).
  """
  seeds = tf.random.experimental.stateless_split(seed, 4)
  if input_config.scales:
    scales = tf.constant(tuple(input_config.scales), tf.float32)
    index = tf.random.stateless_uniform([], seeds[0], 0, len(input_config.scales),
                                        dtype=tf.int32)
    scale = tf.gather(scales, index)
  else:
    low, high = input_config.scale_range
    scale = tf.random.stateless_uniform([], seeds[0], low, high)
  source = tf.cast(tf.stack([height, width]), tf.float32)
  scaled = source * scale
  if resize_mode(input_config) == 'aligned':
    scaled = tf.round(scaled)
  size = tf.maximum(tf.cast(scaled, tf.int32), 1)  # The cast truncates.
  crop = input_config.crop_size
  top = tf.random.stateless_uniform([], seeds[1], 0, tf.maximum(size[0] - crop, 0) + 1,
                                    dtype=tf.int32)
  left = tf.random.stateless_uniform([], seeds[2], 0, tf.maximum(size[1] - crop, 0) + 1,
                                     dtype=tf.int32)
  flip = tf.random.stateless_uniform([], seeds[3]) < 0.5 if input_config.flip else False
  return {'size': size, 'top': top, 'left': left, 'flip': tf.convert_to_tensor(flip)}


def apply_augmentation(example, draw, crop, mean):
  """Scale, pad, crop and flip as drawn, computing only the crop x crop pixels.

  `input.resize='aligned'` (for 'caffe' see `caffe_layer.apply_augmentation`).
  Equivalent to: resize the image (bilinear) and label (nearest) to
  `draw['size']`, pad bottom/right to the crop (image with `mean`, label with
  255), take the crop at (top, left), mirror it if `flip`. Resizing aligns
  corners (scaled pixel i samples source position i * (h - 1) / (size - 1)),
  so the image's last row and column stay image and everything past them is
  padding. This is NOT Caffe's data layer (OpenCV's half-pixel resize of a
  truncated size), nor is the uint8 mean padding exactly 0 at the network's
  input. One `tf.image.crop_and_resize` each for image and label, at the same
  sample positions.
  """
  image, label = example['image'], example['label']
  source = tf.cast(tf.shape(image)[:2], tf.float32)
  size = tf.cast(draw['size'], tf.float32)
  # Normalised box corners; (1 - 1e-6) keeps the last scaled pixel inside
  # the image despite rounding, the next one is then well outside.
  span = (1.0 - 1e-6) / tf.maximum(size - 1.0, 1.0)
  span = tf.where(source > 1.0, span, 0.0)
  top, left = tf.cast(draw['top'], tf.float32), tf.cast(draw['left'], tf.float32)
  y1, y2 = top * span[0], (top + crop - 1) * span[0]
  x1, x2 = left * span[1], (left + crop - 1) * span[1]
  x1, x2 = tf.cond(draw['flip'], lambda: (x2, x1), lambda: (x1, x2))
  boxes = tf.stack([y1, x1, y2, x2])[None]
  image = tf.image.crop_and_resize(image[None], boxes, [0], [crop, crop],
                                   method='bilinear', extrapolation_value=-1.0)[0]
  label = tf.image.crop_and_resize(label[None], boxes, [0], [crop, crop],
                                   method='nearest', extrapolation_value=255.0)[0]
  image = tf.where(image[..., :1] < 0, tf.constant(mean, tf.float32), image)
  return {**example, 'image': image, 'label': tf.cast(label, tf.int32)}


def train_preprocess(example, seed, input_config, mean):
  """Random scale, pad to the crop, random crop, random flip; uint8 image out.

  `example`: {'image': HxWx3, 'label': int32 HxWx1}; `seed`: stateless (2,).
  With `input_config.resize='caffe'` the output also has 'valid' (bool
  crop x crop, False on padding): the model sets those pixels to exactly 0
  after normalisation (`DeepLab(..., valid=...)`), as Caffe's float padding.
  """
  shape = tf.shape(example['image'])
  draw = draw_augmentation(seed, shape[0], shape[1], input_config)
  caffe = resize_mode(input_config) == 'caffe'
  apply = caffe_layer.apply_augmentation if caffe else apply_augmentation
  example = apply(example, draw, input_config.crop_size, mean)
  image = tf.cast(tf.clip_by_value(tf.round(example['image']), 0, 255), tf.uint8)
  out = {'image': image, 'label': example['label'][..., 0]}
  if caffe:
    out['valid'] = example['valid']
  return out


def eval_preprocess(example, eval_size, mean):
  """Pads to `eval_size`; keeps a validity mask and the true size.

  `eval_size`: a square side (VOC: 513) or (height, width) (Cityscapes:
  (1024, 2048)). Larger images are an error naming the config field.
  """
  height, width = eval_hw(eval_size)
  h, w = tf.shape(example['image'])[0], tf.shape(example['image'])[1]
  check = tf.debugging.Assert(
      tf.logical_and(h <= height, w <= width),
      [f'an eval image is larger than input.eval_size={eval_size}; raise '
       '--config.input.eval_size. Image height, width:', h, w])
  with tf.control_dependencies([check]):
    padded = pad_to(example, height, width, mean)
  valid = tf.logical_and(tf.range(height)[:, None] < h,
                         tf.range(width)[None, :] < w)
  return {'image': tf.cast(tf.round(padded['image']), tf.uint8),
          'label': padded['label'][..., 0],
          'valid': valid,
          'size': tf.stack([h, w])}


def train_iterator(config, builder, local_batch_size, start_step=0,
                   start_position=None, process_index=None, process_count=None):
  """Endless iterator of numpy batches, starting at `start_step`'s batch
  (`train_dataset` as numpy)."""
  return tfds.as_numpy(train_dataset(config, builder, local_batch_size, start_step,
                                     start_position, process_index, process_count))


def train_dataset(config, builder, local_batch_size, start_step=0,
                  start_position=None, process_index=None, process_count=None):
  """Endless tf.data stream of batches, starting at `start_step`'s batch.

  Each process reads its own shard of the split (`tfds.split_for_jax_process`)
  as a stream of epochs; epoch e is the shard shuffled (buffer
  `input.shuffle_buffer`) with a seed of (config.seed, process, e), and example
  number p of the stream is augmented with the stateless seed (config.seed,
  process, p). The stream is therefore a pure function of the config and the
  process, and starting at position p = start_step * local_batch_size (or
  `start_position`) jumps straight to epoch p // epoch_size and skips only the
  p % epoch_size examples before it in that epoch: at most one epoch is read,
  never the whole history, and without `input.cache` those examples are
  skipped still encoded (decoding happens after the skip).
  `process_index` / `process_count` default to JAX's (tests emulate hosts).
  """
  index = jax.process_index() if process_index is None else process_index
  count = jax.process_count() if process_count is None else process_count
  split = tfds.split_for_jax_process(config.dataset.train_split,
                                     process_index=index, process_count=count)
  features = datasets.features(config.dataset)
  decode = decoder(features)
  if config.input.cache:  # Decoded once, kept in memory, skipped decoded.
    ds = builder.as_dataset(split=split, shuffle_files=False,
                            decoders=skip_image_decoding(features))
    ds = ds.map(decode, num_parallel_calls=_PARALLEL_CALLS).cache()
    decode_late = None
  else:  # Encoded bytes until after the skip.
    keys = (features.image, features.label)
    skip = {k: tfds.decode.SkipDecoding() for k in keys}
    ds = builder.as_dataset(split=split, shuffle_files=False, decoders=skip)
    ds = ds.map(lambda ex: {k: ex[k] for k in keys})
    label_feature = builder.info.features[features.label]
    decode_late = lambda ex: decode({
        features.image: ex[features.image],
        features.label: label_feature.decode_example(ex[features.label])})
  epoch_size = builder.info.splits[split].num_examples
  if epoch_size == 0:
    raise UserError(f'the training split {split!r} of {builder.info.name} is '
                    'empty for this process; check --config.dataset.train_split.')
  process_seed = config.seed * 1000 + index
  position = start_step * local_batch_size if start_position is None else start_position
  first_epoch, offset = divmod(position, epoch_size)

  def epoch(e):
    seed = process_seed * 1_000_003 + e  # int64: distinct for every epoch.
    return ds.shuffle(config.input.shuffle_buffer, seed=seed,
                      reshuffle_each_iteration=False)

  ds = tf.data.Dataset.range(first_epoch, 2**62).flat_map(epoch).skip(offset)
  ds = tf.data.Dataset.zip(tf.data.Dataset.range(position, 2**62), ds)
  mean = pad_colour(config.model)

  def preprocess(position, example):
    if decode_late is not None:
      example = decode_late(example)
    seed = tf.stack([tf.constant(process_seed, tf.int64), position])
    return train_preprocess(example, seed, config.input, mean)

  ds = ds.map(preprocess, num_parallel_calls=_PARALLEL_CALLS)
  ds = ds.batch(local_batch_size, drop_remainder=True)
  ds = ds.prefetch(_PREFETCH_BATCHES)
  options = _without_autotune()
  options.deterministic = True
  return ds.with_options(options)


def check_split(builder, split):
  """Raises a UserError naming `split` and the splits the dataset has."""
  if split not in builder.info.splits:
    raise UserError(f'{builder.info.full_name} has no split {split!r}; its splits: '
                    f'{sorted(builder.info.splits)} (set --config.dataset.eval_split)')


def eval_num_batches(builder, split, local_batch_size):
  """Batches per process: the same on every process (the largest shard's)."""
  check_split(builder, split)
  total = builder.info.splits[split].num_examples
  per_process = math.ceil(total / jax.process_count())
  return math.ceil(per_process / local_batch_size)


def eval_dataset(config, builder, split, local_batch_size):
  """This process's shard of `split` as padded tf.data batches (not padded
  to whole batches: `eval_iterator` does that)."""
  check_split(builder, split)
  features = datasets.features(config.dataset)
  ds = builder.as_dataset(split=tfds.split_for_jax_process(split), shuffle_files=False,
                          decoders=skip_image_decoding(features))
  mean = pad_colour(config.model)
  size = config.input.eval_size
  decode = decoder(features)
  has_id = ID_FEATURE in builder.info.features

  def preprocess(example):
    out = eval_preprocess(decode(example), size, mean)
    out['id'] = example[ID_FEATURE] if has_id else tf.constant('')
    return out

  ds = ds.map(preprocess, num_parallel_calls=_PARALLEL_CALLS)
  ds = ds.batch(local_batch_size).prefetch(_PREFETCH_BATCHES)
  return ds.with_options(_without_autotune())


def eval_iterator(config, builder, split, local_batch_size):
  """Finite iterator of full-size numpy batches; padding examples have valid=0.

  Each batch: 'image' uint8 BxHxWx3 and 'label' int32 BxHxW padded to
  `input.eval_size`, 'valid' bool BxHxW, 'size' int32 Bx2 (true height,
  width), 'id' bytes B (the dataset's `image_id`; b'' for padding examples).
  """
  ds = eval_dataset(config, builder, split, local_batch_size)
  size = config.input.eval_size
  height, width = eval_hw(size)
  num_batches = eval_num_batches(builder, split, local_batch_size)
  empty = {'image': np.zeros((local_batch_size, height, width, 3), np.uint8),
           'label': np.full((local_batch_size, height, width), 255, np.int32),
           'valid': np.zeros((local_batch_size, height, width), bool),
           'size': np.zeros((local_batch_size, 2), np.int32),
           'id': np.full((local_batch_size,), b'', object)}
  batches = iter(tfds.as_numpy(ds))
  for _ in range(num_batches):
    try:
      batch = next(batches, None)
    except tf.errors.InvalidArgumentError as e:
      found = re.search(r'Image height, width:\] \[(\d+)\] \[(\d+)\]', e.message)
      if not found:
        raise
      raise UserError(
          f'an eval image of {found[1]}x{found[2]} is larger than '
          f'input.eval_size={size}; raise --config.input.eval_size '
          f'(a side, or height,width)') from None
    if batch is None:
      yield empty
      continue
    n = len(batch['image'])
    if n < local_batch_size:
      batch = {k: np.concatenate([v, empty[k][n:]]) for k, v in batch.items()}
    yield batch
