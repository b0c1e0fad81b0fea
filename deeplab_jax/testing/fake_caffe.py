"""Small but complete `.caffemodel` files with the official names, for tests.

`layers_from_flax` turns a flax variables tree of `models.build(config)` into
the Caffe layers of an official release (names, blob layouts, BatchNorm's
scale-factor blob, ReLU / pooling / loss layers without blobs), and
`write_caffemodel` serialises them with the runtime schema of
`caffe_schema.py`, in the new `layer` format or the legacy V1 `layers` one.

    layers = fake_caffe.layers_from_flax(variables, config, 'deeplab_v2_resnet',
                                         msc_suffixes=('_res075', '_res05'))
    fake_caffe.write_caffemodel('/tmp/net.caffemodel', layers)
    assert caffe.to_flax(caffe.read_caffemodel('/tmp/net.caffemodel'), config) ...

Releases:
  'deeplab_v2_resnet'  conv1 / bn_conv1 / scale_conv1, res2a_branch1, ...,
                       fc1_{tag}_c{k} (train_iter_20000.caffemodel's layout)
  'deeplab_v2_vgg'     conv1_1 .. conv5_3, fc6 / fc7 / fc8_{tag} (LargeFOV,
                       v1) or fc6_{k} / fc7_{k} / fc8_{tag}_{k} (ASPP)
  'imagenet_vgg'       conv1_1 .. conv5_3 and InnerProduct fc6 (F x C*7*7),
                       fc7 (F x F), fc8 (1000 x F), F = 4096 * base_width / 64
                       by default: branch 0's fc6 / fc7 sit at the positions
                       `decimate_fc` keeps, the rest is random, so converting
                       gives branch 0's weights back (in every branch).
  'imagenet_resnet'    the ResNet trunk and InnerProduct fc1000.
  'deeplab_v2_coco_init'  the ResNet trunk and one 1x1 Convolution fc1_coco
                       (`init_classes` x C x 1 x 1 + bias, C = layer5's
                       width; random): the COCO-pretrained init.caffemodel.
"""

from __future__ import annotations

import numpy as np

from deeplab_jax.convert import caffe
from deeplab_jax.convert.caffe import Layer
from deeplab_jax.convert.caffe import schema as caffe_schema

RELEASES = ('deeplab_v2_resnet', 'deeplab_v2_vgg', 'imagenet_vgg', 'imagenet_resnet',
            'deeplab_v2_coco_init')


def random_variables(config, seed=0) -> dict:
  """Random {'params', 'batch_stats'} (numpy) of `models.build(config)`'s shapes.

  Kernels N(0, 1 / fan_in), biases and BN offsets N(0, 0.1), BN scales near
  1, variances in [0.5, 1.5]: activations stay near unit scale through deep
  nets. Built from `jax.eval_shape` with numpy, much faster than `init`.
  """
  rng = np.random.default_rng(seed)
  tree = {'params': {}, 'batch_stats': {}}
  for path, shape in sorted(caffe.target_shapes(config).items()):
    leaf = path.rsplit('/', 1)[1]
    if leaf == 'kernel':
      value = rng.normal(0, 1 / np.sqrt(np.prod(shape[:-1])), shape)
    elif leaf == 'var':
      value = rng.uniform(0.5, 1.5, shape)
    elif leaf == 'scale':
      value = 1 + 0.1 * rng.normal(size=shape)
    else:
      value = 0.1 * rng.normal(size=shape)
    node = tree
    *parents, name = path.split('/')
    for key in parents:
      node = node.setdefault(key, {})
    node[name] = value.astype(np.float32)
  return tree


def _fill_blob(blob, array, legacy):
  array = np.asarray(array, np.float32)
  if legacy:
    if array.ndim > 4:
      raise ValueError(f'a legacy blob has at most 4 axes, not {array.shape}')
    blob.num, blob.channels, blob.height, blob.width = (1,) * (4 - array.ndim) + array.shape
  else:
    blob.shape.dim.extend(array.shape)
  blob.data.extend(array.ravel().tolist())


