"""PyTorch checkpoints (`torch.save` files) as flax variables for our models.

    from deeplab_jax.convert import pytorch
    state = pytorch.read_state_dict('deeplabv2_resnet101_msc-vocaug-20000.pth')
    converted = pytorch.to_flax(state, config)   # config: configs/voc_aspp.py
    logits = models.build(config).apply(converted.variables, images, train=False)

Two sources, told apart by their keys:

`deeplab_pytorch_resnet`: the PyTorch DeepLab v2 port (kazuto1011/deeplab-pytorch)
  ResNet-101 (or 50/152) + ASPP, with or without its MSC wrapper's `base.`
  prefix. Its names are ours (`models/resnet.py`), so the map is one to one:

    layer1.conv1.conv.weight              params/trunk/layer1/conv1/conv/kernel
    layer1.conv1.bn.weight / .bias        params/trunk/layer1/conv1/bn/scale / bias
    layer1.conv1.bn.running_mean / _var   batch_stats/trunk/layer1/conv1/bn/mean / var
    layer{2-5}.block{j}.{reduce,conv3x3,increase,shortcut}.{conv,bn}.*   the same below
    aspp.c{i}.weight / .bias              params/head/branch{i}_classifier/kernel / bias

  Config: configs/voc_aspp.py (depth, width and `head_rates` must match the
  file). Input convention: the port kept Caffe's (BGR, 0-255 minus
  (104.008, 116.669, 122.675), no scaling), which the VOC configs carry. The
  port resizes with `interpolate(scale_factor=...)`, i.e.
  `model.align_corners=False`; the Caffe models and the VOC configs use True.

`torchvision_vgg16`: torchvision's ImageNet VGG-16 (`features.*`, `classifier.*`)
  for the VGG configs (voc_largefov.py with its v1 overrides, voc_vgg_aspp.py):

    features.{0,2 | 5,7 | 10,12,14 | 17,19,21 | 24,26,28}   conv1_1 .. conv5_3
    classifier.0 (4096 x 25088 = 512*7*7)  fc6, decimated (`decimate.decimate_fc`)
                                           to model.head_hidden[0] outputs and a
                                           head_kernel_size kernel -> every
                                           params/head/branch{i}_hidden0
    classifier.3 (4096 x 4096)             fc7, rows and columns decimated ->
                                           every params/head/branch{i}_hidden1
    classifier.6 (1000 x 4096)             ImageNet's classifier: not used

  Every ASPP branch starts from the same fc6 / fc7, as the paper does. The
  classifiers (`branch{i}_classifier`) and v1's MSc layers (`multilayer/*`)
  are not in the file: they are reported `absent` for the caller to
  initialise. Input convention: torchvision's VGG takes RGB scaled to 0-1
  and normalised by the ImageNet mean / std, i.e. for our 0-255 inputs
  `channel_order='rgb'`, `pixel_mean=(123.675, 116.28, 103.53)`,
  `pixel_std=(58.395, 57.12, 57.375)`; the VOC configs carry Caffe's BGR
  convention instead, so override them:

    --config.model.channel_order=rgb --config.model.pixel_mean=123.675,116.28,103.53
    --config.model.pixel_std=58.395,57.12,57.375

  (`input_convention(source)` gives these values, `convention_differences`
  compares them with a config.) torchvision's ResNets are not accepted: their
  stride sits in the 3x3 conv, not the 1x1 of the Caffe layout used here.

Contract of `to_flax(state, config)` -> `Converted`:
  `variables`: {'params': ..., 'batch_stats': ...} (no 'batch_stats' for
      VGG, as `models.build(config).init` has none) nested dicts of float32
      numpy arrays holding every leaf of the model, with exactly its shape,
      except the two cases below. Checked leaf by leaf against
      `jax.eval_shape` of the model's init.
  `absent`: frozenset of '/'-joined paths ('params/head/branch0_classifier/
      kernel') the file lacks by design; those leaves are not in `variables`
      and the caller initialises them.
  `classifier_mismatch`: True when the file's classifier scores another
      number of classes (`file_num_classes`) than config.dataset.num_classes.
      Only with `to_flax(..., allow_classifier_mismatch=True)` (otherwise a
      UserError); `variables` then holds the file's classifier leaves at the
      `classifier_paths` with the file's shapes, and the caller re-initialises
      them (when asked to) or stops.
  `classifier_paths`, `dropped` (file keys left out on purpose), `source`,
      `description`: for the caller's messages and records.
Anything else (a key missing, unexpected or of another shape) is a UserError
naming the PyTorch key, our path and both shapes. `convert(state, config)` is
`to_flax` for the front end (`deeplab_jax.convert.read`), which makes the
class-count decision itself.
"""

