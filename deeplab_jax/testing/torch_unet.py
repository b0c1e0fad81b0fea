"""U-Net written in PyTorch from the paper: the independent reference of
models/unet.py's tests.

Ronneberger, Fischer, Brox 2015 (arXiv 1505.04597), section 2 and Fig. 1:
per contracting level two unpadded 3x3 convs with ReLU and a 2x2 max pool of
stride 2, the channels doubling from `base_width`; per expanding level a 2x2
up-convolution halving the channels, concatenation with the centre-cropped
contracting map, two 3x3 convs with ReLU; a final 1x1 conv to the classes.
With `padding='same'` the convs pad by 1 and the input is padded to a
multiple of 2^depth (zeros, bottom / right) and the output cropped back; with
`mirror` (valid convs) the input is extended by reflection (section 2's
overlap-tile strategy, Fig. 2) so the output covers it, then cropped to it.
`bn` puts a BatchNorm2d (eps 1e-5) between each 3x3 conv and its ReLU.

Takes and returns NCHW tensors; the input is the already normalised image.
`load_flax_variables` copies a flax model's variables in by their names;
imports torch, so only tests load it.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


def _double_conv(cin, cout, pad, bn):
  layers = []
  for c in (cin, cout):
    layers.append(nn.Conv2d(c, cout, 3, padding=pad, bias=not bn))
    if bn:
      layers.append(nn.BatchNorm2d(cout, eps=1e-5))
    layers.append(nn.ReLU())
  return nn.Sequential(*layers)


def _crop_to(x, h, w):
  top = (x.shape[2] - h) // 2
  left = (x.shape[3] - w) // 2
  return x[:, :, top:top + h, left:left + w]


class TorchUNet(nn.Module):
  def __init__(self, num_classes, depth=4, base_width=64, padding='valid', bn=False,
               mirror=False, in_channels=3):
    super().__init__()
    self.depth, self.padding, self.mirror = depth, padding, mirror
    pad = 1 if padding == 'same' else 0
    widths = [base_width * 2 ** l for l in range(depth + 1)]
    self.down = nn.ModuleList(
        [_double_conv(in_channels if l == 0 else widths[l - 1], widths[l], pad, bn)
         for l in range(depth + 1)])
    self.up = nn.ModuleList(
        [nn.ConvTranspose2d(widths[l + 1], widths[l], 2, stride=2) for l in range(depth)])
    self.dec = nn.ModuleList(
        [_double_conv(2 * widths[l], widths[l], pad, bn) for l in range(depth)])
    self.classifier = nn.Conv2d(widths[0], num_classes, 1)

  def _valid_out(self, n):
    """Output side of the valid network for input side n (None: invalid)."""
    for _ in range(self.depth):
      n -= 4
      if n % 2 or n < 2:
        return None
      n //= 2
    n -= 4
    for _ in range(self.depth):
      n = 2 * n - 4
    return n if n >= 1 else None

  def _mirror_pad(self, x):
    h, w = x.shape[2:]
    pads = []
    for n in (h, w):  # The smallest valid input whose output covers n.
      size = n
      while self._valid_out(size) is None or self._valid_out(size) < n:
        size += 1
      margin = (size - self._valid_out(size)) // 2
      pads.append((margin, size - n - margin))
    arr = np.pad(x.detach().numpy(), ((0, 0), (0, 0), pads[0], pads[1]), mode='reflect')
    return torch.from_numpy(arr)

  def forward(self, x):
    h, w = x.shape[2:]
    if self.padding == 'same':
      m = 2 ** self.depth
      x = F.pad(x, (0, (m - w % m) % m, 0, (m - h % m) % m))
    elif self.mirror:
      x = self._mirror_pad(x)
    skips = []
    for l in range(self.depth + 1):
      x = self.down[l](x)
      if l < self.depth:
        skips.append(x)
        x = F.max_pool2d(x, 2, 2)
    for l in reversed(range(self.depth)):
      x = self.up[l](x)
      x = torch.cat([_crop_to(skips[l], x.shape[2], x.shape[3]), x], 1)
      x = self.dec[l](x)
    x = self.classifier(x)
    if self.padding == 'same' or self.mirror:
      x = x[:, :, :h, :w]
    return x


def load_flax_variables(model: TorchUNet, variables):
  """Copies models/unet.py's variables (trunk `enc{l}_conv{i}`, head `up{l}`,
  `dec{l}_conv{i}`, `classifier`) into `model`."""
  import jax  # pylint: disable=import-outside-toplevel
  state = model.state_dict()
  bn = any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
  per_conv = 3 if bn else 2  # conv, (bn,) relu in each Sequential.
  for collection in ('params', 'batch_stats'):
    tree = variables.get(collection, {})
    for path, value in jax.tree_util.tree_leaves_with_path(tree):
      parts = [str(getattr(k, 'key', k)) for k in path]
      value = np.array(value)
      scope, leaf = parts[1], parts[-1]
      if scope == 'classifier':
        name = f'classifier.{"weight" if leaf == "kernel" else "bias"}'
      elif scope.startswith('up'):
        name = f'up.{scope[2:]}.{"weight" if leaf == "kernel" else "bias"}'
        if value.ndim == 4:
          value = value.transpose(2, 3, 0, 1)  # (k, k, in, out) -> (in, out, k, k).
      else:
        block, conv = scope.split('_')  # 'enc2', 'conv1'
        seq = 'down' if block.startswith('enc') else 'dec'
        index = (int(conv[4:]) - 1) * per_conv + (parts[2] == 'bn')
        torch_leaf = {'kernel': 'weight', 'bias': 'bias', 'scale': 'weight',
                      'mean': 'running_mean', 'var': 'running_var'}[leaf]
        name = f'{seq}.{block[3:]}.{index}.{torch_leaf}'
      if value.ndim == 4 and not scope.startswith('up'):
        value = value.transpose(3, 2, 0, 1)  # HWIO -> OIHW.
      assert tuple(state[name].shape) == value.shape, (name, state[name].shape, value.shape)
      state[name] = torch.from_numpy(np.ascontiguousarray(value))
  model.load_state_dict(state)
  return model
