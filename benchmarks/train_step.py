"""Train-step throughput and achieved FLOP rate on synthetic inputs (no TensorFlow).

    python -m benchmarks.train_step --config configs/shapes.py
    python -m benchmarks.train_step --config configs/shapes.py --config.model.dtype=bfloat16

Times the jitted, data-parallel train step of `config` on random uint8 images
and labels of the config's crop and global batch, over all local devices.
FLOPs per step come from XLA's cost analysis of the step's program; `mfu` is
the achieved FLOP/s over the devices' dense peak (timing.PEAK_TFLOPS or
--peak_tflops; left out where unknown, e.g. CPUs). Prints one JSON line (also
written to --json_out if given).
"""

import json
import time

import jax
import jax.numpy as jnp
from absl import app
from absl import flags
from ml_collections import config_flags

from benchmarks import timing
from deeplab_jax import models
from deeplab_jax import optim
from deeplab_jax import sharding
from deeplab_jax import train_step
from deeplab_jax import xla_flags


def measure(config, steps, batch_name='batch_size'):
  """(median seconds per step, FLOPs per step, compile seconds, last metrics).

  Compile seconds cover compilation and the first (warm-up) step.
  """
  mesh = sharding.make_mesh()
  sharding.check_divisible(config.batch_size, mesh, batch_name)
  model = models.build(config)
  tx, schedule = optim.create_optimizer(
      config.optim, config.num_train_steps, config.model.batch_norm == 'frozen')
  state = train_step.create_train_state(config, model, tx, mesh)
  step_fn = train_step.make_train_step(config, model, tx, schedule, mesh)
  images, labels = timing.random_batch(config, config.batch_size)
  batch = sharding.to_global({'image': images, 'label': labels}, mesh)
  start = time.perf_counter()
  flops = timing.xla_flops(step_fn, state, batch)
  holder = {'state': state}

  def run():
    holder['state'], metrics = step_fn(holder['state'], batch)
    return metrics

  jax.block_until_ready(run())
  compile_s = time.perf_counter() - start
  seconds, metrics = timing.time_calls(run, steps, warmup=0)
  return seconds, flops, compile_s, metrics


def benchmark(config, steps):
  seconds, flops, _, metrics = measure(config, steps)
  size, batch_size = config.input.crop_size, config.batch_size
  return timing.add_mfu({
      'device': timing.device_name(),
      'dtype': config.model.dtype, 'batch_size': batch_size, 'crop_size': size,
      'ms_per_step': round(seconds * 1e3, 2),
      'images_per_sec': round(batch_size / seconds, 1),
      'gflop_per_step': round(flops / 1e9, 3),
      'flops_per_step': int(flops),
      'gflop_per_sec': round(flops / seconds / 1e9, 1),
      'loss_is_finite': bool(jnp.isfinite(metrics['loss'])),
  }, flops / seconds, config.model.dtype, jax.device_count())


def main(argv):
  del argv
  result = benchmark(flags.FLAGS.config, flags.FLAGS.steps)
  print(json.dumps(result))
  if flags.FLAGS.json_out:
    with open(flags.FLAGS.json_out, 'w') as f:
      json.dump(result, f, indent=2)


if __name__ == '__main__':
  xla_flags.set_defaults()
  config_flags.DEFINE_config_file('config', None, 'Config file.', lock_config=True)
  flags.DEFINE_integer('steps', 20, 'Timed steps (after one warm-up step).')
  flags.DEFINE_string('json_out', None, 'Also write the result here.')
  flags.mark_flags_as_required(['config'])
  app.run(main)
