"""Dense CRF speed: seconds per 500x375 image, 21 labels, 10 iterations.

    python -m benchmarks.crf                      # JAX backend, batch 1 and 8, + host
    python -m benchmarks.crf --backends jax --batches 1,8,32
    python -m benchmarks.crf --backends jax --batches 8 --breakdown  # where the time goes

JAX (`crf.dense_crf` on the permutohedral lattice, jitted, on JAX's default
device) and, where pydensecrf2 is installed, the host reference (one image
per process, all cores). Generated scenes (`testing.scenes`); the ResNet-101 v2
parameters. Prints one JSON line per (backend, batch): median seconds per
batch and per image over --steps calls after a warm-up, compile seconds, and
for JAX memory: the device's peak where it reports one (GPUs, TPUs), else
this process's peak resident memory so far (`process_peak_rss_gib`, CPUs).

--breakdown adds, for JAX, one line per batch with milliseconds per image
of each part of `crf.refine`, each jitted and timed alone: the bilateral
lattice's embedding and sort on the device (`sort`, packed uint32 keys where
`dense_crf.bilateral_packing` fits) and the rest of its build (`build`), or
its numpy build (`host_lattice`, what `refine` uses on a CPU); one bilateral
lattice filtering of the 21 labels (`bilateral_filter`) and one spatial
grid filtering (`spatial_filter`): each mean-field iteration does one of
each, plus 2 for the normalisers; the mean-field iterations alone on ready
lattices (`mean_field`). --trace DIR writes a profiler trace of one call.
"""

from __future__ import annotations

import json
import os
import resource
import time

import jax
import numpy as np
from absl import app
from absl import flags

from benchmarks import timing
from deeplab_jax import crf
from deeplab_jax.testing import scenes

_BACKENDS = flags.DEFINE_list('backends', ['jax', 'host'], 'jax and/or host.')
_BATCHES = flags.DEFINE_list('batches', ['1', '8'], 'Images per call.')
_STEPS = flags.DEFINE_integer('steps', 3, 'Timed calls.')
_HEIGHT = flags.DEFINE_integer('height', 375, 'Image height.')
_WIDTH = flags.DEFINE_integer('width', 500, 'Image width.')
_BREAKDOWN = flags.DEFINE_bool('breakdown', False, 'Also time the JAX parts.')
_TRACE = flags.DEFINE_string('trace', None, 'Write a jax.profiler trace of one JAX call here.')


def _batch(size):
  rng = np.random.default_rng(0)
  made = [scenes.natural_image_and_unaries(rng, _HEIGHT.value, _WIDTH.value, 21)
          for _ in range(size)]
  images = np.stack([m[0] for m in made])
  logits = np.log(np.stack([m[2] for m in made]))
  return images, logits


def _peak_rss_gib():
  """This process's peak resident memory (Linux reports KiB)."""
  return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2)


def _peak_bytes():
  stats = jax.devices()[0].memory_stats() or {}
  return stats.get('peak_bytes_in_use')


def breakdown(images, logits, params, steps):
  """Milliseconds per image of each part of the JAX CRF (see the module doc)."""
  from deeplab_jax.crf import dense_crf  # pylint: disable=import-outside-toplevel
  from deeplab_jax.crf import lattice  # pylint: disable=import-outside-toplevel
  from deeplab_jax.crf import sizing  # pylint: disable=import-outside-toplevel
  batch, height, width = images.shape[:3]
  images, logits = jax.device_put(images), jax.device_put(logits)
  valid = jax.device_put(np.ones(images.shape[:3], bool))
  time = lambda fn: 1e3 * timing.time_calls(fn, steps)[0] / batch
  line = {'part': 'breakdown', 'batch': batch, 'size': [height, width],
          'device': timing.device_name(), 'unit': 'ms/image',
          'packed': dense_crf.bilateral_packing(height, width, params) is not None}
  sort = jax.jit(lambda im, v: dense_crf.sort_bilateral_vertices(im, v, params))
  line['sort'] = time(lambda: sort(images, valid))
  sorted_vertices = sort(images, valid)
  max_points = sizing.max_points(sorted_vertices.num_points)
  line['max_points'] = max_points
  build = jax.jit(jax.vmap(lambda sv: lattice.build_sorted(sv, max_points)))
  line['build'] = time(lambda: build(sorted_vertices))
  if jax.default_backend() == 'cpu':
    line['host_lattice'] = time(lambda: sizing.host_lattices(images, valid, params))
  lattices = build(sorted_vertices)
  q = jax.nn.softmax(logits, -1)
  bilateral = jax.jit(jax.vmap(lattice.filter))
  line['bilateral_filter'] = time(lambda: bilateral(lattices, q.reshape(batch, -1, q.shape[-1])))
  spatial = jax.jit(jax.vmap(lambda v: dense_crf.grid_gaussian_filter(v, params.sigma_gamma)))
  line['spatial_filter'] = time(lambda: spatial(q))
  mean_field = jax.jit(lambda im, u, v, lat: dense_crf.mean_field(
      im, u, v, params, max_points=max_points, lattices=lat))
  line['mean_field'] = time(lambda: mean_field(images, -logits, valid, lattices))
  return {k: round(v, 2) if isinstance(v, float) else v for k, v in line.items()}


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
      elif backend == 'jax':
        line['process_peak_rss_gib'] = _peak_rss_gib()
      print(json.dumps(line), flush=True)
      if backend == 'jax' and _BREAKDOWN.value:
        print(json.dumps(breakdown(images, logits, params, _STEPS.value)), flush=True)
      if backend == 'jax' and _TRACE.value:
        with jax.profiler.trace(_TRACE.value):
          run()


if __name__ == '__main__':
  app.run(main)
