"""Forward and train-step speed of a model config, per atrous implementation,
optionally side by side with the same network in PyTorch (CPU or CUDA).

    python -m benchmarks.models --config configs/voc_aspp.py \
        --config.model.input_scales=1.0 --impls=auto,dilation --torch

For each implementation in --impls: the jitted forward (`train=False`) at each
batch in --forward_batches and the full train step (loss, gradients, SGD
update; the config's BatchNorm mode) at --train_batch, on random inputs at
`config.input.crop_size`. Prints one JSON line per measurement: ms per call,
images/s, GFLOP per image from XLA's cost analysis, achieved GFLOP/s, `mfu`
(over the device's dense peak, where known: benchmarks/timing.py) and
compile seconds. With --torch, the same network in PyTorch
(deeplab_jax/testing/torch_deeplab.py: same layers, frozen BN as the port) is timed at
the same shapes and each JAX line gets `torch_ms` and `ratio` (JAX / PyTorch;
below 1 = JAX faster). --torch_device=cuda runs it on the GPU, under
torch.autocast(bfloat16) when the config's dtype is bfloat16. Results in
benchmarks/README.md.

    python -m benchmarks.models --families voc_aspp,voc_largefov --forward_batches 1 \
        --train_batch 2 [--tiny] [--crop_size 129]

times each FAMILIES row (benchmarks/twins.py: config name, PyTorch twin builder; a new family is
one line) at its config's crop, JAX and PyTorch side by side, and prints one
Markdown table: JAX / PyTorch ms (ratio) per measurement.
"""

from __future__ import annotations

import contextlib
import json
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import app
from absl import flags
from ml_collections import config_flags

from benchmarks import timing
from benchmarks import train_step as train_step_benchmark
from benchmarks.twins import FAMILIES, torch_model
from deeplab_jax import models
from deeplab_jax import xla_flags


def _init_variables(model, images):
  return jax.jit(lambda x: model.init(jax.random.key(0), x, train=False))(images[:1])


def _record(config, framework, mode, batch, seconds, flops=None, compile_s=None,
            num_devices=1):
  out = {'framework': framework, 'mode': mode, 'trunk': config.model.backbone.name,
         'head_rates': list(config.model.head.get('rates', ())),
         'input_scales': list(config.model.input_scales),
         'impl': config.model.atrous_impl if framework == 'jax' else 'torch',
         'dtype': config.model.dtype, 'batch': batch,
         'crop': config.input.crop_size, 'device': timing.device_name(),
         'ms': round(seconds * 1e3, 2),
         'images_per_sec': round(batch / seconds, 2)}
  if flops:
    out['gflop_per_image'] = round(flops / batch / 1e9, 1)
    out['gflop_per_sec'] = round(flops / seconds / 1e9, 1)
    timing.add_mfu(out, flops / seconds, config.model.dtype, num_devices)
  if compile_s is not None:
    out['compile_s'] = round(compile_s, 1)
  return out


def time_jax_forward(config, batch, steps):
  model = models.build(config)
  images, _ = timing.random_batch(config, batch)
  variables = _init_variables(model, images)
  forward = jax.jit(lambda v, x: model.apply(v, x, train=False),  # As inference compiles it.
                    compiler_options=xla_flags.model_compiler_options(config.model))
  start = time.perf_counter()
  flops = timing.xla_flops(forward, variables, images)
  jax.block_until_ready(forward(variables, images))
  compile_s = time.perf_counter() - start
  seconds, _ = timing.time_calls(lambda: forward(variables, images), steps, warmup=0)
  return _record(config, 'jax', 'forward', batch, seconds, flops, compile_s)


def time_jax_train_step(config, batch, steps):
  config = config.copy_and_resolve_references()
  config.batch_size = batch
  # A tiny rate (PyTorch side too): random weights stay finite, the work is the same.
  config.optim.base_lr = 1e-9
  seconds, flops, compile_s, metrics = train_step_benchmark.measure(
      config, steps, batch_name='train_batch')
  line = _record(config, 'jax', 'train_step', batch, seconds, flops, compile_s,
                 jax.device_count())
  line['loss_is_finite'] = bool(jnp.isfinite(metrics['loss']))
  return line


