"""PyTorch keys -> our variables: the key tables, `to_flax` and its checks.

    table = expected_keys(config)          # PyTorch key -> Target(our paths, file shape)
    converted = to_flax(read_state_dict(path), config)

See the package docstring for the two sources' keys and the contract.
"""

from __future__ import annotations

import re
from typing import NamedTuple

import numpy as np

from deeplab_jax import models
from deeplab_jax import variables_tree
from deeplab_jax.convert.converted import Converted
from deeplab_jax.convert.decimate import decimate_fc
from deeplab_jax.convert.pytorch.reading import strip_prefix
from deeplab_jax.convert.pytorch.sources import (DESCRIPTIONS, RESNET, VGG16, VGG_FC6, VGG_FC7,
                                                 detect_source)
from deeplab_jax.errors import UserError

# torchvision's VGG-16 `features` Sequential: index of each conv (ReLUs and
# max pools take the indices in between).
_VGG_FEATURES = {
    'conv1_1': 0, 'conv1_2': 2,
    'conv2_1': 5, 'conv2_2': 7,
    'conv3_1': 10, 'conv3_2': 12, 'conv3_3': 14,
    'conv4_1': 17, 'conv4_2': 19, 'conv4_3': 21,
    'conv5_1': 24, 'conv5_2': 26, 'conv5_3': 28,
}
_VGG_DROPPED = ('classifier.6.weight', 'classifier.6.bias')  # ImageNet's 1000 classes.
_VGG_FC_WIDTH = 4096  # At base_width 64; scaled with it like the convs.
_VGG_POOL5_SIZE = 7  # fc6 reads a 7x7 pool5 map.
_RESNET_LEAVES = {'kernel': 'weight', 'bias': 'bias', 'scale': 'weight',
                  'mean': 'running_mean', 'var': 'running_var'}
_MAX_LISTED = 20


class Target(NamedTuple):
  """Where one PyTorch key goes: our '/'-joined paths, and its shape in the file."""
  paths: tuple[str, ...]
  shape: tuple[int, ...]


# ----------------------------------------------------------- key tables ----

def _source_for(config) -> str:
  trunk = config.model.backbone.name
  if trunk == 'resnet':
    return RESNET
  if trunk == 'vgg16':
    return VGG16
  raise UserError(f'model.backbone.name {trunk!r} has no PyTorch weights to convert; '
                  'use a resnet or vgg16 config')


def _oihw(shape):
  """Our HWIO kernel shape as PyTorch's OIHW."""
  return (shape[3], shape[2], shape[0], shape[1]) if len(shape) == 4 else shape


def _resnet_key(path: str) -> str | None:
  """Our path -> the port's key (None: no counterpart)."""
  parts = path.split('/')
  collection, scope, leaf = parts[0], parts[1], parts[-1]
  name = _RESNET_LEAVES.get(leaf)
  if name is None:
    return None
  if scope == 'trunk':
    if collection == 'params' and leaf in ('mean', 'var'):
      return None
    return '.'.join(parts[2:-1] + [name])
  match = re.fullmatch(r'branch(\d+)_classifier', parts[2]) if scope == 'head' else None
  if match and len(parts) == 4 and leaf in ('kernel', 'bias'):
    return f'aspp.c{match.group(1)}.{name}'
  return None


def _vgg_key(path: str, shapes: dict, config) -> tuple[str, tuple[int, ...]] | str | None:
  """Our path -> (torchvision key, its shape), 'absent', or None (no counterpart)."""
  parts = path.split('/')
  if parts[0] != 'params':
    return None
  leaf = parts[-1]
  name = {'kernel': 'weight', 'bias': 'bias'}.get(leaf)
  if parts[1] == 'multilayer':
    return 'absent'
  if name is None or len(parts) != 4:
    return None
  if parts[1] == 'trunk' and parts[2] in _VGG_FEATURES:
    return f'features.{_VGG_FEATURES[parts[2]]}.{name}', _oihw(shapes[path])
  match = re.fullmatch(r'branch\d+_(hidden(\d+)|classifier)', parts[2])
  if parts[1] != 'head' or not match:
    return None
  if match.group(1) == 'classifier':
    return 'absent'
  width = _VGG_FC_WIDTH * config.model.backbone.get('base_width', 64) // 64
  if match.group(2) == '0':
    pool5 = shapes['params/trunk/conv5_3/bias'][0]
    shape = (width, pool5 * _VGG_POOL5_SIZE ** 2) if name == 'weight' else (width,)
    return f'{VGG_FC6}.{name}', shape
  if match.group(2) == '1':
    return f'{VGG_FC7}.{name}', (width, width) if name == 'weight' else (width,)
  return None


