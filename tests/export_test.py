"""Exported models (StableHLO, ONNX, SavedModel) against JAX, and the export's errors.

For the demo model, a tiny ResNet ASPP-L with MSC (v2's full recipe) and a
tiny member of each other family, one export per format is called at odd,
non-square sizes and several batch sizes (symbolic where the format allows)
and must give JAX's logits within 1e-4 relative and its labels; the
references are `jax.jit` of the same serving function, which
tests/segmenter_test.py ties to predict.py's masks.
"""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import tiny
from deeplab_jax import export
from deeplab_jax import models
from deeplab_jax.errors import UserError
from deeplab_jax.export import serving
from deeplab_jax.models import atrous

# Tiny configs: the demo (shapes), ResNet ASPP-L + MSC (voc_aspp) and one per family.
FAMILIES = ('shapes', 'voc_aspp', 'voc_largefov', 'voc_fcn8s', 'voc_deeplabv3plus',
            'shapes_unet', 'voc_fcn_resnet50', 'voc_lraspp_mobilenet_v3_large')
SYMBOLIC_SHAPES = ((1, 37, 50), (3, 61, 29))  # One export, several shapes.
FIXED_HW = (37, 50)  # ONNX: height and width fixed, the batch symbolic.


def _variables(model, seed=0):
  """Initial variables with BatchNorm statistics and zero-initialised layers made
  non-trivial."""
  variables = model.init(jax.random.PRNGKey(seed), jnp.zeros((1, 65, 65, 3), jnp.uint8))
  rng = np.random.RandomState(seed)

  def perturb(path, leaf):
    name = jax.tree_util.keystr(path)
    if np.all(np.asarray(leaf) == 0) and 'params' in name:  # FCN's zero-initialised scores.
      return leaf + rng.normal(0, 0.05, leaf.shape).astype(leaf.dtype)
    if 'var' in name:
      return leaf * rng.uniform(0.5, 2.0, leaf.shape).astype(leaf.dtype)
    if 'mean' in name:
      return leaf + rng.normal(0, 0.1, leaf.shape).astype(leaf.dtype)
    return leaf
  return jax.tree_util.tree_map_with_path(perturb, variables)


@pytest.fixture(scope='module', params=FAMILIES)
def family(request):
  config = tiny.get_config(request.param)
  config.model.atrous_impl = 'dilation'
  model = models.build(config)
  variables = _variables(model)
  return request.param, config, variables


def _images(shape, seed):
  return np.random.RandomState(seed).randint(0, 256, shape + (3,)).astype(np.uint8)


def _reference(config, variables, images):
  fn = serving.make_serving_fn(config, models.build(config), variables)
  return jax.device_get(jax.jit(fn)(images))


def _assert_close(got, want, what):
  rel = np.abs(np.asarray(got['logits'], np.float64) - want['logits']).max() / np.abs(
      want['logits']).max()
  assert rel < 1e-4, (what, rel, np.isnan(got['logits']).sum(), np.isnan(want['logits']).sum())
  np.testing.assert_array_equal(got['labels'], want['labels'], err_msg=what)


@pytest.mark.parametrize('format_name', sorted(export.FORMATS))
def test_every_format_gives_jax_outputs(family, format_name, tmp_path):
  name, config, variables = family
  symbolic = export.FORMATS[format_name][1]
  spec = export.InputSpec() if symbolic else export.InputSpec(None, *FIXED_HW)
  output = str(tmp_path / f'{name}.{format_name}')
  metadata = export.export(config, variables, format_name, output, spec)
  assert metadata['check']['labels_equal'] == 1.0  # The export's own check ran.
  run, loaded = export.load(output)
  assert loaded['class_names'] == list(config.dataset.class_names)
  shapes = SYMBOLIC_SHAPES if symbolic else ((1,) + FIXED_HW, (3,) + FIXED_HW)
  for seed, shape in enumerate(shapes):
    images = _images(shape, seed)
    _assert_close(run(images), _reference(config, variables, images),
                  f'{name} {format_name} {shape}')


def test_stablehlo_round_trips_for_several_platforms(tmp_path):
  config = tiny.get_config('shapes')
  variables = _variables(models.build(config))
  output = str(tmp_path / 'm.stablehlo')
  metadata = export.export(config, variables, 'stablehlo', output,
                           platforms=('cpu', 'cuda', 'tpu'))
  assert metadata['platforms'] == ['cpu', 'cuda', 'tpu']
  with open(output, 'rb') as f:
    exported = jax.export.deserialize(bytearray(f.read()))
  assert exported.platforms == ('cpu', 'cuda', 'tpu')
  assert [str(d) for d in exported.in_avals[0].shape] == ['b', 'h', 'w', '3']
  images = _images((2, 45, 33), 3)
  _assert_close(jax.device_get(exported.call(images)), _reference(config, variables, images),
                'deserialized')
  # Serializing the deserialized program gives the same bytes back.
  with open(output, 'rb') as f:
    assert exported.serialize() == f.read()


def _conv_dilations(module_text):
  return 'rhs_dilation = [2, 2]' in module_text or 'rhs_dilate = [2, 2]' in module_text


