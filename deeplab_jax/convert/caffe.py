"""The DeepLab authors' Caffe weights (`.caffemodel`) as flax variables.

    from deeplab_jax.convert import caffe
    layers = caffe.read_caffemodel('train_iter_20000.caffemodel')
    variables = caffe.to_flax(layers, config)   # {'params': ..., 'batch_stats': ...}
    logits = models.build(config).apply(variables, images_uint8_nhwc, train=False)

No Caffe needed: the file is parsed with the schema subset in
`caffe_schema.py`. `to_flax` maps layers by their official names, converts
the layouts and checks every leaf against `jax.eval_shape` of
`models.build(config).init`: the result has exactly the model's tree and
shapes, or a `UserError` lists each missing, unexpected or mis-shaped layer
with its Caffe name and our path. `name_table(config)` prints the mapping.
The models take the Caffe input convention (BGR, 0-255, minus the Caffe
mean): the VOC configs' `channel_order='bgr'`, `pixel_std=1`.

Releases and their layer names (the DeepLab v1/v2 prototxts, Kaiming He's
ResNet, VGG's ILSVRC-2014 model):

DeepLab v2 ResNet-101 (`init.caffemodel` COCO-pretrained,
`train_iter_20000.caffemodel`), also ImageNet ResNet-50/101/152 (`fc1000`):
  conv1 / bn_conv1 / scale_conv1          trunk/layer1/conv1/{conv, bn}
  res{s}{b}_branch1   bn.. scale..        trunk/layer{s}/block{i}/shortcut
  res{s}{b}_branch2a  bn{s}{b}_branch2a   trunk/layer{s}/block{i}/reduce
  res{s}{b}_branch2b  scale{s}{b}_...     trunk/layer{s}/block{i}/conv3x3
  res{s}{b}_branch2c                      trunk/layer{s}/block{i}/increase
  fc1_{tag}_c{k} (e.g. fc1_voc12_c0..c3; fc1_c{k} with no tag is accepted)
                                          head/branch{k}_classifier
  Stages s = 2..5 are our layer2..layer5. Block b of block i (1-based):
  'a' for the first; then, as Kaiming He's prototxts name them, letters
  b, c, d, ... except in res3 and res4 of ResNet-101 and -152, which count
  b1, b2, ...: ResNet-101 has res3a, res3b1..res3b3, res4a, res4b1..res4b22,
  res2a..c, res5a..c; ResNet-152 res3b1..b7, res4b1..b35; ResNet-50 only
  letters (res4a..f). `resnet_block_name` is the rule.
  Convolutions: weight (O, I, kh, kw) -> kernel (kh, kw, I, O), no bias in
  the trunk, weight + bias in the classifier. BatchNorm blobs (mean, variance,
  scale_factor): our statistics are blob / scale_factor[0] (0 if the factor
  is 0, as Caffe computes). Caffe's eps is batch_norm_param.eps (default
  1e-5, as the DeepLab prototxts leave it); our BatchNorm uses 1e-5, so a
  file with another eps has the difference added to the variance, which gives
  the same outputs. Scale blobs (gamma, beta) -> bn/{scale, bias}.

DeepLab v1/v2 VGG-16 (LargeFOV, v1 DeepLab 4x4 / 7x7; v2 ASPP-L/-S):
  conv{s}_{i}                             trunk/conv{s}_{i}
  LargeFOV: fc6, fc7, fc8_{tag} (fc8_voc12)   head/branch0_{hidden0, hidden1, classifier}
  ASPP: fc6_{k+1}, fc7_{k+1}, fc8_{tag}_{k+1}  head/branch{k}_{...}
  All convolutions with bias; fc6 is (O, 512, k, k), fc7 / fc8 are 1x1.

ImageNet VGG-16 (`VGG_ILSVRC_16_layers.caffemodel`, V1 format): conv1_1 ..
conv5_3 as above; fc6 (InnerProduct 4096 x 25088 = 512x7x7) and fc7 (4096 x
4096) are subsampled with `decimate.decimate_fc` to the config's fc6 / fc7
(LargeFOV: every 4th output, taps 0, 3, 6), the paper's initialisation.
For a multi-branch (ASPP) config every branch gets the same decimated fc6 /
fc7: our reading of the v2 paper, which does not say how its ASPP-VGG was
initialised. The ImageNet `fc8` is not a DeepLab classifier: it is dropped
and the classifier is absent from the result (see below). A one-branch
DeepLab file (fc6/fc7 without _k) given to a multi-branch config is read the
same way ("init" files): shared fc6/fc7, no classifier.

DeepLab v1 MSc / MSc-LargeFOV (model.multilayer_widths, TheLegendAli/
DeepLab-Context voc12/config/DeepLab-MSc*/train.prototxt): the VGG layers
above (fc8_{tag}: fc8_voc12, DeepLab-MSc's fc8_pascal) and, per branch b in
data, pool1 .. pool4, Convolutions {b}_conv (128 x C x 3 x 3), {b}_fc (128 x
128 x 1 x 1), {b}_ms (classes x 128 x 1 x 1), all with bias ->
multilayer/{b}_conv, _fc, _ms. A file without any of them (the LargeFOV /
DeepLab model the MSc stage fine-tunes from) converts with those leaves
absent (`allow_missing_classifier`, and `convert()` lists them in `absent`):
the front end initialises them.

Multi-scale (MSC) releases: the v2 MSC prototxt runs the network three times
with the layers of the 0.75 and 0.5 scales named with suffixes (`conv1_res075`,
`fc1_voc12_c0_res05`) sharing the scale-1 layers' parameters, so the file
stores identical copies. The plain names are read; a `<name>_res<digits>`
layer whose plain-name twin exists must have the same blob shapes (else an
error) and is dropped; differing values only warn (the scale-1 layer's serve
every scale, as in the PyTorch port's converter). This follows from how
Caffe writes shared parameters; it is not checked against the real files
here.

DeepLab v2 COCO initialisation (`init.caffemodel`, the start of every v2
ResNet result): the ResNet-101 trunk above and one 1x1 classifier
`fc1_coco` (Convolution, weight (91, 2048, 1, 1) + bias (91,): COCO's 91
label indices) instead of the fc1_{tag}_c{k} ASPP layers; the PyTorch port
reads it as `fc1_coco = Conv2d(2048, 91, 1)` (kazuto1011/deeplab-pytorch
3a634f2, libs/models/deeplabv2.py) and drops it when training (its main.py
loads the init with strict=False "to skip ASPP"), as Caffe does (layers are
copied by name; the VOC prototxt has no fc1_coco). Here too it is dropped
by default (listed in `Release.dropped`), the ASPP classifier is absent, and
the front end initialises it. `keep_init_classifier=True` maps it onto
head/branch0_classifier instead, which needs a one-branch 1x1 head
(--config.model.head_rates=1 --config.model.head_kernel_size=1; 91 classes
to keep its class count): the network the file was trained as. Any single
`fc1` / `fc1_{tag}` layer is read the same way.

Classifier: `allow_classifier_mismatch=True` returns a classifier trained for
another number of classes with the file's class count (the kernel's other
dimensions must fit); `allow_missing_classifier=True` accepts files without
one (ImageNet, init files) and leaves those leaves out. The front end
(`deeplab_jax.convert`) decides what to do with either; `convert()` is its
entry point and sets both.
"""

