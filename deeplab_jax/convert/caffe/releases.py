"""Which release a Caffe file is: its layout, classifier names, input convention.

    release = detect_release(read_caffemodel(path), config)
    release.describe()   # 'Caffe DeepLab ResNet (classifier fc1_voc12*)'

The releases and their names are in the package docstring; `file_hint`
says what a file that does not fit the config looks like instead.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Sequence

from deeplab_jax.convert.caffe.names import caffe_shape, check_supported, fit, target_shapes
from deeplab_jax.convert.caffe.reading import Layer, weight_layers
from deeplab_jax.errors import UserError
from deeplab_jax.models import multilayer_widths
from deeplab_jax.models.resnet import BLOCKS

# What the Caffe releases (DeepLab v1/v2, ImageNet VGG-16) were trained on,
# in the model config's terms (0-255 inputs; mean/std in the model's order).
CONVENTION = {'channel_order': 'bgr',
              'pixel_mean': (104.008, 116.669, 122.675),
              'pixel_std': (1.0, 1.0, 1.0)}
_RESNET_CLASSIFIER = re.compile(r'^fc1(?:_(?P<tag>[A-Za-z0-9]+))?_c(?P<index>\d+)$')
_VGG_CLASSIFIER = re.compile(r'^fc8(?:_(?P<tag>[A-Za-z0-9]+))?$')
_VGG_ASPP_CLASSIFIER = re.compile(r'^fc8(?:_(?P<tag>[A-Za-z0-9]+))?_(?P<index>\d+)$')
# Dropped when the file has no DeepLab head.
IMAGENET_CLASSIFIERS = ('fc8', 'fc1000')
# The one 1x1 classifier of a ResNet init file (init.caffemodel: fc1_coco, 91 classes).
_INIT_CLASSIFIER = re.compile(r'^fc1(?:_(?P<tag>[A-Za-z0-9]+))?$')


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
  """How the file's layers map onto `config`'s model (see the package docstring)."""
  check_supported(config)
  return detect_layers(weight_layers(layers, source), config, source, target_shapes(config))


def detect_layers(found, config, source, target) -> Release:
  """`detect_release` of `weight_layers`' name -> Layer, `target`: `target_shapes(config)`."""
  n = len(tuple(config.model.head.rates))
  if config.model.backbone.name == 'resnet':
    present, tag = _classifier_tag(found, _RESNET_CLASSIFIER, source, 'fc1_*_c<k> classifier')
    init = sorted(name for name in found if _INIT_CLASSIFIER.match(name))
    if len(init) > 1:
      raise UserError(f'{source}: more than one fc1 classifier layer: {init}')
    init = init[0] if init and not present else None  # With fc1_*_c<k>: unexpected.
    return Release('resnet', False, present, tag, init_classifier=init)
  if n == 1:
    shared = False
    if 'fc6' in found:
      wanted = caffe_shape(target['params/head/branch0_hidden0/kernel'])
      shared = fit(found['fc6'].blobs[0], wanted) is None
    pattern = _VGG_CLASSIFIER
  else:
    shared = 'fc6_1' not in found and 'fc6' in found
    pattern = _VGG_ASPP_CLASSIFIER
  if shared:
    return Release('vgg16', True, False, None)
  candidates = {name: layer for name, layer in found.items() if name not in ('fc6', 'fc7')}
  present, tag = _classifier_tag(candidates, pattern, source, 'fc8 classifier')
  return Release('vgg16', False, present, tag)


def _classifier_tag(found, pattern, source, what) -> tuple[bool, str | None]:
  """(present, tag) of the classifier layers `pattern` matches."""
  tags = {m['tag'] for m in (pattern.match(name) for name in found) if m}
  if len(tags) > 1:
    names = sorted(n for n in found if pattern.match(n))
    raise UserError(f'{source}: more than one set of {what} layers: {names}')
  return (bool(tags), next(iter(tags)) if tags else None)


def file_hint(found, config) -> str:
  """What the file looks like, where that differs from the config."""
  m = config.model
  if m.backbone.name == 'resnet' and 'conv1_1' in found:
    return ('the file is a VGG-16 (conv1_1): use a VGG config '
            '(configs/voc_largefov.py, configs/voc_vgg_aspp.py)')
  if m.backbone.name == 'vgg16' and ('bn_conv1' in found or 'res2a_branch2a' in found):
    return 'the file is a ResNet (res2a_branch2a): use configs/voc_aspp.py'
  if m.backbone.name == 'vgg16' and not multilayer_widths(m) and 'data_ms' in found:
    return ('the file is a v1 MSc model (data_ms, pool1_ms, ..): configs/voc_msc_largefov.py '
            '/ configs/voc_msc.py (model.multilayer)')
  if m.backbone.name == 'resnet':
    res4 = sum(bool(re.fullmatch(r'res4(?:[a-z]|b\d+)_branch2a', n)) for n in found)
    depth = {blocks[2]: d for d, blocks in BLOCKS.items()}.get(res4)
    if depth and depth != m.backbone.get('depth'):
      return (f'the file\'s res4 has {res4} blocks, a ResNet-{depth}: '
              f'--config.model.backbone.depth={depth}')
  return ''
