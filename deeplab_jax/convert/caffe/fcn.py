"""The FCN releases' Caffe weights (fcn.berkeleyvision.org) for head 'fcn' configs.

    python -m deeplab_jax.convert --input fcn8s-heavy-pascal.caffemodel \
        --config configs/voc_fcn8s.py --output weights/voc_fcn8s

Files (voc-fcn*/caffemodel-url): fcn32s-heavy-pascal.caffemodel,
fcn16s-heavy-pascal.caffemodel, fcn8s-heavy-pascal.caffemodel,
fcn8s-atonce-pascal.caffemodel; and ImageNet VGG-16 (the init of FCN-32s and
at-once). Layer names as in voc-fcn*/net.py (models/fcn.py, fcn_vgg.py):

  conv1_1 .. conv5_3, fc6, fc7   Convolution (O, I, kh, kw) + bias -> trunk/<name>
                                 (ImageNet VGG-16's InnerProduct fc6 (4096, 25088)
                                 and fc7 (4096, 4096) are the same numbers, reshaped
                                 as the release's surgery.transplant does; its fc8
                                 is dropped)
  score_fr, score_pool4, score_pool3   Convolution + bias -> head/<name>
  upscore, upscore2, upscore_pool4, upscore16, upscore8   Deconvolution, weight
                                 (in, out, kh, kw) (base_conv_layer.cpp: reversed
                                 channels), no bias -> head/<name>/kernel (kh, kw, in, out)
  scale_pool4, scale_pool3       Scale, blob (C,) -> head/<name>/scale (at-once)

Head layers the file lacks are absent (initialised as the release starts
them: zero scores, bilinear upsampling, the configured scales): a coarser
net's file into a finer config is the release's staged recipe (FCN-16s from
FCN-32s: solve.py `copy_from` copies layers by name, ignoring the others);
the coarser net's upscore Deconvolution, fixed bilinear, is dropped (listed).
Trunk layers the file lacks, or other layers the model has not (an FCN-8s
file into an FCN-16s config: score_pool3), are a UserError listing them.
"""

from __future__ import annotations

import numpy as np

from deeplab_jax.convert.caffe.names import canonical, hwio, target_shapes
from deeplab_jax.convert.caffe.reading import weight_layers
from deeplab_jax.convert.converted import Converted
from deeplab_jax.errors import UserError
from deeplab_jax.variables_tree import unflatten

# The FCN releases' input (voc-fcn*/net.py `mean`, BGR 0-255), in config terms.
CONVENTION = {'channel_order': 'bgr',
              'pixel_mean': (104.00699, 116.66877, 122.67892),
              'pixel_std': (1.0, 1.0, 1.0)}
IMAGENET_CLASSIFIER = 'fc8'


def handles(config) -> bool:
  """Whether `config` is an FCN model (these files, not DeepLab's)."""
  return config.model.head.name == 'fcn'


def _modules(target):
  """Caffe layer name -> (module path, kind) of every weight layer of the model."""
  out = {}
  for path in target:
    _, part, name, leaf = path.split('/')
    kind = {'scale': 'Scale'}.get(leaf, 'Deconvolution' if name.startswith('upscore')
                                  else 'Convolution')
    out[name] = (f'params/{part}/{name}', kind)
  return out


def _convert_layer(layer, base, kind, target, problems):
  """{path: array} of one layer; the class axis may differ (checked by assemble)."""
  if kind == 'Scale':
    want = target[f'{base}/scale']
    if len(layer.blobs) != 1 or layer.blobs[0].size != want[0]:
      problems.append(f'{layer.name} ({layer.type}): blobs {[b.shape for b in layer.blobs]}, '
                      f'-> {base}/scale needs one of {want}')
      return {}
    return {f'{base}/scale': layer.blobs[0].reshape(want)}
  kh, kw, cin, cout = target[f'{base}/kernel']
  weight = layer.blobs[0] if layer.blobs else np.zeros((0,), np.float32)
  if kind == 'Deconvolution':
    if len(layer.blobs) != 1 or canonical(weight.shape[2:]) != canonical((kh, kw)) or (
        weight.ndim != 4):
      problems.append(f'{layer.name} ({layer.type}): blobs {[b.shape for b in layer.blobs]} '
                      f'-> {base}/kernel needs one (in, out, {kh}, {kw}) weight, no bias')
      return {}
    return {f'{base}/kernel': np.ascontiguousarray(weight.transpose(2, 3, 0, 1))}
  per_output = cin * kh * kw
  if len(layer.blobs) != 2 or weight.size % per_output or (
      layer.type != 'InnerProduct' and canonical(weight.shape[1:]) != canonical((cin, kh, kw))):
    problems.append(f'{layer.name} ({layer.type}): blobs {[b.shape for b in layer.blobs]} '
                    f'-> {base}: needs weight (O, {cin}, {kh}, {kw}) and bias (O,)')
    return {}
  weight = weight.reshape(weight.size // per_output, cin, kh, kw)
  if layer.blobs[1].size != weight.shape[0]:
    problems.append(f'{layer.name}: bias {layer.blobs[1].shape} for {weight.shape[0]} outputs')
    return {}
  return {f'{base}/kernel': hwio(weight), f'{base}/bias': layer.blobs[1].reshape(-1)}


def convert(layers, config, source: str = 'the caffemodel') -> Converted:
  """`Converted` of an FCN release (or ImageNet VGG-16) for head 'fcn' `config`."""
  target = target_shapes(config)
  modules = _modules(target)
  found = weight_layers(layers, source)
  problems, flat, dropped = [], {}, []
  for name, layer in found.items():
    if name == IMAGENET_CLASSIFIER and name not in modules:
      dropped.append(f'{name} ({layer.type}): ' + ', '.join(str(b.shape) for b in layer.blobs))
      continue
    if name not in modules and name.startswith('upscore') and layer.type == 'Deconvolution':
      # A coarser net's fixed bilinear upsampling (FCN-32s' upscore in an
      # FCN-16s): Caffe's copy_from ignores it, so does this.
      dropped.append(f'{name} ({layer.type}): ' + ', '.join(str(b.shape) for b in layer.blobs))
      continue
    if name not in modules:
      problems.append(f'{name} ({layer.type}): in the file, not in the model '
                      f'(model.head.skips {tuple(config.model.head.skips)})')
      continue
    base, kind = modules[name]
    if layer.type != kind and not (kind == 'Convolution' and layer.type == 'InnerProduct'):
      problems.append(f'{name}: a {layer.type} layer, the model has a {kind} at {base}')
      continue
    flat.update(_convert_layer(layer, base, kind, target, problems))
  absent = frozenset(p for p in target if p not in flat and p.startswith('params/head/'))
  lacking = sorted(f'{name} -> {base}' for name, (base, _) in modules.items()
                   if base.startswith('params/trunk/') and name not in found)
  if lacking:
    problems.append('missing from the file: ' + ', '.join(lacking))
  if problems:
    raise UserError(f'{source}: the Caffe FCN weights do not fit this config\'s model '
                    f'(head fcn, skips {tuple(config.model.head.skips)}, '
                    f'{config.dataset.num_classes} classes):\n  ' + '\n  '.join(problems))
  kind = 'FCN' if 'score_fr' in found else 'ImageNet VGG-16'
  described = (f'Caffe {kind} ({", ".join(sorted(n for n in found if n.startswith("score")))})'
               if kind == 'FCN' else f'Caffe {kind} (no FCN head)')
  return Converted(unflatten(flat, roots=('params', 'batch_stats')), absent, source=described,
                   dropped=tuple(dropped))

