"""U-Net (Ronneberger, Fischer, Brox 2015, arXiv 1505.04597): backbone
'unet_encoder' (the contracting path) and head 'unet_decoder' (the expanding
path), used inside the segmenter (deeplab.py) as any other pair.

The network (paper section 2, Fig. 1), with `depth` D pools (paper: 4) and
`base_width` w (paper: 64):
  contracting  level l = 0 .. D: two 3x3 convs + ReLU at width w * 2^l (64,
               128, ..., 1024), then (l < D) a 2x2 max pool, stride 2;
  expanding    level l = D-1 .. 0: "an upsampling of the feature map
               followed by a 2x2 convolution ("up-convolution") that halves
               the number of feature channels", here one 2x2 transposed conv
               of stride 2 (transposed.py; to w * 2^l channels, no ReLU: the
               paper names none), concatenated with the encoder's
               level-l map, centre-cropped to its size ("the cropping is
               necessary due to the loss of border pixels in every
               convolution"), then two 3x3 convs + ReLU at width w * 2^l;
  classifier   a 1x1 conv to the classes ("At the final layer a 1x1
               convolution is used to map each 64-component feature vector to
               the desired number of classes"). 23 convolutional layers in
               all at D = 4, as the paper counts.
The concatenation order is [cropped skip, upsampled] (channels of the skip
first). Weights start as the paper's Gaussian with std sqrt(2 / N), N = k*k*in
(section 3; flax's he_normal, a truncated normal of that std). `batch_norm`
(config.model) 'none' is the paper's network (it has no BatchNorm; each conv
then has a bias); 'train' / 'frozen' put a BatchNorm between every 3x3 conv
and its ReLU.

Two forms, by `padding`:
  'valid'  the paper's unpadded convs (each 3x3 loses a pixel a side). A side
           n works only if every pool meets an even size (section 2: "select
           the input tile size such that all 2x2 max-pooling operations are
           applied to a layer with an even x- and y-size"): with bottom size
           b >= 1, n = 2^D b + 4 (2^(D+1) - 1) and the output is
           2^D b - 4 (2^D - 1), centred in the input (D = 4: 572 -> 388, as
           Fig. 1; 188 -> 4 the smallest). `valid_output_size` gives it; other
           sizes are a UserError naming the nearest valid ones.
           With `mirror` (the default) the input is first extended by
           mirroring, the paper's overlap-tile strategy (section 2, Fig. 2:
           "the missing context is extrapolated by mirroring the input
           image"), to the smallest valid size whose output covers it, and the
           output is cropped back: any size works and the logits are the
           image's size, as losses/ and inference.py need (both resize the
           model's map to the labels / image, which would misplace a smaller,
           centred map). `mirror=False` is the raw network (output smaller
           than the input): for use outside train.py / evaluate.py.
  'same'   3x3 convs padded by 1 (output = input size). An odd or non-
           multiple size is padded with zeros (the normalised mean colour) at
           the bottom / right to a multiple of 2^D and the output cropped back
           (the pools and up-convs then always meet even sizes).

Features of 'unet_encoder': `image` (the input as given, stride 1: the
decoder crops to its size), `level0` .. `level{D-1}` (each level's map before
its pool, the skips, strides 1 .. 2^(D-1)) and `out` (the bottom, stride 2^D).
Parameters: trunk `enc{l}_conv{1,2}/{conv,bn}`, head `up{l}` (kernel (2, 2,
2c, c), bias), `dec{l}_conv{1,2}/{conv,bn}`, `classifier`. Encoder and
decoder must be configured with the same `depth` and `padding` (the decoder
checks the map sizes and says so).
"""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp

from deeplab_jax.errors import UserError
from deeplab_jax.models import pooling
from deeplab_jax.models import registry
from deeplab_jax.models.features import OUT, Features
from deeplab_jax.models.layers import Layers

PADDINGS = ('same', 'valid')