class _Plan(NamedTuple):
  table: dict  # torch key -> Target
  absent: frozenset
  classifiers: tuple[str, ...]
  dropped: tuple[str, ...]
  shapes: dict  # our path -> shape


def _plan(config, source: str) -> _Plan:
  expected = _source_for(config)
  if source != expected:
    raise UserError(f'the file holds {DESCRIPTIONS[source]} weights but '
                    f'model.backbone.name is {config.model.backbone.name!r}; they need a '
                    f'{"resnet" if source == RESNET else "vgg16"} config')
  shapes = models.variable_shapes(config)
  if source == VGG16 and len(config.model.head.hidden) != 2:
    raise UserError(
        'VGG-16\'s fc6 / fc7 initialise a head with two hidden layers '
        f'(model.head.hidden, e.g. 1024,1024); this config has {tuple(config.model.head.hidden)}')
  paths, absent, unmapped = {}, set(), []
  for path, shape in shapes.items():
    if source == RESNET:
      key = _resnet_key(path)
      mapped = None if key is None else (key, _oihw(shape))
    else:
      mapped = _vgg_key(path, shapes, config)
    if mapped == 'absent':
      absent.add(path)
    elif mapped is None:
      unmapped.append(path)
    else:
      key, file_shape = mapped
      old = paths.get(key)
      paths[key] = Target((old.paths if old else ()) + (path,), tuple(file_shape))
  if unmapped:
    raise UserError(f'{DESCRIPTIONS[source]} weights have nothing for these '
                    f'variables of the config\'s model: {_listing(unmapped)}')
  classifiers = tuple(p for p in shapes if p.startswith('params/head/')
                      and p.split('/')[2].endswith('_classifier'))
  dropped = _VGG_DROPPED if source == VGG16 else ()
  return _Plan(paths, frozenset(absent), classifiers, dropped, shapes)


def expected_keys(config, source: str | None = None) -> dict[str, Target]:
  """PyTorch key -> Target(our paths, shape in the file) for `config`'s model.

      table = expected_keys(voc_aspp.get_config())
      table['layer1.conv1.conv.weight']
      # Target(paths=('params/trunk/layer1/conv1/conv/kernel',), shape=(64, 3, 7, 7))

  Only shapes are computed (jax.eval_shape), so full-size models are cheap.
  `source` defaults to the one config.model.backbone.name takes. The keys are exactly
  those `to_flax` reads; VGG's classifier.6 is in neither.
  """
  return _plan(config, source or _source_for(config)).table


# ----------------------------------------------------------- converting ----

def _natural(key: str):
  """Sort key putting layer2.block2 before layer2.block10."""
  return [int(part) if part.isdigit() else part for part in re.split(r'(\d+)', key)]


def _listing(items) -> str:
  items = list(items)
  shown = items[:_MAX_LISTED]
  more = f'\n    ... and {len(items) - len(shown)} more' if len(items) > len(shown) else ''
  return ''.join(f'\n    {item}' for item in shown) + more


def _classifier_count(state, plan: _Plan, misshaped) -> int | None:
  """The file's class count when every mis-shaped key is a classifier's output size."""
  classifier_keys = {k for k, t in plan.table.items()
                     if all(p in plan.classifiers for p in t.paths)}
  if set(misshaped) != classifier_keys:
    return None
  counts = set()
  for key in misshaped:
    have, want = state[key].shape, plan.table[key].shape
    if len(have) != len(want) or have[1:] != want[1:]:
      return None
    counts.add(have[0])
  return counts.pop() if len(counts) == 1 else None