@pytest.mark.parametrize('impl', [i for i in atrous.IMPLEMENTATIONS
                                  if i not in export.STATIC_SIZE_IMPLS])
def test_every_atrous_implementation_exports_with_symbolic_sizes(impl, tmp_path):
  config = tiny.get_config('voc_largefov')  # Atrous convs of rate 2 (tiny) in fc6.
  variables = _variables(models.build(config))
  output = str(tmp_path / 'm.stablehlo')
  export.export(config, variables, 'stablehlo', output, atrous_impl=impl)
  run, _ = export.load(output)
  images = _images((2, 41, 58), 1)
  _assert_close(run(images), _reference(config, variables, images), impl)


@pytest.mark.parametrize('impl', export.STATIC_SIZE_IMPLS)
def test_size_dependent_atrous_implementations_export_at_fixed_sizes(impl, tmp_path):
  config = tiny.get_config('voc_largefov')
  variables = _variables(models.build(config))
  with pytest.raises(UserError, match='--height and --width.*--atrous_impl dilation'):
    export.export(config, variables, 'stablehlo', str(tmp_path / 'a'), atrous_impl=impl)
  output = str(tmp_path / 'm.stablehlo')
  export.export(config, variables, 'stablehlo', output, export.InputSpec(None, 41, 58),
                atrous_impl=impl)
  run, _ = export.load(output)
  images = _images((2, 41, 58), 1)
  _assert_close(run(images), _reference(config, variables, images), impl)


def test_dilations_stay_dilations(tmp_path):
  """What each format makes of an atrous conv: StableHLO and ONNX keep the
  dilation as an attribute of the convolution; space_to_batch exports as
  reshapes around undilated convolutions."""
  import onnx  # pylint: disable=import-outside-toplevel
  config = tiny.get_config('voc_largefov')
  config.model.atrous_impl = 'dilation'
  variables = _variables(models.build(config))
  fn = serving.make_serving_fn(config, models.build(config), variables)
  text = jax.export.export(jax.jit(fn))(export.InputSpec().symbolic(
      config.model.align_corners)).mlir_module()
  assert 'stablehlo.convolution' in text and 'rhs_dilate = [2, 2]' in text
  found = {}
  for impl in ('dilation', 'space_to_batch'):
    output = str(tmp_path / f'{impl}.onnx')
    metadata = export.export(config, variables, 'onnx', output, export.InputSpec(None, 33, 33),
                             atrous_impl=impl)
    model = onnx.load(output)
    found[impl] = sorted({tuple(a.ints) for n in model.graph.node if n.op_type == 'Conv'
                          for a in n.attribute if a.name == 'dilations'})
    assert metadata['dilated_convs'] == sum(
        1 for n in model.graph.node if n.op_type == 'Conv' for a in n.attribute
        if a.name == 'dilations' and max(a.ints) > 1)
  assert (2, 2) in found['dilation']
  assert all(max(d) == 1 for d in found['space_to_batch'])


def test_depthwise_and_transposed_convs_in_onnx(tmp_path):
  import onnx  # pylint: disable=import-outside-toplevel
  config = tiny.get_config('voc_deeplabv3plus')
  config.model.head.separable = True  # v3+'s depthwise-separable ASPP and decoder.
  variables = _variables(models.build(config))
  output = str(tmp_path / 'v3p.onnx')
  export.export(config, variables, 'onnx', output, export.InputSpec(None, 37, 50))
  groups = [a.i for n in onnx.load(output).graph.node if n.op_type == 'Conv'
            for a in n.attribute if a.name == 'group']
  assert max(groups) > 1  # A depthwise conv is a grouped Conv.
  run, _ = export.load(output)
  images = _images((2, 37, 50), 5)
  _assert_close(run(images), _reference(config, variables, images), 'separable v3+')


@pytest.mark.parametrize('kwargs, match', [
    (dict(format_name='tflite'), "--format 'tflite' is not one of"),
    (dict(format_name='onnx'), '--format onnx needs fixed image sizes: pass --height and --width'),
    (dict(format_name='onnx', spec=export.InputSpec(None, 32, None)), 'pass --width'),
    (dict(format_name='stablehlo', spec=export.InputSpec(0, None, None)), '--batch=0'),
])
def test_bad_requests_are_clear_errors(kwargs, match, tmp_path):
  config = tiny.get_config('shapes')
  with pytest.raises(UserError, match=match):
    export.export(config, {}, output=str(tmp_path / 'x'), **kwargs)
  assert not os.listdir(tmp_path)  # Nothing written.


def test_latency_benchmark_times_every_runtime():
  from benchmarks import export as export_benchmark  # pylint: disable=import-outside-toplevel
  config = tiny.get_config('shapes')
  lines = list(export_benchmark.measure(config, None, sorted(export.FORMATS), [(33, 47)],
                                        batch=2, steps=2))
  assert [line['runtime'] for line in lines] == ['jax'] + sorted(export.FORMATS)
  for line in lines:
    assert line['ms_per_batch'] > 0 and line['ms_per_image'] == pytest.approx(
        line['ms_per_batch'] / 2, abs=0.01)
    assert line['max_rel_diff_vs_jax'] < 1e-4
