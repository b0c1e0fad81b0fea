"""Input-pipeline throughput: training (and eval) images/s on VOC-sized JPEGs.

    python -m benchmarks.input_pipeline --config configs/voc_aspp.py

Writes --num_images VOC-sized (500x375) JPEGs with palette-PNG masks as the
official `VOCtrainval_11-May-2012.tar` and SBD `benchmark.tgz` archives in a
temporary directory, prepares `voc2012_sbd` from them (the one-off step a
user's first run does), then times the config's training pipeline: JPEG
decode, random scale, pad, random crop, flip, batching, as `train.py` runs it
(`input_pipeline.train_iterator`, all host cores). With
`--config.dataset.data_dir=DIR` naming an already prepared dataset, times that
instead. Prints one JSON line per pipeline: images/s over --batches batches
after --warmup batches. Needs TensorFlow (unlike the other benchmarks).
"""

from __future__ import annotations

import json
import os
import tempfile
import time

import numpy as np
from absl import app
from absl import flags
from ml_collections import config_flags

from deeplab_jax.testing import fake_archives
from deeplab_jax.data import input_pipeline


def natural_looking(rng, height=375, width=500, num_classes=21):
  """A smooth, textured image (JPEG-compresses like a photo) and a label map.

  A few random discs of the classes over a background, each with its own
  colour ramp, plus sensor-like noise; void (255) on the disc borders.
  """
  rows, cols = np.mgrid[0:height, 0:width].astype(np.float32)
  label = np.zeros((height, width), np.uint8)
  image = np.stack([rows / height * 120 + 60, cols / width * 120 + 40,
                    np.full_like(rows, 90)], -1)
  for _ in range(rng.integers(1, 5)):
    cy, cx = rng.uniform(0, height), rng.uniform(0, width)
    radius = rng.uniform(30, 150)
    dist = np.hypot(rows - cy, cols - cx)
    inside = dist < radius
    label[inside] = rng.integers(1, num_classes)
    image[inside] = rng.uniform(0, 255, 3) * (0.7 + 0.3 * np.cos(dist[inside] / 9))[:, None]
    label[np.abs(dist - radius) < 2.5] = 255
  image += rng.normal(0, 6, image.shape)
  return np.clip(image, 0, 255).astype(np.uint8), label


def write_voc_like(manual_dir, num_images, seed=0):
  """VOC + SBD archives: half the images in VOC train/val, half SBD-only."""
  rng = np.random.default_rng(seed)
  examples = [(f'2008_{i:06d}', *natural_looking(rng)) for i in range(num_images)]
  half = num_images // 2
  fake_archives.write_voc_tar(
      os.path.join(manual_dir, fake_archives.VOC_TAR),
      {'train': examples[:half // 2], 'val': examples[half // 2:half]}, quality=90)
  sbd = [(i, image, np.where(label == 255, 0, label))  # SBD has no void.
         for i, image, label in examples[half:]]
  fake_archives.write_sbd_tgz(os.path.join(manual_dir, fake_archives.SBD_TGZ),
                              {'train': sbd, 'val': []}, quality=90)


def time_batches(batches, num_batches, warmup):
  for _ in range(warmup):
    next(batches)
  start = time.perf_counter()
  images = 0
  for _ in range(num_batches):
    images += len(next(batches)['image'])
  return images, time.perf_counter() - start


def main(argv):
  del argv
  f = flags.FLAGS
  config = f.config
  with tempfile.TemporaryDirectory() as tmp:
    if config.dataset.data_dir is None:
      manual_dir = os.path.join(tmp, 'manual')
      os.makedirs(manual_dir)
      start = time.perf_counter()
      write_voc_like(manual_dir, f.num_images)
      config.dataset.name, config.dataset.builder_config = 'voc2012_sbd', ''
      config.dataset.data_dir, config.dataset.manual_dir = tmp, manual_dir
      builder = input_pipeline.get_builder(config.dataset)
      prepare_s = time.perf_counter() - start
    else:
      builder = input_pipeline.get_builder(config.dataset)
      prepare_s = None
    common = {'dataset': builder.info.full_name, 'host_cpus': os.cpu_count(),
              'batch': config.batch_size}
    batches = iter(input_pipeline.train_iterator(config, builder, config.batch_size))
    images, seconds = time_batches(batches, f.batches, f.warmup)
    line = {'pipeline': 'train', **common, 'crop': config.input.crop_size,
            'scales': list(config.input.scales) or list(config.input.scale_range),
            'images': images, 'images_per_sec': round(images / seconds, 1)}
    if prepare_s is not None:
      line['prepare_s'] = round(prepare_s, 1)
    print(json.dumps(line))
    if f.eval:
      split = config.dataset.eval_split
      batches = input_pipeline.eval_iterator(config, builder, split, config.eval_batch_size)
      count = min(f.batches, input_pipeline.eval_num_batches(
          builder, split, config.eval_batch_size) - 1)
      images, seconds = time_batches(batches, count, 1)
      print(json.dumps({'pipeline': 'eval', **common, 'batch': config.eval_batch_size,
                        'eval_size': config.input.eval_size, 'images': images,
                        'images_per_sec': round(images / seconds, 1)}))


if __name__ == '__main__':
  config_flags.DEFINE_config_file('config', 'configs/voc_aspp.py', 'Config file.',
                                  lock_config=False)
  flags.DEFINE_integer('num_images', 200, 'Generated images (VOC-sized JPEGs).')
  flags.DEFINE_integer('batches', 40, 'Timed batches.')
  flags.DEFINE_integer('warmup', 5, 'Batches before timing (fills the buffers).')
  flags.DEFINE_bool('eval', True, 'Also time the eval pipeline.')
  app.run(main)
