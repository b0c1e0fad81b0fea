"""DeepLab v3's ASPP head (models/aspp_v3.py) against a PyTorch reference
written from the paper (deeplab_jax/testing/torch_deeplab_v3.py): equal within
1e-4 relative in float32, on odd and non-square feature maps, at test (running
statistics) and in training (batch statistics, the pooled 1x1 branch's BN
included); the parameter names the torchvision converter relies on; a whole
tiny ResNet + ASPP v3 DeepLab against the torch ResNet under the same head.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from configs import parts
from configs import tiny
from configs import voc_aspp
from deeplab_jax import models
from deeplab_jax.errors import UserError
from deeplab_jax.models import aspp_v3
from deeplab_jax.models.features import Features
from deeplab_jax.models.layers import Layers
from deeplab_jax.testing import torch_deeplab
from deeplab_jax.testing import torch_deeplab_v3

CIN, CLASSES, RATES = 12, 5, (2, 3, 5)


def _rel_err(got, expected):
  return float(np.abs(np.asarray(got) - expected).max() / np.abs(expected).max())


def _perturbed(variables, seed):
  """Every variable random (BN variances positive), so no layer is an identity."""
  leaves, treedef = jax.tree_util.tree_flatten_with_path(variables)
  rng = np.random.default_rng(seed)
  out = []
  for path, leaf in leaves:
    name = str(getattr(path[-1], 'key', path[-1]))
    if name == 'var':
      value = rng.uniform(0.5, 1.5, leaf.shape)
    elif name == 'scale':
      value = 1 + 0.2 * rng.normal(size=leaf.shape)
    elif name == 'kernel':
      value = rng.normal(0, 1 / np.sqrt(np.prod(leaf.shape[:-1])), leaf.shape)
    else:
      value = 0.2 * rng.normal(size=leaf.shape)
    out.append(jnp.asarray(value, jnp.float32))
  return jax.tree_util.tree_unflatten(treedef, out)


def _nchw(x):
  return torch.from_numpy(np.ascontiguousarray(np.asarray(x).transpose(0, 3, 1, 2)))


def _nhwc(t):
  return t.detach().numpy().transpose(0, 2, 3, 1)


def _head(**fields):
  kwargs = dict(num_classes=CLASSES, rates=RATES, width=8, dropout=0.0,
                layers=Layers(batch_norm='train'))
  kwargs.update(fields)
  return aspp_v3.ASPPv3(**kwargs)


@functools.lru_cache(maxsize=None)
def _apply(head):
  return jax.jit(lambda v, x, train: head.apply(
      v, Features({'out': x}, {'out': 16}), train=train,
      mutable=['batch_stats'] if train else False), static_argnums=2)


def _case(extra_conv, image_pooling, shape, seed, separable=False):
  head = _head(extra_conv=extra_conv, image_pooling=image_pooling, separable=separable)
  x = np.random.default_rng(seed).normal(size=shape).astype(np.float32)
  variables = _perturbed(head.init(jax.random.key(0), Features({'out': x}, {'out': 16}),
                                   train=False), seed)
  reference = torch_deeplab_v3.ASPPv3(CIN, CLASSES, RATES, width=8, image_pooling=image_pooling,
                                      dropout=0.0, extra_conv=extra_conv, separable=separable)
  torch_deeplab_v3.load_flax(reference, variables, head_only=True)
  return head, x, variables, reference


@pytest.mark.parametrize('train', [False, True])
def test_separable_head_matches_torch_reference(train):
  """v3+'s atrous separable branches: depthwise -> BN -> ReLU -> pointwise -> BN -> ReLU."""
  head, x, variables, reference = _case(False, True, (2, 7, 10, CIN), seed=5, separable=True)
  assert set(variables['params']['branch1']) == {'depthwise', 'depthwise_bn', 'pointwise',
                                                 'pointwise_bn'}
  assert variables['params']['branch1']['depthwise']['kernel'].shape == (3, 3, 1, CIN)
  got = _apply(head)(variables, x, train)
  got = got[0] if train else got
  with torch.no_grad():
    expected = _nhwc(reference.train(train)(_nchw(x)))
  assert _rel_err(got, expected) < 1e-4


@pytest.mark.parametrize('extra_conv,image_pooling,shape', [
    (False, True, (2, 9, 13, CIN)),   # The paper's head, odd non-square map.
    (True, True, (1, 7, 4, CIN)),     # torchvision's DeepLabHead (extra 3x3 conv).
    (False, False, (2, 5, 11, CIN)),  # Without the image-level branch.
])
def test_head_matches_torch_reference_at_test(extra_conv, image_pooling, shape):
  head, x, variables, reference = _case(extra_conv, image_pooling, shape, seed=1)
  got = _apply(head)(variables, x, False)
  with torch.no_grad():
    expected = _nhwc(reference.eval()(_nchw(x)))
  assert got.shape == (shape[0], shape[1], shape[2], CLASSES)
  assert _rel_err(got, expected) < 1e-4


