"""Evaluation throughput: `inference.make_predict_fn` + argmax, per TTA setting.

    python -m benchmarks.evaluate --config configs/shapes.py
    python -m benchmarks.evaluate --config configs/cityscapes_aspp.py --config.eval.mode=sliding

Times the jitted, data-parallel prediction (logits at image size by
`config.eval`'s mode, window and stride, then argmax) on random uint8 images
at `config.input.eval_size`, batch `config.eval_batch_size` rounded up to a
multiple of the device count, for each setting in --settings:

  single     config.eval.scales and flip as given (default: scale 1, no flip)
  flip       + the mirrored image
  msc        scales 0.5, 0.75, 1, 1.25, 1.5 (the papers' multi-scale test)
  msc_flip   both

Random-init weights (speed does not depend on them); no TensorFlow, no data,
no CRF. Prints one JSON line per setting: ms per batch, images/s, compile
seconds (tracing, compilation and the first call).
"""

import dataclasses
import json
import math
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import app
from absl import flags
from ml_collections import config_flags

from benchmarks import timing
from deeplab_jax import inference
from deeplab_jax import models
from deeplab_jax import sharding
from deeplab_jax import xla_flags

MSC_SCALES = (0.5, 0.75, 1.0, 1.25, 1.5)
SETTINGS = ('single', 'flip', 'msc', 'msc_flip')


def setting_options(config, setting):
  """The config's `InferenceOptions` with `setting`'s scales and flip."""
  if setting not in SETTINGS:
    raise ValueError(f'unknown setting {setting!r}; use some of {SETTINGS}')
  options = inference.options_from_config(config)
  if 'msc' in setting:
    options = dataclasses.replace(options, scales=MSC_SCALES)
  if 'flip' in setting:
    options = dataclasses.replace(options, flip=True)
  return options


_argmax = jax.jit(lambda logits: jnp.argmax(logits, -1))


def measure(config, settings, steps):
  """Yields one result dict per setting (see the module docstring)."""
  mesh = sharding.make_mesh()
  batch_size = math.ceil(config.eval_batch_size / mesh.size) * mesh.size
  height, width = inference.eval_hw(config.input.eval_size)
  model = models.build(config)
  variables = jax.jit(lambda x: model.init(jax.random.key(0), x, train=False))(
      jnp.zeros((1, 64, 64, 3), jnp.uint8))
  variables = jax.device_put(variables, sharding.replicated(mesh))
  images = np.random.default_rng(0).integers(
      0, 256, (batch_size, height, width, 3), np.uint8)
  images = jax.device_put(images, sharding.batch_sharded(mesh))
  for setting in settings:
    options = setting_options(config, setting)
    predict = inference.make_predict_fn(config, model, mesh, options)
    # Two calls, not one jit around both: the jitted predict may carry its
    # model's compiler options (xla_flags.model_compiler_options), which a
    # nested jit cannot take.
    labels_fn = lambda v, x, predict=predict: _argmax(predict(v, x))
    start = time.perf_counter()
    jax.block_until_ready(labels_fn(variables, images))
    compile_s = time.perf_counter() - start
    seconds, labels = timing.time_calls(lambda: labels_fn(variables, images), steps, warmup=0)
    assert labels.shape == (batch_size, height, width)
    yield {
        'setting': setting, 'device': timing.device_name(),
        'trunk': config.model.backbone.name, 'dtype': config.model.dtype,
        'mode': options.mode,
        'window': list(options.window) if options.mode == 'sliding' else None,
        'stride': list(options.stride) if options.mode == 'sliding' else None,
        'scales': list(options.scales), 'flip': options.flip,
        'eval_size': [height, width], 'batch_size': batch_size,
        'ms_per_batch': round(seconds * 1e3, 1),
        'images_per_sec': round(batch_size / seconds, 2),
        'compile_s': round(compile_s, 1),
    }


def main(argv):
  del argv
  settings = [s for s in flags.FLAGS.settings.split(',') if s]
  for line in measure(flags.FLAGS.config, settings, flags.FLAGS.steps):
    print(json.dumps(line), flush=True)


if __name__ == '__main__':
  xla_flags.set_defaults()
  config_flags.DEFINE_config_file('config', None, 'Config file.', lock_config=True)
  flags.DEFINE_string('settings', ','.join(SETTINGS),
                      f'Comma-separated, of {", ".join(SETTINGS)}.')
  flags.DEFINE_integer('steps', 5, 'Timed batches per setting (after the first).')
  flags.mark_flags_as_required(['config'])
  app.run(main)
