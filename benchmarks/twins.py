"""The PyTorch twins of the model families: one row each in FAMILIES.

A twin is a function (config, flax variables or None) -> torch.nn.Module
computing the same logits as `models.build(config)`, with those weights when
given, built from the independent references in deeplab_jax/testing/
(torch_deeplab, torch_fcn, torch_deeplab_v3, torch_unet) or torchvision's
own modules (its ResNet and MobileNetV3 segmentation models).
benchmarks/models.py times them beside the JAX models;
tests/benchmark_families_test.py checks every twin's logits against ours.
Imports torch inside the builders only.
"""

from __future__ import annotations

import jax
import numpy as np

# -------------------------------------------------------------- PyTorch ----

def _deeplab_twin(config, variables=None):
  """DeepLab v1/v2 in PyTorch (deeplab_jax/testing/torch_deeplab.py: ResNet or
  VGG trunks, the ASPP / LargeFOV head, MSC), with `variables`' weights."""
  from deeplab_jax.testing import torch_deeplab  # pylint: disable=import-outside-toplevel
  m = config.model
  classes = config.dataset.num_classes
  if m.backbone.name == 'resnet':
    net = torch_deeplab.ResNetASPP(classes, m.backbone.get('depth'), m.backbone.get('base_width', 64),
                                   tuple(m.head.rates))
  elif m.backbone.name == 'vgg16':
    net = torch_deeplab.VGGHead(classes, tuple(m.head.rates), m.head.kernel_size,
                                tuple(m.head.hidden), m.backbone.get('pool5a', False), m.backbone.get('base_width', 64),
                                m.head.dropout)  # Issue 17 moved it into the head section.
  else:
    raise ValueError(f'no PyTorch twin for trunk {m.backbone.name!r}')
  if variables is not None:
    torch_deeplab.load_flax_variables(net, variables)
  if tuple(m.input_scales) != (1.0,):
    net = torch_deeplab.MSC(net, tuple(m.input_scales), m.align_corners)
  return net


def _fcn_twin(config, variables=None):
  """FCN-32s / 16s / 8s (8s at once) in PyTorch (deeplab_jax/testing/torch_fcn.py,
  written from the release's net.py), with `variables`' weights (through the
  Caffe layers tests/fcn_test.py loads). Takes the normalised NCHW input the
  flax model's trunk sees, as the other twins; torch_fcn's forward wants RGB
  0-255 NHWC and subtracts its BGR mean itself, so the wrapper adds it back."""
  import torch  # pylint: disable=import-outside-toplevel
  from deeplab_jax.testing import fake_fcn_caffe  # pylint: disable=import-outside-toplevel
  from deeplab_jax.testing import torch_fcn  # pylint: disable=import-outside-toplevel
  m = config.model
  skips, scales = tuple(m.head.skips), tuple(m.head.get('skip_scales', ()))
  variant = {0: '32s', 1: '16s', 2: '8s'}[len(skips)] + ('-atonce' if scales else '')
  net = torch_fcn.FCN(variant, config.dataset.num_classes, width=m.backbone.get('base_width', 64),
                      fc_width=m.backbone.get('fc_width', 4096))
  if variables is not None:
    net.load_caffe(fake_fcn_caffe.layers_from_flax(variables, config))
  else:
    net.set_bilinear()
  for name, param in net.named_parameters():  # Frozen as configs/parts.py FCN_FROZEN.
    if 'up' in name.split('.')[0] or name.startswith('scale_'):
      param.requires_grad_(False)
  mean = torch.tensor(torch_fcn.MEAN_BGR, dtype=torch.float32)

  class FCNTwin(torch.nn.Module):

    def __init__(self):
      super().__init__()
      self.fcn = net

    def forward(self, x):  # x: (B, 3, H, W) BGR minus the mean, as flax's input.
      rgb = (x.permute(0, 2, 3, 1) + mean).flip(-1)
      return self.fcn(rgb.detach().cpu().numpy())

  return FCNTwin()