from __future__ import annotations

import dataclasses
import math
import re
import string
from typing import Iterable, Sequence

import numpy as np
from absl import logging
from google.protobuf import message as protobuf_message

from deeplab_jax.convert import caffe_schema
from deeplab_jax.convert.decimate import decimate_fc
from deeplab_jax.errors import UserError

EPS = 1e-5  # Our BatchNorm's epsilon (models/batch_norm.py) and Caffe's default.
_MSC_SUFFIX = re.compile(r'^(?P<base>.+)_res\d+$')
_RESNET_CLASSIFIER = re.compile(r'^fc1(?:_(?P<tag>[A-Za-z0-9]+))?_c(?P<index>\d+)$')
_VGG_CLASSIFIER = re.compile(r'^fc8(?:_(?P<tag>[A-Za-z0-9]+))?$')
_VGG_ASPP_CLASSIFIER = re.compile(r'^fc8(?:_(?P<tag>[A-Za-z0-9]+))?_(?P<index>\d+)$')
_IMAGENET_CLASSIFIERS = ('fc8', 'fc1000')  # Dropped when the file has no DeepLab head.
# The one 1x1 classifier of a ResNet init file (init.caffemodel: fc1_coco, 91 classes).
_INIT_CLASSIFIER = re.compile(r'^fc1(?:_(?P<tag>[A-Za-z0-9]+))?$')
_MAX_LISTED = 25


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


