"""MobileNetV3 and LR-ASPP (models/mobilenet.py, models/lraspp.py) against torchvision's own.

torchvision's models (0.28.0) with random weights and random BatchNorm
statistics, saved as its hub files are, go through `convert.from_file` (what
`python -m deeplab_jax.convert` runs); our logits, upsampled with
align_corners=False, equal torchvision's `out` within 1e-4 relative (float32)
at an odd, non-square size. The block table is checked against torchvision's
`_mobilenet_v3_conf` itself, for both variants and the width options.
"""

import numpy as np
import pytest

from deeplab_jax.testing import torchvision_models

segmentation, _ = torchvision_models.require()
tv_mobilenet = torchvision_models.mobilenet_v3()

import jax  # pylint: disable=g-import-not-at-top
import torch  # pylint: disable=g-import-not-at-top

from configs import tiny  # pylint: disable=g-import-not-at-top
from configs import voc_deeplabv3_mobilenet_v3_large  # pylint: disable=g-import-not-at-top
from configs import voc_fcn_resnet50  # pylint: disable=g-import-not-at-top
from configs import voc_lraspp_mobilenet_v3_large  # pylint: disable=g-import-not-at-top
from deeplab_jax import convert  # pylint: disable=g-import-not-at-top
from deeplab_jax import models  # pylint: disable=g-import-not-at-top
from deeplab_jax.errors import UserError  # pylint: disable=g-import-not-at-top
from deeplab_jax.models import mobilenet  # pylint: disable=g-import-not-at-top
from deeplab_jax.models.resize import resize_bilinear  # pylint: disable=g-import-not-at-top

SIZE = (67, 85)  # Odd, non-square: 34 x 43 after the stem, 5 x 6 at stride 16.


@pytest.fixture(scope='module')
def images():
  return np.random.default_rng(0).integers(0, 256, (2, *SIZE, 3), dtype=np.uint8)


def _normalised(config, images):
  return ((images.astype(np.float32) - np.asarray(config.model.pixel_mean, np.float32))
          / np.asarray(config.model.pixel_std, np.float32))


def _torch(module, x_nhwc):
  with torch.no_grad():
    y = module(torch.from_numpy(x_nhwc.transpose(0, 3, 1, 2)))
  y = y['out'] if isinstance(y, dict) else y
  return y.numpy().transpose(0, 2, 3, 1)


def _assert_close(ours, theirs):
  np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-4 * np.abs(theirs).max())


@pytest.mark.parametrize('variant', ['large', 'small'])
@pytest.mark.parametrize('width_mult,reduced_tail,dilated', [(1.0, False, True),
                                                             (0.75, True, False)])
def test_block_table_is_torchvisions(variant, width_mult, reduced_tail, dilated):
  theirs, _ = tv_mobilenet._mobilenet_v3_conf(  # pylint: disable=protected-access
      f'mobilenet_v3_{variant}', width_mult=width_mult, reduced_tail=reduced_tail,
      dilated=dilated)
  ours = mobilenet.plan(variant, width_mult, reduced_tail, 16 if dilated else 32)
  assert len(ours) == len(theirs)
  for b, t in zip(ours, theirs):
    assert (b.inputs, b.kernel, b.expanded, b.outputs, b.se, b.activation == 'hardswish',
            b.rate, b.strided) == (t.input_channels, t.kernel, t.expanded_channels,
                                   t.out_channels, t.use_se, t.use_hs, t.dilation,
                                   t.stride > 1)
    assert b.stride == (1 if t.dilation > 1 else t.stride)  # torchvision's InvertedResidual.


@pytest.mark.parametrize('name,config_module,seed', [
    ('deeplabv3_mobilenet_v3_large-fc3c493d', voc_deeplabv3_mobilenet_v3_large, 1),
    ('lraspp_mobilenet_v3_large-d234d4ea', voc_lraspp_mobilenet_v3_large, 2)])
