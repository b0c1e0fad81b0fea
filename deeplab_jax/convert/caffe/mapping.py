"""Caffe layers -> flax variables: layouts, BatchNorm statistics, every check.

    variables = to_flax(read_caffemodel(path), config)     # exactly the model's tree
    converted = convert(read_caffemodel(path), config, source=path)   # for the front end

Each layer of `names.layer_map` fills its leaves (`_convert_layer`); VGG's
ImageNet fc6 / fc7 are decimated into every branch (`_vgg_shared_head`);
what does not fit is collected and raised as one UserError naming the Caffe
layers and our paths; the result is checked leaf by leaf against the model
(`variables_tree.mismatches`).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Sequence

import numpy as np

from deeplab_jax import models
from deeplab_jax import variables_tree
from deeplab_jax.convert.caffe.names import (LayerMap, caffe_shape, canonical, check_supported,
                                             fit, hwio, layer_leaves, msc_maps, resnet_map,
                                             target_shapes, vgg_head_map, vgg_trunk_map)
from deeplab_jax.convert.caffe.reading import Layer, weight_layers
from deeplab_jax.convert.caffe.releases import IMAGENET_CLASSIFIERS, detect_layers, file_hint
from deeplab_jax.convert.converted import Converted
from deeplab_jax.convert.decimate import decimate_fc
from deeplab_jax.errors import UserError

EPS = 1e-5  # Our BatchNorm's epsilon (models/batch_norm.py) and Caffe's default.
_MAX_LISTED = 25


class _Problems:
  """Collects what does not fit, raised as one UserError at the end."""

  def __init__(self):
    self.missing, self.misshaped, self.unexpected, self.other = [], [], [], []

  def raise_if_any(self, source, config, hint=''):
    sections = [f'  hint: {hint}'] if hint else []
    for title, items in (
        ('mis-shaped (Caffe layer, blob: file shape -> our leaf: needed shape)', self.misshaped),
        ('missing from the file (Caffe layer -> our leaves)', self.missing),
        ('in the file but not in the model (Caffe layer: blob shapes)', self.unexpected),
        ('other', self.other)):
      if items:
        listed = items[:_MAX_LISTED]
        more = f'\n    ... and {len(items) - _MAX_LISTED} more' if len(items) > _MAX_LISTED else ''
        sections.append(f'  {title}:\n    ' + '\n    '.join(listed) + more)
    if len(sections) > bool(hint):
      m = config.model
      raise UserError(f'{source}: the Caffe weights do not fit this config\'s model '
                      f'({models.describe(m)}, {config.dataset.num_classes} classes):\n'
                      + '\n'.join(sections))


def _blob_count(m, layer, leaves, problems) -> bool:
  needed = {'conv': len(leaves), 'bn': 3, 'scale': 2}[m.kind]
  if len(layer.blobs) != needed:
    problems.other.append(
        f'{m.caffe} ({layer.type}): {len(layer.blobs)} blobs, {m.caffe_type} -> '
        f'{"/".join(m.module)} needs {needed}')
    return False
  return True


def _convert_layer(m: LayerMap, layer: Layer, target, out, problems,
                   allow_classifier_mismatch):
  leaves = layer_leaves(m, target)
  if not _blob_count(m, layer, leaves, problems):
    return
  if m.kind == 'conv':
    (_, kernel_path), *bias = leaves
    shape = target[kernel_path]
    weight = fit(layer.blobs[0], caffe_shape(shape))
    if weight is None and m.classifier and allow_classifier_mismatch:
      weight = _fit_other_classes(layer.blobs[0], caffe_shape(shape))
    if weight is None:
      problems.misshaped.append(f'{m.caffe}, blob 0: {layer.blobs[0].shape} -> '
                                f'{kernel_path}: {caffe_shape(shape)} (OIHW; ours HWIO {shape})')
      return
    out[kernel_path] = hwio(weight)
    if bias:
      bias_path = bias[0][1]
      value = fit(layer.blobs[1], (weight.shape[0],))
      if value is None:
        problems.misshaped.append(f'{m.caffe}, blob 1: {layer.blobs[1].shape} -> '
                                  f'{bias_path}: {(weight.shape[0],)}')
        return
      out[bias_path] = value
    return
  channels = target[leaves[0][1]]
  values = []
  for blob, path in leaves:
    value = fit(layer.blobs[blob], channels)
    if value is None:
      problems.misshaped.append(f'{m.caffe}, blob {blob}: {layer.blobs[blob].shape} -> '
                                f'{path}: {channels}')
      return
    values.append(value)
  if m.kind == 'bn':
    factor = layer.blobs[2].reshape(-1)
    if factor.size != 1:
      problems.misshaped.append(f'{m.caffe}, blob 2 (scale_factor): {layer.blobs[2].shape}, '
                                'needs 1 value')
      return
    # Caffe: statistics = blob * (0 if factor == 0 else 1 / factor).
    multiplier = 0.0 if factor[0] == 0 else 1.0 / np.float64(factor[0])
    mean, var = (v.astype(np.float64) * multiplier for v in values)
    eps = EPS if layer.bn_eps is None else layer.bn_eps
    if not np.isclose(eps, EPS, rtol=1e-6, atol=0):
      var = var + (eps - EPS)  # (x - m) / sqrt(var + eps) with our eps.
    values = [mean.astype(np.float32), var.astype(np.float32)]
  for (_, path), value in zip(leaves, values):
    out[path] = value


def _fit_other_classes(weight, shape):
  """A classifier weight for another class count: (O', I, kh, kw) fitted, else None."""
  _, i, kh, kw = shape
  per_class = i * kh * kw
  if weight.size % per_class:
    return None
  return fit(weight, (weight.size // per_class, i, kh, kw))


def _vgg_shared_head(found, config, target, out, problems, used):
  """fc6 / fc7 of an ImageNet (or one-branch init) file into every branch."""
  hidden = tuple(config.model.head.hidden)
  k = config.model.head.kernel_size
  kernel6 = target['params/head/branch0_hidden0/kernel']
  ok = True
  for name in ('fc6', 'fc7'):
    if name not in found:
      problems.missing.append(f'{name} -> params/head/branch*_hidden{int(name[2]) - 6}')
      ok = False
    elif len(found[name].blobs) != 2:
      problems.other.append(f'{name}: {len(found[name].blobs)} blobs, needs 2 (weight, bias)')
      ok = False
  if not ok:
    return
  used.update(('fc6', 'fc7'))
  w6, b6 = found['fc6'].blobs
  w7, b7 = found['fc7'].blobs
  in6 = kernel6[2]
  o6 = canonical(w6.shape)[0] if canonical(w6.shape) else 1
  taps = w6.size // (o6 * in6) if w6.size % (o6 * in6) == 0 else 0
  side = math.isqrt(taps)
  if side * side != taps or side == 0:
    problems.misshaped.append(
        f'fc6, blob 0: {w6.shape} is not (O, {in6}, k, k) nor (O, {in6}*k*k) for '
        f'{in6} pool5 channels -> params/head/branch*_hidden0/kernel')
    return
  w6 = w6.reshape(o6, in6, side, side)
  o7 = w7.size // o6 if w7.size % o6 == 0 else 0
  w7_fit = fit(w7, (o7, o6, 1, 1)) if o7 else None
  b6_fit, b7_fit = fit(b6, (o6,)), fit(b7, (o7,)) if o7 else None
  if w7_fit is None or b6_fit is None or b7_fit is None:
    problems.misshaped.append(
        f'fc6 / fc7: weights {w6.shape} / {w7.shape}, biases {b6.shape} / {b7.shape} '
        f'do not chain (fc7 must take fc6\'s {o6} outputs)')
    return
  try:
    kernel_6, bias_6 = decimate_fc(w6, b6_fit, out_channels=hidden[0], kernel_size=k)
    kernel_7, bias_7 = decimate_fc(w7_fit, b7_fit, out_channels=hidden[1], kernel_size=1,
                                   in_channels=hidden[0])
  except UserError as e:
    problems.misshaped.append(f'fc6 {w6.shape} / fc7 {w7_fit.shape} -> fc6 {k}x{k}x{hidden[0]}, '
                              f'fc7 {hidden[1]}: {e}')
    return
  for b in range(len(tuple(config.model.head.rates))):
    for j, (kernel, bias) in enumerate(((kernel_6, bias_6), (kernel_7, bias_7))):
      out[f'params/head/branch{b}_hidden{j}/kernel'] = kernel.copy()
      out[f'params/head/branch{b}_hidden{j}/bias'] = bias.copy()


def to_flax(layers: Sequence[Layer], config, *, allow_classifier_mismatch: bool = False,
            allow_missing_classifier: bool = False,
            source: str = 'the caffemodel') -> dict:
  """{'params': ..., 'batch_stats': ...} (numpy, float32) for `models.build(config)`.

  The tree and every shape are exactly `models.build(config).init`'s
  ('batch_stats' is {} for VGG), except:
  - `allow_classifier_mismatch`: a classifier trained for another number of
    classes keeps the file's class count (kernel (kh, kw, I, classes')).
  - `allow_missing_classifier`: a file without a DeepLab classifier (ImageNet
    VGG / ResNet, one-branch init files for ASPP) gives no
    `head/branch*_classifier` leaves.
  Anything else that does not fit is a UserError listing Caffe names and our
  paths. `source` names the file in errors.

      variables = to_flax(read_caffemodel(path), config)
  """
  flat, _ = _convert(layers, config, allow_classifier_mismatch, allow_missing_classifier,
                     source)
  return _nest(flat)


def _convert(layers, config, allow_classifier_mismatch, allow_missing_classifier, source,
             keep_init_classifier=False):
  """(flat '{collection}/{path}' -> array, Release) with every check done."""
  check_supported(config)
  target = target_shapes(config)
  found = weight_layers(layers, source)
  release = detect_layers(found, config, source, target)
  problems = _Problems()
  out, used = {}, set()
  if release.trunk == 'resnet':
    maps = resnet_map(config, release.classifier_tag)
  elif release.shared_head:
    maps = vgg_trunk_map()
    _vgg_shared_head(found, config, target, out, problems, used)
  else:
    maps = vgg_trunk_map() + vgg_head_map(config, release.classifier_tag)
  if release.init_classifier:
    maps, release = _init_classifier_maps(maps, release, found, config, target,
                                          keep_init_classifier, source)
    used.add(release.init_classifier)
  if not release.has_classifier:
    maps = [m for m in maps if not m.classifier]
    dropped = [n for n in IMAGENET_CLASSIFIERS if n in found]
    used.update(dropped)
    release = dataclasses.replace(
        release, dropped=release.dropped + tuple(_layer_summary(found[n]) for n in dropped))
    if not allow_missing_classifier:
      problems.other.append(
          f'no DeepLab classifier in the file ({release.describe()}'
          + (f'; its {", ".join(dropped)} classifies ImageNet' if dropped else '')
          + '): the classifier has to be initialised afresh (allow_missing_classifier=True)')
  maps = msc_maps(maps, found, config)
  for m in maps:
    layer = found.get(m.caffe)
    if layer is None:
      problems.missing.append(f'{m.caffe} ({m.caffe_type}) -> '
                              + ', '.join(p for _, p in layer_leaves(m, target)))
      continue
    used.add(m.caffe)
    _convert_layer(m, layer, target, out, problems, allow_classifier_mismatch)
  for name in found:
    if name not in used:
      problems.unexpected.append(f'{name} ({found[name].type}): '
                                 + ', '.join(str(b.shape) for b in found[name].blobs))
  problems.raise_if_any(source, config, file_hint(found, config))
  _check_tree(out, target, release, allow_classifier_mismatch, allow_missing_classifier,
              source, config)
  return out, release


def _layer_summary(layer) -> str:
  return f'{layer.name} ({layer.type}): ' + ', '.join(str(b.shape) for b in layer.blobs)


def _init_classifier_maps(maps, release, found, config, target, keep, source):
  """An init file's single classifier (fc1_coco): dropped, or kept as the
  one 1x1 branch's classifier when `keep` (the head must be that)."""
  name = release.init_classifier
  if not keep:
    return maps, dataclasses.replace(release, dropped=(_layer_summary(found[name]),))
  rates = tuple(config.model.head.rates)
  kernel = target.get('params/head/branch0_classifier/kernel')
  if len(rates) != 1 or kernel is None or tuple(kernel[:2]) != (1, 1):
    raise UserError(
        f'{source}: keeping {_layer_summary(found[name])}, a single 1x1 '
        f'classifier, needs a model with one 1x1 head branch, not head.rates {rates} '
        f'with {config.model.head.kernel_size}x{config.model.head.kernel_size} kernels: '
        '--config.model.head.rates=1 --config.model.head.kernel_size=1'
        + (' --config.dataset.num_classes=91' if name == 'fc1_coco' else '')
        + '; or leave it out (the default) to train a fresh head')
  kept = LayerMap(name, 'conv', ('head', 'branch0_classifier'), True)
  return ([m for m in maps if not m.classifier] + [kept],
          dataclasses.replace(release, has_classifier=True))

def _classifier_test(config):
  """path -> whether it is in a classifier layer the model's parts declare."""
  classifiers = models.classifier_paths(config)
  return lambda path: models.is_classifier(path, classifiers)


def _is_msc(path):
  return path.startswith('params/multilayer/')


def _check_tree(out, target, release, allow_mismatch, allow_missing, source, config):
  """Every leaf of the model, at its shape (the promised exceptions aside)."""
  problems = _Problems()
  _is_classifier = _classifier_test(config)
  no_msc = not any(_is_msc(p) for p in out)  # A file without v1 MSc layers.
  for m in variables_tree.mismatches(variables_tree.shapes(out), target):
    if m.problem == variables_tree.MISSING:
      if _is_msc(m.path) and allow_missing and no_msc:
        continue
      if not (_is_classifier(m.path) and allow_missing and not release.has_classifier):
        problems.missing.append(f'(no Caffe layer) -> {m.path} {m.want}')
    elif m.problem == variables_tree.SHAPE:
      if not (_is_classifier(m.path) and allow_mismatch):
        problems.misshaped.append(f'{m.path}: {m.have}, needs {m.want}')
    else:
      problems.unexpected.append(f'{m.path}: {m.have}')
  problems.raise_if_any(source, config)


def _nest(flat) -> dict:
  return variables_tree.unflatten(flat, roots=('params', 'batch_stats'))


def classifier_paths(config) -> list[str]:
  """The model's classifier leaves ('params/head/branch0_classifier/kernel', ...)."""
  is_classifier = _classifier_test(config)
  return sorted(p for p in target_shapes(config) if is_classifier(p))


def convert(layers: Sequence[Layer], config, source: str = 'the caffemodel',
            keep_init_classifier: bool = False) -> Converted:
  """The front end's entry point: `Converted` of the file.

  Classifier leaves for another class count keep the file's shapes; a file
  without a classifier lists those leaves in `absent`. The front end
  (`deeplab_jax.convert.assemble`) decides what to initialise afresh.
  Classifiers left out on purpose (ImageNet fc8 / fc1000, the COCO init's
  fc1_coco unless `keep_init_classifier`) are listed in `dropped`.

      converted = convert(read_caffemodel(path), config, source=path)
  """
  flat, release = _convert(layers, config, True, True, source, keep_init_classifier)
  absent = frozenset(p for p in classifier_paths(config) if p not in flat)
  if not any(_is_msc(p) for p in flat):  # v1 MSc from a file without it.
    absent |= frozenset(p for p in target_shapes(config) if _is_msc(p))
  return Converted(_nest(flat), absent, source=release.describe(), dropped=release.dropped)
