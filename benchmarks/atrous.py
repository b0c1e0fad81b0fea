"""One atrous convolution per implementation, forward and gradient, vs PyTorch.

    python -m benchmarks.atrous                      # DeepLab's shapes
    python -m benchmarks.atrous --shapes=4x41x41x2048x21r24 --torch=false
    python -m benchmarks.atrous --kind=depthwise     # v3+'s depthwise 3x3s
    python -m benchmarks.atrous --kind=transposed    # FCN's / U-Net's upsamplings
    python -m benchmarks.atrous --kind=transposed --impls=subpixel,lhs_dilation
    python -m benchmarks.atrous --kind=valid --impls=dilation,taps   # FCN's fc6

--kind=depthwise: the same shapes with a (3, 3, 1, CIN) depthwise kernel (COUT
is ignored), against PyTorch's conv2d with groups=CIN. --kind=transposed:
shapes BxHxWxCINxCOUTsSTRIDE, a kernel 2 * STRIDE transposed conv
(models/transposed.py) per implementation in --impls that is one of
transposed.IMPLEMENTATIONS (default, or none named: lhs_dilation, subpixel,
subpixel_matmul) against PyTorch's conv_transpose2d. --kind=valid: shapes
BxHxWxCINxCOUTkK, a K x K convolution without padding (atrous.conv_valid:
'dilation' is XLA's convolution, 'taps' / 'dilation_taps_grad' the im2col
matmul) against PyTorch's conv2d with padding 0.

Shapes are BxHxWxCINxCOUTrRATE (3x3 kernel, stride 1, 'same' padding). For
each: median ms of the jitted forward and of the gradient (input and kernel,
of sum(y^2)) per implementation in --impls, plus PyTorch's conv2d with
`dilation` when --torch (on --torch_device; inputs and kernel in --dtype on
both sides). One JSON line per shape.
"""

from __future__ import annotations

import json
import os
import re

import jax
import jax.numpy as jnp
import numpy as np
from absl import app
from absl import flags

from benchmarks import timing
from deeplab_jax import xla_flags
from deeplab_jax.models import atrous
from deeplab_jax.models import transposed

# ResNet ASPP branch, ResNet layer5 / layer4 3x3, VGG LargeFOV fc6.
DEFAULT_SHAPES = ('4x41x41x2048x21r24', '1x41x41x2048x21r6', '2x41x41x512x512r4',
                  '2x41x41x256x256r2', '1x41x41x512x1024r12')
# v3+'s ASPP at output stride 16 (2048 channels, rates 6 / 12 / 18 at 33x33
# for a 513 crop) and its decoder's 3x3s at stride 4 (304 channels, 129x129).
DEPTHWISE_SHAPES = ('2x33x33x2048x2048r6', '2x33x33x2048x2048r18', '2x129x129x304x304r1')
# FCN-32s / 8s final upsampling of 21 scores, FCN's 2x, U-Net's 2x2 up-conv.
TRANSPOSED_SHAPES = ('1x17x17x21x21s32', '1x64x64x21x21s8', '1x32x32x21x21s2',
                     '1x64x64x128x64s2')
# FCN's fc6 (7x7 valid over pool5): the release at crop 500 (pool5 22x22),
# configs/shapes_fcn8s.py's 1/8 width at crop 128 (pool5 11x11, batch 8).
VALID_SHAPES = ('1x22x22x512x4096k7', '8x11x11x64x512k7')
LETTERS = {'dense': 'r', 'depthwise': 'r', 'transposed': 's', 'valid': 'k'}


def parse_shape(text, letter='r'):
  m = re.fullmatch(r'(\d+)x(\d+)x(\d+)x(\d+)x(\d+)' + letter + r'(\d+)', text)
  if not m:
    raise ValueError(f'shape {text!r} is not BxHxWxCINxCOUT{letter}N')
  return tuple(int(v) for v in m.groups())


def _figures(fwd_s, grad_s, flops, dtype):
  return timing.add_mfu({'forward_ms': round(fwd_s * 1e3, 2),
                         'grad_ms': round(grad_s * 1e3, 2),
                         'forward_gflop_per_sec': round(flops / fwd_s / 1e9, 1)},
                        flops / fwd_s, dtype, 1)


