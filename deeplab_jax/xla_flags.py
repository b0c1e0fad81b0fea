"""XLA flags the entry points set before JAX's first computation.

On CPU, XLA 0.10 hands matmuls and convolutions to YNNPACK but leaves the
elementwise work around them (BatchNorm, ReLU, residual adds) to its own loop
fusions, and for ResNet these re-compute the whole residual stream of earlier
blocks inside every block (quadratic in depth: a third of the ResNet-101
forward). `--xla_cpu_experimental_ynn_fusion_type=+eltwise` lets YNNPACK take
the elementwise ops too: ResNet-101 ASPP forward at 321x321 on 2 cores went
from ~1.6 s to ~1.1-1.2 s (benchmarks/README.md). The flag is experimental, so
it is only added for the jaxlib versions it was measured on, and never over a
setting the user made in XLA_FLAGS.

The dense CRF's mean-field (gathers, scatter-adds, a separable filter) runs
about 1.5-2x slower with that flag (a batch of 16 192x192 images: 5.0 s
against 2.4-3.5 s), so its jitted functions compile with XLA's default
instead (`without_cpu_flags`, a per-compile option). So do the train step
and prediction of the backbones in DEFAULT_FUSION_BACKBONES
(`model_compiler_options`), which the flag slows down.
"""

from __future__ import annotations

import os

_TESTED_JAXLIB = ('0.10.',)
CPU_FLAGS = {'--xla_cpu_experimental_ynn_fusion_type': '+eltwise'}
# Backbones whose train step and prediction compile with XLA's defaults: the
# YNN elementwise fusion slows MobileNetV3 (its depthwise taps, hard-swish and
# squeeze-excitation are elementwise work): voc_lraspp_mobilenet_v3_large,
# batch 2 at 321x321 on 2 cores, forward 94 -> 23 ms and gradients 619 ->
# 284 ms without it (jaxlib 0.10.2, 2026-12-08). Open: a per-compile option
# can only give '' (no YNN fusions at all), which also drops XLA's own YNN
# dot / conv fusions: MobileNetV3's train step takes 597 ms with '' against
# 290 ms with no XLA_FLAGS at all (its true defaults; '-eltwise' in XLA_FLAGS
# gives 310, but compiler_options refuses that value).
DEFAULT_FUSION_BACKBONES = ('mobilenet_v3',)
# XLA's own values of CPU_FLAGS (an empty list: no YNN fusions).
XLA_DEFAULTS = {'--xla_cpu_experimental_ynn_fusion_type': ''}


def default_flags(jaxlib_version=None):
  """The flags to add for this jaxlib (none for untested versions)."""
  if jaxlib_version is None:
    import jaxlib  # pylint: disable=import-outside-toplevel
    jaxlib_version = jaxlib.__version__
  if not jaxlib_version.startswith(_TESTED_JAXLIB):
    return {}
  return dict(CPU_FLAGS)


def set_defaults(environ=os.environ, jaxlib_version=None):
  """Appends our flags to XLA_FLAGS, keeping any the user set.

  Must run before JAX initialises its backends (before the first array).
  """
  current = environ.get('XLA_FLAGS', '')
  extra = [f'{name}={value}' for name, value in default_flags(jaxlib_version).items()
           if name not in current]
  if extra:
    environ['XLA_FLAGS'] = ' '.join([current] + extra).strip()


def without_cpu_flags(environ=os.environ, backend=None):
  """`jax.jit(..., compiler_options=...)` that compiles one function with
  XLA's defaults in place of the CPU_FLAGS that `set_defaults` added (None
  where there are none in effect: not on a CPU, or the user's own setting)."""
  if backend is None:
    import jax  # pylint: disable=import-outside-toplevel
    backend = jax.default_backend()
  current = environ.get('XLA_FLAGS', '').split()
  options = {name.lstrip('-'): XLA_DEFAULTS[name] for name, value in CPU_FLAGS.items()
             if f'{name}={value}' in current}
  return options if backend == 'cpu' and options else None


def model_compiler_options(model_config, environ=os.environ, backend=None):
  """`compiler_options` for the jitted train step and prediction of
  `config.model`: `without_cpu_flags` for DEFAULT_FUSION_BACKBONES, else None."""
  if model_config.backbone.name in DEFAULT_FUSION_BACKBONES:
    return without_cpu_flags(environ, backend)
  return None
