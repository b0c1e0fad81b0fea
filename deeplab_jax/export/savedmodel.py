"""TF SavedModel through jax2tf, for TF Serving and TensorFlow users.

    model = tf.saved_model.load('exported/shapes_savedmodel')
    out = model.signatures['serving_default'](images=tf.constant(images_uint8))
    out['labels'], out['logits']

The signature takes `images` (uint8 [None, None, None, 3]) and returns the
outputs by name. jax2tf embeds the StableHLO program in an `XlaCallModule`
op (deeplab_jax/export/__init__.py), with symbolic batch / height / width
unless fixed; the weights are constants inside it.
"""

from __future__ import annotations

import os

import numpy as np

from deeplab_jax.errors import UserError


def _tf():
  try:
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    from jax.experimental import jax2tf  # pylint: disable=import-outside-toplevel
  except ImportError as e:
    raise UserError(f'--format savedmodel needs TensorFlow ({e.name} is missing): '
                    'pip install tensorflow-cpu') from e
  return tf, jax2tf


def write(fn, spec, output, align_corners, outputs, platforms=None):
  del outputs  # The signature returns fn's dict as it is.
  import jax  # pylint: disable=import-outside-toplevel
  tf, jax2tf = _tf()
  shape = spec.shape_spec()
  converted = jax2tf.convert(
      fn, polymorphic_shapes=[f'({shape})'], polymorphic_constraints=spec.constraints(
          align_corners), with_gradient=False,
      native_serialization_platforms=tuple(platforms) if platforms else None)
  module = tf.Module()
  signature = tf.TensorSpec([spec.batch, spec.height, spec.width, 3], tf.uint8, name='images')
  module.serve = tf.function(converted, autograph=False, input_signature=[signature])
  tf.saved_model.save(module, output, signatures={'serving_default': module.serve})
  if not os.path.isfile(os.path.join(output, 'saved_model.pb')):
    raise UserError(f'TensorFlow wrote no saved_model.pb in {output}')
  return {'signature': 'serving_default', 'input_name': 'images',
          'platforms': list(platforms) if platforms else [jax.default_backend()],
          'tensorflow': tf.__version__}


def load(path, metadata):
  tf, _ = _tf()
  serve = tf.saved_model.load(path).signatures['serving_default']
  names = metadata['outputs']

  def run(images_BxHxWx3):
    out = serve(images=tf.constant(np.asarray(images_BxHxWx3, np.uint8)))
    return {name: out[name].numpy() for name in names}
  return run