# ---------------------------------------------------------------- reading ----

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


# ------------------------------------------------------------ name tables ----

def resnet_block_name(depth: int, stage: int, index: int) -> str:
  """Caffe's name of block `index` (0-based) of stage `stage` (2..5): 'a', 'b3'.

  Kaiming He's prototxts: the first block is 'a'; the others are letters
  ('b', 'c', ...) except in res3 / res4 of ResNet-101 and -152, which count
  'b1', 'b2', ... (res4b22 is ResNet-101's last res4 block).
  """
  if index == 0:
    return 'a'
  if depth >= 101 and stage in (3, 4):
    return f'b{index}'
  return string.ascii_lowercase[index]


@dataclasses.dataclass(frozen=True)
class LayerMap:
  """A Caffe layer and the flax module it fills.

  kind 'conv': blobs (weight OIHW[, bias]) -> params {kernel HWIO, bias};
  'bn': (mean, variance, scale_factor) -> batch_stats {mean, var};
  'scale': (gamma, beta) -> params {scale, bias}.
  """
  caffe: str
  kind: str
  module: tuple
  classifier: bool = False

  @property
  def caffe_type(self):
    return {'conv': 'Convolution', 'bn': 'BatchNorm', 'scale': 'Scale'}[self.kind]


def _check_supported(config):
  m = config.model
  if tuple(m.multilayer_widths) and m.trunk != 'vgg16':
    raise UserError('v1 MSc (model.multilayer_widths) exists for model.trunk vgg16 only')
  if m.trunk not in ('resnet', 'vgg16'):
    raise UserError(f'Caffe weights exist for model.trunk resnet and vgg16, not {m.trunk!r}')
  if m.trunk == 'vgg16' and len(tuple(m.head_hidden)) != 2:
    raise UserError('the Caffe VGG-16 models have fc6 and fc7 before the classifier: '
                    f'model.head_hidden must have 2 widths, not {tuple(m.head_hidden)}')
  if m.trunk == 'resnet' and tuple(m.head_hidden):
    raise UserError('the Caffe ResNet models have no hidden head layers: '
                    'model.head_hidden must be ()')


def _resnet_map(config, tag) -> list[LayerMap]:
  from deeplab_jax.models.resnet import BLOCKS  # pylint: disable=import-outside-toplevel
  depth = config.model.resnet_depth
  if depth not in BLOCKS:
    raise UserError(f'model.resnet_depth {depth} is not one of {sorted(BLOCKS)}')
  out = []

  def unit(conv, bn, scale, module):
    out.extend([LayerMap(conv, 'conv', module + ('conv',)),
                LayerMap(bn, 'bn', module + ('bn',)),
                LayerMap(scale, 'scale', module + ('bn',))])

  unit('conv1', 'bn_conv1', 'scale_conv1', ('trunk', 'layer1', 'conv1'))
  for stage, num_blocks in enumerate(BLOCKS[depth], start=2):
    for i in range(num_blocks):
      block = f'{stage}{resnet_block_name(depth, stage, i)}'
      ours = ('trunk', f'layer{stage}', f'block{i + 1}')
      branches = (('1', 'shortcut'),) if i == 0 else ()
      for branch, name in branches + (('2a', 'reduce'), ('2b', 'conv3x3'), ('2c', 'increase')):
        unit(f'res{block}_branch{branch}', f'bn{block}_branch{branch}',
             f'scale{block}_branch{branch}', ours + (name,))
  prefix = f'fc1_{tag}' if tag else 'fc1'
  for k in range(len(tuple(config.model.head_rates))):
    out.append(LayerMap(f'{prefix}_c{k}', 'conv', ('head', f'branch{k}_classifier'), True))
  return out


