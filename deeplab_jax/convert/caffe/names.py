"""The official Caffe layer names of each model, and the blob layouts.

    layer_map(config)    # [LayerMap('conv1', 'conv', ('trunk', 'layer1', 'conv1')), ...]
    name_table(config)   # every blob with our path and both shapes (no weights needed)

`layer_map` gives the DeepLab release names (see the package docstring for
the rules), `layer_leaves` the variables a layer fills, `caffe_shape` /
`fit` / `hwio` the layout changes between Caffe's blobs and flax's leaves.
"""

from __future__ import annotations

import dataclasses
import math
import string

import numpy as np

from deeplab_jax import models
from deeplab_jax.errors import UserError
from deeplab_jax.models import multilayer_widths
from deeplab_jax.models.resnet import BLOCKS


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


def check_supported(config):
  m = config.model
  if m.head.name != 'aspp':
    raise UserError(f'Caffe DeepLab weights fill head aspp (LargeFOV / ASPP), not model.head.name '
                    f'{m.head.name!r}')
  if multilayer_widths(m) and m.backbone.name != 'vgg16':
    raise UserError('v1 MSc (model.multilayer.widths) exists for model.backbone.name vgg16 only')
  if m.backbone.name not in ('resnet', 'vgg16'):
    raise UserError('Caffe weights exist for model.backbone.name resnet and vgg16, '
                    f'not {m.backbone.name!r}')
  if m.backbone.name == 'vgg16' and len(tuple(m.head.hidden)) != 2:
    raise UserError('the Caffe VGG-16 models have fc6 and fc7 before the classifier: '
                    f'model.head.hidden must have 2 widths, not {tuple(m.head.hidden)}')
  if m.backbone.name == 'resnet' and tuple(m.head.hidden):
    raise UserError('the Caffe ResNet models have no hidden head layers: '
                    'model.head.hidden must be ()')


def resnet_map(config, tag) -> list[LayerMap]:
  depth = config.model.backbone.get('depth')
  if depth not in BLOCKS:
    raise UserError(f'model.backbone.depth {depth} is not one of {sorted(BLOCKS)}')
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
  for k in range(len(tuple(config.model.head.rates))):
    out.append(LayerMap(f'{prefix}_c{k}', 'conv', ('head', f'branch{k}_classifier'), True))
  return out


def vgg_trunk_map(multilayer=False) -> list[LayerMap]:
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


def msc_maps(maps, found, config) -> list[LayerMap]:
  """`maps` with v1 MSc's layers where the model has them and the file any
  (without: a LargeFOV / DeepLab file, the MSc leaves stay absent)."""
  if not multilayer_widths(config.model):
    return maps
  msc = [m for b in MSC_BRANCHES for m in _msc_branch_map(b)]
  if not any(m.caffe in found for m in msc):
    return maps
  return maps + msc


def vgg_head_map(config, tag) -> list[LayerMap]:
  n = len(tuple(config.model.head.rates))
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
  check_supported(config)
  if config.model.backbone.name == 'resnet':
    return resnet_map(config, classifier_tag)
  return (vgg_trunk_map(bool(multilayer_widths(config.model)))
          + vgg_head_map(config, classifier_tag))


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
    _TARGET_CACHE[key] = models.variable_shapes(config)
  return dict(_TARGET_CACHE[key])


def layer_leaves(m: LayerMap, target) -> list:
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


def caffe_shape(shape):
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
    for blob, path in layer_leaves(m, target):
      shape = target.get(path)
      rows.append(NameRow(m.caffe, m.caffe_type, blob,
                          caffe_shape(shape) if shape else None, path, shape))
    if m.kind == 'bn':
      rows.append(NameRow(m.caffe, m.caffe_type, 2, (1,), None, None))
  return rows


def canonical(shape) -> tuple:
  """The shape without leading and trailing 1s: the layouts that are one reshape apart."""
  shape = list(shape)
  while shape and shape[0] == 1:
    shape.pop(0)
  while shape and shape[-1] == 1:
    shape.pop()
  return tuple(shape)


def fit(blob: np.ndarray, shape) -> np.ndarray | None:
  """`blob` as `shape` when only 1-sized axes differ (legacy 4-D, fc as 1x1), else None."""
  if blob.size == math.prod(shape) and canonical(blob.shape) == canonical(shape):
    return blob.reshape(shape)
  return None


def hwio(weight_oihw):
  return np.ascontiguousarray(weight_oihw.transpose(2, 3, 1, 0))
