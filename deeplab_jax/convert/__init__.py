"""Official DeepLab weights (Caffe, PyTorch) as flax variables and checkpoints.

    python -m deeplab_jax.convert --input train_iter_20000.caffemodel \
        --config configs/voc_aspp.py --output weights/voc_aspp_caffe
    python evaluate.py --config configs/voc_aspp.py --workdir weights/voc_aspp_caffe
    python train.py --config configs/voc_aspp.py --workdir runs/x \
        --config.init_from=weights/voc_aspp_caffe   # fine-tune / train from them

or as a library call:

    variables = convert.from_file('deeplabv2_resnet101_msc-vocaug.pth', config)
    logits = models.build(config).apply(variables, images_uint8_nhwc, train=False)

`variables` is `{'params': ..., 'batch_stats': ...}` (numpy) for
`deeplab_jax.models.build(config)`; `apply(..., train=False)` returns float32
logits NHWC at output stride 8 (321 -> 41). Input convention: images are
uint8 (or float) RGB, 0-255, NHWC; the model itself reorders channels
(`config.model.channel_order`), subtracts `pixel_mean` and divides by
`pixel_std`. Caffe models (the DeepLab releases, ImageNet VGG) were trained on
BGR 0-255 minus (104.008, 116.669, 122.675): `channel_order='bgr'`,
`pixel_std=(1, 1, 1)`, as the VOC configs have. The PyTorch port kept that
convention; torchvision's ImageNet VGG takes RGB normalised by the ImageNet
mean/std instead (see `pytorch/`).

Formats are detected from the file: `.caffemodel` (protobuf, parsed without
Caffe: `caffe/`) or a `torch.save` checkpoint (`pytorch/`, needs PyTorch).
Layers the file does not have on purpose (the classifier of ImageNet weights,
of the COCO-pretrained DeepLab v2 `init.caffemodel`, whose 91-class 1x1
`fc1_coco` is dropped: `keep_init_classifier=True` keeps it for a one-branch
1x1 head instead) are initialised freshly from `config.seed`; a classifier for another number of
classes (a 21-class file into a 60-class config) is re-initialised only with
`reinit_classifier=True`, otherwise it is an error. With
`config.model.crf_layer` the file is read for the network without the layer
and the layer's kernel weights (params/crf/*) start from `config.crf`.
"""

from __future__ import annotations

import hashlib
import os
import zipfile

import jax
import ml_collections
import numpy as np

from deeplab_jax import models
from deeplab_jax import variables_tree
from deeplab_jax.convert import caffe
from deeplab_jax.convert.caffe import fcn as caffe_fcn  # FCN releases (issue 18).
from deeplab_jax.convert import pytorch
from deeplab_jax.convert import torchvision
from deeplab_jax.convert.converted import Converted, convention_differences
from deeplab_jax.errors import UserError
from deeplab_jax.models import crf_layer
from deeplab_jax.variables_tree import flatten, unflatten

CAFFE, PYTORCH = 'caffe', 'pytorch'
# Used here and by tests and callers as convert.<name>; defined in the modules named above.
__all__ = ['CAFFE', 'PYTORCH', 'Converted', 'assemble', 'convention_differences',
           'convert_to_workdir', 'detect', 'flatten', 'from_file', 'init_variables',
           'input_warnings', 'is_classifier', 'read', 'sha256', 'unflatten', 'without_crf_layer']


def detect(path: str) -> str:
  """CAFFE or PYTORCH, from the file's name and first bytes."""
  if not os.path.isfile(path):
    raise UserError(f'no such file: {path}')
  if path.endswith('.caffemodel'):
    return CAFFE
  if zipfile.is_zipfile(path):  # torch.save's format since PyTorch 1.6.
    return PYTORCH
  with open(path, 'rb') as f:
    head = f.read(2)
  if head[:1] == b'\x80':  # A pickle: the legacy torch.save format.
    return PYTORCH
  if head[:1] == b'\x0a':  # Protobuf field 1 (NetParameter.name), length-delimited.
    return CAFFE
  raise UserError(f'{path}: neither a Caffe .caffemodel nor a PyTorch checkpoint '
                  '(torch.save); which file is it?')