from __future__ import annotations

import dataclasses
import re
from typing import NamedTuple

import numpy as np

from deeplab_jax import models
from deeplab_jax.convert.decimate import decimate_fc
from deeplab_jax.errors import UserError

RESNET = 'deeplab_pytorch_resnet'
VGG16 = 'torchvision_vgg16'
SOURCES = (RESNET, VGG16)
_DESCRIPTIONS = {
    RESNET: 'DeepLab v2 ResNet (PyTorch port, kazuto1011/deeplab-pytorch)',
    VGG16: 'torchvision VGG-16 (ImageNet)',
}
_CONVENTIONS = {
    RESNET: {'channel_order': 'bgr', 'pixel_mean': (104.008, 116.669, 122.675),
             'pixel_std': (1.0, 1.0, 1.0),
             'align_corners': False},  # The port's F.interpolate calls.
    VGG16: {'channel_order': 'rgb', 'pixel_mean': (123.675, 116.28, 103.53),
            'pixel_std': (58.395, 57.12, 57.375)},
}
# Keys under which training scripts store the state_dict, tried in this order.
STATE_DICT_KEYS = ('state_dict', 'model', 'model_state')
# torchvision's VGG-16 `features` Sequential: index of each conv (ReLUs and
# max pools take the indices in between).
_VGG_FEATURES = {
    'conv1_1': 0, 'conv1_2': 2,
    'conv2_1': 5, 'conv2_2': 7,
    'conv3_1': 10, 'conv3_2': 12, 'conv3_3': 14,
    'conv4_1': 17, 'conv4_2': 19, 'conv4_3': 21,
    'conv5_1': 24, 'conv5_2': 26, 'conv5_3': 28,
}
_VGG_FC6, _VGG_FC7 = 'classifier.0', 'classifier.3'
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


@dataclasses.dataclass
class Converted:
  """`to_flax`'s result; see the module docstring for the contract."""
  variables: dict
  absent: frozenset = frozenset()
  source: str = ''  # RESNET or VGG16.
  description: str = ''
  classifier_paths: tuple[str, ...] = ()
  classifier_mismatch: bool = False
  file_num_classes: int | None = None
  dropped: tuple[str, ...] = ()


# ------------------------------------------------------------- reading ----

def read_state_dict(path: str) -> dict[str, np.ndarray]:
  """{key: float32 array} from a `torch.save` file (needs PyTorch, CPU is enough).

      state = read_state_dict('deeplabv2_resnet101_msc-vocaug-20000.pth')

  Takes a plain state_dict or a dict holding one under 'state_dict', 'model'
  or 'model_state'; drops a DataParallel 'module.' prefix and anything that is
  not a floating-point tensor (e.g. BatchNorm's `num_batches_tracked`).
  Loads with `weights_only=True`: no code in the file is run.
  """
  try:
    import torch  # pylint: disable=import-outside-toplevel
  except ImportError as e:
    raise UserError(f'reading .pth files needs PyTorch: pip install torch '
                    f'(CPU build is enough); cannot read {path}') from e
  try:
    loaded = torch.load(path, map_location='cpu', weights_only=True)
  except FileNotFoundError as e:
    raise UserError(f'no such file: {path}') from e
  except Exception as e:  # pylint: disable=broad-except
    first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    raise UserError(f'{path}: torch.load(weights_only=True) cannot read it as a '
                    f'checkpoint of tensors: {first}') from e

  def tensors(obj):
    if not isinstance(obj, dict):
      return {}
    return {str(k): v for k, v in obj.items() if isinstance(v, torch.Tensor)}

  found = tensors(loaded)
  if not found:
    for key in STATE_DICT_KEYS:
      found = tensors(loaded.get(key)) if isinstance(loaded, dict) else {}
      if found:
        break
  if not found:
    what = (f'top-level keys {sorted(map(str, loaded))[:10]}' if isinstance(loaded, dict)
            else f'a {type(loaded).__name__}')
    raise UserError(f'{path}: no state_dict found: it holds {what}; neither its top '
                    f'level nor {list(STATE_DICT_KEYS)} holds tensors')
  state = {k: v.detach().to(torch.float32).numpy() for k, v in found.items()
           if v.is_floating_point()}
  return strip_prefix(state, 'module.')