def to_proto(layers, legacy=False, name='deeplab_jax_fake'):
  """A `caffe_schema.NetParameter` holding `layers` (V1 `layers` when legacy)."""
  net = caffe_schema.NetParameter(name=name)
  for layer in layers:
    if legacy:
      try:
        type_value = caffe_schema.v1_type_value(layer.type)
      except ValueError as e:
        raise ValueError(f'layer {layer.name!r}: {e}') from None
      p = net.layers.add(name=layer.name, type=type_value)
    else:
      p = net.layer.add(name=layer.name, type=layer.type)
      if layer.bn_eps is not None:
        p.batch_norm_param.eps = layer.bn_eps
    for array in layer.blobs:
      _fill_blob(p.blobs.add(), array, legacy)
  return net


def write_caffemodel(path, layers, legacy=False, name='deeplab_jax_fake'):
  """Writes `layers` (caffe.Layer) as a binary `.caffemodel` to `path`.

  legacy=True writes the V1 format (`layers`, an enum type, blobs with the
  4-D num / channels / height / width shape) as the 2014 VGG release has;
  V1 has no BatchNorm or Scale type, so ResNets need the new format.
  """
  data = to_proto(layers, legacy, name).SerializeToString()
  with open(path, 'wb') as f:
    f.write(data)
  return path


def _np(tree):
  return {k: (_np(v) if isinstance(v, dict) else np.array(v, np.float32))  # Copies.
          for k, v in tree.items()}


def _module(variables, collection, path):
  node = variables.get(collection, {})
  for key in path:
    node = node[key]
  return node


def _weight_layers(m, variables, bn_scale_factor, bn_eps):
  if m.kind == 'conv':
    node = _module(variables, 'params', m.module)
    blobs = [node['kernel'].transpose(3, 2, 0, 1)]
    if 'bias' in node:
      blobs.append(node['bias'])
    return Layer(m.caffe, 'Convolution', blobs)
  if m.kind == 'bn':
    stats = _module(variables, 'batch_stats', m.module)
    eps = caffe.EPS if bn_eps is None else bn_eps
    var = stats['var'].astype(np.float64) + caffe.EPS - eps  # Same sqrt(var + eps).
    factor = np.float64(bn_scale_factor)
    return Layer(m.caffe, 'BatchNorm',
                 [(stats['mean'] * factor).astype(np.float32),
                  (var * factor).astype(np.float32),
                  np.array([bn_scale_factor], np.float32)], bn_eps=bn_eps)
  node = _module(variables, 'params', m.module)
  return Layer(m.caffe, 'Scale', [node['scale'], node['bias']])


def _with_blobless_layers(weight_layers, trunk, tag):
  """The weight layers with data / ReLU / pooling / sum / loss layers among them."""
  out = [Layer('data', 'Data')]
  pools = {'scale_conv1': 'pool1', 'conv1_2': 'pool1', 'conv2_2': 'pool2',
           'conv3_3': 'pool3', 'conv4_3': 'pool4', 'conv5_3': 'pool5'}
  for layer in weight_layers:
    out.append(layer)
    if layer.type == 'Scale' or (trunk == 'vgg16' and not layer.name.startswith('fc8')):
      out.append(Layer(f'{layer.name}_relu', 'ReLU'))
    if layer.name in pools:
      out.append(Layer(pools[layer.name], 'Pooling'))
  out.append(Layer(f'fc1_{tag}' if trunk == 'resnet' else f'fc8_{tag}', 'Eltwise'))
  out.append(Layer('loss', 'SoftmaxWithLoss'))
  return out


