"""Train-step throughput and achieved FLOP rate on synthetic inputs (no TensorFlow).

    python -m benchmarks.train_step --config configs/shapes.py
    python -m benchmarks.train_step --config configs/shapes.py --config.model.dtype=bfloat16
    # Scaling: devices x per-device batch, and the same network in PyTorch (CPU):
    python -m benchmarks.train_step --config configs/tiny.py:voc_largefov \
        --host_devices 4 --devices 1,2,4 --per_device_batch 1,4 --torch

Times the jitted, data-parallel train step of `config` on random uint8 images
and labels of the config's crop, over all local devices at the config's
global batch, or, with --devices / --per_device_batch, over the first N
devices for each N at per-device batch B (global batch N x B) for every
pair. FLOPs per step come from XLA's cost analysis of the step's program;
`mfu` is the achieved FLOP/s over the dense peak of the devices used
(timing.PEAK_TFLOPS or --peak_tflops; left out where unknown, e.g. CPUs).
--host_devices N splits a CPU into N XLA devices (set before JAX starts; no
effect on GPUs/TPUs). --torch adds, per global batch, the same network's
train step in PyTorch (benchmarks/models.py's twin: VGG or ResNet trunks,
--torch_device cpu or cuda) and the JAX / PyTorch time ratio. Prints one
JSON line per measurement (also appended to --json_out if given).
"""

import json
import os
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


def measure(config, steps, batch_name='batch_size', devices=None):
  """(median seconds per step, FLOPs per step, compile seconds, last metrics)
  over `devices` (default: all).

  Compile seconds cover compilation and the first (warm-up) step.
  """
  mesh = sharding.make_mesh(devices)
  sharding.check_divisible(config.batch_size, mesh, batch_name)
  model = models.build(config)
  tx, schedule = optim.from_config(config, model)
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


def benchmark(config, steps, num_devices=None, per_device_batch=None):
  """One JSON-able line: the train step over the first `num_devices` devices
  (default: all) at `per_device_batch` images each (default: the config's
  global batch)."""
  devices = jax.devices()[:num_devices] if num_devices else jax.devices()
  if num_devices and num_devices > len(devices):
    raise ValueError(f'--devices {num_devices}: only {len(devices)} device(s); on a '
                     'CPU add --host_devices N')
  config = config.copy_and_resolve_references()
  if per_device_batch:
    config.batch_size = per_device_batch * len(devices)
  seconds, flops, _, metrics = measure(config, steps, devices=devices)
  size, batch_size = config.input.crop_size, config.batch_size
  return timing.add_mfu({
      'device': f'{len(devices)} x {devices[0].device_kind}',
      'devices': len(devices), 'per_device_batch': batch_size // len(devices),
      'grad_accum_steps': config.get('grad_accum_steps', 1),
      'dtype': config.model.dtype, 'batch_size': batch_size, 'crop_size': size,
      'ms_per_step': round(seconds * 1e3, 2),
      'images_per_sec': round(batch_size / seconds, 1),
      'gflop_per_step': round(flops / 1e9, 3),
      'flops_per_step': int(flops),
      'gflop_per_sec': round(flops / seconds / 1e9, 1),
      'loss_is_finite': bool(jnp.isfinite(metrics['loss'])),
  }, flops / seconds, config.model.dtype, len(devices))


def sweep(config, steps, device_counts, per_device_batches, with_torch=False,
          torch_device='cpu'):
  """Yields `benchmark` lines for every (devices, per-device batch) pair,
  then with `with_torch` one PyTorch line per global batch and the ratio."""
  jax_lines = []
  for n in device_counts:
    for b in per_device_batches:
      jax_lines.append(benchmark(config, steps, n, b))
      yield jax_lines[-1]
  if not with_torch:
    return
  from benchmarks import models as models_benchmark  # pylint: disable=import-outside-toplevel
  torch_config = config.copy_and_resolve_references()
  torch_config.optim.base_lr = 1e-9  # As benchmarks/models.py: finite, same work.
  for batch in sorted({line['batch_size'] for line in jax_lines}):
    line = models_benchmark.time_torch(torch_config, 'train_step', batch, steps,
                                       torch_device)
    line = {'framework': 'torch', 'batch_size': batch, 'ms_per_step': line['ms'],
            'images_per_sec': line['images_per_sec'], 'device': line['device']}
    yield line
    for jax_line in jax_lines:
      if jax_line['batch_size'] == batch:
        yield {'ratio': round(jax_line['ms_per_step'] / line['ms_per_step'], 3),
               'batch_size': batch, 'devices': jax_line['devices'],
               'jax_ms': jax_line['ms_per_step'], 'torch_ms': line['ms_per_step']}


def main(argv):
  del argv
  f = flags.FLAGS
  if f.devices or f.per_device_batch or f.torch:
    counts = [int(n) for n in f.devices] or [jax.device_count()]
    batches = [int(b) for b in f.per_device_batch] or [None]
    lines = sweep(f.config, f.steps, counts, batches, f.torch, f.torch_device)
  else:
    lines = [benchmark(f.config, f.steps)]
  for line in lines:
    print(json.dumps(line), flush=True)
    if f.json_out:
      with open(f.json_out, 'a') as out:
        out.write(json.dumps(line) + '\n')


if __name__ == '__main__':
  xla_flags.set_defaults()
  config_flags.DEFINE_config_file('config', None, 'Config file.', lock_config=True)
  flags.DEFINE_integer('steps', 20, 'Timed steps (after one warm-up step).')
  flags.DEFINE_string('json_out', None, 'Also append the lines here.')
  flags.DEFINE_list('devices', [], 'Device counts to time (first N devices each).')
  flags.DEFINE_list('per_device_batch', [], 'Per-device batches to time.')
  flags.DEFINE_integer('host_devices', None, 'Split the CPU into N XLA devices.')
  flags.DEFINE_bool('torch', False, 'Also time the same network in PyTorch.')
  flags.DEFINE_enum('torch_device', 'cpu', ['cpu', 'cuda'], 'Where PyTorch runs.')
  flags.mark_flags_as_required(['config'])

  def _main(argv):
    if flags.FLAGS.host_devices:  # Before JAX's first computation.
      os.environ['XLA_FLAGS'] = ' '.join([
          os.environ.get('XLA_FLAGS', ''),
          f'--xla_force_host_platform_device_count={flags.FLAGS.host_devices}']).strip()
    main(argv)
  app.run(_main)
