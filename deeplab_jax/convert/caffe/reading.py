"""Reading a `.caffemodel` without Caffe: its layers, their blobs as arrays.

    layers = read_caffemodel('train_iter_20000.caffemodel')   # [Layer, ...] in file order
    found = weight_layers(layers, source)   # name -> Layer with blobs, MSC copies dropped

The file is parsed with the schema subset in `schema.py` (new `layer` and
legacy V1 `layers` formats).
"""

from __future__ import annotations

import dataclasses
import math
import re
from typing import Iterable

import numpy as np
from absl import logging
from google.protobuf import message as protobuf_message

from deeplab_jax.convert.caffe import schema as caffe_schema
from deeplab_jax.errors import UserError

_MSC_SUFFIX = re.compile(r'^(?P<base>.+)_res\d+$')


@dataclasses.dataclass
class Layer:
  """One Caffe layer: name, type ('Convolution', 'BatchNorm', ...) and blobs.

  `blobs` are float32 arrays in Caffe's shapes (from BlobShape, or the legacy
  num / channels / height / width). `bn_eps` is batch_norm_param.eps where
  the file sets it (BatchNorm layers), else None (Caffe's default 1e-5).
  """
  name: str
  type: str
  blobs: list = dataclasses.field(default_factory=list)
  bn_eps: float | None = None


def _blob_array(blob, layer_name, source) -> np.ndarray:
  data = blob.data if len(blob.data) else blob.double_data
  values = np.array(data, dtype=np.float32)
  if blob.HasField('shape'):
    shape = tuple(int(d) for d in blob.shape.dim)
  elif any((blob.num, blob.channels, blob.height, blob.width)):
    shape = (blob.num, blob.channels, blob.height, blob.width)
  else:
    shape = (values.size,)
  if math.prod(shape) != values.size:
    raise UserError(f'{source}: layer {layer_name!r} has a blob of shape {shape} '
                    f'holding {values.size} values; the file is damaged')
  return values.reshape(shape)


def parse_caffemodel(data: bytes, source: str = 'the caffemodel') -> list[Layer]:
  """`read_caffemodel` on bytes already read; `source` names them in errors."""
  net = caffe_schema.NetParameter()
  hint = ('a Caffe .caffemodel (binary NetParameter protobuf) was expected'
          + ('; this looks like a text .prototxt, which holds no weights'
             if data.lstrip()[:6] in (b'name: ', b'layer ', b'layers', b'input:')
             else ''))
  try:
    net.ParseFromString(data)
  except (protobuf_message.DecodeError, RuntimeError, ValueError) as e:
    raise UserError(f'{source}: cannot be parsed: {hint} ({e})') from None
  layers = []
  for p in net.layer:
    eps = (float(p.batch_norm_param.eps)
           if p.HasField('batch_norm_param') and p.batch_norm_param.HasField('eps')
           else None)
    layers.append(Layer(p.name, p.type, [_blob_array(b, p.name, source) for b in p.blobs],
                        bn_eps=eps))
  for p in net.layers:  # V1; a V0 layer nests in `layer`.
    name, type_, blobs = p.name, caffe_schema.v1_type_name(p.type), list(p.blobs)
    if p.HasField('layer'):
      name, type_ = name or p.layer.name, p.layer.type or type_
      blobs = blobs or list(p.layer.blobs)
    layers.append(Layer(name, type_, [_blob_array(b, name, source) for b in blobs]))
  if not any(layer.blobs for layer in layers):
    raise UserError(f'{source}: no layer with weights in it: {hint} '
                    f'({len(layers)} layers without blobs)')
  return layers


def read_caffemodel(path: str) -> list[Layer]:
  """The layers of a `.caffemodel` (new `layer` or V1 `layers` format), in order.

  Layers without weights (ReLU, Pooling, Data, ...) are included with no
  blobs. A file that is not a binary NetParameter, or holds no weights, is a
  UserError naming it.
  """
  try:
    with open(path, 'rb') as f:
      data = f.read()
  except OSError as e:
    raise UserError(f'cannot read {path}: {e.strerror}') from None
  return parse_caffemodel(data, source=path)


# ------------------------------------------- weight layers, MSC copies ----

def weight_layers(layers: Iterable[Layer], source) -> dict:
  """name -> Layer for layers with blobs; MSC copies (`_res075`) checked and dropped."""
  found = {}
  for layer in layers:
    if not layer.blobs:
      continue
    if layer.name in found:
      _check_same(found[layer.name], layer, source)
      continue
    found[layer.name] = layer
  for name in list(found):
    match = _MSC_SUFFIX.match(name)
    if match and match['base'] in found:
      _check_same(found[match['base']], found.pop(name), source)
  return found


def _check_same(kept: Layer, copy: Layer, source):
  """A multi-scale copy must have the kept layer's blob shapes (else an error);
  differing values are a warning, and the kept (scale-1) layer's are used,
  as the PyTorch port's converter does (it skips the copies)."""
  shapes = [b.shape for b in copy.blobs], [b.shape for b in kept.blobs]
  if shapes[0] != shapes[1]:
    raise UserError(f'{source}: layer {copy.name!r} should hold the same weights as '
                    f'{kept.name!r} (a multi-scale copy sharing its parameters), but their '
                    f'shapes differ: {shapes[0]} vs {shapes[1]}')
  worst = max((float(np.max(np.abs(a - b))) for a, b in zip(kept.blobs, copy.blobs)
               if a.size), default=0.0)
  if worst > 0:
    logging.warning('%s: layer %r differs from %r (a multi-scale copy that should share '
                    'its parameters) by up to %.3g; using %r\'s, as for every scale',
                    source, copy.name, kept.name, worst, kept.name)
