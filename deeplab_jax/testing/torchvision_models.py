"""torchvision's model code without its compiled ops: the tests' reference.

    from deeplab_jax.testing import torchvision_models
    segmentation = torchvision_models.segmentation()   # torchvision.models.segmentation
    net = segmentation.fcn_resnet50(weights=None, weights_backbone=None)
    resnet = torchvision_models.resnet()               # torchvision.models.resnet
    mobilenet = torchvision_models.mobilenet_v3()      # torchvision.models.mobilenetv3

torchvision's top-level `__init__` loads its C++/CUDA extension (`torchvision
.ops` registers `torchvision::nms`), and the CPU-only PyPI wheel of the
release pinned beside torch (Makefile's TORCHVISION) fails there on these
machines ("operator torchvision::nms does not exist"). Its model code
(`torchvision/models/resnet.py`, `models/segmentation/*.py`) needs none of
those ops. So a stand-in module named `torchvision`, whose `__path__` is the
installed package's directory, goes into `sys.modules` before the submodules
are imported: Python then finds `torchvision.models...` in the real files
but never runs the real top-level `__init__`. Installed with
`pip install --no-deps torchvision==<version>` (make install does it).

`require()` is for tests: it skips them, with the reason, when torchvision
(or torch) is not installed, as `pytest.importorskip` does; anything else
that fails is an error, never a silent pass.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
import types

_NAME = 'torchvision'


def installed_dir() -> str | None:
  """The installed torchvision package's directory, or None (not imported)."""
  spec = importlib.util.find_spec(_NAME) if _NAME not in sys.modules else None
  if spec is None:
    module = sys.modules.get(_NAME)
    paths = list(getattr(module, '__path__', [])) if module is not None else []
    return paths[0] if paths else None
  if not spec.submodule_search_locations:
    return None
  return list(spec.submodule_search_locations)[0]


def _stand_in():
  """`sys.modules['torchvision']`: the real one if already imported, else the stand-in."""
  if _NAME in sys.modules:
    return sys.modules[_NAME]
  directory = installed_dir()
  if directory is None:
    raise ImportError('torchvision is not installed (make install, or '
                      'pip install --no-deps torchvision==0.28.0)')
  module = types.ModuleType(_NAME)
  module.__path__ = [directory]
  module.__file__ = os.path.join(directory, '__init__.py')
  module.__package__ = _NAME
  sys.modules[_NAME] = module
  return module


def _load(name: str):
  import torch  # pylint: disable=import-outside-toplevel,unused-import
  _stand_in()
  return importlib.import_module(f'{_NAME}.{name}')


def segmentation():
  """`torchvision.models.segmentation` (fcn_resnet50, deeplabv3_resnet101, ...)."""
  return _load('models.segmentation')


def resnet():
  """`torchvision.models.resnet` (ResNet, Bottleneck, resnet50, ...)."""
  return _load('models.resnet')


def mobilenet_v3():
  """`torchvision.models.mobilenetv3` (mobilenet_v3_large, _small, `_mobilenet_v3_conf`)."""
  return _load('models.mobilenetv3')


def randomise_batch_norm(net, seed=None):
  """`net` in eval mode with every BatchNorm2d's weight, bias and running
  statistics drawn at random (reseeding torch with `seed` first, unless None),
  so a conversion that swapped or dropped them shows in the outputs."""
  import torch  # pylint: disable=import-outside-toplevel
  if seed is not None:
    torch.manual_seed(seed)
  with torch.no_grad():
    for module in net.modules():
      if isinstance(module, torch.nn.BatchNorm2d):
        module.weight.uniform_(0.5, 1.5)
        module.bias.uniform_(-0.2, 0.2)
        module.running_mean.uniform_(-0.2, 0.2)
        module.running_var.uniform_(0.5, 1.5)
  return net.eval()


def require():
  """(segmentation, resnet) modules, or the calling test module is skipped
  (pytest.skip) with the reason when torch or torchvision is not installed."""
  import pytest  # pylint: disable=import-outside-toplevel
  try:
    import torch  # pylint: disable=import-outside-toplevel,unused-import
  except ImportError:
    pytest.skip('torch is not installed (pip install -e .[dev])', allow_module_level=True)
  if installed_dir() is None:
    pytest.skip('torchvision is not installed (make install, or pip install --no-deps '
                'torchvision==0.28.0)', allow_module_level=True)
  return segmentation(), resnet()
