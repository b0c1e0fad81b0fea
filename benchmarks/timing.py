"""Shared by the benchmarks: wall-clock timing and XLA's FLOP count."""

from __future__ import annotations

import time

import jax


def xla_flops(jitted, *args):
  """FLOPs of one call of `jitted(*args)` from XLA's cost analysis."""
  cost = jitted.lower(*args).compile().cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  return float(cost.get('flops', 0.0))


def time_calls(fn, steps, warmup=1):
  """Mean seconds per call of `fn()` after `warmup` calls (results blocked on)."""
  out = None
  for _ in range(warmup):
    out = fn()
  jax.block_until_ready(out)
  start = time.perf_counter()
  for _ in range(steps):
    out = fn()
  jax.block_until_ready(out)
  return (time.perf_counter() - start) / steps, out


def device_name():
  return f'{jax.device_count()} x {jax.devices()[0].device_kind}'
