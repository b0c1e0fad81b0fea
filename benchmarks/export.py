"""Latency per image of each exported format's runtime against JAX, on this machine.

    python -m benchmarks.export --config configs/shapes.py [--workdir runs/shapes] \
        [--formats stablehlo,onnx,savedmodel] [--sizes 192x192,375x500] [--batch 1] [--steps 10]

For each image size, the model (the workdir's weights, or fresh ones when no
--workdir: latency does not depend on the values) is exported in every
format (deeplab_jax/export: the same serving function, at that fixed size
for ONNX, symbolic sizes otherwise) and timed on the same random uint8
batch: JAX (`jax.jit` of the serving function), StableHLO
(`jax.export.deserialize(...).call`, jitted), ONNX (onnxruntime, CPU), the
SavedModel (TensorFlow's `serving_default`). Prints one JSON line per
(size, runtime): ms per batch and per image (median of --steps after a
warm-up call), the largest relative logits difference from JAX, threads.
"""

from __future__ import annotations

import json
import os
import tempfile

import jax
import jax.numpy as jnp
import numpy as np
from absl import app
from absl import flags
from ml_collections import config_flags

from benchmarks import timing
from deeplab_jax import export
from deeplab_jax import models
from deeplab_jax import xla_flags
from deeplab_jax.export import serving


def _variables(config, workdir):
  if workdir:
    from deeplab_jax import checkpoint  # pylint: disable=import-outside-toplevel
    from deeplab_jax import sharding  # pylint: disable=import-outside-toplevel
    variables, _ = checkpoint.load_variables(config, workdir, None,
                                             sharding.make_mesh(jax.devices()[:1]))
    return jax.device_get(variables)
  model = models.build(config)
  return model.init(jax.random.PRNGKey(0), jnp.zeros((1, 65, 65, 3), jnp.uint8))


def measure(config, workdir, formats, sizes, batch, steps):
  """Yields one dict per (size, runtime); see the module docstring."""
  config = config.copy_and_resolve_references()
  config.model.atrous_impl = 'dilation'  # What the exports hold.
  variables = _variables(config, workdir)
  fn = serving.make_serving_fn(config, models.build(config), variables)
  jitted = jax.jit(fn)
  for height, width in sizes:
    images = np.random.RandomState(0).randint(0, 256, (batch, height, width, 3)).astype(np.uint8)
    want = jax.device_get(jitted(images))
    runtimes = [('jax', lambda x: jax.device_get(jitted(x)))]
    with tempfile.TemporaryDirectory() as folder:
      for name in formats:
        symbolic = export.FORMATS[name][1]
        spec = export.InputSpec() if symbolic else export.InputSpec(None, height, width)
        path = os.path.join(folder, f'model.{name}')
        export.export(config, variables, name, path, spec)
        run, _ = export.load(path)
        runtimes.append((name, run))
      for name, run in runtimes:
        seconds, got = timing.time_calls(lambda: run(images), steps)
        diff = float(np.abs(np.asarray(got['logits'], np.float64) - want['logits']).max()
                     / np.abs(want['logits']).max())
        yield {
            'runtime': name, 'size': [height, width], 'batch': batch,
            'ms_per_batch': round(seconds * 1e3, 2),
            'ms_per_image': round(seconds * 1e3 / batch, 2),
            'max_rel_diff_vs_jax': diff, 'device': timing.device_name(),
            'cpu_threads': os.cpu_count(),
        }


def main(argv):
  del argv
  f = flags.FLAGS
  sizes = [tuple(int(v) for v in s.split('x')) for s in f.sizes]
  for line in measure(f.config, f.workdir, f.formats, sizes, f.batch, f.steps):
    print(json.dumps(line), flush=True)


if __name__ == '__main__':
  xla_flags.set_defaults()
  config_flags.DEFINE_config_file('config', None, 'Config file.', lock_config=True)
  flags.DEFINE_string('workdir', None, 'Checkpoint to export (default: fresh weights).')
  flags.DEFINE_list('formats', sorted(export.FORMATS), 'Formats to time.')
  flags.DEFINE_list('sizes', ['192x192', '375x500'], 'HEIGHTxWIDTH image sizes.')
  flags.DEFINE_integer('batch', 1, 'Images per call.')
  flags.DEFINE_integer('steps', 10, 'Timed calls (after a warm-up call).')
  flags.mark_flags_as_required(['config'])
  app.run(main)
