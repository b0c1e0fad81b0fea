"""ONNX through jax2onnx, run by onnxruntime (`pip install -e '.[export]'`).

    import onnxruntime as ort
    session = ort.InferenceSession('model.onnx')
    logits, labels = session.run(None, {'images': images_uint8_BxHxWx3})

The batch is symbolic ('batch'); height and width are fixed at export
(deeplab_jax/export/__init__.py says why). Convolutions are ONNX `Conv`
(NCHW inside, transposes at the edges), atrous ones with `dilations`,
depthwise ones with `group`; the bilinear resizes are the same matmuls as in
JAX, so the upsampling is exact, not ONNX `Resize`'s own convention.
"""

from __future__ import annotations

import numpy as np

from deeplab_jax.errors import UserError

OPSET = 21


def _modules():
  try:
    import jax2onnx  # pylint: disable=import-outside-toplevel
    import onnx  # pylint: disable=import-outside-toplevel
  except ImportError as e:
    raise UserError(f'--format onnx needs jax2onnx and onnx ({e.name} is missing): '
                    "pip install -e '.[export]'") from e
  return jax2onnx, onnx


def session(path):
  """An onnxruntime CPU session of `path`."""
  try:
    import onnxruntime  # pylint: disable=import-outside-toplevel
  except ImportError as e:
    raise UserError("running ONNX models needs onnxruntime: pip install -e '.[export]'") from e
  options = onnxruntime.SessionOptions()
  options.log_severity_level = 3  # Errors only.
  return onnxruntime.InferenceSession(path, options, providers=['CPUExecutionProvider'])


def write(fn, spec, output, align_corners, outputs, platforms=None):
  del platforms
  jax2onnx, onnx = _modules()
  import jax  # pylint: disable=import-outside-toplevel
  import jax.numpy as jnp  # pylint: disable=import-outside-toplevel
  shape = ('batch' if not spec.batch else spec.batch, spec.height, spec.width, 3)
  del align_corners  # Fixed sides: serving.padded_side is a number.
  if isinstance(shape[0], str):
    arg = jax.ShapeDtypeStruct(jax.export.symbolic_shape(f'{shape[0]}, {shape[1]}, '
                                                         f'{shape[2]}, 3'), jnp.uint8)
  else:
    arg = jax.ShapeDtypeStruct(shape, jnp.uint8)
  from deeplab_jax.models import pooling  # pylint: disable=import-outside-toplevel
  with pooling.as_slices():  # See pooling.py: jax2onnx mis-converts NHWC max pools.
    model = jax2onnx.to_onnx(lambda x: tuple(fn(x)[name] for name in outputs), [arg],
                             model_name='deeplab_jax', opset=OPSET, input_names=['images'],
                             output_names=list(outputs))
  # jax2onnx's intermediate shape annotations mix NHWC and NCHW; onnxruntime
  # infers them itself, so drop them rather than let it warn about each.
  del model.graph.value_info[:]
  onnx.checker.check_model(model)
  onnx.save(model, output)
  ops = sorted({node.op_type for node in model.graph.node})
  convs = [node for node in model.graph.node if node.op_type in ('Conv', 'ConvTranspose')]
  dilated = sum(1 for node in convs for a in node.attribute
                if a.name == 'dilations' and max(a.ints) > 1)
  return {'opset': OPSET, 'ops': ops, 'convs': len(convs), 'dilated_convs': dilated,
          'jax2onnx': jax2onnx.__version__ if hasattr(jax2onnx, '__version__') else None}


def load(path, metadata):
  sess = session(path)
  names = metadata['outputs']

  def run(images_BxHxWx3):
    values = sess.run(names, {'images': np.asarray(images_BxHxWx3, np.uint8)})
    return dict(zip(names, values))
  return run
