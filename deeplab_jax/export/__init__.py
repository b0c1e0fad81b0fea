"""Trained and converted models out of training and into the runtimes users deploy on.

    python export.py --config configs/shapes.py --workdir runs/shapes \\
        --format stablehlo --output exported/shapes.stablehlo
    python export.py ... --format onnx --output exported/shapes.onnx --height 192 --width 192
    python export.py ... --format savedmodel --output exported/shapes_savedmodel

Every format holds the same function (`serving.make_serving_fn`): uint8 RGB
images, NHWC, in; float32 logits and int32 labels at the images' size out
(`--outputs`), with the model's normalisation, channel order, MSC fusion,
`config.eval`'s test-time scales / flip / windows and the upsampling
inside; the weights are constants of the program. Per format (FORMATS):

  stablehlo   `jax.export`, serialized (`.stablehlo`): batch, height and
              width symbolic; for several platforms at once (--platforms
              cpu,cuda,tpu); reloads with `jax.export.deserialize` (or
              `Segmenter.from_exported`). Convolutions stay
              `stablehlo.convolution` with their rhs (atrous) and lhs
              (transposed) dilations.
  onnx        jax2onnx (pinned, `pip install -e '.[export]'`), checked with
              onnxruntime: batch symbolic, height and width fixed (--height,
              --width): jax2onnx cannot express the padded side 64 ceil(h/64)
              that the networks' size arithmetic needs. Atrous convs become
              ONNX `Conv` with `dilations`, depthwise ones `group` = channels.
  savedmodel  `jax2tf` (TensorFlow installed): a SavedModel whose
              `serving_default` signature takes `images` (uint8, [None, None,
              None, 3]) and returns the outputs by name; the program is the
              StableHLO one inside an `XlaCallModule` op (what jax2tf makes
              since native serialization became its only mode), so TF
              Serving and TF with XLA run it, batch, height and width
              symbolic; LiteRT's converter reads TF ops and does not take it.

`metadata.json` beside each artifact (`<output>.json`, or inside a SavedModel
at assets.extra/deeplab_jax.json) records the class names, outputs, input
spec, the CRF parameters and the source config, so that
`segmenter.Segmenter.from_exported` can label and refine what it runs.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import os
from typing import Optional

from deeplab_jax.errors import UserError

# Format name -> (module in this package, whether height / width may be symbolic).
FORMATS = {
    'stablehlo': ('stablehlo', True),
    'onnx': ('onnx_format', False),
    'savedmodel': ('savedmodel', True),
}
# Atrous implementations whose tap choice depends on the image size: symbolic
# sizes cannot decide it (the others compute the same numbers symbolically).
STATIC_SIZE_IMPLS = ('taps', 'auto')


@dataclasses.dataclass(frozen=True)
class InputSpec:
  """The exported input: uint8 (batch, height, width, 3); None = symbolic."""
  batch: Optional[int] = None
  height: Optional[int] = None
  width: Optional[int] = None

  def shape_spec(self) -> str:
    """A `jax.export.symbolic_shape` string, e.g. 'b, h, 192, 3'."""
    dims = [str(v) if v else name for v, name in
            ((self.batch, 'b'), (self.height, 'h'), (self.width, 'w'))]
    return ', '.join(dims + ['3'])

  def constraints(self, align_corners) -> tuple[str, ...]:
    """Symbolic sides are >= 2 with Caffe's corner-aligned grid (serving.padded_side)."""
    if not align_corners:
      return ()
    return tuple(f'{name} >= 2' for v, name in ((self.height, 'h'), (self.width, 'w'))
                 if not v)

  def symbolic(self, align_corners=False):
    """The `jax.ShapeDtypeStruct` to export at."""
    import jax  # pylint: disable=import-outside-toplevel
    import jax.numpy as jnp  # pylint: disable=import-outside-toplevel
    shape = jax.export.symbolic_shape(self.shape_spec(),
                                      constraints=self.constraints(align_corners))
    return jax.ShapeDtypeStruct(shape, jnp.uint8)


def check_request(format_name, spec: InputSpec, atrous_impl, outputs=('logits',)):
  """UserErrors for a format that does not exist or an option it cannot export."""
  from deeplab_jax.export import serving  # pylint: disable=import-outside-toplevel
  from deeplab_jax.models import atrous  # pylint: disable=import-outside-toplevel
  serving.check_outputs(outputs)
  if atrous_impl not in atrous.IMPLEMENTATIONS:
    raise UserError(f'--atrous_impl {atrous_impl!r} is not one of {atrous.IMPLEMENTATIONS}')
  if format_name not in FORMATS:
    raise UserError(f'--format {format_name!r} is not one of {sorted(FORMATS)}')
  for name, value in (('batch', spec.batch), ('height', spec.height), ('width', spec.width)):
    if value is not None and value < 1:
      raise UserError(f'--{name}={value} must be a positive number of '
                      f'{"images" if name == "batch" else "pixels"} (or left out: symbolic)')
  _, symbolic_sides = FORMATS[format_name]
  missing = [f'--{n}' for n, v in (('height', spec.height), ('width', spec.width)) if not v]
  if missing and not symbolic_sides:
    raise UserError(
        f'--format {format_name} needs fixed image sizes: pass {" and ".join(missing)} '
        '(its converter, jax2onnx, cannot express the padded side 64 * ceil(h / 64) the '
        'networks need; the batch stays symbolic). Formats with symbolic sizes: '
        + ', '.join(n for n, (_, s) in FORMATS.items() if s))
  if missing and atrous_impl in STATIC_SIZE_IMPLS:
    raise UserError(
        f'--atrous_impl {atrous_impl!r} picks its taps from the image size, which '
        f'is symbolic here: pass {" and ".join(missing)} for fixed sizes, or export '
        "--atrous_impl dilation (the same numbers; dilations stay dilations)")


