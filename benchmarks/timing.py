"""Shared by the benchmarks: wall-clock timing, XLA's FLOP count, random inputs."""

from __future__ import annotations

import time

import jax
import numpy as np


def xla_flops(jitted, *args):
  """FLOPs of one call of `jitted(*args)` from XLA's cost analysis."""
  cost = jitted.lower(*args).compile().cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  return float(cost.get('flops', 0.0))


def time_calls(fn, steps, warmup=1):
  """Median seconds of `steps` calls of `fn()`, each waited for, after `warmup`.

  The median, not the mean: shared CPUs see other tenants' bursts.
  """
  out = None
  for _ in range(warmup):
    out = jax.block_until_ready(fn())
  seconds = []
  for _ in range(steps):
    start = time.perf_counter()
    out = jax.block_until_ready(fn())
    seconds.append(time.perf_counter() - start)
  return float(np.median(seconds)), out


def device_name():
  return f'{jax.device_count()} x {jax.devices()[0].device_kind}'


def random_batch(config, batch_size, seed=0):
  """Random uint8 images and int32 labels at `config.input.crop_size`."""
  rng = np.random.default_rng(seed)
  size = config.input.crop_size
  images = rng.integers(0, 256, (batch_size, size, size, 3), np.uint8)
  labels = rng.integers(0, config.dataset.num_classes,
                        (batch_size, size, size)).astype(np.int32)
  return images, labels
