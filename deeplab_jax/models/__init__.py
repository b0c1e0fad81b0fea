"""Model zoo: `build(config)` turns `config.model` into a flax module.

A model is the segmenter (deeplab.py: normalisation, MSC, the optional CRF
layer) over registered parts (registry.py), each built from its own section:

  config.model.backbone  name 'small' (CPU demo / tests), 'vgg16', 'resnet';
                         the other families' 'vgg16_fcn', 'unet_encoder',
                         'mobilenet_v3' (registry.py lists them all)
  config.model.head      name 'aspp': rates (12,) LargeFOV, (6, 12, 18, 24)
                         ASPP-L, (2, 4, 8, 12) ASPP-S; hidden (1024, 1024)
                         for VGG's fc6 / fc7, kernel_size 4 for v1 DeepLab;
                         'aspp_v3', 'deeplabv3plus', 'fcn', 'fcn_head',
                         'unet_decoder', 'lraspp'
  config.model.multilayer  widths (128, 128): v1 MSc on VGG's pools (absent: none)
  config.model           input_scales (1.0, 0.75, 0.5): v2 MSC on any of them;
                         crf_layer: the dense CRF as the last layer;
                         atrous_impl, batch_norm, dtype: every part's layers
                         (layers.py), checked once here.

The paper configs compose these from configs/parts.py (and configs/family_parts.py).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from deeplab_jax.errors import UserError
from deeplab_jax.models import crf_layer as crf_layer_lib
from deeplab_jax.models import layers as layers_lib
from deeplab_jax.models import registry
from deeplab_jax.models.deeplab import DeepLab
from deeplab_jax.models.features import check_reads
from deeplab_jax.models.multilayer import MultiLayerScores


def _checked(part_name, module, strides):
  try:
    check_reads(part_name, tuple(module.reads), strides)
  except ValueError as e:
    raise UserError(str(e)) from None
  return module


def build(config):
  """Returns the DeepLab module described by `config.model`.

  `config.model.dtype` is the activation dtype ('float32' or 'bfloat16');
  parameters are always float32. With `config.model.crf_layer` the output is
  the dense CRF's log Q at image size (`crf_layer.CRFLayer`, params['crf']).
  """
  m = config.model
  layers = layers_lib.from_config(m)
  scales = tuple(float(s) for s in m.input_scales)
  if 1.0 not in scales:
    raise UserError(f'model.input_scales {scales} must include 1.0 (the fused map\'s size)')
  num_classes = config.dataset.num_classes
  trunk = registry.lookup('backbone', m.backbone.name)(m.backbone, layers)
  strides = trunk.feature_strides()
  head = _checked(f'model.head {m.head.name!r}',
                  registry.lookup('head', m.head.name)(m.head, layers, num_classes), strides)
  multilayer = None
  widths = multilayer_widths(m)
  if widths:
    multilayer = _checked(
        'model.multilayer (v1 MSc)',
        MultiLayerScores(num_classes, widths, dropout=m.multilayer.dropout, layers=layers),
        strides)
  crf = crf_layer_lib.from_config(config) if m.get('crf_layer', False) else None
  return DeepLab(trunk=trunk, head=head, multilayer=multilayer,
                 input_scales=scales, align_corners=m.align_corners,
                 pixel_mean=tuple(m.pixel_mean), pixel_std=tuple(m.pixel_std),
                 channel_order=m.channel_order, dtype=layers.dtype, crf=crf)


def classifier_paths(config) -> tuple[str, ...]:
  """Module paths of `build(config)`'s class-scoring layers, as its parts
  declare them: the optimizer's classifier group, the layers a converter may
  start afresh. Nothing is initialised."""
  return build(config).classifier_paths()


def is_classifier(path: str, classifiers) -> bool:
  """Whether a variable path ('params/head/branch0_classifier/kernel', or the
  path without 'params/') lies in one of the `classifiers` module paths."""
  parts = path.split('/')
  if parts[0] in ('params', 'batch_stats'):
    parts = parts[1:]
  module = '/'.join(parts[:-1])
  return any(module == c or module.startswith(c + '/') for c in classifiers)


def multilayer_widths(model_config) -> tuple:
  """v1 MSc's widths, () where `config.model` has no multilayer section."""
  section = model_config.get('multilayer')
  return tuple(section.widths) if section is not None else ()


def describe(model_config) -> str:
  """'backbone resnet (depth 101, base_width 64), head aspp (rates (6, 12), ...)'
  for error messages: the parts and every field of their sections."""
  def part(kind, section):
    fields = ', '.join(f'{k} {tuple(v) if isinstance(v, list) else v}'
                       for k, v in section.items() if k != 'name')
    return f'{kind} {section.get("name", "")} ({fields})'
  out = [part('backbone', model_config.backbone), part('head', model_config.head)]
  if multilayer_widths(model_config):
    out.append(f'multilayer widths {multilayer_widths(model_config)}')
  return ', '.join(out)


def variable_shapes(config) -> dict[str, tuple[int, ...]]:
  """'{collection}/{path}' -> shape of every variable of `build(config)`.

      variable_shapes(config)['params/head/branch0_classifier/kernel']  # (3, 3, 2048, 21)

  From `jax.eval_shape` at one input scale (MSC shares its variables over
  scales): nothing is allocated, so full-size models are cheap.
  """
  model = build(config).clone(input_scales=(1.0,))
  tree = jax.eval_shape(lambda: model.init(
      jax.random.key(0), jnp.zeros((1, 33, 33, 3), jnp.uint8), train=False))
  return {'/'.join(str(getattr(k, 'key', k)) for k in path): tuple(leaf.shape)
          for path, leaf in jax.tree_util.tree_leaves_with_path(tree)}