def _vgg_trunk_map(multilayer=False) -> list[LayerMap]:
  """conv1_1 .. conv5_3; with `multilayer` v1 MSc's branches where the
  prototxt has them (data_* first, pool{s}_* after conv{s}_*)."""
  out = _msc_branch_map('data') if multilayer else []
  for s, n in ((1, 2), (2, 2), (3, 3), (4, 3), (5, 3)):
    out += [LayerMap(f'conv{s}_{i}', 'conv', ('trunk', f'conv{s}_{i}')) for i in range(1, n + 1)]
    if multilayer and s <= 4:
      out += _msc_branch_map(f'pool{s}')
  return out


MSC_BRANCHES = ('data', 'pool1', 'pool2', 'pool3', 'pool4')


def _msc_branch_map(branch) -> list[LayerMap]:
  return [LayerMap(f'{branch}_{part}', 'conv', ('multilayer', f'{branch}_{part}'))
          for part in ('conv', 'fc', 'ms')]


def _msc_maps(maps, found, config) -> list[LayerMap]:
  """`maps` with v1 MSc's layers where the model has them and the file any
  (without: a LargeFOV / DeepLab file, the MSc leaves stay absent)."""
  if not tuple(config.model.multilayer_widths):
    return maps
  msc = [m for b in MSC_BRANCHES for m in _msc_branch_map(b)]
  if not any(m.caffe in found for m in msc):
    return maps
  return maps + msc


def _vgg_head_map(config, tag) -> list[LayerMap]:
  n = len(tuple(config.model.head_rates))
  fc8 = f'fc8_{tag}' if tag else 'fc8'
  out = []
  for k in range(n):
    suffix = '' if n == 1 else f'_{k + 1}'
    out += [LayerMap(f'fc6{suffix}', 'conv', ('head', f'branch{k}_hidden0')),
            LayerMap(f'fc7{suffix}', 'conv', ('head', f'branch{k}_hidden1')),
            LayerMap(f'{fc8}{suffix}', 'conv', ('head', f'branch{k}_classifier'), True)]
  return out


def layer_map(config, classifier_tag: str | None = 'voc12') -> list[LayerMap]:
  """The official layers of `config`'s model in file order, DeepLab layout.

  `classifier_tag` is the dataset part of the classifier's name ('voc12':
  fc1_voc12_c0 / fc8_voc12; None: fc1_c0 / fc8).
  """
  _check_supported(config)
  if config.model.trunk == 'resnet':
    return _resnet_map(config, classifier_tag)
  return (_vgg_trunk_map(bool(tuple(config.model.multilayer_widths)))
          + _vgg_head_map(config, classifier_tag))


# ------------------------------------------------------- target and shapes ----

_TARGET_CACHE = {}


def target_shapes(config) -> dict:
  """'{collection}/{path}' -> shape of every leaf of `models.build(config).init`.

  From `jax.eval_shape` (nothing allocated); remembered per model config.
  """
  key = (config.model.to_json(), config.dataset.num_classes)
  if key not in _TARGET_CACHE:
    if len(_TARGET_CACHE) > 16:
      _TARGET_CACHE.clear()
    _TARGET_CACHE[key] = _target_shapes(config)
  return dict(_TARGET_CACHE[key])


def _target_shapes(config) -> dict:
  from deeplab_jax import models  # pylint: disable=import-outside-toplevel
  return models.variable_shapes(config)