def is_classifier(path: str, config) -> bool:
  """Whether variable `path` is in a layer that scores classes, as
  `config`'s model parts declare them (the optimizer's classifier group)."""
  return models.is_classifier(path, models.classifier_paths(config))


def init_variables(config, seed=None):
  """Freshly initialised variables of `config`'s model (numpy)."""
  model = models.build(config)
  size = 65
  images = np.zeros((1, size, size, 3), np.uint8)
  seed = config.seed if seed is None else seed
  variables = jax.jit(lambda x: model.init(jax.random.key(seed), x, train=False))(images)
  return jax.device_get({'params': variables['params'],
                         'batch_stats': variables.get('batch_stats', {})})


def assemble(converted: Converted, config, reinit_classifier=False, path='',
             fresh_variables=None):
  """The model's full variables: the file's, plus fresh leaves where allowed.

  Every leaf of the model must come from the file with its exact shape, be
  absent from the file by design (then initialised; the CRF layer's weights
  always are), or be a classifier of
  another class count with `reinit_classifier` (then initialised). Anything
  else is a UserError listing the offending names. `fresh_variables`: the
  model's initialised variables if the caller has them (default: initialised
  here from `config.seed`).
  """
  if fresh_variables is None:
    fresh_variables = init_variables(config)
  target = flatten(fresh_variables)
  found = flatten(converted.variables)
  wrong = {m.path: m for m in variables_tree.mismatches(variables_tree.shapes(found),
                                                         variables_tree.shapes(target))}
  classifiers = models.classifier_paths(config)
  out, missing, misshaped, reinit = {}, [], [], []
  for name, fresh in target.items():
    mismatch = wrong.get(name)
    if mismatch is None:
      out[name] = np.asarray(found[name], np.float32)
    elif mismatch.problem == variables_tree.MISSING:
      if name in converted.absent or crf_layer.is_layer_variable(name):
        out[name] = fresh
        reinit.append(name)
      else:
        missing.append(name)
    elif models.is_classifier(name, classifiers) and reinit_classifier:
      out[name] = fresh
      reinit.append(name)
    else:
      misshaped.append(f'{name}: file {mismatch.have}, model {mismatch.want}')
  unexpected = sorted(m.path for m in wrong.values() if m.problem == variables_tree.UNEXPECTED)
  problems = []
  if misshaped:
    hint = ''
    if all(models.is_classifier(m.split(':')[0], classifiers) for m in misshaped):
      hint = (f' (the file was trained for another number of classes than '
              f'config.dataset.num_classes={config.dataset.num_classes}; '
              'pass --reinit_classifier to start that layer afresh)')
    problems.append('shapes differ' + hint + ':\n  ' + '\n  '.join(misshaped))
  if missing:
    problems.append('the model needs these, the file lacks them:\n  ' + '\n  '.join(missing))
  if unexpected:
    problems.append('the file has these, the model does not:\n  ' + '\n  '.join(unexpected))
  if problems:
    raise UserError(f'{path or "the weights"} ({converted.source}) do not fit '
                    f'the model of this config:\n' + '\n'.join(problems))
  return unflatten(out), sorted(reinit)


def input_warnings(path: str, converted: Converted, config) -> list[str]:
  """Where the config feeds the weights other inputs than they were trained on."""
  if detect(path) == CAFFE:
    convention = caffe_fcn.CONVENTION if caffe_fcn.handles(config) else caffe.CONVENTION
    return convention_differences(config, convention, 'Caffe')
  if converted.source not in pytorch.SOURCES:
    return []
  return pytorch.convention_differences(config, converted.source)


def without_crf_layer(config):
  """`config` with model.crf_layer off (a copy), or `config` where it is off:
  the network official files hold (they have no CRF layer weights)."""
  if not config.model.get('crf_layer', False):
    return config
  plain = ml_collections.ConfigDict(config.to_dict())
  plain.model.crf_layer = False
  return plain