def strip_prefix(state: dict, prefix: str) -> dict:
  """`state` without `prefix` on its keys, when every key has it."""
  if state and all(k.startswith(prefix) for k in state):
    return {k[len(prefix):]: v for k, v in state.items()}
  return state


# ---------------------------------------------------------- the source ----

def detect_source(state) -> str:
  """RESNET or VGG16 from a state_dict's keys (prefixes already stripped)."""
  keys = set(state)
  if any(k.startswith(('layer1.conv1.conv.', 'layer2.block1.')) for k in keys):
    return RESNET
  if 'features.0.weight' in keys and f'{_VGG_FC6}.weight' in keys:
    if any(k.endswith('running_mean') for k in keys):
      raise UserError('this looks like torchvision\'s VGG-16 with BatchNorm (vgg16_bn); '
                      'DeepLab\'s VGG-16 has none: use the plain vgg16 weights')
    return VGG16
  if 'conv1.weight' in keys and any(k.startswith(('bn1.', 'layer1.0.')) for k in keys):
    raise UserError(
        'this looks like a torchvision ResNet (conv1, bn1, layer1.0.conv1, ...). '
        'It cannot be converted: its bottlenecks stride in the 3x3 conv, while '
        'DeepLab\'s Caffe-layout ResNet strides in the 1x1 (reduce), so the '
        'features differ. Use DeepLab\'s own init.caffemodel (ImageNet / COCO '
        'pretrained, the paper\'s start) or a checkpoint of the PyTorch port '
        '(kazuto1011/deeplab-pytorch, e.g. deeplabv2_resnet101_msc-cocopretrained.pth)')
  sample = sorted(keys)[:8]
  raise UserError(
      f'unknown checkpoint layout (keys such as {sample}); known: the PyTorch '
      'DeepLab v2 port\'s ResNet (layer1.conv1.conv.weight, layer2.block1.reduce..., '
      'aspp.c0.weight) and torchvision\'s VGG-16 (features.0.weight, classifier.0.weight)')


def input_convention(source: str) -> dict:
  """{'channel_order', 'pixel_mean', 'pixel_std'} the weights of `source` expect.

      input_convention(VGG16)['pixel_mean']  # (123.675, 116.28, 103.53)

  In our models' terms (0-255 inputs; mean and std in the model's channel order).
  """
  if source not in _CONVENTIONS:
    raise UserError(f'unknown source {source!r}; one of {list(SOURCES)}')
  return dict(_CONVENTIONS[source])


def convention_differences(config, source: str) -> list[str]:
  """Lines saying where `config.model` departs from `source`'s input convention.

      for line in convention_differences(config, VGG16): print(line)

  Empty when they agree; each line gives the override that would fix it.
  """
  from deeplab_jax import convert  # pylint: disable=import-outside-toplevel
  return convert.convention_differences(config, input_convention(source),
                                        _DESCRIPTIONS[source])


# ----------------------------------------------------------- key tables ----