def metadata_path(format_name, output):
  if format_name == 'savedmodel':
    return os.path.join(output, 'assets.extra', 'deeplab_jax.json')
  return output + '.json'


def read_metadata(path):
  """The metadata of an exported artifact (its file or SavedModel directory)."""
  for candidate in (metadata_path('stablehlo', path), metadata_path('savedmodel', path)):
    if os.path.isfile(candidate):
      with open(candidate) as f:
        return json.load(f)
  raise UserError(f'{path} has no deeplab_jax metadata ({path}.json): was it made by '
                  '`python export.py`?')


def export(config, variables, format_name, output, spec: InputSpec = InputSpec(),
           outputs=('logits', 'labels'), atrous_impl='dilation', platforms=None,
           source=None):
  """Writes `variables` of `config`'s model in `format_name` to `output`;
  returns the metadata dict (also written, see `metadata_path`)."""
  from deeplab_jax import inference  # pylint: disable=import-outside-toplevel
  from deeplab_jax import models  # pylint: disable=import-outside-toplevel
  from deeplab_jax.export import serving  # pylint: disable=import-outside-toplevel
  check_request(format_name, spec, atrous_impl, outputs)
  config = config.copy_and_resolve_references()
  with config.unlocked():
    config.model.atrous_impl = atrous_impl
  model = models.build(config)
  fn = serving.make_serving_fn(config, model, variables, tuple(outputs))
  module = importlib.import_module(f'deeplab_jax.export.{FORMATS[format_name][0]}')
  os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
  details = module.write(fn, spec, output, align_corners=bool(config.model.align_corners),
                         outputs=tuple(outputs), platforms=platforms)
  check = verify(fn, module.load(output, {'outputs': list(outputs)}), spec, outputs)
  metadata = {
      'format': format_name, 'outputs': list(outputs),
      'input': {'dtype': 'uint8', 'layout': 'NHWC', 'shape': spec.shape_spec()},
      'class_names': list(config.dataset.class_names),
      'num_classes': int(config.dataset.num_classes),
      'atrous_impl': atrous_impl,
      'pad_value': list(inference.pad_colour(config.model)),
      'align_corners': bool(config.model.align_corners),
      'crf': dict(config.crf), 'eval': {k: config.eval[k] for k in
                                         ('mode', 'scales', 'flip', 'window', 'stride')},
      'source': source or {}, 'check': check,
      **details,
  }
  path = metadata_path(format_name, output)
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  with open(path, 'w') as f:
    json.dump(metadata, f, indent=1, default=list)
  return metadata


def export_checkpoint(config, workdir, format_name, output, step=None,
                      spec: InputSpec = InputSpec(), outputs=('logits', 'labels'),
                      atrous_impl='dilation', platforms=None):
  """`export` of `workdir`'s checkpoint `step` (None / 'latest', a number or
  'best': checkpoint.resolve_step; what export.py runs); prints a summary."""
  import jax  # pylint: disable=import-outside-toplevel
  from deeplab_jax import checkpoint  # pylint: disable=import-outside-toplevel
  from deeplab_jax import sharding  # pylint: disable=import-outside-toplevel
  check_request(format_name, spec, atrous_impl, outputs)
  variables, step = checkpoint.load_variables(config, workdir, step,
                                              sharding.make_mesh(jax.devices()[:1]))
  metadata = export(config, jax.device_get(variables), format_name, output, spec, outputs,
                    atrous_impl, platforms,
                    source={'workdir': os.path.abspath(workdir), 'step': int(step)})
  print(f'{format_name}: {output} (input {metadata["input"]["shape"]} uint8, outputs '
        f'{", ".join(outputs)}); checked against JAX on {metadata["check"]["shape"]}: '
        + ', '.join(f'{k} {v:.2g}' for k, v in metadata['check'].items() if k != 'shape'))
  return metadata


def verify(fn, run, spec: InputSpec, outputs, seed=0):
  """The exported artifact (`run`) against JAX (`fn`) on random images of the
  spec's size (symbolic sides: 37 x 50, batch 2); raises if they differ by
  more than 1e-4 relative; returns the figures."""
  import jax  # pylint: disable=import-outside-toplevel
  import numpy as np  # pylint: disable=import-outside-toplevel
  shape = (spec.batch or 2, spec.height or 37, spec.width or 50, 3)
  images = np.random.RandomState(seed).randint(0, 256, shape).astype(np.uint8)
  want = jax.device_get(jax.jit(fn)(images))
  got = run(images)
  check = {'shape': list(shape)}
  for name in outputs:
    a, b = np.asarray(want[name], np.float64), np.asarray(got[name], np.float64)
    if a.shape != b.shape:
      raise RuntimeError(f'exported {name} has shape {b.shape}, JAX gives {a.shape}')
    if name == 'labels':
      check['labels_equal'] = float((a == b).mean())
    else:
      check[f'{name}_max_rel_diff'] = float(np.abs(a - b).max() / max(np.abs(a).max(), 1e-12))
      if not check[f'{name}_max_rel_diff'] <= 1e-4:  # NaN fails too.
        raise RuntimeError(f'exported {name} differ from JAX\'s by '
                           f'{check[f"{name}_max_rel_diff"]:.2e} relative (> 1e-4)')
  return check


def load(path):
  """(fn(images_uint8_BxHxWx3) -> {output: numpy array}, metadata) of an exported artifact."""
  metadata = read_metadata(path)
  module = importlib.import_module(f'deeplab_jax.export.{FORMATS[metadata["format"]][0]}')
  return module.load(path, metadata), metadata