def family_rows(names, plan, steps, tiny=False, device='cpu', crop_size=0):
  """Yields, per family of FAMILIES in `names`, a row: JAX and PyTorch ms of
  each (mode, batch) of `plan` at the config's crop (configs/tiny.py's with
  `tiny`; `crop_size` > 0 instead: the same crop for every family)."""
  import importlib  # pylint: disable=import-outside-toplevel
  twins = dict(FAMILIES)
  for name in names:
    if tiny:
      from configs import tiny as tiny_configs  # pylint: disable=import-outside-toplevel
      config = tiny_configs.get_config(name)
    else:
      config = importlib.import_module(f'configs.{name}').get_config()
    if crop_size:
      config.input.crop_size = crop_size
    row = {'family': name, 'crop': config.input.crop_size}
    for mode, batch in plan:
      fn = time_jax_forward if mode == 'forward' else time_jax_train_step
      jax_line = fn(config, batch, steps)
      torch_line = time_torch(config, mode, batch, steps, device, twin=twins[name])
      row[f'{mode}_b{batch}'] = {'jax_ms': jax_line['ms'], 'torch_ms': torch_line['ms'],
                                 'ratio': round(jax_line['ms'] / torch_line['ms'], 3),
                                 'gflop_per_image': jax_line.get('gflop_per_image')}
    yield row


def family_markdown(rows, plan):
  """The family rows as a Markdown table: JAX / PyTorch ms (ratio) per measurement."""
  head = [f'{mode} batch {batch}' for mode, batch in plan]
  lines = ['| family | crop | ' + ' | '.join(head) + ' |', '|' + '---|' * (2 + len(head))]
  for row in rows:
    cells = [f'{m["jax_ms"]:,} / {m["torch_ms"]:,} ms ({m["ratio"]})'
             for m in (row[f'{mode}_b{batch}'] for mode, batch in plan)]
    lines.append(f'| `{row["family"]}` | {row["crop"]} | ' + ' | '.join(cells) + ' |')
  return '\n'.join(lines)


def time_torch(config, mode, batch, steps, device='cpu', twin=None):
  """PyTorch twin's ms at `batch` on `device` ('cpu' or 'cuda'); on CUDA with
  a bfloat16 config, under torch.autocast(bfloat16), like the JAX side.
  `twin`: a FAMILIES row's builder (default: `twin_for(config)`)."""
  import torch  # pylint: disable=import-outside-toplevel
  import torch.nn.functional as F  # pylint: disable=import-outside-toplevel
  images, labels = timing.random_batch(config, batch)
  variables = _init_variables(models.build(config), images)
  net = torch_model(config, jax.device_get(variables), twin).to(device)
  x = torch.from_numpy(images.transpose(0, 3, 1, 2).astype(np.float32)).to(device)
  y = torch.from_numpy(labels.astype(np.int64)).to(device)
  sync, autocast = None, contextlib.nullcontext
  if device.startswith('cuda'):
    torch.backends.cudnn.benchmark = True
    sync = torch.cuda.synchronize
    if config.model.dtype == 'bfloat16':
      autocast = lambda: torch.autocast('cuda', dtype=torch.bfloat16)
  if mode == 'forward':
    net.eval()

    def run():
      with torch.no_grad(), autocast():
        return net(x)
  else:
    net.train()
    base = net.base if hasattr(net, 'base') else net
    if config.model.batch_norm == 'frozen' and hasattr(base, 'freeze_bn'):
      base.freeze_bn()
    sgd = torch.optim.SGD([p for p in net.parameters() if p.requires_grad],
                          lr=1e-9, momentum=0.9, weight_decay=5e-4)

    def run():
      sgd.zero_grad()
      with autocast():
        outputs = net(x)
        outputs = outputs if isinstance(outputs, list) else [outputs]
        loss = 0
        for out in outputs:  # Labels shrunk by nearest to each map, as the paper.
          small = F.interpolate(y[:, None].float(), size=out.shape[2:], mode='nearest')
          loss = loss + F.cross_entropy(out, small[:, 0].long(), ignore_index=255)
      loss.backward()
      sgd.step()
      return loss.item()

  seconds, _ = timing.time_calls(run, steps, sync=sync)
  line = _record(config, 'torch', mode, batch, seconds)
  line['device'] = f'torch {device}' + (
      f' ({torch.cuda.get_device_name()})' if sync else '')
  return line