def read(path: str, config, keep_init_classifier: bool = False) -> Converted:
  """The file's variables in the model's tree (no checks against the model yet).

  A CRF layer (`config.model.crf_layer`) is left out: `assemble` starts it
  from the config. `keep_init_classifier`: a Caffe init file's own
  classifier (fc1_coco) goes into a one-branch 1x1 head instead of being
  dropped (see `caffe.py`); no effect on other files.
  """
  config = without_crf_layer(config)
  fmt = detect(path)
  if fmt == CAFFE and caffe_fcn.handles(config):  # FCN's own releases (caffe/fcn.py).
    return caffe_fcn.convert(caffe.read_caffemodel(path), config, source=path)
  if fmt == CAFFE:
    return caffe.convert(caffe.read_caffemodel(path), config, source=path,
                         keep_init_classifier=keep_init_classifier)
  state = pytorch.read_state_dict(path)
  if torchvision.is_torchvision(state):  # torchvision's ResNets and segmentation models.
    return torchvision.convert(state, config)
  return pytorch.convert(state, config)


def from_file(path: str, config, reinit_classifier: bool = False,
              keep_init_classifier: bool = False) -> dict:
  """{'params', 'batch_stats'} for `models.build(config)` from an official file."""
  variables, _ = assemble(read(path, config, keep_init_classifier), config,
                          reinit_classifier, path)
  return variables


def sha256(path: str) -> str:
  digest = hashlib.sha256()
  with open(path, 'rb') as f:
    for chunk in iter(lambda: f.read(1 << 20), b''):
      digest.update(chunk)
  return digest.hexdigest()


def convert_to_workdir(path: str, config, output: str,
                       reinit_classifier: bool = False,
                       keep_init_classifier: bool = False) -> dict:
  """Converts `path` and writes it as step 0 of a run in `output`.

  `output/checkpoints/0/` holds a TrainState of `config` (the converted
  params and BatchNorm statistics, a fresh optimizer state), so
  `evaluate.py --workdir output` scores it and `train.py --workdir output`
  (or `--config.init_from=output` with another workdir) trains from it.
  `output/converted.json` records the source, what was initialised afresh
  and which layers of the file were dropped. Returns that record.
  """
  from deeplab_jax import checkpoint  # pylint: disable=import-outside-toplevel
  from deeplab_jax import optim  # pylint: disable=import-outside-toplevel
  from deeplab_jax import sharding  # pylint: disable=import-outside-toplevel
  from deeplab_jax import train_step  # pylint: disable=import-outside-toplevel
  import json  # pylint: disable=import-outside-toplevel

  if os.path.isdir(checkpoint.checkpoint_dir(output)) and os.listdir(
      checkpoint.checkpoint_dir(output)):
    raise UserError(f'{output} already holds checkpoints; give an empty or new --output')
  converted = read(path, config, keep_init_classifier)
  mesh = sharding.make_mesh()
  tx, _ = optim.from_config(config)
  # Its params come from config.seed, as init_variables' do: the fresh leaves.
  state = train_step.create_train_state(config, models.build(config), tx, mesh)
  variables, reinit = assemble(converted, config, reinit_classifier, path,
                               fresh_variables=jax.device_get(state.variables()))
  state = train_step.with_variables(state, variables, mesh)
  mngr = checkpoint.manager(output)
  checkpoint.save(mngr, 0, state)
  mngr.wait_until_finished()
  mngr.close()
  record = {
      'input': os.path.abspath(path), 'sha256': sha256(path),
      'format': detect(path), 'source': converted.source,
      'converted_tensors': len(flatten(variables)) - len(reinit),
      'initialised_afresh': reinit,
      'dropped_from_file': list(getattr(converted, 'dropped', ())),
      'num_params': int(sum(np.size(v) for v in flatten(variables['params']).values())),
      'input_convention': {'channel_order': config.model.channel_order,
                           'pixel_mean': list(config.model.pixel_mean),
                           'pixel_std': list(config.model.pixel_std)},
      'input_warnings': input_warnings(path, converted, config),
  }
  with open(os.path.join(output, 'converted.json'), 'w') as f:
    json.dump(record, f, indent=2)
  return record
