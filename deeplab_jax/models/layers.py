"""The layers every part builds from, configured once: `Layers`.

    layers = Layers(atrous_impl='auto', batch_norm='frozen', dtype=jnp.bfloat16)
    y = layers.conv(256, 3, rate=2, name='conv5_1')(x)          # AtrousConv
    y = layers.conv_bn(64, 7, stride=2, name='conv1')(x, train)  # conv -> BN -> ReLU
    y = layers.conv_transpose(21, 4, stride=2, name='upscore2')(x)  # transposed.py
    y = layers.separable_conv_bn(256, rate=6, name='aspp1')(x, train)  # v3+'s sep. conv

A backbone or head takes one `layers` field instead of carrying the atrous
implementation, the BatchNorm mode and the activation dtype itself, as flax's
`conv: ModuleDef = partial(nn.Conv, ...)` idiom does; `from_config` checks the
three settings of `config.model` once, at the boundary, with the message a user
needs. Parameters are float32 whatever `dtype` says (activations only).

`ConvBN` is conv -> BatchNorm -> optional ReLU, the unit of the ResNet and
small backbones: parameters `conv/kernel` and `bn/{scale,bias}` (+ statistics
`bn/{mean,var}`), or `conv/{kernel,bias}` with batch_norm 'none'.

`SeparableConvBN` is DeepLab v3+'s depthwise-separable atrous conv in the
split form of the official code: depthwise (k x k at the rate) -> BN -> ReLU
-> pointwise (1x1) -> BN -> ReLU. tensorflow/models research/deeplab/core/
utils.py `split_separable_conv2d` is `slim.separable_conv2d(num_outputs=None)`
(the depthwise conv alone) then a 1x1 `slim.conv2d`, called (model.py's ASPP,
the decoder) under `slim.arg_scope([slim.conv2d, slim.separable_conv2d],
activation_fn=tf.nn.relu, normalizer_fn=slim.batch_norm)`, so each of the two
convs has its BatchNorm and ReLU, and no bias. Parameters `depthwise/kernel`
(k, k, 1, C), `depthwise_bn/*`, `pointwise/kernel` (1, 1, C, O),
`pointwise_bn/*`; with batch_norm 'none', biases `depthwise/bias`,
`pointwise/bias` instead of the BatchNorms.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from deeplab_jax.errors import UserError
from deeplab_jax.models.atrous import IMPLEMENTATIONS, AtrousConv
from deeplab_jax.models.batch_norm import batch_norm as make_batch_norm
from deeplab_jax.models.transposed import ConvTranspose

DTYPES = {'float32': jnp.float32, 'bfloat16': jnp.bfloat16}
BATCH_NORMS = ('train', 'frozen', 'none')


@dataclasses.dataclass(frozen=True)
class Layers:
  """How convolutions and normalisation are made, for every part of a model."""
  atrous_impl: str = 'dilation'  # atrous.IMPLEMENTATIONS; all give the same numbers.
  batch_norm: str = 'train'  # 'train' (batch statistics), 'frozen' or 'none'.
  dtype: Any = jnp.float32  # Activation dtype.

  def conv(self, features, kernel_size=3, **kwargs) -> AtrousConv:
    """An `AtrousConv` (rate, stride, use_bias, kernel_init, name as there)."""
    return AtrousConv(features, kernel_size, impl=self.atrous_impl, dtype=self.dtype,
                      **kwargs)

  def conv_bn(self, features, kernel_size=3, **kwargs) -> 'ConvBN':
    """A `ConvBN` (stride, rate, relu, name as there) with these layers."""
    return ConvBN(features, kernel_size, layers=self, **kwargs)

  def conv_transpose(self, features, kernel_size, stride=1, **kwargs) -> ConvTranspose:
    """A `ConvTranspose` (padding, output_padding, use_bias, impl, kernel_init, name
    as there): PyTorch's ConvTranspose2d, in these layers' dtype."""
    return ConvTranspose(features, kernel_size, stride=stride, dtype=self.dtype, **kwargs)

  def separable_conv_bn(self, features, kernel_size=3, **kwargs) -> 'SeparableConvBN':
    """A `SeparableConvBN` (rate, stride, depthwise_relu, relu, name as
    there) with these layers."""
    return SeparableConvBN(features, kernel_size, layers=self, **kwargs)

  def norm(self, train, name='bn', momentum=0.9, epsilon=1e-5):
    """The BatchNorm of mode `batch_norm` (not 'none'), called as f(x)."""
    return make_batch_norm(self.batch_norm, train, name=name, momentum=momentum,
                           epsilon=epsilon, dtype=self.dtype)


class ConvBN(nn.Module):
  features: int
  kernel_size: int = 3
  stride: int = 1
  rate: int = 1
  relu: bool = True
  bn_momentum: float = 0.9  # flax's convention: PyTorch's momentum m is 1 - m here.
  bn_epsilon: float = 1e-5  # PyTorch's BatchNorm2d default (MobileNetV3: 1e-3).
  depthwise: bool = False  # Per-channel k x k filters (features == input channels).
  layers: Layers = Layers()

  @nn.compact
  def __call__(self, x, train: bool):
    use_bn = self.layers.batch_norm != 'none'
    x = self.layers.conv(self.features, self.kernel_size, rate=self.rate,
                         stride=self.stride, use_bias=not use_bn,
                         depthwise=self.depthwise, name='conv')(x)
    if use_bn:
      x = self.layers.norm(train, momentum=self.bn_momentum, epsilon=self.bn_epsilon)(x)
    return nn.relu(x) if self.relu else x


class SeparableConvBN(nn.Module):
  """Depthwise (at `rate`) -> BN -> ReLU -> pointwise -> BN -> ReLU (v3+)."""
  features: int
  kernel_size: int = 3
  rate: int = 1
  stride: int = 1
  depthwise_relu: bool = True  # The ReLU between the two convs (v3+: yes).
  relu: bool = True  # The last ReLU.
  bn_momentum: float = 0.9
  layers: Layers = Layers()

  @nn.compact
  def __call__(self, x_BxHxWxC, train: bool):
    use_bn = self.layers.batch_norm != 'none'
    channels = x_BxHxWxC.shape[-1]
    y = self.layers.conv(channels, self.kernel_size, rate=self.rate, stride=self.stride,
                         use_bias=not use_bn, depthwise=True, name='depthwise')(x_BxHxWxC)
    if use_bn:
      y = self.layers.norm(train, name='depthwise_bn', momentum=self.bn_momentum)(y)
    if self.depthwise_relu:
      y = nn.relu(y)
    y = self.layers.conv(self.features, 1, use_bias=not use_bn, name='pointwise')(y)
    if use_bn:
      y = self.layers.norm(train, name='pointwise_bn', momentum=self.bn_momentum)(y)
    return nn.relu(y) if self.relu else y


def from_config(model_config) -> Layers:
  """`Layers` from `config.model.{atrous_impl, batch_norm, dtype}`, checked."""
  m = model_config
  if m.dtype not in DTYPES:
    raise UserError(f'model.dtype {m.dtype!r} is not one of {sorted(DTYPES)}')
  if m.atrous_impl not in IMPLEMENTATIONS:
    raise UserError(f'model.atrous_impl {m.atrous_impl!r} is not one of {IMPLEMENTATIONS}')
  if m.batch_norm not in BATCH_NORMS:
    raise UserError(f'model.batch_norm {m.batch_norm!r} is not one of '
                    f'{", ".join(BATCH_NORMS)}')
  return Layers(atrous_impl=m.atrous_impl, batch_norm=m.batch_norm, dtype=DTYPES[m.dtype])
