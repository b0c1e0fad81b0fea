"""`.caffemodel` files in the FCN releases' layout (fcn.berkeleyvision.org), for tests.

    layers = fake_fcn_caffe.layers_from_flax(variables, config)   # the net config names
    fake_caffe.write_caffemodel('/tmp/fcn8s.caffemodel', layers)

The layers of `voc-fcn{32s,16s,8s}/net.py` / `voc-fcn8s-atonce/net.py` in
file order, with the release's names, types and blob layouts: Convolution
(out, in, kh, kw) + bias for conv1_1 .. conv5_3, fc6 (7x7), fc7, score_fr,
score_pool4, score_pool3; Deconvolution (in, out, kh, kw), no bias, for the
upscore layers; Scale (C,) for the at-once net's scale_pool4 / scale_pool3;
and the blobless Python data, ReLU, Pooling, Dropout, Crop, Eltwise and
SoftmaxWithLoss layers. `imagenet=True` writes ImageNet VGG-16 instead
(VGG_ILSVRC_16_layers: fc6 / fc7 as InnerProduct (F, C*7*7) / (F, F), fc8
(1000, F)), whose fc6 / fc7 hold the model's.
"""

from __future__ import annotations

import numpy as np

from deeplab_jax.convert.caffe import Layer
from deeplab_jax.models import fcn as fcn_lib
from deeplab_jax.models.fcn_vgg import STAGES


def _conv(name, node):
  return Layer(name, 'Convolution', [np.asarray(node['kernel'], np.float32).transpose(3, 2, 0, 1),
                                     np.asarray(node['bias'], np.float32)])


def layers_from_flax(variables, config, imagenet=False, seed=0) -> list:
  """The FCN release's Caffe layers holding `variables` of `models.build(config)`."""
  trunk, head = variables['params']['trunk'], variables['params']['head']
  out = [Layer('data', 'Python')]
  for stage, (_, n) in enumerate(STAGES, start=1):
    for i in range(1, n + 1):
      out += [_conv(f'conv{stage}_{i}', trunk[f'conv{stage}_{i}']), Layer(f'relu{stage}_{i}', 'ReLU')]
    out.append(Layer(f'pool{stage}', 'Pooling'))
  fc6, fc7 = _conv('fc6', trunk['fc6']), _conv('fc7', trunk['fc7'])
  if imagenet:
    rng = np.random.default_rng(seed)
    width = fc7.blobs[0].shape[0]
    return out + [Layer('fc6', 'InnerProduct', [fc6.blobs[0].reshape(width, -1), fc6.blobs[1]]),
                  Layer('relu6', 'ReLU'), Layer('drop6', 'Dropout'),
                  Layer('fc7', 'InnerProduct', [fc7.blobs[0].reshape(width, width), fc7.blobs[1]]),
                  Layer('relu7', 'ReLU'), Layer('drop7', 'Dropout'),
                  Layer('fc8', 'InnerProduct', [rng.normal(0, 0.01, (1000, width)).astype(np.float32),
                                                np.zeros((1000,), np.float32)]),
                  Layer('prob', 'Softmax')]
  out += [fc6, Layer('relu6', 'ReLU'), Layer('drop6', 'Dropout'),
          fc7, Layer('relu7', 'ReLU'), Layer('drop7', 'Dropout'), _conv('score_fr', head['score_fr'])]
  skips = tuple(config.model.head.skips)
  names = fcn_lib.layer_names(skips)
  deconv = lambda name: Layer(name, 'Deconvolution', [
      np.asarray(head[name]['kernel'], np.float32).transpose(2, 3, 0, 1)])
  for skip, (score, up) in zip(skips, names['skip']):
    out.append(deconv(up))
    if f'scale_{skip}' in head:
      out.append(Layer(f'scale_{skip}', 'Scale', [np.asarray(head[f'scale_{skip}']['scale'],
                                                             np.float32)]))
    out += [_conv(score, head[score]), Layer(f'{score}c', 'Crop'),
            Layer(f'fuse_{skip}', 'Eltwise')]
  return out + [deconv(names['final']), Layer('score', 'Crop'), Layer('loss', 'SoftmaxWithLoss')]
