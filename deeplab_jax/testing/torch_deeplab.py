"""The same DeepLab networks written in PyTorch: the independent reference.

Used by the parity tests (outputs equal to the flax models given the same
weights) and by `benchmarks/models.py --torch` (speed side by side). Module
names follow the widely used PyTorch DeepLab v2 port for ResNet (`layer1.conv1
.conv.weight`, `layer2.block1.reduce.bn.running_mean`, `aspp.c0.weight`) and
Caffe's for VGG (`conv1_1`, `head.branch0_hidden0` for fc6, ...). Written from
the papers and `../shared/reference.md`; imports torch, so only tests and
benchmarks load it.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from deeplab_jax.models.resize import scaled_size
from deeplab_jax.models.resnet import BLOCKS


class ConvBnReLU(nn.Sequential):
  def __init__(self, cin, cout, k, stride=1, rate=1, relu=True):
    super().__init__()
    pad = rate * (k - 1) // 2
    self.add_module('conv', nn.Conv2d(cin, cout, k, stride, pad, rate, bias=False))
    self.add_module('bn', nn.BatchNorm2d(cout, eps=1e-5))
    if relu:
      self.add_module('relu', nn.ReLU())


class Bottleneck(nn.Module):
  def __init__(self, cin, cout, stride, rate, shortcut):
    super().__init__()
    mid = cout // 4
    self.reduce = ConvBnReLU(cin, mid, 1, stride)
    self.conv3x3 = ConvBnReLU(mid, mid, 3, 1, rate)
    self.increase = ConvBnReLU(mid, cout, 1, relu=False)
    self.shortcut = ConvBnReLU(cin, cout, 1, stride, relu=False) if shortcut else None

  def forward(self, x):
    h = self.increase(self.conv3x3(self.reduce(x)))
    return F.relu(h + (self.shortcut(x) if self.shortcut is not None else x))


class ResNetASPP(nn.Module):
  """ResNet (Caffe layout, output stride 8) + ASPP of summed 3x3 convs."""

  def __init__(self, num_classes, depth=101, base_width=64, rates=(6, 12, 18, 24)):
    super().__init__()
    self.layer1 = nn.Sequential()
    self.layer1.add_module('conv1', ConvBnReLU(3, base_width, 7, 2))
    self.layer1.add_module('pool', nn.MaxPool2d(3, 2, 1, ceil_mode=True))
    cin = base_width
    for stage, (n, (width, stride, rate)) in enumerate(
        zip(BLOCKS[depth], ((256, 1, 1), (512, 2, 1), (1024, 1, 2), (2048, 1, 4))),
        start=2):
      width = width * base_width // 64
      layer = nn.Sequential()
      for i in range(n):
        layer.add_module(f'block{i + 1}', Bottleneck(
            cin, width, stride if i == 0 else 1, rate, i == 0))
        cin = width
      self.add_module(f'layer{stage}', layer)
    self.aspp = nn.ModuleDict({
        f'c{i}': nn.Conv2d(cin, num_classes, 3, 1, r, r) for i, r in enumerate(rates)})

  def forward(self, x):
    for i in range(1, 6):
      x = getattr(self, f'layer{i}')(x)
    return sum(conv(x) for conv in self.aspp.values())

  def freeze_bn(self):
    """Caffe's use_global_stats: BN in eval mode, its parameters fixed."""
    for m in self.modules():
      if isinstance(m, nn.BatchNorm2d):
        m.eval()
        for p in m.parameters():
          p.requires_grad_(False)


