"""BatchNorm that is either trained or frozen, with one set of variables.

Both modes hold flax's `nn.BatchNorm` variables (params `scale`, `bias`;
batch_stats `mean`, `var`), so checkpoints and converted weights fit either.
'train': batch statistics in training (over the global batch: under `jit` over
the device mesh the mean is taken over the whole sharded batch) and running
averages at test. 'frozen' (Caffe's `use_global_stats`, the paper's ResNet
setting): the stored statistics and affine parameters are used as constants,
in training too; no gradient reaches them and nothing is updated.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

MODES = ('train', 'frozen')


def batch_norm(mode, train, name='bn', momentum=0.9, epsilon=1e-5,
               dtype=jnp.float32):
  """The BatchNorm module for `mode` ('train' or 'frozen'), called as f(x)."""
  if mode == 'train':
    return nn.BatchNorm(use_running_average=not train, momentum=momentum,
                        epsilon=epsilon, dtype=dtype, name=name)
  if mode == 'frozen':
    return FrozenBatchNorm(epsilon=epsilon, dtype=dtype, name=name)
  raise ValueError(f'batch_norm mode {mode!r} is not one of {MODES}')


class FrozenBatchNorm(nn.Module):
  """y = (x - mean) / sqrt(var + eps) * scale + bias, all four constants."""
  epsilon: float = 1e-5
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x_BxHxWxC):
    c = x_BxHxWxC.shape[-1]
    scale = self.param('scale', nn.initializers.ones, (c,), jnp.float32)
    bias = self.param('bias', nn.initializers.zeros, (c,), jnp.float32)
    mean = self.variable('batch_stats', 'mean', jnp.zeros, (c,), jnp.float32)
    var = self.variable('batch_stats', 'var', jnp.ones, (c,), jnp.float32)
    multiplier = jax.lax.stop_gradient(scale * jax.lax.rsqrt(var.value + self.epsilon))
    offset = jax.lax.stop_gradient(bias - mean.value * multiplier)
    return x_BxHxWxC * multiplier.astype(self.dtype) + offset.astype(self.dtype)
