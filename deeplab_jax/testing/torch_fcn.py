"""FCN-32s / 16s / 8s (and 8s at-once) in PyTorch, written from the release's net.py.

The independent reference of tests/fcn_test.py and tests/convert_fcn_caffe_test.py:
each layer as shelhamer/fcn.berkeleyvision.org `voc-fcn*/net.py` declares it
(torch layers: Conv2d(padding=100) for conv1_1, MaxPool2d(2, 2,
ceil_mode=True), Conv2d(7) without padding for fc6, ConvTranspose2d(2f, f,
bias=False) for the Deconvolutions), the crops as slices at the offsets
written in the release's train.prototxt files (not computed), and the
bilinear kernel as `surgery.upsample_filt` computes it. Module names are
Caffe's, and the blobs of a caffemodel load as they are (`load_caffe`):
Caffe's Convolution weight is (out, in, kh, kw) as Conv2d's, its
Deconvolution weight (in, out, kh, kw) as ConvTranspose2d's (both from
base_conv_layer.cpp: a deconvolution's conv_out_channels_ is its input's
channels), Scale's blob (C,) a per-channel factor. Imports torch: tests only.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

# The Crop layers' offsets in the release's train.prototxt files.
OFFSETS = {
    '32s': {'score': 19},
    '16s': {'score_pool4c': 5, 'score': 27},
    '8s': {'score_pool4c': 5, 'score_pool3c': 9, 'score': 31},
}
MEAN_BGR = (104.00699, 116.66877, 122.67892)  # voc_layers.py / net.py `mean`.


def upsample_filt(size):
  """A size x size bilinear kernel (surgery.py's upsample_filt)."""
  factor = (size + 1) // 2
  center = factor - 1 if size % 2 == 1 else factor - 0.5
  rows, cols = np.ogrid[:size, :size]
  return (1 - abs(rows - center) / factor) * (1 - abs(cols - center) / factor)


class FCN(nn.Module):
  """`variant` '32s', '16s', '8s' or '8s-atonce'; widths scaled by width / 64."""

  def __init__(self, variant='8s', num_classes=21, width=64, fc_width=4096):
    super().__init__()
    self.variant = variant
    self.net = variant.split('-')[0]
    widths = [w * width // 64 for w in (64, 128, 256, 512, 512)]
    cin = 3
    for stage, (w, n) in enumerate(zip(widths, (2, 2, 3, 3, 3)), start=1):
      for i in range(1, n + 1):
        pad = 100 if (stage, i) == (1, 1) else 1
        setattr(self, f'conv{stage}_{i}', nn.Conv2d(cin, w, 3, padding=pad))
        cin = w
    self.fc6 = nn.Conv2d(cin, fc_width, 7)
    self.fc7 = nn.Conv2d(fc_width, fc_width, 1)
    self.score_fr = nn.Conv2d(fc_width, num_classes, 1)
    deconv = lambda k, s: nn.ConvTranspose2d(num_classes, num_classes, k, s, bias=False)
    if self.net == '32s':
      self.upscore = deconv(64, 32)
      return
    self.upscore2 = deconv(4, 2)
    self.score_pool4 = nn.Conv2d(widths[3], num_classes, 1)
    if self.net == '16s':
      self.upscore16 = deconv(32, 16)
      return
    self.upscore_pool4 = deconv(4, 2)
    self.score_pool3 = nn.Conv2d(widths[2], num_classes, 1)
    self.upscore8 = deconv(16, 8)
    if variant == '8s-atonce':
      self.scale_pool4 = nn.Parameter(torch.full((widths[3],), 0.01))
      self.scale_pool3 = nn.Parameter(torch.full((widths[2],), 0.0001))

  def set_bilinear(self):
    """surgery.interp on every 'up' layer: filt on the diagonal, 0 elsewhere."""
    for name, module in self.named_children():
      if 'up' in name:
        k = module.weight.shape[-1]
        weight = torch.zeros_like(module.weight)
        for c in range(weight.shape[0]):
          weight[c, c] = torch.from_numpy(upsample_filt(k)).float()
        module.weight.data.copy_(weight)

  def load_caffe(self, layers):
    """Copies the blobs of caffe.Layer-likes (name, blobs) by layer name."""
    params = dict(self.named_parameters())
    for layer in layers:
      for i, blob in enumerate(layer.blobs):
        key = layer.name if layer.name.startswith('scale_') else (
            f'{layer.name}.{("weight", "bias")[i]}')
        params[key].data.copy_(torch.from_numpy(np.asarray(blob, np.float32)).reshape(
            params[key].shape))

  def forward(self, images_BxHxWx3):
    """float32 scores (B, classes, H, W) of RGB 0-255 NHWC images."""
    x = torch.as_tensor(np.asarray(images_BxHxWx3, np.float32)[..., ::-1].copy())
    x = (x - torch.tensor(MEAN_BGR)).permute(0, 3, 1, 2)
    h, w = x.shape[2:]
    relu, pool = torch.relu, nn.MaxPool2d(2, 2, ceil_mode=True)
    feats = {}
    for stage, n in enumerate((2, 2, 3, 3, 3), start=1):
      for i in range(1, n + 1):
        x = relu(getattr(self, f'conv{stage}_{i}')(x))
      x = pool(x)
      feats[stage] = x
    x = relu(self.fc7(relu(self.fc6(x))))  # Dropout: identity at test.
    x = self.score_fr(x)
    offsets = OFFSETS[self.net]
    if self.net == '32s':
      return self._crop(self.upscore(x), offsets['score'], h, w)
    x = self.upscore2(x)
    p4 = feats[4] * self.scale_pool4[:, None, None] if hasattr(self, 'scale_pool4') else feats[4]
    x = x + self._crop(self.score_pool4(p4), offsets['score_pool4c'], *x.shape[2:])
    if self.net == '16s':
      return self._crop(self.upscore16(x), offsets['score'], h, w)
    x = self.upscore_pool4(x)
    p3 = feats[3] * self.scale_pool3[:, None, None] if hasattr(self, 'scale_pool3') else feats[3]
    x = x + self._crop(self.score_pool3(p3), offsets['score_pool3c'], *x.shape[2:])
    return self._crop(self.upscore8(x), offsets['score'], h, w)

  @staticmethod
  def _crop(x, offset, h, w):
    assert x.shape[2] >= offset + h and x.shape[3] >= offset + w, (x.shape, offset, h, w)
    return x[:, :, offset:offset + h, offset:offset + w]
