"""The part of Caffe's protobuf schema that holds a `.caffemodel`'s weights.

Built at import time with `google.protobuf` (a `FileDescriptorProto` in a
private descriptor pool, classes from `message_factory.GetMessageClass`): no
`protoc`, no generated `caffe_pb2.py`, no Caffe. Field numbers are those of
BVLC Caffe's `src/caffe/proto/caffe.proto` (package `caffe`); DeepLab's Caffe
forks (v1 and v2) keep them and only add fields and layer parameters, which
protobuf skips as unknown fields, so the real files parse with this subset.

    from deeplab_jax.convert.caffe import schema as caffe_schema
    net = caffe_schema.NetParameter()
    net.ParseFromString(open('train_iter_20000.caffemodel', 'rb').read())
    for layer in net.layer:          # new format; net.layers: the V1 format
      print(layer.name, layer.type, [tuple(b.shape.dim) for b in layer.blobs])

Messages (field numbers as in caffe.proto):
  BlobShape          dim=1 (packed int64)
  BlobProto          num=1 channels=2 height=3 width=4 (the legacy 4-D shape),
                     data=5 diff=6 (packed float), shape=7,
                     double_data=8 double_diff=9 (packed double)
  BatchNormParameter use_global_stats=1 moving_average_fraction=2 eps=3
  LayerParameter     name=1 type=2 (string) bottom=3 top=4 blobs=7
                     batch_norm_param=139
  V0LayerParameter   name=1 type=2 (string) blobs=50  (the pre-2014 format)
  V1LayerParameter   layer=1 (V0) bottom=2 top=3 name=4 type=5 blobs=6
  NetParameter       name=1 layers=2 (V1) input=3 input_dim=4 layer=100

`V1LayerParameter.type` is the enum `LayerType` in caffe.proto. It is declared
int32 here (the same varint on the wire) so that values the forks added
(DeepLab v1's own layer types) survive parsing instead of vanishing into the
unknown fields of a closed proto2 enum; `V1_LAYER_TYPES` names the BVLC values
and the enum is still in the schema (`V1LayerParameter.LayerType`).
"""

from __future__ import annotations

from google.protobuf import descriptor_pb2
from google.protobuf import descriptor_pool
from google.protobuf import message_factory

_F = descriptor_pb2.FieldDescriptorProto

# V1LayerParameter.LayerType of BVLC caffe.proto: value -> enum name.
V1_LAYER_TYPES = {
    0: 'NONE', 1: 'ACCURACY', 2: 'BNLL', 3: 'CONCAT', 4: 'CONVOLUTION',
    5: 'DATA', 6: 'DROPOUT', 7: 'EUCLIDEAN_LOSS', 8: 'FLATTEN', 9: 'HDF5_DATA',
    10: 'HDF5_OUTPUT', 11: 'IM2COL', 12: 'IMAGE_DATA', 13: 'INFOGAIN_LOSS',
    14: 'INNER_PRODUCT', 15: 'LRN', 16: 'MULTINOMIAL_LOGISTIC_LOSS',
    17: 'POOLING', 18: 'RELU', 19: 'SIGMOID', 20: 'SOFTMAX', 21: 'SOFTMAX_LOSS',
    22: 'SPLIT', 23: 'TANH', 24: 'WINDOW_DATA', 25: 'ELTWISE', 26: 'POWER',
    27: 'SIGMOID_CROSS_ENTROPY_LOSS', 28: 'HINGE_LOSS', 29: 'MEMORY_DATA',
    30: 'ARGMAX', 31: 'THRESHOLD', 32: 'DUMMY_DATA', 33: 'SLICE', 34: 'MVN',
    35: 'ABSVAL', 36: 'SILENCE', 37: 'CONTRASTIVE_LOSS', 38: 'EXP',
    39: 'DECONVOLUTION',
}

# The new-format type strings of the V1 types a DeepLab or VGG file holds
# (what Caffe's own upgrade writes); others keep their enum name.
V1_TYPE_NAMES = {
    'CONVOLUTION': 'Convolution', 'INNER_PRODUCT': 'InnerProduct',
    'POOLING': 'Pooling', 'RELU': 'ReLU', 'DROPOUT': 'Dropout',
    'SOFTMAX': 'Softmax', 'SOFTMAX_LOSS': 'SoftmaxWithLoss', 'DATA': 'Data',
    'IMAGE_DATA': 'ImageData', 'CONCAT': 'Concat', 'ELTWISE': 'Eltwise',
    'SPLIT': 'Split', 'ACCURACY': 'Accuracy', 'LRN': 'LRN',
    'DECONVOLUTION': 'Deconvolution', 'SILENCE': 'Silence',
}


def _field(message, name, number, type_, label=_F.LABEL_OPTIONAL,
           type_name=None, packed=False):
  field = message.field.add(name=name, number=number, type=type_, label=label)
  if type_name:
    field.type_name = type_name
  if packed:
    field.options.packed = True
  return field


