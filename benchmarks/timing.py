"""Shared by the benchmarks: wall-clock timing, XLA's FLOP count, model FLOP
utilisation, random inputs."""

from __future__ import annotations

import time

import jax
import numpy as np
from absl import flags
from absl import logging

flags.DEFINE_float('peak_tflops', None,
                   'Dense peak TFLOP/s of one device for `mfu` (default: PEAK_TFLOPS).')

# Dense (no 2:4 sparsity) peak TFLOP/s per device, by jax device_kind and dtype.
# NVIDIA: H100 SXM from the H100 datasheet / whitepaper table (bf16 1,979 and
# TF32 989 "with sparsity", halved; FP32 66.9 without tensor cores), the H200
# has the H100 SXM's compute; A100 from its datasheet (bf16 312, TF32 156).
# TPU: bf16 per chip from cloud.google.com/tpu/docs (v4, v5e, v5p pages).
# 'float32' on NVIDIA GPUs is TF32: JAX's default precision runs float32
# convolutions and dots on TF32 tensor cores there (docs.jax.dev, "Matmul
# precision"); with jax_default_matmul_precision='highest' see `peak_tflops`.
_H100 = {'bfloat16': 989.4, 'float32': 494.7}
_A100 = {'bfloat16': 312.0, 'float32': 156.0}
PEAK_TFLOPS = {
    'NVIDIA H100 80GB HBM3': _H100, 'NVIDIA H200': _H100,
    'NVIDIA A100-SXM4-40GB': _A100, 'NVIDIA A100-SXM4-80GB': _A100,
    'TPU v4': {'bfloat16': 275.0}, 'TPU v5 lite': {'bfloat16': 197.0},
    'TPU v5': {'bfloat16': 459.0}, 'TPU v5p': {'bfloat16': 459.0},
}
_FULL_FP32_TFLOPS = {'NVIDIA H100 80GB HBM3': 66.9, 'NVIDIA H200': 66.9}


def peak_flops(dtype, device_kind=None):
  """Dense peak FLOP/s of one device for `dtype` (--peak_tflops wins), or None."""
  if flags.FLAGS.is_parsed() and flags.FLAGS.peak_tflops:
    return flags.FLAGS.peak_tflops * 1e12
  kind = device_kind or jax.devices()[0].device_kind
  if str(dtype) == 'float32' and jax.config.jax_default_matmul_precision in (
      'highest', 'float32'):
    tflops = _FULL_FP32_TFLOPS.get(kind)
  else:
    tflops = PEAK_TFLOPS.get(kind, {}).get(str(dtype))
  return tflops * 1e12 if tflops else None


def add_mfu(line, flops_per_sec, dtype, num_devices):
  """Adds 'mfu' (achieved / peak of `num_devices` devices) when the peak is known."""
  peak = peak_flops(dtype)
  if peak and flops_per_sec:
    line['mfu'] = round(flops_per_sec / (peak * num_devices), 4)
  return line


def _first(cost):
  return cost[0] if isinstance(cost, (list, tuple)) else cost


def _cpu_cost_analysis(lowered):
  """XLA's CPU client's analysis of `lowered`'s HLO: GPU plugins (JAX 0.11)
  analyse nothing before compiling, and their compiled count leaves out the
  cuDNN convolutions (measured on an H100: 179 of 7,731 GFLOP for a ResNet-101 MSC step)."""
  from jax._src import xla_bridge  # pylint: disable=import-outside-toplevel
  from jax._src.lib import _jax  # pylint: disable=import-outside-toplevel
  return _jax.hlo_module_cost_analysis(
      xla_bridge.get_backend('cpu'), lowered.compiler_ir('hlo').as_hlo_module())


def xla_flops(jitted, *args):
  """FLOPs of one call of `jitted(*args)` from XLA's cost analysis of the
  whole program (unpartitioned, before optimisation: the compiled program's
  count is one device's share once partitioned). 0.0 where unavailable."""
  lowered = jitted.lower(*args)
  cost = _first(lowered.cost_analysis())
  if cost is None:
    try:
      cost = _first(_cpu_cost_analysis(lowered))
    except Exception as e:  # pylint: disable=broad-except  # Private API moved.
      logging.warning('no FLOP count: %s', e)
      return 0.0
  return float(cost.get('flops', 0.0))


def time_calls(fn, steps, warmup=1, sync=None):
  """Median seconds of `steps` calls of `fn()`, each waited for, after `warmup`.

  `sync()` (e.g. torch.cuda.synchronize) also runs before each clock stop.
  The median, not the mean: shared CPUs see other tenants' bursts.
  """
  def call():
    result = jax.block_until_ready(fn())
    if sync is not None:
      sync()
    return result

  out = None
  for _ in range(warmup):
    out = call()
  seconds = []
  for _ in range(steps):
    start = time.perf_counter()
    out = call()
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
