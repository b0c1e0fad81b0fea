"""Any config shrunk for tests and smoke runs: the same parts, tiny sizes, a few steps.

    python train.py --config configs/tiny.py:voc_aspp --workdir /tmp/x   # seconds on a CPU
    config = tiny.get_config('voc_largefov')                              # in a test

The network family stays the config's own (its backbone, head, MSc, MSC,
losses and recipe); its widths shrink (VGG and ResNet to 1/8, ResNet to one
block a stage, MSc to 8), and the data, crops and run length become the
built-in dataset's tiny variant (`synthetic_shapes/tiny`, 32-pixel crops,
4 steps of batch 8). The numbers a tiny run gives mean nothing; that it runs,
converts, resumes and stays unchanged (tests/golden_test.py) is what it shows.
The paper configs carry no test settings: everything a test changes is here.
"""

from __future__ import annotations

import importlib

from configs import parts
from deeplab_jax.data.shapes_render import CLASS_NAMES

# Shrunk backbone fields by backbone name.
BACKBONES = {
    'small': dict(widths=(4, 8, 8), atrous_widths=(8,), atrous_rates=(2,)),
    'vgg16': dict(base_width=8),
    'vgg16_fcn': dict(base_width=8, fc_width=16),  # FCN: VGG / 8, fc6 / fc7 16 wide.
    'unet_encoder': dict(depth=2, base_width=4),  # 32 px crops: strides 1, 2, 4.
    'resnet': dict(depth=14, base_width=8,
               multi_grid=()),  # One block in layer5: v3's (1, 2, 4) cannot apply.
    'mobilenet_v3': dict(width_mult=0.25),  # Every width 8 to 40 (MobileNetV3-Large / 4).
}


def _shrink_aspp(head, backbone):
  if backbone == 'small':
    head.rates = (1, 2)
    head.hidden = (8,)
  elif tuple(head.hidden):
    head.hidden = (16,) * len(tuple(head.hidden))


# DeepLab v3 / v3+ heads: narrow widths; the small
# backbone's stride-4 map is `stage2` where the ResNet's is `layer2`.
def _shrink_aspp_v3(head, backbone):
  head.width = 16
  if backbone == 'small':
    head.rates = (1, 2)


def _shrink_deeplabv3plus(head, backbone):
  _shrink_aspp_v3(head, backbone)
  head.low_level_width = 8
  head.decoder_width = 16
  if backbone == 'small':
    head.reads = ('stage2', 'out')


def _shrink_unet_decoder(head, backbone):
  del backbone
  head.depth = BACKBONES['unet_encoder']['depth']  # As its encoder's.


# Shrinks a head section in place, by head name: fn(section, backbone name).
HEADS = {
    'aspp': _shrink_aspp,
    'aspp_v3': _shrink_aspp_v3,
    'deeplabv3plus': _shrink_deeplabv3plus,
    'fcn': lambda head, backbone: None,  # FCN's score layers have no widths of their own.
    'fcn_head': lambda head, backbone: None,  # torchvision's FCNHead: input width / 4.
    'unet_decoder': _shrink_unet_decoder,
    'lraspp': lambda head, backbone: setattr(head, 'width', 16),
}
# Per config, what its tiny variant sets beyond the shrinking.
SPECIAL = {
    'voc_aspp': {'input.scales': (0.75, 1.0, 1.25)},  # Random scales small crops survive.
    'voc_deeplab_v1': {'input.crop_size': 34,  # 8 k + 2, as the release's 306 ...
                       'input.eval_size': 66},  # ... and 514.
    # Tiny MobileNetV3 from random init amplifies round-off step by step (its
    # hard-swish / hard-sigmoid kinks most: smooth swish / sigmoid cut it 16x at lr 1e-3):
    # the 1- and 8-device runs of tests/families_test.py agree to 1.5e-7 after
    # one step at lr 0.01 and differ by 5e-3 after four (1.8e-4 at lr 1e-3);
    # at 1e-4, 1.2e-7 after four, round-off alone.
    'voc_lraspp_mobilenet_v3_large': {'optim.base_lr': 1e-4},
    'voc_deeplabv3_mobilenet_v3_large': {'optim.base_lr': 1e-4},
}
# Configs whose tiny variant is another's: the tiny dataset replaces theirs
# entirely (Cityscapes' frames, sliding windows and no-MSC recipe among it).
SAME_AS = {'cityscapes_aspp': 'voc_aspp'}


def _tiny_data():
  """(dataset, input) sections of every tiny config."""
  return (parts.dataset('synthetic_shapes', len(CLASS_NAMES), CLASS_NAMES,
                        builder_config='tiny'),
          parts.input_(crop_size=32, eval_size=64, scale_range=(0.9, 1.1),
                       resize='aligned', shuffle_buffer=32, cache=True))


def shrink(config):
  """`config` shrunk in place (see the module docstring); returns it."""
  config.dataset, config.input = _tiny_data()
  m = config.model
  for key, value in BACKBONES[m.backbone.name].items():
    m.backbone[key] = value
  HEADS[m.head.name](m.head, m.backbone.name)
  if 'multilayer' in m:
    m.multilayer.widths = (8, 8)
  if m.batch_norm == 'frozen':
    m.batch_norm = 'train'  # Random init: frozen statistics would be meaningless.
  if tuple(m.pixel_std) == (1.0, 1.0, 1.0):
    m.pixel_std = (58.4, 57.1, 57.4)  # Random init needs unit-scale inputs.
  config.optim.warmup_steps = 0
  config.batch_size = 8
  config.num_train_steps = 4
  config.log_every_steps = 1
  config.checkpoint_every_steps = 2
  config.eval_batch_size = 8
  return config


def get_config(name='shapes'):
  """configs/{name}.py's config, shrunk: `--config configs/tiny.py:{name}`.

  `name` may also be the config module itself (`tiny.get_config(voc_aspp)`).
  """
  name = getattr(name, '__name__', name).rsplit('.', 1)[-1]
  name = SAME_AS.get(name, name)
  try:
    module = importlib.import_module(f'configs.{name}')
  except ModuleNotFoundError:
    raise ValueError(f'configs/tiny.py:{name}: there is no configs/{name}.py') from None
  config = shrink(module.get_config())
  for dotted, value in SPECIAL.get(name, {}).items():
    section, key = dotted.split('.')
    config[section][key] = value
  return config


def override(section, **fields):
  """Sets fields of a config section, '__' stepping into a subsection:

      tiny.override(config.model, batch_norm='frozen', backbone__depth=50,
                    head__rates=(4,), multilayer=parts.multilayer((8, 8)))
  """
  for key, value in fields.items():
    *path, last = key.split('__')
    target = section
    for step in path:
      target = target[step]
    target[last] = value
  return section

