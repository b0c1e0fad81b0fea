"""StableHLO through `jax.export`: a serialized, versioned, multi-platform program.

    exported = jax.export.deserialize(open('model.stablehlo', 'rb').read())
    out = exported.call(images_uint8_BxHxWx3)   # {'logits': ..., 'labels': ...}

Batch, height and width are symbolic unless fixed by flag; the artifact is
lowered for every platform of --platforms (default: JAX's own backend) and
`call` checks the shapes it is given against the export's constraints.
"""

from __future__ import annotations

import jax
import numpy as np

PLATFORMS = ('cpu', 'cuda', 'rocm', 'tpu')


def write(fn, spec, output, align_corners, outputs, platforms=None):
  from deeplab_jax.errors import UserError  # pylint: disable=import-outside-toplevel
  platforms = tuple(platforms or (jax.default_backend(),))
  bad = [p for p in platforms if p not in PLATFORMS]
  if bad:
    raise UserError(f'--platforms {bad}: choose from {list(PLATFORMS)}')
  exported = jax.export.export(jax.jit(fn), platforms=platforms)(spec.symbolic(align_corners))
  data = exported.serialize()
  with open(output, 'wb') as f:
    f.write(data)
  return {'platforms': list(platforms), 'bytes': len(data),
          'calling_convention_version': exported.calling_convention_version,
          'out_shapes': {name: str(aval) for name, aval in
                         zip(sorted(outputs), exported.out_avals)}}


def load(path, metadata):
  del metadata
  with open(path, 'rb') as f:
    exported = jax.export.deserialize(bytearray(f.read()))
  call = jax.jit(exported.call)

  def run(images_BxHxWx3):
    return {k: np.asarray(v) for k, v in call(np.asarray(images_BxHxWx3, np.uint8)).items()}
  return run
