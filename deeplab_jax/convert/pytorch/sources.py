"""Which PyTorch source a state_dict is, and the input convention it was trained on.

    source = detect_source(state)               # RESNET or VGG16, from the keys
    convention_differences(config, source)      # lines with the overrides to use
"""

from __future__ import annotations

from deeplab_jax.convert import converted
from deeplab_jax.errors import UserError

RESNET = 'deeplab_pytorch_resnet'
VGG16 = 'torchvision_vgg16'
SOURCES = (RESNET, VGG16)
DESCRIPTIONS = {
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
# torchvision VGG-16's fc6 / fc7: indices in its `classifier` Sequential.
VGG_FC6, VGG_FC7 = 'classifier.0', 'classifier.3'


def detect_source(state) -> str:
  """RESNET or VGG16 from a state_dict's keys (prefixes already stripped)."""
  keys = set(state)
  if any(k.startswith(('layer1.conv1.conv.', 'layer2.block1.')) for k in keys):
    return RESNET
  if 'features.0.weight' in keys and f'{VGG_FC6}.weight' in keys:
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
  return converted.convention_differences(config, input_convention(source),
                                          DESCRIPTIONS[source])
