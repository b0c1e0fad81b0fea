"""One atrous convolution per implementation, forward and gradient, vs PyTorch.

    python -m benchmarks.atrous                      # DeepLab's shapes
    python -m benchmarks.atrous --shapes=4x41x41x2048x21r24 --torch=false

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

# ResNet ASPP branch, ResNet layer5 / layer4 3x3, VGG LargeFOV fc6.
DEFAULT_SHAPES = ('4x41x41x2048x21r24', '1x41x41x2048x21r6', '2x41x41x512x512r4',
                  '2x41x41x256x256r2', '1x41x41x512x1024r12')


def parse_shape(text):
  m = re.fullmatch(r'(\d+)x(\d+)x(\d+)x(\d+)x(\d+)r(\d+)', text)
  if not m:
    raise ValueError(f'shape {text!r} is not BxHxWxCINxCOUTrRATE')
  return tuple(int(v) for v in m.groups())


def _figures(fwd_s, grad_s, flops, dtype):
  return timing.add_mfu({'forward_ms': round(fwd_s * 1e3, 2),
                         'grad_ms': round(grad_s * 1e3, 2),
                         'forward_gflop_per_sec': round(flops / fwd_s / 1e9, 1)},
                        flops / fwd_s, dtype, 1)


def time_shape(shape, impls, steps, with_torch, dtype='float32', torch_device='cpu'):
  b, h, w, c, o, rate = shape
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.normal(size=(b, h, w, c)).astype(np.float32)).astype(dtype)
  kernel = jnp.asarray((rng.normal(size=(3, 3, c, o)) / np.sqrt(9 * c)).astype(
      np.float32)).astype(dtype)
  flops = 2 * b * h * w * c * o * 9
  line = {'shape': f'{b}x{h}x{w}x{c}x{o}r{rate}', 'gflop': round(flops / 1e9, 2),
          'dtype': dtype, 'device': timing.device_name()}
  for impl in impls:
    forward = jax.jit(lambda x, k, impl=impl: atrous.atrous_conv(x, k, rate, 1, impl))
    grad = jax.jit(jax.grad(
        lambda x, k, impl=impl: jnp.sum(atrous.atrous_conv(x, k, rate, 1, impl) ** 2),
        argnums=(0, 1)))
    fwd_s, _ = timing.time_calls(lambda: forward(x, kernel), steps)
    grad_s, _ = timing.time_calls(lambda: grad(x, kernel), steps)
    line[impl] = _figures(fwd_s, grad_s, flops, dtype)
  if with_torch:
    import torch  # pylint: disable=import-outside-toplevel
    to_torch = lambda a, axes: torch.from_numpy(
        np.asarray(a, np.float32).transpose(axes).copy()).to(
            torch_device, getattr(torch, dtype)).requires_grad_()
    tx, tk = to_torch(x, (0, 3, 1, 2)), to_torch(kernel, (3, 2, 0, 1))
    sync = None
    if torch_device == 'cuda':
      torch.backends.cudnn.benchmark = True
      sync = torch.cuda.synchronize
    conv = lambda: torch.nn.functional.conv2d(tx, tk, padding=rate, dilation=rate)

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
  for text in f.shapes:
    print(json.dumps(time_shape(parse_shape(text), f.impls, f.steps, f.torch,
                                f.dtype, f.torch_device)), flush=True)


if __name__ == '__main__':
  xla_flags.set_defaults()
  # JAX takes GPU memory as it needs it, not 75% up front: room for PyTorch's side.
  os.environ.setdefault('XLA_PYTHON_CLIENT_PREALLOCATE', 'false')
  flags.DEFINE_list('shapes', list(DEFAULT_SHAPES), 'BxHxWxCINxCOUTrRATE, 3x3 kernels.')
  flags.DEFINE_list('impls', ['dilation', 'space_to_batch', 'taps', 'dilation_taps_grad'],
                    'Implementations to time.')
  flags.DEFINE_integer('steps', 5, 'Timed calls per measurement.')
  flags.DEFINE_bool('torch', True, 'Also time PyTorch conv2d.')
  flags.DEFINE_enum('torch_device', 'cpu', ['cpu', 'cuda'], 'Where PyTorch runs.')
  flags.DEFINE_enum('dtype', 'float32', ['float32', 'bfloat16'], 'Inputs and kernel.')
  app.run(main)