def time_shape(shape, impls, steps, with_torch, dtype='float32', torch_device='cpu',
               kind='dense'):
  b, h, w, c, o, rate = shape
  if kind == 'depthwise':
    o = c
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.normal(size=(b, h, w, c)).astype(np.float32)).astype(dtype)
  k = {'transposed': 2 * rate, 'valid': rate}.get(kind, 3)
  kernel_in = 1 if kind == 'depthwise' else c
  kernel = jnp.asarray((rng.normal(size=(k, k, kernel_in, o)) / np.sqrt(k * k * kernel_in))
                       .astype(np.float32)).astype(dtype)
  # Multiply-adds that touch data: a transposed conv's k*k taps per input
  # pixel, a valid conv's per output pixel.
  out_pixels = (h - k + 1) * (w - k + 1) if kind == 'valid' else h * w
  flops = 2 * b * out_pixels * kernel_in * o * k * k
  letter = LETTERS[kind]
  line = {'shape': f'{b}x{h}x{w}x{c}x{o}{letter}{rate}', 'kind': kind,
          'gflop': round(flops / 1e9, 3), 'dtype': dtype, 'device': timing.device_name()}
  if kind == 'transposed':
    impls = ([i for i in impls if i in transposed.IMPLEMENTATIONS]
             or [i for i in transposed.IMPLEMENTATIONS if i != 'auto'])
  for impl in impls:
    if kind == 'transposed':
      op = lambda x, k, impl=impl: transposed.conv_transpose(x, k, rate, impl=impl)
    elif kind == 'valid':
      op = lambda x, k, impl=impl: atrous.conv_valid(x, k, impl)
    else:
      op = lambda x, k, impl=impl: atrous.atrous_conv(x, k, rate, 1, impl)
    forward = jax.jit(op)
    grad = jax.jit(jax.grad(lambda x, k, op=op: jnp.sum(op(x, k) ** 2), argnums=(0, 1)))
    fwd_s, _ = timing.time_calls(lambda: forward(x, kernel), steps)
    grad_s, _ = timing.time_calls(lambda: grad(x, kernel), steps)
    line[impl] = _figures(fwd_s, grad_s, flops, dtype)
  if with_torch:
    import torch  # pylint: disable=import-outside-toplevel
    to_torch = lambda a, axes: torch.from_numpy(
        np.asarray(a, np.float32).transpose(axes).copy()).to(
            torch_device, getattr(torch, dtype)).requires_grad_()
    tx = to_torch(x, (0, 3, 1, 2))
    tk = to_torch(kernel, (2, 3, 0, 1) if kind == 'transposed' else (3, 2, 0, 1))
    sync = None
    if torch_device == 'cuda':
      torch.backends.cudnn.benchmark = True
      sync = torch.cuda.synchronize
    if kind == 'transposed':
      conv = lambda: torch.nn.functional.conv_transpose2d(tx, tk, stride=rate)
    elif kind == 'valid':
      conv = lambda: torch.nn.functional.conv2d(tx, tk)
    else:
      conv = lambda: torch.nn.functional.conv2d(tx, tk, padding=rate, dilation=rate,
                                                groups=c if kind == 'depthwise' else 1)

    def forward():
      with torch.no_grad():
        return conv()

    def grad():
      tx.grad = tk.grad = None
      (conv() ** 2).sum().backward()

    fwd_s, _ = timing.time_calls(forward, steps, sync=sync)
    grad_s, _ = timing.time_calls(grad, steps, sync=sync)
    line['torch'] = _figures(fwd_s, grad_s, flops, dtype)
    line['torch']['device'] = torch_device
  return line


def main(argv):
  del argv
  f = flags.FLAGS
  shapes = f.shapes or {'dense': DEFAULT_SHAPES, 'depthwise': DEPTHWISE_SHAPES,
                        'transposed': TRANSPOSED_SHAPES, 'valid': VALID_SHAPES}[f.kind]
  for text in shapes:
    shape = parse_shape(text, LETTERS[f.kind])
    print(json.dumps(time_shape(shape, f.impls, f.steps, f.torch, f.dtype, f.torch_device,
                                f.kind)), flush=True)


if __name__ == '__main__':
  xla_flags.set_defaults()
  # JAX takes GPU memory as it needs it, not 75% up front: room for PyTorch's side.
  os.environ.setdefault('XLA_PYTHON_CLIENT_PREALLOCATE', 'false')
  flags.DEFINE_list('shapes', [], 'BxHxWxCINxCOUTrRATE (3x3 kernels) or, --kind=transposed, '
                    'BxHxWxCINxCOUTsSTRIDE, --kind=valid BxHxWxCINxCOUTkK; default: the '
                    'kind\'s DeepLab / FCN shapes.')
  flags.DEFINE_enum('kind', 'dense', ['dense', 'depthwise', 'transposed', 'valid'],
                    'Dense or depthwise atrous 3x3s, transposed convs, or valid KxK convs.')
  flags.DEFINE_list('impls', ['dilation', 'space_to_batch', 'taps', 'dilation_taps_grad'],
                    'Implementations to time.')
  flags.DEFINE_integer('steps', 5, 'Timed calls per measurement.')
  flags.DEFINE_bool('torch', True, 'Also time PyTorch conv2d.')
  flags.DEFINE_enum('torch_device', 'cpu', ['cpu', 'cuda'], 'Where PyTorch runs.')
  flags.DEFINE_enum('dtype', 'float32', ['float32', 'bfloat16'], 'Inputs and kernel.')
  app.run(main)
