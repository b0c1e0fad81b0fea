"""torchvision keys <-> our variable paths, and `convert(state, config)` -> Converted.

See the package docstring for the key table. Reading is `convert.pytorch`'s
(`read_state_dict`); the leaf-by-leaf fit against the model is
`variables_tree.mismatches`, and the front end (`convert.assemble`) fills the
absent head and decides about a classifier of another class count.
"""

from __future__ import annotations

import re

import numpy as np

from deeplab_jax import models
from deeplab_jax import variables_tree
from deeplab_jax.convert.converted import Converted
from deeplab_jax.errors import UserError
from deeplab_jax.models import mobilenet
from deeplab_jax.models.layers import Layers

SEGMENTATION, IMAGENET = 'torchvision_segmentation', 'torchvision_resnet_imagenet'
MOBILENET_IMAGENET = 'torchvision_mobilenet_v3_imagenet'
SOURCES = (SEGMENTATION, IMAGENET, MOBILENET_IMAGENET)
DESCRIPTIONS = {SEGMENTATION: 'torchvision segmentation model (backbone + classifier)',
                IMAGENET: 'torchvision ImageNet ResNet',
                MOBILENET_IMAGENET: 'torchvision ImageNet MobileNetV3'}
# What a source's file has beside the model's variables (dropped and reported).
_DROPPED = {SEGMENTATION: 'aux_classifier.', IMAGENET: 'fc.', MOBILENET_IMAGENET: 'classifier.'}
_LEAVES = {'kernel': 'weight', 'scale': 'weight', 'bias': 'bias', 'mean': 'running_mean',
           'var': 'running_var'}
_BLOCK = {'reduce': ('conv1', 'bn1'), 'conv3x3': ('conv2', 'bn2'),
          'increase': ('conv3', 'bn3'), 'shortcut': ('downsample.0', 'downsample.1')}
_CONV_BN = {'conv': '0', 'bn': '1'}  # torchvision's Conv2dNormActivation indices.
# Head module path -> torchvision module, per head name (FCNHead's Sequential
# indices; LRASPPHead's attributes, `scale.1` the conv after its pooling).
_HEADS = {'fcn_head': {'conv3x3/conv': 'classifier.0', 'conv3x3/bn': 'classifier.1',
                       'classifier': 'classifier.4'},
          'lraspp': {'cbr/conv': 'classifier.cbr.0', 'cbr/bn': 'classifier.cbr.1',
                     'scale': 'classifier.scale.1',
                     'low_classifier': 'classifier.low_classifier',
                     'high_classifier': 'classifier.high_classifier'}}


def _aspp_v3(head):
  """DeepLabHead (segmentation/deeplabv3.py): classifier.0 is the ASPP (convs.0
  the 1x1, convs.1..n the atrous branches, convs.n+1 the pooling branch after
  its AdaptiveAvgPool2d, project), classifier.{1,2} the extra 3x3, 4 the scores."""
  n = len(tuple(head.get('rates', (12, 24, 36))))
  table = {f'branch{i}/{m}': f'classifier.0.convs.{i}.{j}'
           for i in range(n + 1) for j, m in enumerate(('conv', 'bn'))}
  table.update({'pool/conv': f'classifier.0.convs.{n + 1}.1',
                'pool/bn': f'classifier.0.convs.{n + 1}.2',
                'project/conv': 'classifier.0.project.0', 'project/bn': 'classifier.0.project.1',
                'conv3x3/conv': 'classifier.1', 'conv3x3/bn': 'classifier.2',
                'classifier': 'classifier.4'})
  return table


def _is_mobilenet(keys, prefix) -> bool:
  return f'{prefix}0.0.weight' in keys and f'{prefix}1.block.0.0.weight' in keys


def is_torchvision(state) -> bool:
  """Whether a state_dict has torchvision's segmentation, ResNet or MobileNetV3 keys."""
  keys = set(state)
  return ('conv1.weight' in keys and 'bn1.weight' in keys or _is_mobilenet(keys, 'features.')
          or any(k.startswith(('backbone.conv1.', 'backbone.0.0.')) for k in keys))


def detect(state) -> str:
  keys = set(state)
  if any(k.startswith('backbone.') for k in keys):
    return SEGMENTATION
  if 'conv1.weight' in keys and 'bn1.weight' in keys:
    return IMAGENET
  if _is_mobilenet(keys, 'features.'):
    return MOBILENET_IMAGENET
  raise UserError(f'not a torchvision ResNet, MobileNetV3 or segmentation checkpoint (keys '
                  f'such as {sorted(keys)[:6]})')


def _file_trunk(state, source) -> str:
  """The backbone the file holds: 'resnet' or 'mobilenet_v3'."""
  if source == SEGMENTATION:
    return 'mobilenet_v3' if _is_mobilenet(set(state), 'backbone.') else 'resnet'
  return 'mobilenet_v3' if source == MOBILENET_IMAGENET else 'resnet'


def _resnet_key(parts):
  """ResNet trunk path parts (after 'trunk') -> torchvision module, or None."""
  if parts[:2] == ['layer1', 'conv1']:
    return {'conv': 'conv1', 'bn': 'bn1'}.get(parts[2])
  stage, block = re.fullmatch(r'layer(\d)', parts[0]), re.fullmatch(r'block(\d+)', parts[1])
  if not (stage and block) or parts[2] not in _BLOCK:
    return None
  conv, bn = _BLOCK[parts[2]]
  module = {'conv': conv, 'bn': bn}.get(parts[3])
  return f'layer{int(stage.group(1)) - 1}.{int(block.group(1)) - 1}.{module}' if module else None