def _torchvision_trunk(config):
  """A ResNet in torchvision's layout (stride in the 3x3, its Bottleneck
  blocks, torchvision module names) at `config`'s depth, width and per-block
  rates (models/resnet.py stage_plan: output stride, multi-grid, dilation
  style), as layer1 (stem) .. layer5, torchvision's layer1..layer4 names inside."""
  from torch import nn  # pylint: disable=import-outside-toplevel
  from deeplab_jax.models import resnet  # pylint: disable=import-outside-toplevel
  from deeplab_jax.testing import torchvision_models  # pylint: disable=import-outside-toplevel
  tv = torchvision_models.resnet()
  b = config.model.backbone
  width = b.get('base_width', 64)
  plan = resnet.stage_plan(b.depth, b.get('output_stride', 8), tuple(b.get('multi_grid', ())),
                           b.get('dilation_style', 'deeplab_v2'))

  class Trunk(nn.Module):

    def __init__(self):
      super().__init__()
      self.conv1 = nn.Conv2d(3, width, 7, 2, 3, bias=False)
      self.bn1 = nn.BatchNorm2d(width)
      self.relu = nn.ReLU(inplace=True)
      self.maxpool = nn.MaxPool2d(3, 2, 1, ceil_mode=b.get('stem_ceil_mode', False))
      cin = width
      for stage, (stride, rates) in enumerate(plan, start=1):
        planes = width * 2 ** (stage - 1)
        blocks = []
        for i, rate in enumerate(rates):
          s = stride if i == 0 else 1
          down = None
          if i == 0:
            down = nn.Sequential(nn.Conv2d(cin, planes * 4, 1, s, bias=False),
                                 nn.BatchNorm2d(planes * 4))
          blocks.append(tv.Bottleneck(cin, planes, s, down, dilation=rate))
          cin = planes * 4
        self.add_module(f'layer{stage}', nn.Sequential(*blocks))
      self.out_channels = cin

    def stages(self, x):
      """{'layer1' (stem) .. 'layer5': map}, our trunk's stage names."""
      maps = {'layer1': self.maxpool(self.relu(self.bn1(self.conv1(x))))}
      for i in range(1, 5):
        maps[f'layer{i + 1}'] = getattr(self, f'layer{i}')(maps[f'layer{i}'])
      return maps

  return Trunk()


def _load_torchvision_trunk(trunk, variables, config):
  """Flax `variables`' trunk into `trunk` by deeplab_jax/convert/torchvision's
  key table (the inverse of the checkpoint converter's mapping)."""
  from deeplab_jax.convert.torchvision import mapping  # pylint: disable=import-outside-toplevel
  table, _ = mapping.expected_keys(config, mapping.IMAGENET)
  _load_by_table(trunk, variables, table)


def _load_by_table(module, variables, table, prefix=''):
  """Copies flax `variables` into `module` by a {torch key: (flax path, shape)}
  table (its keys under `prefix` only, the prefix dropped), transposing kernels."""
  import torch  # pylint: disable=import-outside-toplevel
  flat = {}
  for collection in ('params', 'batch_stats'):
    for path, value in jax.tree_util.tree_leaves_with_path(variables.get(collection, {})):
      flat['/'.join([collection] + [str(getattr(k, 'key', k)) for k in path])] = value
  state = module.state_dict()
  for key, (path, _) in table.items():
    if not key.startswith(prefix):
      continue
    name = key[len(prefix):]
    value = np.asarray(flat[path], np.float32)
    value = value.transpose(3, 2, 0, 1) if value.ndim == 4 else value  # HWIO -> OIHW.
    assert tuple(state[name].shape) == value.shape, (key, path, value.shape)
    state[name] = torch.from_numpy(np.ascontiguousarray(value))
  module.load_state_dict(state)


def _torchvision_twin(config, variables=None):
  """torchvision's fcn_resnet50 / deeplabv3_resnet50 (any depth / width):
  torchvision's own modules (models/resnet.py's Bottleneck, segmentation's
  FCNHead / ASPP, its FCN / DeepLabV3 wrapper, aux_classifier None) at the
  config's widths; at base_width 64 the keys and shapes are those of
  segmentation.fcn_resnet50(aux_loss=False) (tests/benchmark_families_test.py).
  Returns torchvision's `out`: logits upsampled to the input size (bilinear,
  align_corners False) inside forward, as torchvision does; ours stop at stride 8."""
  from deeplab_jax.convert.torchvision import mapping  # pylint: disable=import-outside-toplevel
  from deeplab_jax.testing import torchvision_models  # pylint: disable=import-outside-toplevel
  seg = torchvision_models.segmentation()
  fcn_mod, v3_mod = seg.fcn, seg.deeplabv3
  from torchvision.models import _utils  # pylint: disable=import-outside-toplevel
  m, classes = config.model, config.dataset.num_classes
  trunk = _torchvision_trunk(config)
  cin = trunk.out_channels
  if m.head.name == 'fcn_head':
    head = fcn_mod.FCNHead(cin, classes)
    wrapper = fcn_mod.FCN
  elif m.head.name == 'aspp_v3' and m.head.get('extra_conv', False):
    head = _deeplab_head(cin, m.head, classes)
    wrapper = v3_mod.DeepLabV3
  else:
    raise ValueError(f'no torchvision twin for head {m.head.name!r}')
  backbone = _utils.IntermediateLayerGetter(trunk, return_layers={'layer4': 'out'})
  if variables is not None:
    table, _ = mapping.expected_keys(config, mapping.SEGMENTATION)
    _load_by_table(backbone, variables, table, 'backbone.')
    _load_by_table(head, variables, table, 'classifier.')

  return _out_only(wrapper(backbone, head, None))


