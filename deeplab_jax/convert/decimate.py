"""ImageNet VGG-16's fully connected layers as DeepLab's (smaller) fc6 / fc7.

DeepLab initialises fc6 / fc7 from VGG-16's fc6 (4096 x 512x7x7) and fc7
(4096 x 4096) by subsampling ("decimation", v1 paper section 4.1): LargeFOV
keeps every 4th output (1024) and the spatial taps 0, 3, 6 (3x3); v1
DeepLab's 4x4 fc6 keeps taps 0, 2, 4, 6 with all 4096 outputs; fc7 keeps the
rows *and* columns that match the kept fc6 outputs.

    kernel, bias = decimate_fc(fc6_w.reshape(4096, 512, 7, 7), fc6_b,
                               out_channels=1024, kernel_size=3)
    # kernel: (3, 3, 512, 1024) HWIO for flax; bias: (1024,)
"""

from __future__ import annotations

import numpy as np

from deeplab_jax.errors import UserError


def _every(total: int, keep: int, what: str) -> np.ndarray:
  if keep > total or total % keep:
    raise UserError(f'cannot decimate {what} from {total} to {keep}: '
                    f'{keep} must divide {total}')
  return np.arange(0, total, total // keep)


def decimate_fc(weight_oihw: np.ndarray, bias: np.ndarray, out_channels: int,
                kernel_size: int, in_channels: int | None = None
                ) -> tuple[np.ndarray, np.ndarray]:
  """(HWIO kernel, bias) keeping every k-th output / input and evenly spaced taps.

  `weight_oihw`: (O, I, kh, kw) (a fully connected layer reshaped; fc7 is
  (4096, 4096, 1, 1)). Spatial taps are `round(linspace(0, kh - 1, kernel_size))`.
  """
  out_total, in_total, kh, kw = weight_oihw.shape
  outs = _every(out_total, out_channels, 'output channels')
  ins = _every(in_total, in_channels or in_total, 'input channels')
  if kernel_size > min(kh, kw):
    raise UserError(f'cannot decimate a {kh}x{kw} kernel to {kernel_size}x{kernel_size}')
  rows = np.round(np.linspace(0, kh - 1, kernel_size)).astype(int)
  cols = np.round(np.linspace(0, kw - 1, kernel_size)).astype(int)
  weight = weight_oihw[np.ix_(outs, ins, rows, cols)]
  return np.ascontiguousarray(weight.transpose(2, 3, 1, 0)), np.asarray(bias)[outs]
