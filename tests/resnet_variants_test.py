"""models/resnet.py's torchvision layout against torchvision's own ResNet.

torchvision.models.resnet.ResNet(Bottleneck, [2, 2, 2, 2]) (full widths: its
stem and stage widths are fixed; two blocks a stage so that the dilation
style's first-block rule and multi-grid-free rates are exercised) with random
weights and BatchNorm statistics, converted by convert/torchvision, gives
torchvision's layer1..layer4 as our layer2..layer5 within 1e-4 relative at an
odd, non-square size, at output strides 8, 16 and 32; the floor-mode stem
gives torchvision's sizes where Caffe's ceil mode does not.
"""

import numpy as np
import pytest

from deeplab_jax.testing import torchvision_models

_, tv_resnet = torchvision_models.require()

import jax  # pylint: disable=g-import-not-at-top
import torch  # pylint: disable=g-import-not-at-top

from configs import voc_fcn_resnet50  # pylint: disable=g-import-not-at-top
from deeplab_jax.convert import torchvision as tv_convert  # pylint: disable=g-import-not-at-top
from deeplab_jax.models import resnet  # pylint: disable=g-import-not-at-top
from deeplab_jax.models.layers import Layers  # pylint: disable=g-import-not-at-top

SIZE = (37, 45)
DILATE = {8: [False, True, True], 16: [False, False, True], 32: [False, False, False]}


def _torch_features(net, x):
  with torch.no_grad():
    h = net.maxpool(net.relu(net.bn1(net.conv1(torch.from_numpy(x.transpose(0, 3, 1, 2))))))
    out = {'layer1': h}
    for i in range(1, 5):
      h = getattr(net, f'layer{i}')(h)
      out[f'layer{i + 1}'] = h
  return {k: v.numpy().transpose(0, 2, 3, 1) for k, v in out.items()}


@pytest.fixture(scope='module')
def x():
  return np.random.default_rng(0).standard_normal((1, *SIZE, 3)).astype(np.float32)


@pytest.mark.parametrize('output_stride', [8, 16, 32])
def test_torchvision_layout_equals_torchvision(output_stride, x):
  torch.manual_seed(output_stride)
  net = tv_resnet.ResNet(tv_resnet.Bottleneck, [2, 2, 2, 2],
                         replace_stride_with_dilation=DILATE[output_stride])
  torchvision_models.randomise_batch_norm(net)  # The draws follow the seed above.
  config = voc_fcn_resnet50.get_config()
  config.model.backbone.depth = 26
  config.model.backbone.output_stride = output_stride
  variables = tv_convert.convert(net.state_dict(), config).variables
  trunk = {c: variables[c]['trunk'] for c in ('params', 'batch_stats')}
  model = resnet.ResNet(26, stride_in_1x1=False, output_stride=output_stride,
                        dilation_style='torchvision', stem_ceil_mode=False,
                        layers=Layers(batch_norm='train'))
  ours = jax.jit(lambda v, a: dict(model.apply(v, a, train=False)))(trunk, x)
  theirs = _torch_features(net, x)
  assert model.feature_strides()['out'] == output_stride
  for name, want in theirs.items():
    got = np.asarray(ours[name])
    assert got.shape == want.shape, name
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * np.abs(want).max(), err_msg=name)


def test_stem_pool_sizes_differ_where_the_modes_do():
  # 40 -> conv 20 -> floor mode 10 (PyTorch), ceil mode 11 (Caffe).
  x = np.zeros((1, 40, 41, 3), np.float32)
  floor = resnet.Stem(8, ceil_mode=False, layers=Layers(batch_norm='train'))
  ceil = resnet.Stem(8, ceil_mode=True, layers=Layers(batch_norm='train'))
  v = floor.init(jax.random.key(0), x, train=False)
  pool = torch.nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
  want = pool(torch.zeros(1, 1, 20, 21)).shape[2:]
  assert floor.apply(v, x, train=False).shape[1:3] == tuple(want) == (10, 11)
  assert ceil.apply(v, x, train=False).shape[1:3] == (11, 11)


def test_default_plan_is_deeplab_v2():
  plan = resnet.stage_plan(101)
  assert [s for s, _ in plan] == [1, 2, 1, 1]
  assert plan[2][1] == (2,) * 23 and plan[3][1] == (4, 4, 4)
  assert resnet.stage_plan(50, 16, (1, 2, 4))[3] == (1, (2, 4, 8))