class VGGHead(nn.Module):
  """VGG-16 (DeepLab layout) + summed branches of fc6 -> fc7 -> fc8."""

  def __init__(self, num_classes, rates=(12,), kernel_size=3, hidden=(1024, 1024),
               pool5a=True, base_width=64, dropout=0.5):
    super().__init__()
    self.stages = []
    cin = 3
    for stage, (width, n) in enumerate(((64, 2), (128, 2), (256, 3), (512, 3), (512, 3)),
                                       start=1):
      width = width * base_width // 64
      for i in range(n):
        rate = 2 if stage == 5 else 1
        self.add_module(f'conv{stage}_{i + 1}', nn.Conv2d(cin, width, 3, 1, rate, rate))
        cin = width
    self.pool5a = pool5a
    branches = {}
    for b, r in enumerate(rates):
      c, layers = cin, []
      for j, w in enumerate(hidden):
        k = kernel_size if j == 0 else 1
        total = (r if j == 0 else 1) * (k - 1)
        layers += [nn.ZeroPad2d((total // 2, total - total // 2) * 2),
                   nn.Conv2d(c, w, k, 1, 0, r if j == 0 else 1), nn.ReLU(), nn.Dropout(dropout)]
        c = w
      layers.append(nn.Conv2d(c, num_classes, 1))
      branches[f'branch{b}'] = nn.Sequential(*layers)
    self.head = nn.ModuleDict(branches)

  def forward(self, x):
    for stage, n in enumerate((2, 2, 3, 3, 3), start=1):
      for i in range(n):
        x = F.relu(getattr(self, f'conv{stage}_{i + 1}')(x))
      x = F.max_pool2d(x, 3, 2 if stage <= 3 else 1, 1, ceil_mode=True)
    if self.pool5a:
      x = F.avg_pool2d(x, 3, 1, 1)  # count_include_pad: Caffe's AVE.
    return sum(branch(x) for branch in self.head.values())


class MSC(nn.Module):
  """Shared network over input scales; score maps max-fused at scale 1's size."""

  def __init__(self, base, scales=(1.0, 0.75, 0.5), align_corners=False):
    super().__init__()
    self.base, self.scales, self.align_corners = base, scales, align_corners

  def _resize(self, x, scale):
    if self.align_corners:
      size = [scaled_size(n, scale, True) for n in x.shape[2:]]
      return F.interpolate(x, size=size, mode='bilinear', align_corners=True)
    return F.interpolate(x, scale_factor=scale, mode='bilinear', align_corners=False)

  def forward(self, x):
    maps = [self.base(x if s == 1.0 else self._resize(x, s)) for s in self.scales]
    size = maps[self.scales.index(1.0)].shape[2:]
    up = [F.interpolate(m, size=size, mode='bilinear', align_corners=self.align_corners)
          for m in maps]
    fused = torch.stack(up).max(dim=0).values
    return maps + [fused] if self.training else fused


# ------------------------------------------------- weights from flax ----

def load_flax_variables(model, variables):
  """Copies flax `variables` into the torch `model` (ResNetASPP or VGGHead)."""
  state = model.state_dict()
  flat = {}
  for collection in ('params', 'batch_stats'):
    for path, value in jax_leaves(variables.get(collection, {})):
      flat[path] = np.array(value)  # A writable copy.
  for path, value in flat.items():
    name = _map_name(model, path)
    if value.ndim == 4:
      value = value.transpose(3, 2, 0, 1)  # HWIO -> OIHW.
    target = state[name]
    assert tuple(target.shape) == value.shape, (name, target.shape, value.shape)
    state[name] = torch.from_numpy(np.ascontiguousarray(value))
  model.load_state_dict(state)
  return model


def jax_leaves(tree):
  import jax  # pylint: disable=import-outside-toplevel
  return [('/'.join(str(getattr(k, 'key', k)) for k in path), v)
          for path, v in jax.tree_util.tree_leaves_with_path(tree)]


def _map_name(model, path):
  """flax 'trunk/layer2/block1/reduce/conv/kernel' -> torch state_dict key."""
  parts = path.split('/')
  leaf = {'kernel': 'weight', 'scale': 'weight', 'mean': 'running_mean',
          'var': 'running_var'}.get(parts[-1], parts[-1])
  if parts[0] == 'trunk':
    return '.'.join(parts[1:-1] + [leaf])
  assert parts[0] == 'head', path
  branch, layer = parts[1].split('_', 1)  # 'branch0', 'hidden1' / 'classifier'
  b = int(branch[len('branch'):])
  if isinstance(model, ResNetASPP):
    return f'aspp.c{b}.{leaf}'
  # VGGHead: Sequential of [pad, conv, relu, dropout] per hidden layer, then fc8.
  index = 4 * int(layer[len('hidden'):]) + 1 if layer.startswith('hidden') else \
      len(model.head[branch]) - 1
  return f'head.{branch}.{index}.{leaf}'
