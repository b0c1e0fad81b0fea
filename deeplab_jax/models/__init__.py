"""Model zoo: `build(config)` turns `config.model` into a flax module."""

from __future__ import annotations

import jax.numpy as jnp

from deeplab_jax.errors import UserError
from deeplab_jax.models.aspp import ASPP
from deeplab_jax.models.deeplab import DeepLab
from deeplab_jax.models.small import SmallTrunk
from deeplab_jax.models.vgg import VGG16

_DTYPES = {'float32': jnp.float32, 'bfloat16': jnp.bfloat16}


def build(config):
  """Returns the DeepLab module described by `config.model`.

  `config.model.dtype` is the activation dtype ('float32' or 'bfloat16');
  parameters are always float32.
  """
  m = config.model
  if m.dtype not in _DTYPES:
    raise UserError(f'model.dtype {m.dtype!r} is not one of {sorted(_DTYPES)}')
  dtype = _DTYPES[m.dtype]
  if m.trunk == 'small':
    trunk = SmallTrunk(widths=tuple(m.widths),
                       atrous_widths=tuple(m.atrous_widths),
                       atrous_rates=tuple(m.atrous_rates),
                       residual=m.residual,
                       batch_norm=m.batch_norm, atrous_impl=m.atrous_impl,
                       dtype=dtype)
  elif m.trunk == 'vgg16':
    trunk = VGG16(atrous_impl=m.atrous_impl, dtype=dtype)
  else:
    raise UserError(f'model.trunk {m.trunk!r} is not one of ["small", "vgg16"]')
  head = ASPP(num_classes=config.dataset.num_classes,
              rates=tuple(m.head_rates), hidden=tuple(m.head_hidden),
              kernel_size=m.head_kernel_size,
              dropout=m.dropout, atrous_impl=m.atrous_impl, dtype=dtype)
  return DeepLab(trunk=trunk, head=head, pixel_mean=tuple(m.pixel_mean),
                 pixel_std=tuple(m.pixel_std), channel_order=m.channel_order,
                 dtype=dtype)