def _leaves(m: LayerMap, target) -> list:
  """[(blob index, '{collection}/{path}')] that layer `m` fills."""
  base = '/'.join(m.module)
  if m.kind == 'conv':
    leaves = [(0, f'params/{base}/kernel')]
    if f'params/{base}/bias' in target or m.classifier:
      leaves.append((1, f'params/{base}/bias'))
    return leaves
  if m.kind == 'bn':
    return [(0, f'batch_stats/{base}/mean'), (1, f'batch_stats/{base}/var')]
  return [(0, f'params/{base}/scale'), (1, f'params/{base}/bias')]


def _caffe_shape(shape):
  """Our shape -> Caffe's: HWIO kernels -> OIHW, vectors unchanged."""
  if len(shape) == 4:
    kh, kw, i, o = shape
    return (o, i, kh, kw)
  return tuple(shape)


@dataclasses.dataclass(frozen=True)
class NameRow:
  """One blob of the Caffe file and the leaf it becomes (None: no leaf)."""
  caffe: str
  caffe_type: str
  blob: int
  caffe_shape: tuple
  path: str | None
  shape: tuple | None


def name_table(config, classifier_tag: str | None = 'voc12') -> list[NameRow]:
  """Every blob of the official file for `config`, with our path and shape.

  No weights are needed (shapes from `jax.eval_shape`); e.g. for
  configs/voc_aspp.py the row ('res4b22_branch2c', 'Convolution', 0,
  (1024, 256, 1, 1), 'params/trunk/layer4/block23/increase/conv/kernel',
  (1, 1, 256, 1024)). BatchNorm's scale_factor blob (2) has no leaf.
  """
  target = target_shapes(config)
  rows = []
  for m in layer_map(config, classifier_tag):
    for blob, path in _leaves(m, target):
      shape = target.get(path)
      rows.append(NameRow(m.caffe, m.caffe_type, blob,
                          _caffe_shape(shape) if shape else None, path, shape))
    if m.kind == 'bn':
      rows.append(NameRow(m.caffe, m.caffe_type, 2, (1,), None, None))
  return rows


def _canonical(shape) -> tuple:
  """The shape without leading and trailing 1s: the layouts that are one reshape apart."""
  shape = list(shape)
  while shape and shape[0] == 1:
    shape.pop(0)
  while shape and shape[-1] == 1:
    shape.pop()
  return tuple(shape)


def _fit(blob: np.ndarray, shape) -> np.ndarray | None:
  """`blob` as `shape` when only 1-sized axes differ (legacy 4-D, fc as 1x1), else None."""
  if blob.size == math.prod(shape) and _canonical(blob.shape) == _canonical(shape):
    return blob.reshape(shape)
  return None


def _hwio(weight_oihw):
  return np.ascontiguousarray(weight_oihw.transpose(2, 3, 1, 0))


# -------------------------------------------------------------- converting ----

def _weight_layers(layers: Iterable[Layer], source) -> dict:
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


