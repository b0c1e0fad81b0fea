"""Model parts by name: `config.model.backbone.name`, `config.model.head.name`.

    from deeplab_jax.models import registry

    @registry.register_head('my_head')
    def build_my_head(section, layers, num_classes):
      return MyHead(num_classes, width=section.get('width', 64), layers=layers)

and `--config.model.head.name=my_head` builds it, with no other module edited
(docs/extending.md walks through one; tests/registry_test.py does it).

A builder takes its own config section only (`config.model.backbone` or
`config.model.head`), the shared `layers.Layers` and, for heads, the class
count, and returns a flax module:

  backbone  `__call__(x, train) -> features.Features`, and
            `feature_strides() -> {name: stride}` (callable before init);
  head      `__call__(features, train) -> scores`, a `reads` tuple of the
            feature names it takes, and `classifier_layers()`: the names of
            its submodules that score classes (the optimizer's classifier
            group, the converter's re-initialisable layers).

Built-in parts register themselves from their modules, imported on first use
(`_BUILT_IN`), so nothing is imported that a config does not name.
`check_fields` keeps a section honest: a field its part does not read (a typo,
another backbone's field) is an error, not silently ignored.
"""

from __future__ import annotations

import importlib
from typing import Callable

from deeplab_jax.errors import UserError

KINDS = ('backbone', 'head')
_BUILT_IN = {
    'backbone': {'small': 'deeplab_jax.models.small',
                 'vgg16': 'deeplab_jax.models.vgg',  # DeepLab v1/v2's VGG-16.
                 'vgg16_fcn': 'deeplab_jax.models.fcn_vgg',  # FCN's VGG-16 (pad 100, fc6 7x7).
                 'resnet': 'deeplab_jax.models.resnet',  # Caffe (v2) or torchvision layout.
                 'mobilenet_v3': 'deeplab_jax.models.mobilenet',  # torchvision's MobileNetV3.
                 'unet_encoder': 'deeplab_jax.models.unet'},  # U-Net's contracting path.
    'head': {'aspp': 'deeplab_jax.models.aspp',  # v1/v2 LargeFOV and ASPP (summed).
             'aspp_v3': 'deeplab_jax.models.aspp_v3',  # v3: + 1x1 and image pooling, BN.
             'deeplabv3plus': 'deeplab_jax.models.decoder',  # v3+: ASPP v3 + decoder.
             'fcn': 'deeplab_jax.models.fcn',  # FCN-32s / 16s / 8s.
             'fcn_head': 'deeplab_jax.models.fcn_head',  # torchvision's FCNHead.
             'lraspp': 'deeplab_jax.models.lraspp',  # MobileNetV3's Lite R-ASPP.
             'unet_decoder': 'deeplab_jax.models.unet'},  # U-Net's expanding path.
}
_REGISTRY: dict[str, dict[str, Callable]] = {kind: {} for kind in KINDS}


def _register(kind, name):
  def decorate(builder):
    existing = _REGISTRY[kind].get(name)
    if existing is not None and existing is not builder:
      raise ValueError(f'{kind} {name!r} is already registered ({existing.__module__})')
    _REGISTRY[kind][name] = builder
    return builder
  return decorate


def register_backbone(name: str):
  """Decorator: `builder(section, layers) -> backbone module` under `name`."""
  return _register('backbone', name)


def register_head(name: str):
  """Decorator: `builder(section, layers, num_classes) -> head module` under `name`."""
  return _register('head', name)


def names(kind: str) -> list[str]:
  """Every registered (and built-in) name of `kind`."""
  return sorted(set(_REGISTRY[kind]) | set(_BUILT_IN[kind]))


def lookup(kind: str, name: str) -> Callable:
  """The builder registered for `name`, importing a built-in part on first use."""
  if kind not in KINDS:
    raise ValueError(f'kind {kind!r} is not one of {KINDS}')
  if name not in _REGISTRY[kind] and name in _BUILT_IN[kind]:
    importlib.import_module(_BUILT_IN[kind][name])
  if name not in _REGISTRY[kind]:
    raise UserError(f'model.{kind}.name {name!r} is not one of {names(kind)} '
                    f'(register a new one with registry.register_{kind}; docs/extending.md)')
  return _REGISTRY[kind][name]


def check_fields(section, part: str, allowed) -> None:
  """UserError if `section` has fields other than 'name' and `allowed`."""
  extra = sorted(set(section.keys()) - set(allowed) - {'name'})
  if extra:
    raise UserError(f'{part} does not read {extra}; its fields are {sorted(allowed)}')