def _values(state, plan: _Plan, config, source) -> dict[str, np.ndarray]:
  """Our path -> converted array."""
  flat = {}
  for key, target in plan.table.items():
    if key.startswith((VGG_FC6 + '.', VGG_FC7 + '.')) and source == VGG16:
      continue
    value = np.asarray(state[key], np.float32)
    if value.ndim == 4:
      value = value.transpose(2, 3, 1, 0)  # OIHW -> HWIO.
    for path in target.paths:
      flat[path] = np.array(value, np.float32)  # A contiguous copy each.
  if source == VGG16:
    hidden0, hidden1 = (int(w) for w in config.model.head.hidden)
    fc6_w = np.asarray(state[f'{VGG_FC6}.weight'], np.float32)
    width, inputs = fc6_w.shape
    side = _VGG_POOL5_SIZE
    fc6 = decimate_fc(fc6_w.reshape(width, inputs // side ** 2, side, side),
                      state[f'{VGG_FC6}.bias'], out_channels=hidden0,
                      kernel_size=int(config.model.head.kernel_size))
    fc7_w = np.asarray(state[f'{VGG_FC7}.weight'], np.float32)
    fc7 = decimate_fc(fc7_w.reshape(*fc7_w.shape, 1, 1), state[f'{VGG_FC7}.bias'],
                      out_channels=hidden1, kernel_size=1, in_channels=hidden0)
    for layer, (kernel, bias) in ((VGG_FC6, fc6), (VGG_FC7, fc7)):
      for name, value in (('weight', kernel), ('bias', bias)):
        for path in plan.table[f'{layer}.{name}'].paths:
          flat[path] = np.array(value, np.float32)
  return flat


def to_flax(state: dict, config, allow_classifier_mismatch: bool = False) -> Converted:
  """`Converted` variables of `models.build(config)` from a PyTorch state_dict.

      converted = to_flax(read_state_dict(path), config)
      model.apply(converted.variables, images, train=False)

  `state`: {key: array} (numpy or anything np.asarray takes), e.g. from
  `read_state_dict`; 'module.' and the MSC wrapper's 'base.' prefixes are
  dropped. With `allow_classifier_mismatch`, a classifier for another number
  of classes comes back with the file's shapes and `classifier_mismatch` set;
  otherwise that is a UserError. See the module docstring for the contract.
  """
  for prefix in ('module.', 'base.'):  # DataParallel, then MSC.
    state = strip_prefix(dict(state), prefix)
  state = {k: np.asarray(v) for k, v in state.items()
           if not k.endswith('num_batches_tracked')}
  source = detect_source(state)
  plan = _plan(config, source)
  description = DESCRIPTIONS[source]

  missing = sorted((k for k in plan.table if k not in state), key=_natural)
  unexpected = sorted((k for k in state if k not in plan.table and k not in plan.dropped),
                      key=_natural)
  misshaped = sorted((k for k in plan.table
                      if k in state and tuple(state[k].shape) != plan.table[k].shape),
                     key=_natural)
  file_classes = _classifier_count(state, plan, misshaped) if misshaped else None
  num_classes = config.dataset.num_classes
  if file_classes is not None and not (missing or unexpected):
    if not allow_classifier_mismatch:
      raise UserError(
          f'the file\'s classifier scores {file_classes} classes, the config '
          f'{num_classes} (dataset.num_classes): re-initialise the classifier '
          '(the converter\'s --reinit_classifier) or use a config with '
          f'{file_classes} classes')
    misshaped = []
  problems = []
  if missing:
    problems.append('missing from the file (PyTorch key, its shape -> our variable):' + _listing(
        f'{k} {plan.table[k].shape} -> {", ".join(plan.table[k].paths)}' for k in missing))
  if misshaped:
    problems.append('shapes differ (PyTorch key -> our variable: file / expected):' + _listing(
        f'{k} -> {", ".join(plan.table[k].paths)}: {tuple(state[k].shape)} / '
        f'{plan.table[k].shape}' for k in misshaped))
  if unexpected:
    problems.append('in the file, not in the model:' + _listing(
        f'{k} {tuple(state[k].shape)}' for k in unexpected))
  if problems:
    m = config.model
    raise UserError(
        f'{description} weights do not fit this config\'s model ({models.describe(m)}, '
        f'num_classes {num_classes}):\n  ' + '\n  '.join(problems))

  flat = _values(state, plan, config, source)
  mismatch = file_classes is not None
  # Every leaf, against the model's own init: its tree and shapes exactly, the
  # absent leaves (and a classifier for another class count) aside.
  wrong = [m for m in variables_tree.mismatches(variables_tree.shapes(flat), plan.shapes)
           if not (m.problem == variables_tree.MISSING and m.path in plan.absent)
           and not (m.problem == variables_tree.SHAPE and mismatch
                    and m.path in plan.classifiers)]
  assert not wrong and plan.absent.isdisjoint(flat), (wrong, sorted(plan.absent & set(flat)))
  collections = tuple(sorted({p.split('/')[0] for p in plan.shapes}))
  variables = variables_tree.unflatten(flat, roots=collections)
  return Converted(variables=variables, absent=plan.absent, source=source,
                   description=description, classifier_paths=plan.classifiers,
                   classifier_mismatch=mismatch,
                   file_num_classes=file_classes if mismatch else None,
                   dropped=tuple(k for k in plan.dropped if k in state))


def convert(state: dict, config) -> Converted:
  """`to_flax` for the front end (`deeplab_jax.convert.read`), which decides
  itself what to do with a classifier of another class count.

      converted = convert(read_state_dict(path), config)
  """
  return to_flax(state, config, allow_classifier_mismatch=True)