def _classifier_tag(found, pattern, source, what) -> tuple[bool, str | None]:
  """(present, tag) of the classifier layers `pattern` matches."""
  tags = {m['tag'] for m in (pattern.match(name) for name in found) if m}
  if len(tags) > 1:
    names = sorted(n for n in found if pattern.match(n))
    raise UserError(f'{source}: more than one set of {what} layers: {names}')
  return (bool(tags), next(iter(tags)) if tags else None)


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
                      f'(trunk {m.trunk}, resnet_depth {m.resnet_depth}, head_rates '
                      f'{tuple(m.head_rates)}, head_hidden {tuple(m.head_hidden)}, '
                      f'{config.dataset.num_classes} classes):\n' + '\n'.join(sections))


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
  leaves = _leaves(m, target)
  if not _blob_count(m, layer, leaves, problems):
    return
  if m.kind == 'conv':
    (_, kernel_path), *bias = leaves
    shape = target[kernel_path]
    weight = _fit(layer.blobs[0], _caffe_shape(shape))
    if weight is None and m.classifier and allow_classifier_mismatch:
      weight = _fit_other_classes(layer.blobs[0], _caffe_shape(shape))
    if weight is None:
      problems.misshaped.append(f'{m.caffe}, blob 0: {layer.blobs[0].shape} -> '
                                f'{kernel_path}: {_caffe_shape(shape)} (OIHW; ours HWIO {shape})')
      return
    out[kernel_path] = _hwio(weight)
    if bias:
      bias_path = bias[0][1]
      value = _fit(layer.blobs[1], (weight.shape[0],))
      if value is None:
        problems.misshaped.append(f'{m.caffe}, blob 1: {layer.blobs[1].shape} -> '
                                  f'{bias_path}: {(weight.shape[0],)}')
        return
      out[bias_path] = value
    return
  channels = target[leaves[0][1]]
  values = []
  for blob, path in leaves:
    value = _fit(layer.blobs[blob], channels)
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
  return _fit(weight, (weight.size // per_class, i, kh, kw))


def _vgg_shared_head(found, config, target, out, problems, used):
  """fc6 / fc7 of an ImageNet (or one-branch init) file into every branch."""
  hidden = tuple(config.model.head_hidden)
  k = config.model.head_kernel_size
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
  o6 = _canonical(w6.shape)[0] if _canonical(w6.shape) else 1
  taps = w6.size // (o6 * in6) if w6.size % (o6 * in6) == 0 else 0
  side = math.isqrt(taps)
  if side * side != taps or side == 0:
    problems.misshaped.append(
        f'fc6, blob 0: {w6.shape} is not (O, {in6}, k, k) nor (O, {in6}*k*k) for '
        f'{in6} pool5 channels -> params/head/branch*_hidden0/kernel')
    return
  w6 = w6.reshape(o6, in6, side, side)
  o7 = w7.size // o6 if w7.size % o6 == 0 else 0
  w7_fit = _fit(w7, (o7, o6, 1, 1)) if o7 else None
  b6_fit, b7_fit = _fit(b6, (o6,)), _fit(b7, (o7,)) if o7 else None
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
  for b in range(len(tuple(config.model.head_rates))):
    for j, (kernel, bias) in enumerate(((kernel_6, bias_6), (kernel_7, bias_7))):
      out[f'params/head/branch{b}_hidden{j}/kernel'] = kernel.copy()
      out[f'params/head/branch{b}_hidden{j}/bias'] = bias.copy()


@dataclasses.dataclass(frozen=True)
class Release:
  """What a file holds for `config`: its layout and classifier names."""
  trunk: str  # 'resnet' | 'vgg16'
  shared_head: bool  # VGG: one fc6/fc7 (decimated if needed) for every branch.
  has_classifier: bool
  classifier_tag: str | None
  init_classifier: str | None = None  # ResNet init file's single 1x1 classifier: 'fc1_coco'.
  dropped: tuple = ()  # 'name (type): blob shapes' of classifiers left out on purpose.

  def describe(self):
    net = 'ResNet' if self.trunk == 'resnet' else 'VGG-16'
    if self.init_classifier:
      if self.init_classifier == 'fc1_coco':
        return 'DeepLab v2 COCO initialisation (Caffe ResNet, 1x1 classifier fc1_coco)'
      return f'Caffe {net} initialisation (1x1 classifier {self.init_classifier})'
    if not self.has_classifier:
      if self.trunk == 'vgg16' and self.shared_head:
        return (f'Caffe {net} without a DeepLab classifier (ImageNet or init weights; '
                'fc6/fc7 shared by every branch, decimated where needed)')
      return f'Caffe {net} without a DeepLab classifier (ImageNet or init weights)'
    name = ('fc1' if self.trunk == 'resnet' else 'fc8') + (
        f'_{self.classifier_tag}' if self.classifier_tag else '')
    return f'Caffe DeepLab {net} (classifier {name}*)'


def detect_release(layers: Sequence[Layer], config,
                   source: str = 'the caffemodel') -> Release:
  """How the file's layers map onto `config`'s model (see the module docstring)."""
  _check_supported(config)
  return _detect(_weight_layers(layers, source), config, source, target_shapes(config))


def _detect(found, config, source, target) -> Release:
  n = len(tuple(config.model.head_rates))
  if config.model.trunk == 'resnet':
    present, tag = _classifier_tag(found, _RESNET_CLASSIFIER, source, 'fc1_*_c<k> classifier')
    init = sorted(name for name in found if _INIT_CLASSIFIER.match(name))
    if len(init) > 1:
      raise UserError(f'{source}: more than one fc1 classifier layer: {init}')
    init = init[0] if init and not present else None  # With fc1_*_c<k>: unexpected.
    return Release('resnet', False, present, tag, init_classifier=init)
  if n == 1:
    shared = False
    if 'fc6' in found:
      wanted = _caffe_shape(target['params/head/branch0_hidden0/kernel'])
      shared = _fit(found['fc6'].blobs[0], wanted) is None
    pattern = _VGG_CLASSIFIER
  else:
    shared = 'fc6_1' not in found and 'fc6' in found
    pattern = _VGG_ASPP_CLASSIFIER
  if shared:
    return Release('vgg16', True, False, None)
  candidates = {name: layer for name, layer in found.items() if name not in ('fc6', 'fc7')}
  present, tag = _classifier_tag(candidates, pattern, source, 'fc8 classifier')
  return Release('vgg16', False, present, tag)


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
  _check_supported(config)
  target = target_shapes(config)
  found = _weight_layers(layers, source)
  release = _detect(found, config, source, target)
  problems = _Problems()
  out, used = {}, set()
  if release.trunk == 'resnet':
    maps = _resnet_map(config, release.classifier_tag)
  elif release.shared_head:
    maps = _vgg_trunk_map()
    _vgg_shared_head(found, config, target, out, problems, used)
  else:
    maps = _vgg_trunk_map() + _vgg_head_map(config, release.classifier_tag)
  if release.init_classifier:
    maps, release = _init_classifier_maps(maps, release, found, config, target,
                                          keep_init_classifier, source)
    used.add(release.init_classifier)
  if not release.has_classifier:
    maps = [m for m in maps if not m.classifier]
    dropped = [n for n in _IMAGENET_CLASSIFIERS if n in found]
    used.update(dropped)
    release = dataclasses.replace(
        release, dropped=release.dropped + tuple(_layer_summary(found[n]) for n in dropped))
    if not allow_missing_classifier:
      problems.other.append(
          f'no DeepLab classifier in the file ({release.describe()}'
          + (f'; its {", ".join(dropped)} classifies ImageNet' if dropped else '')
          + '): the classifier has to be initialised afresh (allow_missing_classifier=True)')
  maps = _msc_maps(maps, found, config)
  for m in maps:
    layer = found.get(m.caffe)
    if layer is None:
      problems.missing.append(f'{m.caffe} ({m.caffe_type}) -> '
                              + ', '.join(p for _, p in _leaves(m, target)))
      continue
    used.add(m.caffe)
    _convert_layer(m, layer, target, out, problems, allow_classifier_mismatch)
  for name in found:
    if name not in used:
      problems.unexpected.append(f'{name} ({found[name].type}): '
                                 + ', '.join(str(b.shape) for b in found[name].blobs))
  problems.raise_if_any(source, config, _hint(found, config))
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
  rates = tuple(config.model.head_rates)
  kernel = target.get('params/head/branch0_classifier/kernel')
  if len(rates) != 1 or kernel is None or tuple(kernel[:2]) != (1, 1):
    raise UserError(
        f'{source}: keeping {_layer_summary(found[name])}, a single 1x1 '
        f'classifier, needs a model with one 1x1 head branch, not head_rates {rates} '
        f'with {config.model.head_kernel_size}x{config.model.head_kernel_size} kernels: '
        '--config.model.head_rates=1 --config.model.head_kernel_size=1'
        + (' --config.dataset.num_classes=91' if name == 'fc1_coco' else '')
        + '; or leave it out (the default) to train a fresh head')
  kept = LayerMap(name, 'conv', ('head', 'branch0_classifier'), True)
  return ([m for m in maps if not m.classifier] + [kept],
          dataclasses.replace(release, has_classifier=True))


def _hint(found, config) -> str:
  """What the file looks like, where that differs from the config."""
  from deeplab_jax.models.resnet import BLOCKS  # pylint: disable=import-outside-toplevel
  m = config.model
  if m.trunk == 'resnet' and 'conv1_1' in found:
    return ('the file is a VGG-16 (conv1_1): use a VGG config '
            '(configs/voc_largefov.py, configs/voc_vgg_aspp.py)')
  if m.trunk == 'vgg16' and ('bn_conv1' in found or 'res2a_branch2a' in found):
    return 'the file is a ResNet (res2a_branch2a): use configs/voc_aspp.py'
  if m.trunk == 'vgg16' and not tuple(m.multilayer_widths) and 'data_ms' in found:
    return ('the file is a v1 MSc model (data_ms, pool1_ms, ..): configs/voc_msc_largefov.py '
            '/ configs/voc_msc.py, or --config.model.multilayer_widths=128,128')
  if m.trunk == 'resnet':
    res4 = sum(bool(re.fullmatch(r'res4(?:[a-z]|b\d+)_branch2a', n)) for n in found)
    depth = {blocks[2]: d for d, blocks in BLOCKS.items()}.get(res4)
    if depth and depth != m.resnet_depth:
      return (f'the file\'s res4 has {res4} blocks, a ResNet-{depth}: '
              f'--config.model.resnet_depth={depth}')
  return ''


def _is_classifier(path):
  return path.startswith('params/head/') and '_classifier/' in path


def _is_msc(path):
  return path.startswith('params/multilayer/')


def _check_tree(out, target, release, allow_mismatch, allow_missing, source, config):
  """Every leaf of the model, at its shape (the promised exceptions aside)."""
  problems = _Problems()
  no_msc = not any(_is_msc(p) for p in out)  # A file without v1 MSc layers.
  for path, shape in target.items():
    if path not in out:
      if _is_msc(path) and allow_missing and no_msc:
        continue
      if not (_is_classifier(path) and allow_missing and not release.has_classifier):
        problems.missing.append(f'(no Caffe layer) -> {path} {shape}')
    elif out[path].shape != shape and not (_is_classifier(path) and allow_mismatch):
      problems.misshaped.append(f'{path}: {out[path].shape}, needs {shape}')
  for path in out:
    if path not in target:
      problems.unexpected.append(f'{path}: {out[path].shape}')
  problems.raise_if_any(source, config)


def _nest(flat) -> dict:
  from deeplab_jax import convert  # pylint: disable=import-outside-toplevel
  return {'params': {}, 'batch_stats': {}, **convert.unflatten(flat)}


def classifier_paths(config) -> list[str]:
  """The model's classifier leaves ('params/head/branch0_classifier/kernel', ...)."""
  return sorted(p for p in target_shapes(config) if _is_classifier(p))


def convert(layers: Sequence[Layer], config, source: str = 'the caffemodel',
            keep_init_classifier: bool = False):
  """The front end's entry point: `deeplab_jax.convert.Converted` of the file.

  Classifier leaves for another class count keep the file's shapes; a file
  without a classifier lists those leaves in `absent`. The front end
  (`deeplab_jax.convert.assemble`) decides what to initialise afresh.
  Classifiers left out on purpose (ImageNet fc8 / fc1000, the COCO init's
  fc1_coco unless `keep_init_classifier`) are listed in `dropped`.

      converted = convert(read_caffemodel(path), config, source=path)
  """
  from deeplab_jax.convert import Converted  # pylint: disable=import-outside-toplevel
  flat, release = _convert(layers, config, True, True, source, keep_init_classifier)
  absent = frozenset(p for p in classifier_paths(config) if p not in flat)
  if not any(_is_msc(p) for p in flat):  # v1 MSc from a file without it.
    absent |= frozenset(p for p in target_shapes(config) if _is_msc(p))
  return Converted(_nest(flat), absent, source=release.describe(), dropped=release.dropped)
