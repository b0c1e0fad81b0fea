"""DeepLab v3's ASPP head and v3+'s decoder in PyTorch, written from the papers.

The independent reference of tests/aspp_v3_test.py and tests/decoder_test.py:
v3 (arXiv 1706.05587) section 3.3: a 1x1 conv and three 3x3 atrous convs
(256 filters, batch normalization), image-level features (global average
pooling, 1x1 conv 256 + BN, bilinearly upsampled), all concatenated, a 1x1
conv 256 + BN, then the 1x1 logits; dropout 0.1 after the projection as the
official code (tensorflow/models research/deeplab/model.py). v3+ (arXiv
1802.02611) section 3.1 and Tables 1-2: the encoder's features upsampled
bilinearly to the low-level map (model.py `refine_by_decoder` resizes both
to the stride-4 size), concatenated with a 1x1 conv 48 + BN + ReLU of the
low-level features, two 3x3 convs 256 (+ BN + ReLU), the 1x1 logits.

Modules are named as the flax parameters (`branch0.conv.weight` for
`head/branch0/conv/kernel`), so `load_flax_head` copies weights by path.
Imports torch: only tests and benchmarks load it.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from deeplab_jax.testing import torch_deeplab
from deeplab_jax.testing.torch_deeplab import ConvBnReLU


class SeparableConvBnReLU(nn.Module):
  """v3+'s atrous separable convolution (section 3.2, Fig. 3; the official code's
  split form, core/utils.py `split_separable_conv2d` under model.py's arg_scope
  of BN + ReLU): a 3x3 depthwise conv at `rate` (one filter per channel,
  groups = channels), BN, ReLU, a 1x1 pointwise conv, BN, ReLU; no biases."""

  def __init__(self, cin, cout, rate=1):
    super().__init__()
    self.depthwise = nn.Conv2d(cin, cin, 3, 1, rate, rate, groups=cin, bias=False)
    self.depthwise_bn = nn.BatchNorm2d(cin, eps=1e-5)
    self.pointwise = nn.Conv2d(cin, cout, 1, bias=False)
    self.pointwise_bn = nn.BatchNorm2d(cout, eps=1e-5)

  def forward(self, x):
    x = F.relu(self.depthwise_bn(self.depthwise(x)))
    return F.relu(self.pointwise_bn(self.pointwise(x)))


def _conv3x3(cin, cout, rate, separable):
  if separable:
    return SeparableConvBnReLU(cin, cout, rate)
  return ConvBnReLU(cin, cout, 3, rate=rate)


class ASPPv3(nn.Module):
  """The v3 head: ASPP features, optional 3x3 conv (torchvision's), 1x1 logits."""

  def __init__(self, cin, num_classes, rates=(6, 12, 18), width=256, image_pooling=True,
               dropout=0.1, extra_conv=False, separable=False):
    super().__init__()
    self.encoder = ASPPFeatures(cin, rates, width, image_pooling, dropout, separable)
    self.conv3x3 = ConvBnReLU(width, width, 3) if extra_conv else None
    self.classifier = nn.Conv2d(width, num_classes, 1)

  def forward(self, x):
    y = self.encoder(x)
    if self.conv3x3 is not None:
      y = self.conv3x3(y)
    return self.classifier(y)


class ASPPFeatures(nn.Module):
  """Concatenated 1x1, atrous 3x3 and image-pooling branches, projected to `width`."""

  def __init__(self, cin, rates, width=256, image_pooling=True, dropout=0.1, separable=False):
    super().__init__()
    self.rates = tuple(rates)
    self.branch0 = ConvBnReLU(cin, width, 1)
    for i, rate in enumerate(self.rates, start=1):
      self.add_module(f'branch{i}', _conv3x3(cin, width, rate, separable))
    self.pool = ConvBnReLU(cin, width, 1) if image_pooling else None
    n = 1 + len(self.rates) + (1 if image_pooling else 0)
    self.project = ConvBnReLU(n * width, width, 1)
    self.dropout = nn.Dropout(dropout)

  def forward(self, x):
    size = x.shape[2:]
    ys = [getattr(self, f'branch{i}')(x) for i in range(1 + len(self.rates))]
    if self.pool is not None:
      pooled = self.pool(F.adaptive_avg_pool2d(x, 1))
      ys.append(F.interpolate(pooled, size=size, mode='bilinear', align_corners=False))
    return self.dropout(self.project(torch.cat(ys, dim=1)))


class DeepLabV3Plus(nn.Module):
  """v3+: ASPP on the last map, decoded with the stride-4 map (`forward(low, high)`)."""

  def __init__(self, low_cin, high_cin, num_classes, rates=(6, 12, 18), width=256,
               image_pooling=True, dropout=0.1, low_level_width=48, decoder_width=256,
               align_corners=True, separable=False):
    super().__init__()
    self.encoder = ASPPFeatures(high_cin, rates, width, image_pooling, dropout, separable)
    self.feature_projection = ConvBnReLU(low_cin, low_level_width, 1)
    self.decoder_conv0 = _conv3x3(width + low_level_width, decoder_width, 1, separable)
    self.decoder_conv1 = _conv3x3(decoder_width, decoder_width, 1, separable)
    self.classifier = nn.Conv2d(decoder_width, num_classes, 1)
    self.align_corners = align_corners

  def forward(self, low, high):
    y = F.interpolate(self.encoder(high), size=low.shape[2:], mode='bilinear',
                      align_corners=self.align_corners)
    y = torch.cat([y, self.feature_projection(low)], dim=1)
    return self.classifier(self.decoder_conv1(self.decoder_conv0(y)))


class ResNetWithHead(nn.Module):
  """torch_deeplab's Caffe-layout ResNet trunk (output stride 8) under one of these heads.

  `reads`: the trunk stages the head takes ('layer5' or ('layer2', 'layer5')).
  """

  def __init__(self, trunk: torch_deeplab.ResNetASPP, head: nn.Module, reads):
    super().__init__()
    self.trunk, self.head, self.reads = trunk, head, tuple(reads)

  def forward(self, x):
    maps = {}
    for i in range(1, 6):
      x = getattr(self.trunk, f'layer{i}')(x)
      maps[f'layer{i}'] = x
    return self.head(*[maps[name] for name in self.reads])


# ------------------------------------------------- weights from flax ----

_LEAF = {'kernel': 'weight', 'scale': 'weight', 'mean': 'running_mean',
         'var': 'running_var'}
_ENCODER = ('branch', 'pool', 'project')


def _head_name(parts):
  """['branch1', 'conv', 'kernel'] -> 'encoder.branch1.conv.weight'."""
  names = parts[:-1] + [_LEAF.get(parts[-1], parts[-1])]
  if names[0].startswith(_ENCODER):
    names = ['encoder'] + names
  return '.'.join(names)


def load_flax(model, variables, head_only=False):
  """Copies flax `variables` (of the head alone, or of a whole DeepLab over the
  ResNet trunk: `ResNetWithHead`) into the torch `model`, checking shapes."""
  state, loaded = model.state_dict(), set()
  for collection in ('params', 'batch_stats'):
    for path, value in torch_deeplab.jax_leaves(variables.get(collection, {})):
      parts = path.split('/')
      if head_only:
        name = _head_name(parts)
      elif parts[0] == 'trunk':
        name = 'trunk.' + '.'.join(parts[1:-1] + [_LEAF.get(parts[-1], parts[-1])])
      else:
        name = 'head.' + _head_name(parts[1:])
      value = np.array(value)
      if value.ndim == 4:
        value = value.transpose(3, 2, 0, 1)  # HWIO -> OIHW.
      assert tuple(state[name].shape) == value.shape, (name, state[name].shape, value.shape)
      state[name] = torch.from_numpy(np.ascontiguousarray(value))
      loaded.add(name)
  missing = {n for n in state if n not in loaded and not n.endswith('num_batches_tracked')}
  assert not missing, sorted(missing)
  model.load_state_dict(state)
  return model