def _imagenet_fc(variables, config, width, seed):
  """fc6 / fc7 / fc8 InnerProducts whose decimation is branch 0's fc6 / fc7."""
  hidden = tuple(config.model.head.hidden)
  k = config.model.head.kernel_size
  head = variables['params']['head']
  kernel6, bias6 = head['branch0_hidden0']['kernel'], head['branch0_hidden0']['bias']
  kernel7, bias7 = head['branch0_hidden1']['kernel'], head['branch0_hidden1']['bias']
  channels = kernel6.shape[2]
  if width % hidden[0] or width % hidden[1]:
    raise ValueError(f'imagenet width {width} must be a multiple of {hidden}')
  rng = np.random.default_rng(seed)
  w6 = rng.normal(0, 0.01, (width, channels, 7, 7)).astype(np.float32)
  b6 = rng.normal(0, 0.01, (width,)).astype(np.float32)
  w7 = rng.normal(0, 0.01, (width, width)).astype(np.float32)
  b7 = rng.normal(0, 0.01, (width,)).astype(np.float32)
  keep6 = np.arange(0, width, width // hidden[0])
  keep7 = np.arange(0, width, width // hidden[1])
  taps = np.round(np.linspace(0, 6, k)).astype(int)
  w6[np.ix_(keep6, np.arange(channels), taps, taps)] = kernel6.transpose(3, 2, 0, 1)
  b6[keep6] = bias6
  w7[np.ix_(keep7, keep6)] = kernel7[0, 0].T
  b7[keep7] = bias7
  w8 = rng.normal(0, 0.01, (1000, width)).astype(np.float32)
  b8 = np.zeros((1000,), np.float32)
  return [Layer('fc6', 'InnerProduct', [w6.reshape(width, -1), b6]),
          Layer('relu6', 'ReLU'), Layer('drop6', 'Dropout'),
          Layer('fc7', 'InnerProduct', [w7, b7]),
          Layer('relu7', 'ReLU'), Layer('drop7', 'Dropout'),
          Layer('fc8', 'InnerProduct', [w8, b8]), Layer('prob', 'Softmax')]


def layers_from_flax(variables, config, release='deeplab_v2_resnet', *,
                     classifier_tag='voc12', bn_scale_factor=999.0, bn_eps=None,
                     msc_suffixes=(), imagenet_width=None, init_classes=91,
                     seed=0) -> list:
  """The official Caffe layers (caffe.Layer) holding `variables`.

  `variables` is {'params', 'batch_stats'} of `models.build(config)`.
  BatchNorm blobs are stored as Caffe does, pre-multiplied by
  `bn_scale_factor` (the third blob); `bn_eps` sets batch_norm_param.eps
  (the variance adjusted so outputs stay the same). `msc_suffixes` adds the
  multi-scale copies of every weight layer ('_res075', '_res05').
  """
  if release not in RELEASES:
    raise ValueError(f'release {release!r} is not one of {RELEASES}')
  variables = {c: _np(variables.get(c, {})) for c in ('params', 'batch_stats')}
  trunk = config.model.backbone.name
  if (trunk == 'resnet') != (release.endswith('resnet') or release == 'deeplab_v2_coco_init'):
    raise ValueError(f'release {release} does not fit model.backbone.name {trunk}')
  maps = caffe.layer_map(config, classifier_tag)
  if release.startswith('imagenet') or release == 'deeplab_v2_coco_init':
    maps = [m for m in maps if not m.module[0] == 'head']
  weights = [_weight_layers(m, variables, bn_scale_factor, bn_eps) for m in maps]
  layers = _with_blobless_layers(weights, trunk, classifier_tag)
  if release == 'imagenet_vgg':
    width = imagenet_width or 4096 * config.model.backbone.get('base_width', 64) // 64
    layers = layers[:-2] + _imagenet_fc(variables, config, width, seed)
  elif release == 'imagenet_resnet':
    rng = np.random.default_rng(seed)
    width = weights[-1].blobs[0].shape[0]  # layer5's output channels.
    layers = layers[:-2] + [
        Layer('pool5', 'Pooling'),
        Layer('fc1000', 'InnerProduct', [rng.normal(0, 0.01, (1000, width)).astype(np.float32),
                                          np.zeros((1000,), np.float32)]),
        Layer('prob', 'Softmax')]
  elif release == 'deeplab_v2_coco_init':
    rng = np.random.default_rng(seed)
    width = weights[-1].blobs[0].shape[0]  # layer5's output channels.
    weight = rng.normal(0, 1 / np.sqrt(width), (init_classes, width, 1, 1))
    bias = 0.1 * rng.normal(size=(init_classes,))
    fc1 = Layer('fc1_coco', 'Convolution', [weight.astype(np.float32), bias.astype(np.float32)])
    weights.append(fc1)
    layers = layers[:-2] + [fc1, Layer('loss', 'SoftmaxWithLoss')]
  for suffix in msc_suffixes:
    layers += [Layer(w.name + suffix, w.type, [b.copy() for b in w.blobs], w.bn_eps)
               for w in weights]
  return layers