def main(argv):
  del argv
  f = flags.FLAGS
  base = f.config
  plan = [('forward', int(b)) for b in f.forward_batches]
  if f.train_batch:
    plan.append(('train_step', f.train_batch))
  if f.families:
    rows = []
    for row in family_rows(f.families, plan, f.steps, f.tiny, f.torch_device,
                           f.crop_size):
      rows.append(row)
      _emit(row)
    print(family_markdown(rows, plan))
    return
  if base is None:
    raise app.UsageError('--config or --families is required')
  jax_lines = []
  for impl in f.impls:  # JAX first: PyTorch's idle OpenMP threads spin a while.
    config = base.copy_and_resolve_references()
    config.model.atrous_impl = impl
    for mode, batch in plan:
      fn = time_jax_forward if mode == 'forward' else time_jax_train_step
      jax_lines.append(fn(config, batch, f.steps))
      _emit(jax_lines[-1])
  if f.torch:
    for mode, batch in plan:
      line = time_torch(base, mode, batch, f.steps, f.torch_device)
      _emit(line)
      for jax_line in jax_lines:
        if (jax_line['mode'], jax_line['batch']) == (mode, batch):
          _emit({'ratio': round(jax_line['ms'] / line['ms'], 3),
                 'jax_impl': jax_line['impl'], 'mode': mode, 'batch': batch,
                 'jax_ms': jax_line['ms'], 'torch_ms': line['ms']})


def _emit(line):
  print(json.dumps(line), flush=True)
  if flags.FLAGS.json_out:
    with open(flags.FLAGS.json_out, 'a') as f:
      f.write(json.dumps(line) + '\n')


def define_flags():
  """Command-line flags (defined only when run as a script, so tests can import)."""
  config_flags.DEFINE_config_file('config', None, 'Config file.', lock_config=True)
  flags.DEFINE_list('families', [], 'FAMILIES rows to time against PyTorch, one table '
                    '(instead of --config; --impls is then the configs\' own).')
  flags.DEFINE_integer('crop_size', 0, '--families: this crop for every family instead of '
                       'each config\'s (0: the config\'s).')
  flags.DEFINE_bool('tiny', False, '--families: configs/tiny.py\'s shrunk configs.')
  flags.DEFINE_list('impls', ['auto'], 'Atrous implementations to time.')
  flags.DEFINE_list('forward_batches', ['1', '4'], 'Forward batch sizes (empty: none).')
  flags.DEFINE_integer('train_batch', 2, 'Train-step batch (0: skip).')
  flags.DEFINE_integer('steps', 3, 'Timed calls (after one warm-up call).')
  flags.DEFINE_bool('torch', False, 'Also time the PyTorch network.')
  flags.DEFINE_enum('torch_device', 'cpu', ['cpu', 'cuda'], 'Where PyTorch runs.')
  flags.DEFINE_string('json_out', None, 'Also append the lines here.')


if __name__ == '__main__':
  xla_flags.set_defaults()
  # JAX takes GPU memory as it needs it, not 75% up front: room for PyTorch's side.
  os.environ.setdefault('XLA_PYTHON_CLIENT_PREALLOCATE', 'false')
  define_flags()
  app.run(main)