def test_head_matches_torch_reference_in_training():
  """Batch statistics everywhere, the pooled branch's BN over the batch alone;
  the updated running means follow torch's (momentum 0.1 = flax 0.9)."""
  head, x, variables, reference = _case(True, True, (3, 11, 6, CIN), seed=2)
  got, updates = _apply(head)(variables, x, True)
  expected = _nhwc(reference.train()(_nchw(x)))
  assert _rel_err(got, expected) < 1e-4
  for name, module in (('pool', reference.encoder.pool), ('project', reference.encoder.project)):
    np.testing.assert_allclose(updates['batch_stats'][name]['bn']['mean'],
                               module.bn.running_mean.numpy(), rtol=1e-4, atol=1e-5)


def test_parameter_names_are_the_contract():
  head = _head(extra_conv=True)
  x = jnp.zeros((1, 5, 7, CIN))
  variables = head.init(jax.random.key(0), Features({'out': x}, {'out': 16}), train=False)
  params = {'/'.join(str(k.key) for k in p) for p, _ in
            jax.tree_util.tree_leaves_with_path(variables['params'])}
  stats = {'/'.join(str(k.key) for k in p) for p, _ in
           jax.tree_util.tree_leaves_with_path(variables['batch_stats'])}
  units = ['branch0', 'branch1', 'branch2', 'branch3', 'pool', 'project', 'conv3x3']
  assert params == ({f'{u}/conv/kernel' for u in units} | {f'{u}/bn/scale' for u in units}
                    | {f'{u}/bn/bias' for u in units} | {'classifier/kernel', 'classifier/bias'})
  assert stats == {f'{u}/bn/{s}' for u in units for s in ('mean', 'var')}
  assert variables['params']['branch2']['conv']['kernel'].shape == (3, 3, CIN, 8)
  assert variables['params']['project']['conv']['kernel'].shape == (1, 1, 5 * 8, 8)
  assert head.classifier_layers() == ('classifier',)


# ------------------------------------------------- through models.build ----

@pytest.fixture(scope='module')
def tiny_v3():
  config = tiny.get_config(voc_aspp)
  config.dataset.num_classes = CLASSES
  config.model.input_scales = (1.0,)
  config.model.head = parts.aspp_v3(rates=(2, 4, 6), width=16, dropout=0.5, extra_conv=True)
  return config


def test_whole_model_matches_torch_resnet_under_the_reference_head(tiny_v3):
  model = models.build(tiny_v3)
  images = np.random.default_rng(3).uniform(0, 255, (2, 45, 61, 3)).astype(np.float32)
  variables = _perturbed(model.init(jax.random.key(0), images, train=False), 4)
  got = jax.jit(lambda v, x: model.apply(v, x, train=False))(variables, images)
  trunk = torch_deeplab.ResNetASPP(CLASSES, depth=14, base_width=8)
  head = torch_deeplab_v3.ASPPv3(256, CLASSES, (2, 4, 6), width=16, dropout=0.5,
                                 extra_conv=True)
  reference = torch_deeplab_v3.ResNetWithHead(trunk, head, ('layer5',))
  del trunk.aspp
  torch_deeplab_v3.load_flax(reference, variables)
  m = tiny_v3.model
  x = images[..., ::-1] if m.channel_order == 'bgr' else images
  x = (x - np.asarray(m.pixel_mean, np.float32)) / np.asarray(m.pixel_std, np.float32)
  with torch.no_grad():
    expected = _nhwc(reference.eval()(_nchw(x)))
  assert got.shape == (2, 6, 8, CLASSES)
  assert _rel_err(got, expected) < 1e-4
  assert model.classifier_paths() == ('head/classifier',)


def test_config_errors_are_user_errors(tiny_v3):
  config = tiny_v3.copy_and_resolve_references()
  config.model.head.hidden = (8,)
  with pytest.raises(UserError, match="head 'aspp_v3' does not read"):
    models.build(config)
  config = tiny_v3.copy_and_resolve_references()
  config.model.head.reads = ('layer2', 'out')
  with pytest.raises(UserError, match='reads one feature map'):
    models.build(config)
  config = tiny_v3.copy_and_resolve_references()
  config.model.head.dropout = 1.0
  with pytest.raises(UserError, match='dropout'):
    models.build(config)