def _source_for(config) -> str:
  trunk = config.model.trunk
  if trunk == 'resnet':
    return RESNET
  if trunk == 'vgg16':
    return VGG16
  raise UserError(f'model.trunk {trunk!r} has no PyTorch weights to convert; '
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
  width = _VGG_FC_WIDTH * config.model.base_width // 64
  if match.group(2) == '0':
    pool5 = shapes['params/trunk/conv5_3/bias'][0]
    shape = (width, pool5 * _VGG_POOL5_SIZE ** 2) if name == 'weight' else (width,)
    return f'{_VGG_FC6}.{name}', shape
  if match.group(2) == '1':
    return f'{_VGG_FC7}.{name}', (width, width) if name == 'weight' else (width,)
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
    raise UserError(f'the file holds {_DESCRIPTIONS[source]} weights but '
                    f'model.trunk is {config.model.trunk!r}; they need a '
                    f'{"resnet" if source == RESNET else "vgg16"} config')
  shapes = models.variable_shapes(config)
  if source == VGG16 and len(config.model.head_hidden) != 2:
    raise UserError(
        'VGG-16\'s fc6 / fc7 initialise a head with two hidden layers '
        f'(model.head_hidden, e.g. 1024,1024); this config has {tuple(config.model.head_hidden)}')
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
    raise UserError(f'{_DESCRIPTIONS[source]} weights have nothing for these '
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
  `source` defaults to the one config.model.trunk takes. The keys are exactly
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


def _set(tree: dict, path: str, value) -> None:
  *parents, leaf = path.split('/')
  for key in parents:
    tree = tree.setdefault(key, {})
  tree[leaf] = value


def _values(state, plan: _Plan, config, source) -> dict[str, np.ndarray]:
  """Our path -> converted array."""
  flat = {}
  for key, target in plan.table.items():
    if key.startswith((_VGG_FC6 + '.', _VGG_FC7 + '.')) and source == VGG16:
      continue
    value = np.asarray(state[key], np.float32)
    if value.ndim == 4:
      value = value.transpose(2, 3, 1, 0)  # OIHW -> HWIO.
    for path in target.paths:
      flat[path] = np.array(value, np.float32)  # A contiguous copy each.
  if source == VGG16:
    hidden0, hidden1 = (int(w) for w in config.model.head_hidden)
    fc6_w = np.asarray(state[f'{_VGG_FC6}.weight'], np.float32)
    width, inputs = fc6_w.shape
    side = _VGG_POOL5_SIZE
    fc6 = decimate_fc(fc6_w.reshape(width, inputs // side ** 2, side, side),
                      state[f'{_VGG_FC6}.bias'], out_channels=hidden0,
                      kernel_size=int(config.model.head_kernel_size))
    fc7_w = np.asarray(state[f'{_VGG_FC7}.weight'], np.float32)
    fc7 = decimate_fc(fc7_w.reshape(*fc7_w.shape, 1, 1), state[f'{_VGG_FC7}.bias'],
                      out_channels=hidden1, kernel_size=1, in_channels=hidden0)
    for layer, (kernel, bias) in ((_VGG_FC6, fc6), (_VGG_FC7, fc7)):
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
  description = _DESCRIPTIONS[source]

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
        f'{description} weights do not fit this config\'s model (trunk {m.trunk}, '
        f'resnet_depth {m.resnet_depth}, base_width {m.base_width}, head_rates '
        f'{tuple(m.head_rates)}, head_hidden {tuple(m.head_hidden)}, num_classes '
        f'{num_classes}):\n  ' + '\n  '.join(problems))

  flat = _values(state, plan, config, source)
  mismatch = file_classes is not None
  for path, shape in plan.shapes.items():  # Every leaf, against the model's own init.
    if path in plan.absent:
      assert path not in flat, path
      continue
    if mismatch and path in plan.classifiers:
      continue
    assert flat[path].shape == shape, (path, flat[path].shape, shape)
  assert set(flat) == set(plan.shapes) - plan.absent, sorted(set(flat) ^ set(plan.shapes))
  variables = {collection: {} for collection in sorted({p.split('/')[0] for p in plan.shapes})}
  for path, value in flat.items():
    _set(variables, path, value)
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
