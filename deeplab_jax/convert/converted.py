"""What every converter gives the front end, and the input convention check.

`caffe.convert` and `pytorch.to_flax` return a `Converted`; the front end
(`deeplab_jax.convert.assemble`) fills what it lacks and decides about a
classifier of another class count. `convention_differences` compares a
config with the input convention the weights were trained on.
"""

from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass
class Converted:
  """What a source file gives: variables by path, and what it lacks on purpose.

  `variables`: {'params': nested dict, 'batch_stats': nested dict} of numpy
  arrays, in the model's tree (some leaves may be absent, see below).
  `absent`: '/'-joined paths ('params/head/branch0_classifier/kernel') the
  file does not have by design (ImageNet weights have no DeepLab classifier).
  `source`: what the file is: a description for Caffe ('DeepLab v2 ResNet-101
  (Caffe)'), the source name for PyTorch (`pytorch.RESNET`, `pytorch.VGG16`).
  `dropped`: layers or keys of the file left out on purpose (Caffe: 'name
  (type): shapes' of an ImageNet classifier, the COCO init's fc1_coco;
  PyTorch: the keys of torchvision's ImageNet classifier).
  PyTorch's converter also fills `description` (the source in words),
  `classifier_paths` (the model's classifier leaves), `classifier_mismatch`
  (the file's classifier scores `file_num_classes` classes, not the config's).
  """
  variables: dict
  absent: frozenset = frozenset()
  source: str = ''
  dropped: tuple = ()
  description: str = ''
  classifier_paths: tuple[str, ...] = ()
  classifier_mismatch: bool = False
  file_num_classes: int | None = None


def convention_differences(config, convention: dict, description: str) -> list[str]:
  """Lines saying where `config.model` departs from the weights' input convention.

  `convention`: model field -> the value the weights take ('channel_order':
  'bgr', 'pixel_mean': (104.008, ...)). Empty when they agree; each line
  gives the override that would fix it.
  """
  out = []
  for field, want in convention.items():
    have = config.model[field]
    if isinstance(want, (str, bool)):
      same, flag = have == want, str(want)
    else:
      same = len(have) == len(want) and np.allclose(have, want, rtol=0, atol=1e-3)
      flag = ','.join(f'{v:g}' for v in want)
    if not same:
      shown = have if isinstance(have, (str, bool)) else tuple(have)
      out.append(f'model.{field} is {shown!r}; {description} weights take '
                 f'--config.model.{field}={flag}')
  return out