def _file_descriptor() -> descriptor_pb2.FileDescriptorProto:
  """caffe.proto's subset as a FileDescriptorProto (proto2, package caffe)."""
  rep, opt = _F.LABEL_REPEATED, _F.LABEL_OPTIONAL
  proto = descriptor_pb2.FileDescriptorProto(
      name='deeplab_jax/caffe_subset.proto', package='caffe', syntax='proto2')

  shape = proto.message_type.add(name='BlobShape')
  _field(shape, 'dim', 1, _F.TYPE_INT64, rep, packed=True)

  blob = proto.message_type.add(name='BlobProto')
  _field(blob, 'shape', 7, _F.TYPE_MESSAGE, opt, '.caffe.BlobShape')
  _field(blob, 'data', 5, _F.TYPE_FLOAT, rep, packed=True)
  _field(blob, 'diff', 6, _F.TYPE_FLOAT, rep, packed=True)
  _field(blob, 'double_data', 8, _F.TYPE_DOUBLE, rep, packed=True)
  _field(blob, 'double_diff', 9, _F.TYPE_DOUBLE, rep, packed=True)
  for name, number in (('num', 1), ('channels', 2), ('height', 3), ('width', 4)):
    _field(blob, name, number, _F.TYPE_INT64)

  bn = proto.message_type.add(name='BatchNormParameter')
  _field(bn, 'use_global_stats', 1, _F.TYPE_BOOL)
  _field(bn, 'moving_average_fraction', 2, _F.TYPE_FLOAT).default_value = '0.999'
  _field(bn, 'eps', 3, _F.TYPE_FLOAT).default_value = '1e-05'

  layer = proto.message_type.add(name='LayerParameter')
  _field(layer, 'name', 1, _F.TYPE_STRING)
  _field(layer, 'type', 2, _F.TYPE_STRING)
  _field(layer, 'bottom', 3, _F.TYPE_STRING, rep)
  _field(layer, 'top', 4, _F.TYPE_STRING, rep)
  _field(layer, 'blobs', 7, _F.TYPE_MESSAGE, rep, '.caffe.BlobProto')
  _field(layer, 'batch_norm_param', 139, _F.TYPE_MESSAGE, opt,
         '.caffe.BatchNormParameter')

  v0 = proto.message_type.add(name='V0LayerParameter')
  _field(v0, 'name', 1, _F.TYPE_STRING)
  _field(v0, 'type', 2, _F.TYPE_STRING)
  _field(v0, 'blobs', 50, _F.TYPE_MESSAGE, rep, '.caffe.BlobProto')

  v1 = proto.message_type.add(name='V1LayerParameter')
  enum = v1.enum_type.add(name='LayerType')
  for number, name in sorted(V1_LAYER_TYPES.items()):
    enum.value.add(name=name, number=number)
  _field(v1, 'layer', 1, _F.TYPE_MESSAGE, opt, '.caffe.V0LayerParameter')
  _field(v1, 'bottom', 2, _F.TYPE_STRING, rep)
  _field(v1, 'top', 3, _F.TYPE_STRING, rep)
  _field(v1, 'name', 4, _F.TYPE_STRING)
  _field(v1, 'type', 5, _F.TYPE_INT32)  # enum LayerType on the wire (see above).
  _field(v1, 'blobs', 6, _F.TYPE_MESSAGE, rep, '.caffe.BlobProto')

  net = proto.message_type.add(name='NetParameter')
  _field(net, 'name', 1, _F.TYPE_STRING)
  _field(net, 'layers', 2, _F.TYPE_MESSAGE, rep, '.caffe.V1LayerParameter')
  _field(net, 'input', 3, _F.TYPE_STRING, rep)
  _field(net, 'input_dim', 4, _F.TYPE_INT64, rep)
  _field(net, 'layer', 100, _F.TYPE_MESSAGE, rep, '.caffe.LayerParameter')
  return proto


_POOL = descriptor_pool.DescriptorPool()  # Private: no clash with a real caffe_pb2.
_FILE = _POOL.Add(_file_descriptor())


def _message(name):
  return message_factory.GetMessageClass(_POOL.FindMessageTypeByName(f'caffe.{name}'))


BlobShape = _message('BlobShape')
BlobProto = _message('BlobProto')
BatchNormParameter = _message('BatchNormParameter')
LayerParameter = _message('LayerParameter')
V0LayerParameter = _message('V0LayerParameter')
V1LayerParameter = _message('V1LayerParameter')
NetParameter = _message('NetParameter')


def v1_type_name(value: int) -> str:
  """A V1 `type` enum value as the new format's type string ('Convolution').

  BVLC values without a new-format name keep their enum name ('SIGMOID');
  values BVLC does not define (a fork's) read 'V1_LAYER_TYPE_<value>'.
  """
  name = V1_LAYER_TYPES.get(value)
  if name is None:
    return f'V1_LAYER_TYPE_{value}'
  return V1_TYPE_NAMES.get(name, name)


def v1_type_value(type_name: str) -> int:
  """The V1 enum value of a new-format type string or enum name."""
  names = {v: k for k, v in V1_TYPE_NAMES.items()}
  enum_name = names.get(type_name, type_name)
  values = {v: k for k, v in V1_LAYER_TYPES.items()}
  if enum_name not in values:
    raise ValueError(f'layer type {type_name!r} has no V1 (legacy) enum value')
  return values[enum_name]