def _deeplab_head(in_channels, head, classes):
  """torchvision's DeepLabHead (segmentation/deeplabv3.py) at `head`'s width,
  rates and dropout: its ASPP, the 3x3 conv + BN + ReLU, the 1x1 scores."""
  from torch import nn  # pylint: disable=import-outside-toplevel
  from deeplab_jax.testing import torchvision_models  # pylint: disable=import-outside-toplevel
  w = head.width
  aspp = torchvision_models.segmentation().deeplabv3.ASPP(in_channels, tuple(head.rates), w)
  net = nn.Sequential(aspp, nn.Conv2d(w, w, 3, padding=1, bias=False), nn.BatchNorm2d(w),
                      nn.ReLU(), nn.Conv2d(w, classes, 1))
  net[0].project[3].p = head.dropout
  return net


def _out_only(net):
  """torchvision's segmentation model returning its `out` tensor, not {'out': ...}."""
  from torch import nn  # pylint: disable=import-outside-toplevel

  class Out(nn.Module):

    def __init__(self):
      super().__init__()
      self.net = net

    def forward(self, x):
      return self.net(x)['out']

  return Out()


def _torchvision_mobilenet_twin(config, variables=None):
  """torchvision's lraspp_mobilenet_v3_large / deeplabv3_mobilenet_v3_large at
  the config's variant, width_mult, reduced tail and head width: its own
  MobileNetV3 (mobilenetv3.py's `_mobilenet_v3_conf`), LRASPP or DeepLabV3 with
  DeepLabHead's layers; loaded by the converter's key table. Returns `out`,
  upsampled to the input inside forward as torchvision does."""
  from deeplab_jax.convert.torchvision import mapping  # pylint: disable=import-outside-toplevel
  from deeplab_jax.testing import torchvision_models  # pylint: disable=import-outside-toplevel
  seg, tv = torchvision_models.segmentation(), torchvision_models.mobilenet_v3()
  from torchvision.models import _utils  # pylint: disable=import-outside-toplevel
  m, h, classes = config.model, config.model.head, config.dataset.num_classes
  b = m.backbone
  setting, last = tv._mobilenet_v3_conf(  # pylint: disable=protected-access
      f'mobilenet_v3_{b.get("variant", "large")}', width_mult=b.get('width_mult', 1.0),
      reduced_tail=b.get('reduced_tail', False), dilated=b.get('output_stride', 16) == 16)
  features = tv.MobileNetV3(setting, last).features
  index = lambda name: str(len(features) - 1) if name == 'out' else name[len('block'):]
  if h.name == 'lraspp':
    low, high = (index(r) for r in h.reads)
    backbone = _utils.IntermediateLayerGetter(features, {low: 'low', high: 'high'})
    net = seg.lraspp.LRASPP(backbone, features[int(low)].out_channels,
                            features[int(high)].out_channels, classes, h.width)
  elif h.name == 'aspp_v3' and h.get('extra_conv', False):
    head = _deeplab_head(features[-1].out_channels, h, classes)
    backbone = _utils.IntermediateLayerGetter(features, {index(h.reads[0]): 'out'})
    net = seg.deeplabv3.DeepLabV3(backbone, head, None)
  else:
    raise ValueError(f'no torchvision MobileNetV3 twin for head {h.name!r}')
  if variables is not None:
    table, _ = mapping.expected_keys(config, mapping.SEGMENTATION)
    _load_by_table(net, variables, table)
  return _out_only(net)


