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

times each FAMILIES row (config name, PyTorch twin builder; a new family is
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
  forward = jax.jit(lambda v, x: model.apply(v, x, train=False))
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


# -------------------------------------------------------------- PyTorch ----

def _deeplab_twin(config, variables=None):
  """DeepLab v1/v2 in PyTorch (deeplab_jax/testing/torch_deeplab.py: ResNet or
  VGG trunks, the ASPP / LargeFOV head, MSC), with `variables`' weights."""
  from deeplab_jax.testing import torch_deeplab  # pylint: disable=import-outside-toplevel
  m = config.model
  classes = config.dataset.num_classes
  if m.backbone.name == 'resnet':
    net = torch_deeplab.ResNetASPP(classes, m.backbone.get('depth'), m.backbone.get('base_width', 64),
                                   tuple(m.head.rates))
  elif m.backbone.name == 'vgg16':
    net = torch_deeplab.VGGHead(classes, tuple(m.head.rates), m.head.kernel_size,
                                tuple(m.head.hidden), m.backbone.get('pool5a', False), m.backbone.get('base_width', 64),
                                m.head.dropout)  # Issue 17 moved it into the head section.
  else:
    raise ValueError(f'no PyTorch twin for trunk {m.backbone.name!r}')
  if variables is not None:
    torch_deeplab.load_flax_variables(net, variables)
  if tuple(m.input_scales) != (1.0,):
    net = torch_deeplab.MSC(net, tuple(m.input_scales), m.align_corners)
  return net


def _fcn_twin(config, variables=None):
  """FCN-32s / 16s / 8s (8s at once) in PyTorch (deeplab_jax/testing/torch_fcn.py,
  written from the release's net.py), with `variables`' weights (through the
  Caffe layers tests/fcn_test.py loads). Takes the normalised NCHW input the
  flax model's trunk sees, as the other twins; torch_fcn's forward wants RGB
  0-255 NHWC and subtracts its BGR mean itself, so the wrapper adds it back."""
  import torch  # pylint: disable=import-outside-toplevel
  from deeplab_jax.testing import fake_fcn_caffe  # pylint: disable=import-outside-toplevel
  from deeplab_jax.testing import torch_fcn  # pylint: disable=import-outside-toplevel
  m = config.model
  skips, scales = tuple(m.head.skips), tuple(m.head.get('skip_scales', ()))
  variant = {0: '32s', 1: '16s', 2: '8s'}[len(skips)] + ('-atonce' if scales else '')
  net = torch_fcn.FCN(variant, config.dataset.num_classes, width=m.backbone.get('base_width', 64),
                      fc_width=m.backbone.get('fc_width', 4096))
  if variables is not None:
    net.load_caffe(fake_fcn_caffe.layers_from_flax(variables, config))
  else:
    net.set_bilinear()
  for name, param in net.named_parameters():  # Frozen as configs/parts.py FCN_FROZEN.
    if 'up' in name.split('.')[0] or name.startswith('scale_'):
      param.requires_grad_(False)
  mean = torch.tensor(torch_fcn.MEAN_BGR, dtype=torch.float32)

  class FCNTwin(torch.nn.Module):

    def __init__(self):
      super().__init__()
      self.fcn = net

    def forward(self, x):  # x: (B, 3, H, W) BGR minus the mean, as flax's input.
      rgb = (x.permute(0, 2, 3, 1) + mean).flip(-1)
      return self.fcn(rgb.detach().cpu().numpy())

  return FCNTwin()


def _torchvision_trunk(config):
  """A ResNet in torchvision's layout (stride in the 3x3, its Bottleneck
  blocks, torchvision module names) at `config`'s depth, width and per-block
  rates (models/resnet.py stage_plan: output stride, multi-grid, dilation
  style), as layer1 (stem) .. layer5, torchvision's layer1..layer4 names inside."""
  from torch import nn  # pylint: disable=import-outside-toplevel
  from deeplab_jax.models import resnet  # pylint: disable=import-outside-toplevel
  from deeplab_jax.testing import torchvision_models  # pylint: disable=import-outside-toplevel
  tv = torchvision_models.resnet()
  b = config.model.backbone
  width = b.get('base_width', 64)
  plan = resnet.stage_plan(b.depth, b.get('output_stride', 8), tuple(b.get('multi_grid', ())),
                           b.get('dilation_style', 'deeplab_v2'))

  class Trunk(nn.Module):

    def __init__(self):
      super().__init__()
      self.conv1 = nn.Conv2d(3, width, 7, 2, 3, bias=False)
      self.bn1 = nn.BatchNorm2d(width)
      self.relu = nn.ReLU(inplace=True)
      self.maxpool = nn.MaxPool2d(3, 2, 1, ceil_mode=b.get('stem_ceil_mode', False))
      cin = width
      for stage, (stride, rates) in enumerate(plan, start=1):
        planes = width * 2 ** (stage - 1)
        blocks = []
        for i, rate in enumerate(rates):
          s = stride if i == 0 else 1
          down = None
          if i == 0:
            down = nn.Sequential(nn.Conv2d(cin, planes * 4, 1, s, bias=False),
                                 nn.BatchNorm2d(planes * 4))
          blocks.append(tv.Bottleneck(cin, planes, s, down, dilation=rate))
          cin = planes * 4
        self.add_module(f'layer{stage}', nn.Sequential(*blocks))
      self.out_channels = cin

    def stages(self, x):
      """{'layer1' (stem) .. 'layer5': map}, our trunk's stage names."""
      maps = {'layer1': self.maxpool(self.relu(self.bn1(self.conv1(x))))}
      for i in range(1, 5):
        maps[f'layer{i + 1}'] = getattr(self, f'layer{i}')(maps[f'layer{i}'])
      return maps

  return Trunk()


def _load_torchvision_trunk(trunk, variables, config):
  """Flax `variables`' trunk into `trunk` by deeplab_jax/convert/torchvision's
  key table (the inverse of the checkpoint converter's mapping)."""
  from deeplab_jax.convert.torchvision import mapping  # pylint: disable=import-outside-toplevel
  table, _ = mapping.expected_keys(config, mapping.IMAGENET)
  _load_by_table(trunk, variables, table)


def _load_by_table(module, variables, table, prefix=''):
  """Copies flax `variables` into `module` by a {torch key: (flax path, shape)}
  table (its keys under `prefix` only, the prefix dropped), transposing kernels."""
  import torch  # pylint: disable=import-outside-toplevel
  flat = {}
  for collection in ('params', 'batch_stats'):
    for path, value in jax.tree_util.tree_leaves_with_path(variables.get(collection, {})):
      flat['/'.join([collection] + [str(getattr(k, 'key', k)) for k in path])] = value
  state = module.state_dict()
  for key, (path, _) in table.items():
    if not key.startswith(prefix):
      continue
    name = key[len(prefix):]
    value = np.asarray(flat[path], np.float32)
    value = value.transpose(3, 2, 0, 1) if value.ndim == 4 else value  # HWIO -> OIHW.
    assert tuple(state[name].shape) == value.shape, (key, path, value.shape)
    state[name] = torch.from_numpy(np.ascontiguousarray(value))
  module.load_state_dict(state)


def _torchvision_twin(config, variables=None):
  """torchvision's fcn_resnet50 / deeplabv3_resnet50 (any depth / width):
  torchvision's own modules (models/resnet.py's Bottleneck, segmentation's
  FCNHead / ASPP, its FCN / DeepLabV3 wrapper, aux_classifier None) at the
  config's widths; at base_width 64 the keys and shapes are those of
  segmentation.fcn_resnet50(aux_loss=False) (tests/benchmark_families_test.py).
  Returns torchvision's `out`: logits upsampled to the input size (bilinear,
  align_corners False) inside forward, as torchvision does; ours stop at stride 8."""
  from torch import nn  # pylint: disable=import-outside-toplevel
  from deeplab_jax.convert.torchvision import mapping  # pylint: disable=import-outside-toplevel
  from deeplab_jax.testing import torchvision_models  # pylint: disable=import-outside-toplevel
  seg = torchvision_models.segmentation()
  fcn_mod, v3_mod = seg.fcn, seg.deeplabv3
  from torchvision.models import _utils  # pylint: disable=import-outside-toplevel
  m, classes = config.model, config.dataset.num_classes
  trunk = _torchvision_trunk(config)
  cin = trunk.out_channels
  if m.head.name == 'fcn_head':
    head = fcn_mod.FCNHead(cin, classes)
    wrapper = fcn_mod.FCN
  elif m.head.name == 'aspp_v3' and m.head.get('extra_conv', False):
    w = m.head.width
    head = nn.Sequential(v3_mod.ASPP(cin, tuple(m.head.rates), w),  # DeepLabHead at width w.
                         nn.Conv2d(w, w, 3, padding=1, bias=False), nn.BatchNorm2d(w),
                         nn.ReLU(), nn.Conv2d(w, classes, 1))
    head[0].project[3].p = m.head.dropout
    wrapper = v3_mod.DeepLabV3
  else:
    raise ValueError(f'no torchvision twin for head {m.head.name!r}')
  backbone = _utils.IntermediateLayerGetter(trunk, return_layers={'layer4': 'out'})
  if variables is not None:
    table, _ = mapping.expected_keys(config, mapping.SEGMENTATION)
    _load_by_table(backbone, variables, table, 'backbone.')
    _load_by_table(head, variables, table, 'classifier.')

  class Out(nn.Module):  # torchvision returns {'out': ...}; the benchmark wants the tensor.

    def __init__(self):
      super().__init__()
      self.net = wrapper(backbone, head, None)

    def forward(self, x):
      return self.net(x)['out']

  return Out()


def _deeplab_v3_twin(config, variables=None):
  """DeepLab v3 / v3+ heads in PyTorch (deeplab_jax/testing/torch_deeplab_v3.py,
  written from the papers: ASPPv3, DeepLabV3Plus, loaded by its load_flax) over
  the config's torchvision-layout ResNet (output stride 16, multi-grid:
  _torchvision_trunk, loaded by the converter's key table)."""
  from torch import nn  # pylint: disable=import-outside-toplevel
  from deeplab_jax.testing import torch_deeplab_v3  # pylint: disable=import-outside-toplevel
  m, classes = config.model, config.dataset.num_classes
  trunk = _torchvision_trunk(config)
  h = m.head
  reads = tuple('layer5' if r == 'out' else r for r in h.reads)
  if h.name == 'aspp_v3':
    head = torch_deeplab_v3.ASPPv3(trunk.out_channels, classes, tuple(h.rates), h.width,
                                   h.image_pooling, h.dropout, h.get('extra_conv', False),
                                   h.get('separable', False))
  elif h.name == 'deeplabv3plus':
    low = trunk.out_channels // 2 ** (5 - int(reads[0][5:]))
    head = torch_deeplab_v3.DeepLabV3Plus(low, trunk.out_channels, classes, tuple(h.rates),
                                          h.width, h.image_pooling, h.dropout,
                                          h.low_level_width, h.decoder_width,
                                          h.align_corners, h.get('separable', False))
  else:
    raise ValueError(f'no DeepLab v3 twin for head {h.name!r}')
  if variables is not None:
    _load_torchvision_trunk(trunk, variables, config)
    torch_deeplab_v3.load_flax(head, {c: variables[c]['head'] for c in ('params', 'batch_stats')
                                      if 'head' in variables.get(c, {})}, head_only=True)

  class V3(nn.Module):

    def __init__(self):
      super().__init__()
      self.trunk, self.head = trunk, head

    def forward(self, x):
      maps = self.trunk.stages(x)
      return self.head(*[maps[r] for r in reads])

  return V3()


def _unet_twin(config, variables=None):
  """U-Net in PyTorch (deeplab_jax/testing/torch_unet.py, written from the
  paper), with `variables`' weights (its load_flax_variables)."""
  from deeplab_jax.testing import torch_unet  # pylint: disable=import-outside-toplevel
  m = config.model
  net = torch_unet.TorchUNet(config.dataset.num_classes, m.backbone.depth, m.backbone.base_width,
                             m.backbone.padding, m.batch_norm != 'none',
                             m.backbone.get('mirror', False) and m.backbone.padding == 'valid')
  if variables is not None:
    torch_unet.load_flax_variables(net, variables)
  return net


# One row per model family: (configs/<name>.py, its PyTorch twin: a function
# (config, flax variables or None) -> torch.nn.Module computing the same
# logits, with those weights when given). A new family is one line here.
# Every twin takes the normalised NCHW input (the config's channel order,
# pixel mean and std applied), as the flax trunk sees it.
FAMILIES = (
    ('voc_aspp', _deeplab_twin),
    ('voc_largefov', _deeplab_twin),
    ('voc_fcn8s', _fcn_twin),
    ('voc_deeplabv3', _deeplab_v3_twin),
    ('voc_deeplabv3plus', _deeplab_v3_twin),
    # torchvision's: the PyTorch side upsamples its logits to the input size inside forward.
    ('voc_fcn_resnet50', _torchvision_twin),
    ('voc_deeplabv3_resnet50', _torchvision_twin),
    ('shapes_unet', _unet_twin),
)


def _parts(config):
  """What picks a config's FAMILIES row: backbone and head names, and for
  aspp_v3 its extra 3x3 conv (torchvision's DeepLabHead has it, v3's has not)."""
  m = config.model
  return m.backbone.name, m.head.name, bool(m.head.get('extra_conv', False))


def twin_for(config):
  """The twin of the FAMILIES row whose config has `config`'s backbone and head."""
  import importlib  # pylint: disable=import-outside-toplevel
  for name, twin in FAMILIES:
    if _parts(importlib.import_module(f'configs.{name}').get_config()) == _parts(config):
      return twin
  raise ValueError(f'no PyTorch twin for backbone / head {_parts(config)}; add the '
                   'family to benchmarks/models.py FAMILIES')


def torch_model(config, variables=None, twin=None):
  """The PyTorch twin of `config.model` (`twin`, default: `twin_for(config)`).

  With flax `variables`, the twin gets the same weights (same numbers, so
  neither side meets different value ranges).
  """
  return (twin or twin_for(config))(config, variables)


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
