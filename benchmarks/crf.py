"""Dense CRF speed: seconds per 500x375 image, 21 labels, 10 iterations.

    python -m benchmarks.crf                      # JAX backend, batch 1 and 8, + host
    python -m benchmarks.crf --backends jax --batches 1,8,32

JAX (`crf.dense_crf` on the permutohedral lattice, jitted, on JAX's default
device) and, where pydensecrf2 is installed, the host reference (one image
per process, all cores). Generated scenes (`crf.scenes`); the ResNet-101 v2
parameters. Prints one JSON line per (backend, batch): median seconds per
batch and per image over --steps calls after a warm-up, compile seconds, and
for JAX the device's peak memory where it reports one.
"""

from __future__ import annotations

import json
import os
import time

import jax
import numpy as np
from absl import app
from absl import flags

from benchmarks import timing
from deeplab_jax import crf
from deeplab_jax.crf import scenes

_BACKENDS = flags.DEFINE_list('backends', ['jax', 'host'], 'jax and/or host.')
_BATCHES = flags.DEFINE_list('batches', ['1', '8'], 'Images per call.')
_STEPS = flags.DEFINE_integer('steps', 3, 'Timed calls.')
_HEIGHT = flags.DEFINE_integer('height', 375, 'Image height.')
_WIDTH = flags.DEFINE_integer('width', 500, 'Image width.')


def _batch(size):
  rng = np.random.default_rng(0)
  made = [scenes.natural_image_and_unaries(rng, _HEIGHT.value, _WIDTH.value, 21)
          for _ in range(size)]
  images = np.stack([m[0] for m in made])
  logits = np.log(np.stack([m[2] for m in made]))
  return images, logits


def _peak_bytes():
  stats = jax.devices()[0].memory_stats() or {}
  return stats.get('peak_bytes_in_use')


def main(argv):
  del argv
  params = crf.RESNET_V2
  for backend in _BACKENDS.value:
    if backend == 'host':
      try:
        import pydensecrf.densecrf  # pylint: disable=import-outside-toplevel,unused-import
      except ImportError:
        print(json.dumps({'backend': 'host', 'skipped': 'pydensecrf2 not installed'}))
        continue
    for batch in map(int, _BATCHES.value):
      images, logits = _batch(batch)
      run = lambda: crf.refine(images, logits, params, backend=backend)
      start = time.perf_counter()
      run()
      compile_s = time.perf_counter() - start
      seconds, _ = timing.time_calls(run, _STEPS.value, warmup=0)
      line = {'backend': backend, 'batch': batch, 'size': [_HEIGHT.value, _WIDTH.value],
              'labels': 21, 'iterations': params.iterations,
              'device': timing.device_name() if backend == 'jax' else f'{os.cpu_count()} CPU cores',
              's_per_batch': round(seconds, 4), 's_per_image': round(seconds / batch, 4),
              'first_call_s': round(compile_s, 2)}
      if backend == 'jax' and _peak_bytes():
        line['peak_gib'] = round(_peak_bytes() / 2**30, 2)
      print(json.dumps(line), flush=True)


if __name__ == '__main__':
  app.run(main)