def valid_output_size(size: int, depth: int):
  """The 'valid' network's output side for input side `size`, or None where a
  pool would meet an odd size or a map would vanish."""
  for _ in range(depth):
    size -= 4
    if size < 2 or size % 2:
      return None
    size //= 2
  size -= 4
  if size < 1:
    return None
  for _ in range(depth):
    size = 2 * size - 4
  return size if size >= 1 else None


def valid_input_size(min_output: int, depth: int) -> int:
  """The smallest valid input side whose output side is >= `min_output`."""
  bottom = max(1, -(-(min_output + 4 * (2 ** depth - 1)) // 2 ** depth))
  while valid_output_size(2 ** depth * bottom + 4 * (2 ** (depth + 1) - 1), depth) is None:
    bottom += 1  # Only for min_output < 1 (bottoms that vanish on the way up).
  return 2 ** depth * bottom + 4 * (2 ** (depth + 1) - 1)


def _check_valid_size(size_hw, depth):
  for size in size_hw:
    if valid_output_size(size, depth) is None:
      near = [n for n in range(size - 1, 0, -1) if valid_output_size(n, depth)][:1]
      near.append(valid_input_size(1 if not near else valid_output_size(near[0], depth) + 1,
                                   depth))
      raise UserError(
          f"U-Net padding 'valid' (depth {depth}, mirror False): an input side of {size} "
          f'meets a 2x2 pool at an odd size; valid sides are 2^{depth} b + '
          f'{4 * (2 ** (depth + 1) - 1)} with an output >= 1 (nearest: {near}); or set '
          'model.backbone.mirror=True, which takes any size')


def center_crop(x_BxHxWxC, size_hw):
  """The centre `size_hw` window of `x` (the paper's crop of the skips)."""
  top = (x_BxHxWxC.shape[1] - size_hw[0]) // 2
  left = (x_BxHxWxC.shape[2] - size_hw[1]) // 2
  return x_BxHxWxC[:, top:top + size_hw[0], left:left + size_hw[1]]


class UNetConv(nn.Module):
  """3x3 conv ('same', then cropped by 1 a side in 'valid': equal to an
  unpadded conv) -> BatchNorm (unless batch_norm 'none') -> ReLU. The crop
  comes before the BatchNorm, so its statistics see the valid pixels only."""
  features: int
  padding: str = 'same'
  layers: Layers = Layers()

  @nn.compact
  def __call__(self, x, train: bool):
    use_bn = self.layers.batch_norm != 'none'
    x = self.layers.conv(self.features, 3, use_bias=not use_bn, name='conv')(x)
    if self.padding == 'valid':
      x = x[:, 1:-1, 1:-1]
    if use_bn:
      x = self.layers.norm(train)(x)
    return nn.relu(x)


def max_pool_2x2(x_BxHxWxC):
  """2x2 max pool, stride 2 (sizes are even here)."""
  return pooling.max_pool(x_BxHxWxC, 2, 2, ((0, 0), (0, 0)))


class UNetEncoder(nn.Module):
  """The contracting path; see the module docstring."""
  depth: int = 4
  base_width: int = 64
  padding: str = 'same'
  mirror: bool = True  # 'valid' only: overlap-tile mirroring (output = input size).
  layers: Layers = Layers()

  def feature_strides(self) -> dict[str, int]:
    strides = {'image': 1}
    strides.update({f'level{l}': 2 ** l for l in range(self.depth)})
    strides[OUT] = 2 ** self.depth
    return strides

  def _extend(self, x):
    """The input the network runs on: padded as its form needs."""
    h, w = x.shape[1:3]
    if self.padding == 'same':
      m = 2 ** self.depth
      return jnp.pad(x, ((0, 0), (0, -h % m), (0, -w % m), (0, 0)))
    if not self.mirror:
      _check_valid_size((h, w), self.depth)
      return x
    margin = (valid_input_size(1, self.depth) - valid_output_size(
        valid_input_size(1, self.depth), self.depth)) // 2
    pads = [(0, 0)]
    for n in (h, w):
      extra = valid_input_size(n, self.depth) - 2 * margin - n
      pads.append((margin, margin + extra))
    return jnp.pad(x, pads + [(0, 0)], mode='reflect')

  @nn.compact
  def __call__(self, x_BxHxWx3, train: bool):
    maps = {'image': x_BxHxWx3}
    x = self._extend(x_BxHxWx3)
    for level in range(self.depth + 1):
      width = self.base_width * 2 ** level
      for i in (1, 2):
        x = UNetConv(width, self.padding, self.layers, name=f'enc{level}_conv{i}')(x, train)
      if level < self.depth:
        maps[f'level{level}'] = x
        x = max_pool_2x2(x)
    maps[OUT] = x
    return Features(maps, self.feature_strides())


class UNetDecoder(nn.Module):
  """The expanding path and the 1x1 classifier; see the module docstring."""
  num_classes: int
  depth: int = 4
  padding: str = 'same'
  layers: Layers = Layers()

  @property
  def reads(self) -> tuple[str, ...]:
    return ('image',) + tuple(f'level{l}' for l in range(self.depth)) + (OUT,)

  def classifier_layers(self) -> tuple[str, ...]:
    return ('classifier',)

  @nn.compact
  def __call__(self, features, train: bool):
    x = features[OUT]
    for level in reversed(range(self.depth)):
      skip = features[f'level{level}']
      width = skip.shape[-1]
      x = self.layers.conv_transpose(width, 2, stride=2, name=f'up{level}')(x)
      if self.padding == 'same' and skip.shape[1:3] != x.shape[1:3]:
        raise UserError(f"U-Net decoder (padding 'same'): level {level}'s skip is "
                         f'{skip.shape[1:3]}, the up-convolution gives {x.shape[1:3]}: '
                         'are model.backbone and model.head configured with the same '
                         'depth and padding?')
      if skip.shape[1] < x.shape[1] or skip.shape[2] < x.shape[2]:
        raise UserError(f'U-Net decoder: level {level}\'s skip {skip.shape[1:3]} is '
                         f'smaller than the up-convolution\'s {x.shape[1:3]}: the '
                         "encoder is 'same', the decoder 'valid'?")
      x = jnp.concatenate([center_crop(skip, x.shape[1:3]), x], -1)
      for i in (1, 2):
        x = UNetConv(width, self.padding, self.layers, name=f'dec{level}_conv{i}')(x, train)
    x = self.layers.conv(self.num_classes, 1, name='classifier')(x)
    h, w = features['image'].shape[1:3]
    if x.shape[1] >= h and x.shape[2] >= w:  # 'same' and mirrored 'valid': padded.
      x = x[:, :h, :w]
    return x


def _form(section):
  padding = section.get('padding', 'same')
  if padding not in PADDINGS:
    raise UserError(f'U-Net padding {padding!r} is not one of {PADDINGS}')
  depth = int(section.get('depth', 4))
  if depth < 1:
    raise UserError(f'U-Net depth {depth} must be >= 1 (the paper: 4 pools)')
  return depth, padding


@registry.register_backbone('unet_encoder')
def encoder_from_config(section, layers: Layers) -> UNetEncoder:
  """`config.model.backbone` with name 'unet_encoder'."""
  registry.check_fields(section, "backbone 'unet_encoder'",
                        ('depth', 'base_width', 'padding', 'mirror'))
  depth, padding = _form(section)
  return UNetEncoder(depth=depth, base_width=int(section.get('base_width', 64)),
                     padding=padding, mirror=bool(section.get('mirror', True)),
                     layers=layers)


@registry.register_head('unet_decoder')
def decoder_from_config(section, layers: Layers, num_classes: int) -> UNetDecoder:
  """`config.model.head` with name 'unet_decoder'."""
  registry.check_fields(section, "head 'unet_decoder'", ('depth', 'padding'))
  depth, padding = _form(section)
  return UNetDecoder(num_classes=num_classes, depth=depth, padding=padding, layers=layers)