def _deeplab_v3_twin(config, variables=None):
  """DeepLab v3 / v3+ heads in PyTorch (deeplab_jax/testing/torch_deeplab_v3.py,
  written from the papers: ASPPv3, DeepLabV3Plus, loaded by its load_flax) over
  the config's torchvision-layout ResNet (output stride 16, multi-grid:
  _torchvision_trunk, loaded by the converter's key table)."""
  from torch import nn  # pylint: disable=import-outside-toplevel
  from deeplab_jax.testing import torch_deeplab_v3  # pylint: disable=import-outside-toplevel
  m, classes = config.model, config.dataset.num_classes
  trunk = _torchvision_trunk(config)
  h = m.head
  reads = tuple('layer5' if r == 'out' else r for r in h.reads)
  if h.name == 'aspp_v3':
    head = torch_deeplab_v3.ASPPv3(trunk.out_channels, classes, tuple(h.rates), h.width,
                                   h.image_pooling, h.dropout, h.get('extra_conv', False),
                                   h.get('separable', False))
  elif h.name == 'deeplabv3plus':
    low = trunk.out_channels // 2 ** (5 - int(reads[0][5:]))
    head = torch_deeplab_v3.DeepLabV3Plus(low, trunk.out_channels, classes, tuple(h.rates),
                                          h.width, h.image_pooling, h.dropout,
                                          h.low_level_width, h.decoder_width,
                                          h.align_corners, h.get('separable', False))
  else:
    raise ValueError(f'no DeepLab v3 twin for head {h.name!r}')
  if variables is not None:
    _load_torchvision_trunk(trunk, variables, config)
    torch_deeplab_v3.load_flax(head, {c: variables[c]['head'] for c in ('params', 'batch_stats')
                                      if 'head' in variables.get(c, {})}, head_only=True)

  class V3(nn.Module):

    def __init__(self):
      super().__init__()
      self.trunk, self.head = trunk, head

    def forward(self, x):
      maps = self.trunk.stages(x)
      return self.head(*[maps[r] for r in reads])

  return V3()


def _unet_twin(config, variables=None):
  """U-Net in PyTorch (deeplab_jax/testing/torch_unet.py, written from the
  paper), with `variables`' weights (its load_flax_variables)."""
  from deeplab_jax.testing import torch_unet  # pylint: disable=import-outside-toplevel
  m = config.model
  net = torch_unet.TorchUNet(config.dataset.num_classes, m.backbone.depth, m.backbone.base_width,
                             m.backbone.padding, m.batch_norm != 'none',
                             m.backbone.get('mirror', False) and m.backbone.padding == 'valid')
  if variables is not None:
    torch_unet.load_flax_variables(net, variables)
  return net


# One row per model family: (configs/<name>.py, its PyTorch twin: a function
# (config, flax variables or None) -> torch.nn.Module computing the same
# logits, with those weights when given). A new family is one line here.
# Every twin takes the normalised NCHW input (the config's channel order,
# pixel mean and std applied), as the flax trunk sees it.
FAMILIES = (
    ('voc_aspp', _deeplab_twin),
    ('voc_largefov', _deeplab_twin),
    ('voc_fcn8s', _fcn_twin),
    ('voc_deeplabv3', _deeplab_v3_twin),
    ('voc_deeplabv3plus', _deeplab_v3_twin),
    # torchvision's: the PyTorch side upsamples its logits to the input size inside forward.
    ('voc_fcn_resnet50', _torchvision_twin),
    ('voc_deeplabv3_resnet50', _torchvision_twin),
    ('voc_lraspp_mobilenet_v3_large', _torchvision_mobilenet_twin),
    ('voc_deeplabv3_mobilenet_v3_large', _torchvision_mobilenet_twin),
    ('shapes_unet', _unet_twin),
)


def _parts(config):
  """What picks a config's FAMILIES row: backbone and head names, and for
  aspp_v3 its extra 3x3 conv (torchvision's DeepLabHead has it, v3's has not)."""
  m = config.model
  return m.backbone.name, m.head.name, bool(m.head.get('extra_conv', False))


def twin_for(config):
  """The twin of the FAMILIES row whose config has `config`'s backbone and head."""
  import importlib  # pylint: disable=import-outside-toplevel
  for name, twin in FAMILIES:
    if _parts(importlib.import_module(f'configs.{name}').get_config()) == _parts(config):
      return twin
  raise ValueError(f'no PyTorch twin for backbone / head {_parts(config)}; add the '
                   'family to benchmarks/models.py FAMILIES')


def torch_model(config, variables=None, twin=None):
  """The PyTorch twin of `config.model` (`twin`, default: `twin_for(config)`).

  With flax `variables`, the twin gets the same weights (same numbers, so
  neither side meets different value ranges).
  """
  return (twin or twin_for(config))(config, variables)