def test_segmentation_logits_equal_torchvision(name, config_module, seed, images, tmp_path):
  builder = getattr(segmentation, name.split('-')[0])
  kwargs = dict(aux_loss=True) if name.startswith('deeplabv3') else {}
  net = torchvision_models.randomise_batch_norm(
      builder(weights=None, weights_backbone=None, num_classes=21, **kwargs), seed)
  path = str(tmp_path / f'{name}.pth')
  torch.save(net.state_dict(), path)
  config = config_module.get_config()
  converted = convert.read(path, config)
  assert converted.source == convert.torchvision.SEGMENTATION
  assert all(k.startswith('aux_classifier.') for k in converted.dropped)
  assert bool(converted.dropped) == name.startswith('deeplabv3')
  variables = convert.from_file(path, config)
  ours_count = sum(int(np.size(v)) for v in jax.tree_util.tree_leaves(variables['params']))
  assert ours_count == sum(p.numel() for k, p in net.named_parameters()
                           if not k.startswith('aux_classifier.'))
  logits = jax.jit(lambda v, x: models.build(config).apply(v, x, train=False))(variables, images)
  stride = 16 if name.startswith('deeplabv3') else 8
  assert logits.shape[1:3] == tuple(-(-s // stride) for s in SIZE)
  ours = np.asarray(resize_bilinear(logits, SIZE, align_corners=False))
  _assert_close(ours, _torch(net, _normalised(config, images)))


@pytest.mark.parametrize('variant,reduced_tail,output_stride', [('large', False, 32),
                                                                ('small', True, 16)])
def test_imagenet_backbone_features_equal_torchvision(variant, reduced_tail, output_stride,
                                                      images, tmp_path):
  """The ImageNet file converts the trunk (head afresh); its last map equals
  torchvision's `features` of the same options (ImageNet's stride 32, and
  the dilated, reduced-tail Small)."""
  net = torchvision_models.randomise_batch_norm(
      getattr(tv_mobilenet, f'mobilenet_v3_{variant}')(
          weights=None, reduced_tail=reduced_tail, dilated=output_stride == 16), 3)
  path = str(tmp_path / f'mobilenet_v3_{variant}.pth')
  torch.save(net.state_dict(), path)
  config = voc_lraspp_mobilenet_v3_large.get_config()
  tiny.override(config.model.backbone, variant=variant, reduced_tail=reduced_tail,
                output_stride=output_stride)
  config.model.head.reads = ('block2' if variant == 'small' else 'block4', 'out')
  converted = convert.read(path, config)
  assert converted.source == convert.torchvision.MOBILENET_IMAGENET
  assert converted.dropped and all(k.startswith('classifier.') for k in converted.dropped)
  variables, reinit = convert.assemble(converted, config, path=path)
  assert reinit and all(p.startswith(('params/head/', 'batch_stats/head/')) for p in reinit)
  trunk = models.build(config).trunk
  x = _normalised(config, images)
  features = trunk.apply({k: v['trunk'] for k, v in variables.items()}, x, train=False)
  theirs = _torch(net.features, x)
  assert features['out'].shape == theirs.shape
  assert trunk.feature_strides()['out'] == output_stride
  _assert_close(np.asarray(features['out']), theirs)


def test_a_resnet_file_in_a_mobilenet_config_is_a_clear_error(tmp_path):
  net = segmentation.fcn_resnet50(weights=None, weights_backbone=None, num_classes=21)
  path = str(tmp_path / 'fcn_resnet50.pth')
  torch.save(net.state_dict(), path)
  with pytest.raises(UserError, match='holds a resnet backbone'):
    convert.read(path, voc_lraspp_mobilenet_v3_large.get_config())
  net = tv_mobilenet.mobilenet_v3_large(weights=None)
  path = str(tmp_path / 'mobilenet_v3_large.pth')
  torch.save(net.state_dict(), path)
  with pytest.raises(UserError, match='holds a mobilenet_v3 backbone'):
    convert.read(path, voc_fcn_resnet50.get_config())


def test_config_checks_are_user_errors():
  config = voc_lraspp_mobilenet_v3_large.get_config()
  config.model.backbone.variant = 'huge'
  with pytest.raises(UserError, match="variant 'huge'"):
    models.build(config)
  config = voc_lraspp_mobilenet_v3_large.get_config()
  config.model.backbone.output_stride = 8
  with pytest.raises(UserError, match='output_stride 8'):
    models.build(config)
  config = voc_lraspp_mobilenet_v3_large.get_config()
  config.model.head.reads = ('block40', 'out')
  with pytest.raises(UserError, match='block40'):
    models.build(config)
