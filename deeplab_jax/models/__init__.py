"""Model zoo: `build(config)` turns `config.model` into a flax module.

  trunk 'vgg16'  + head_hidden (1024, 1024), rate 12          v1/v2 LargeFOV
                 + head_kernel_size 4, hidden (4096, 4096), rate 4,
                   vgg_pools V1_POOLS (vgg_eval_pools V1_EVAL_POOLS)  v1 DeepLab
                 + multilayer_widths (128, 128)               v1 MSc-LargeFOV
                 + head_rates (6, 12, 18, 24) / (2, 4, 8, 12)   v2 ASPP-L / -S
  trunk 'resnet' + head_hidden (), rates (6, 12, 18, 24)       v2 ResNet ASPP-L
                 + head_rates (12,)                           v2 ResNet LargeFOV
  input_scales (1.0, 0.75, 0.5)                                v2 MSC on any of them
  trunk 'small'                                                CPU demo / tests
  crf_layer True                  dense CRF as the last layer (crf_layer.py)
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from deeplab_jax.errors import UserError
from deeplab_jax.models.aspp import ASPP
from deeplab_jax.models import crf_layer as crf_layer_lib
from deeplab_jax.models.atrous import IMPLEMENTATIONS
from deeplab_jax.models.deeplab import DeepLab
from deeplab_jax.models.multilayer import MultiLayerScores
from deeplab_jax.models.resnet import BLOCKS, ResNet
from deeplab_jax.models.small import SmallTrunk
from deeplab_jax.models.vgg import LARGEFOV_POOLS, VGG16, check_pools

_DTYPES = {'float32': jnp.float32, 'bfloat16': jnp.bfloat16}
TRUNKS = ('small', 'vgg16', 'resnet')


def build(config):
  """Returns the DeepLab module described by `config.model`.

  `config.model.dtype` is the activation dtype ('float32' or 'bfloat16');
  parameters are always float32. With `config.model.crf_layer` the output is
  the dense CRF's log Q at image size (`crf_layer.CRFLayer`, params['crf']).
  """
  m = config.model
  if m.dtype not in _DTYPES:
    raise UserError(f'model.dtype {m.dtype!r} is not one of {sorted(_DTYPES)}')
  if m.atrous_impl not in IMPLEMENTATIONS:
    raise UserError(f'model.atrous_impl {m.atrous_impl!r} is not one of {IMPLEMENTATIONS}')
  if m.batch_norm not in ('train', 'frozen', 'none'):
    raise UserError(f'model.batch_norm {m.batch_norm!r} is not one of train, frozen, none')
  scales = tuple(float(s) for s in m.input_scales)
  if 1.0 not in scales:
    raise UserError(f'model.input_scales {scales} must include 1.0 (the fused map\'s size)')
  dtype = _DTYPES[m.dtype]
  multilayer_widths = tuple(m.multilayer_widths)
  if m.trunk == 'small':
    trunk = SmallTrunk(widths=tuple(m.widths),
                       atrous_widths=tuple(m.atrous_widths),
                       atrous_rates=tuple(m.atrous_rates),
                       residual=m.residual,
                       batch_norm=m.batch_norm, atrous_impl=m.atrous_impl,
                       dtype=dtype)
  elif m.trunk == 'vgg16':
    eval_pools = m.get('vgg_eval_pools', ())
    trunk = VGG16(pools=check_pools(m.get('vgg_pools', LARGEFOV_POOLS)),
                  eval_pools=(check_pools(eval_pools, 'model.vgg_eval_pools')
                              if eval_pools else None),
                  pool5a=m.vgg_pool5a, return_skips=bool(multilayer_widths),
                  base_width=m.base_width,
                  atrous_impl=m.atrous_impl, dtype=dtype)
  elif m.trunk == 'resnet':
    if m.resnet_depth not in BLOCKS:
      raise UserError(f'model.resnet_depth {m.resnet_depth} is not one of {sorted(BLOCKS)}')
    if m.batch_norm == 'none':
      raise UserError("model.batch_norm 'none' is not available for ResNet")
    trunk = ResNet(depth=m.resnet_depth, base_width=m.base_width,
                   batch_norm=m.batch_norm,
                   atrous_impl=m.atrous_impl, dtype=dtype)
  else:
    raise UserError(f'model.trunk {m.trunk!r} is not one of {list(TRUNKS)}')
  if multilayer_widths and m.trunk != 'vgg16':
    raise UserError('model.multilayer_widths (v1 MSc) needs model.trunk=vgg16')
  head = ASPP(num_classes=config.dataset.num_classes,
              rates=tuple(m.head_rates), hidden=tuple(m.head_hidden),
              kernel_size=m.head_kernel_size,
              dropout=m.dropout, atrous_impl=m.atrous_impl, dtype=dtype)
  multilayer = None
  if multilayer_widths:
    multilayer = MultiLayerScores(config.dataset.num_classes, multilayer_widths,
                                  dropout=m.dropout, dtype=dtype)
  crf = crf_layer_lib.from_config(config) if m.get('crf_layer', False) else None
  return DeepLab(trunk=trunk, head=head, multilayer=multilayer,
                 input_scales=scales, align_corners=m.align_corners,
                 pixel_mean=tuple(m.pixel_mean), pixel_std=tuple(m.pixel_std),
                 channel_order=m.channel_order, dtype=dtype, crf=crf)


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