def _mobilenet_key(parts, blocks):
  """MobileNetV3 trunk path parts -> torchvision `features` index path, or None.

  stem -> 0, block<i> -> i (`.block.<j>`: expand, depthwise, SE, project in
  turn, the absent ones taking no index), last -> n + 1.
  """
  if parts[0] in ('stem', 'last') and parts[1] in _CONV_BN:
    return f'{0 if parts[0] == "stem" else len(blocks) + 1}.{_CONV_BN[parts[1]]}'
  match = re.fullmatch(r'block(\d+)', parts[0])
  if not match or not 1 <= int(match.group(1)) <= len(blocks):
    return None
  i = int(match.group(1))
  block = blocks[i - 1]
  order = [name for name, present in (('expand', block.expands), ('depthwise', True),
                                      ('se', block.se), ('project', True)) if present]
  if parts[1] not in order:
    return None
  j = order.index(parts[1])
  inner = parts[2] if parts[1] == 'se' else _CONV_BN.get(parts[2])
  return f'{i}.block.{j}.{inner}' if inner in ('fc1', 'fc2', '0', '1') else None


def _trunk_keys(config, source):
  """path parts -> torchvision module of `config`'s backbone (checked to be
  torchvision's layout)."""
  backbone = config.model.backbone
  if backbone.name == 'mobilenet_v3':
    blocks = mobilenet.from_config(backbone, Layers()).plan()
    return lambda parts: _mobilenet_key(parts, blocks)
  if backbone.name != 'resnet' or backbone.get('stride_in_1x1', True):
    raise UserError(
        f'{DESCRIPTIONS[source]} weights need torchvision\'s layout: model.backbone.name '
        'mobilenet_v3, or resnet with stride_in_1x1=False (configs/parts.py '
        'torchvision_resnet; configs/voc_fcn_resnet50.py), not '
        f'{models.describe(config.model)}')
  return _resnet_key


def expected_keys(config, source: str) -> tuple[dict, frozenset]:
  """({torchvision key: (our path, shape in the file)}, absent paths) for `config`."""
  trunk_key = _trunk_keys(config, source)
  head_map = (_aspp_v3(config.model.head) if config.model.head.name == 'aspp_v3'
              else _HEADS.get(config.model.head.name))
  if source == SEGMENTATION and head_map is None:
    raise UserError(f'model.head.name {config.model.head.name!r} has no torchvision '
                    f'counterpart; one of {sorted(_HEADS) + ["aspp_v3"]}')
  prefix = {SEGMENTATION: 'backbone.', IMAGENET: '', MOBILENET_IMAGENET: 'features.'}[source]
  table, absent = {}, set()
  for path, shape in models.variable_shapes(config).items():
    collection, scope, *parts = path.split('/')
    leaf, module_parts = parts[-1], parts[:-1]
    if collection == 'params' and leaf in ('mean', 'var'):
      module = None
    elif scope == 'trunk':
      module = trunk_key(module_parts)
      module = prefix + module if module else None
    elif scope == 'head' and source != SEGMENTATION:
      absent.add(path)
      continue
    else:
      module = head_map.get('/'.join(module_parts)) if scope == 'head' else None
    if module is None or leaf not in _LEAVES:
      raise UserError(f'{DESCRIPTIONS[source]} weights have nothing for {path}')
    file_shape = (shape[3], shape[2], shape[0], shape[1]) if len(shape) == 4 else shape
    table[f'{module}.{_LEAVES[leaf]}'] = (path, tuple(file_shape))
  return table, frozenset(absent)


def convert(state: dict, config) -> Converted:
  """`Converted` variables of `models.build(config)` from a torchvision state_dict.

  `aux_classifier.*` (segmentation) and `fc.*` (ImageNet) are dropped and
  reported; a classifier of another class count keeps the file's shape (the
  front end re-initialises it with --reinit_classifier, or stops). Anything
  else that does not fit is a UserError naming the keys and shapes.
  """
  state = {k: np.asarray(v) for k, v in state.items() if not k.endswith('num_batches_tracked')}
  source = detect(state)
  trunk = _file_trunk(state, source)
  if trunk != config.model.backbone.name:
    raise UserError(f'this {DESCRIPTIONS[source]} file holds a {trunk} backbone; the config '
                    f'builds {models.describe(config.model)} (configs/voc_*mobilenet*.py and '
                    'configs/voc_*resnet*.py take these files)')
  table, absent = expected_keys(config, source)
  dropped = tuple(sorted(k for k in state if k.startswith(_DROPPED[source])))
  missing = [f'{k} {shape} -> {path}' for k, (path, shape) in table.items() if k not in state]
  unexpected = [f'{k} {tuple(state[k].shape)}' for k in state
                if k not in table and k not in dropped]
  classifiers = models.classifier_paths(config)
  misshaped = [f'{k} -> {path}: file {tuple(state[k].shape)}, model {shape}'
               for k, (path, shape) in table.items()
               if k in state and tuple(state[k].shape) != shape
               and not models.is_classifier(path, classifiers)]
  problems = [f'{what}:\n    ' + '\n    '.join(items) for what, items in (
      ('missing from the file (torchvision key, shape -> our variable)', missing),
      ('shapes differ', misshaped), ('in the file, not in the model', unexpected)) if items]
  if problems:
    raise UserError(f'{DESCRIPTIONS[source]} weights do not fit this config\'s model '
                    f'({models.describe(config.model)}):\n  ' + '\n  '.join(problems))
  flat = {}
  for key, (path, _) in table.items():
    value = np.asarray(state[key], np.float32)
    flat[path] = np.ascontiguousarray(value.transpose(2, 3, 1, 0) if value.ndim == 4 else value)
  variables = variables_tree.unflatten(flat, roots=('params', 'batch_stats'))
  return Converted(variables=variables, absent=absent, source=source,
                   description=DESCRIPTIONS[source], dropped=dropped,
                   classifier_paths=classifiers)
