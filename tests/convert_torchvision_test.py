"""torchvision checkpoints -> our models (deeplab_jax/convert/torchvision/).

torchvision's own models with random weights and random BatchNorm statistics,
saved with torch.save as the hub files are, go through the command's code
path (`convert.from_file`, what `python -m deeplab_jax.convert` runs); our
logits, upsampled to the image with align_corners=False, equal torchvision's
`out` within 1e-4 relative (float32) at an odd, non-square size.
"""

import numpy as np
import pytest

from deeplab_jax.testing import torchvision_models

segmentation, tv_resnet = torchvision_models.require()

import jax  # pylint: disable=g-import-not-at-top
import torch  # pylint: disable=g-import-not-at-top

from configs import voc_fcn_resnet50  # pylint: disable=g-import-not-at-top
from deeplab_jax import convert  # pylint: disable=g-import-not-at-top
from deeplab_jax import models  # pylint: disable=g-import-not-at-top
from deeplab_jax.errors import UserError  # pylint: disable=g-import-not-at-top
from deeplab_jax.models.resize import resize_bilinear  # pylint: disable=g-import-not-at-top

SIZE = (41, 53)


@pytest.fixture(scope='module')
def images():
  return np.random.default_rng(0).integers(0, 256, (2, *SIZE, 3), dtype=np.uint8)


@pytest.fixture(scope='module')
def fcn50(tmp_path_factory):
  net = torchvision_models.randomise_batch_norm(segmentation.fcn_resnet50(
      weights=None, weights_backbone=None, num_classes=21, aux_loss=True), 1)
  path = str(tmp_path_factory.mktemp('tv') / 'fcn_resnet50_coco-1167a1af.pth')
  torch.save(net.state_dict(), path)
  return net, path


def _torch_out(net, config, images):
  x = (images.astype(np.float32) - np.asarray(config.model.pixel_mean, np.float32)) / np.asarray(
      config.model.pixel_std, np.float32)
  with torch.no_grad():
    return net(torch.from_numpy(x.transpose(0, 3, 1, 2)))['out'].numpy().transpose(0, 2, 3, 1)


def test_fcn_resnet50_logits_equal_torchvision(fcn50, images):
  net, path = fcn50
  config = voc_fcn_resnet50.get_config()
  converted = convert.read(path, config)
  assert converted.source == convert.torchvision.SEGMENTATION
  assert converted.dropped and all(k.startswith('aux_classifier.') for k in converted.dropped)
  variables = convert.from_file(path, config)
  logits = jax.jit(lambda v, x: models.build(config).apply(v, x, train=False))(variables, images)
  ours = np.asarray(resize_bilinear(logits, SIZE, align_corners=False))
  theirs = _torch_out(net, config, images)
  assert logits.shape[1:3] == (6, 7)  # ceil(41 / 8), ceil(53 / 8).
  np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-4 * np.abs(theirs).max())


def test_imagenet_resnet50_converts_with_the_head_afresh(tmp_path):
  net = torchvision_models.randomise_batch_norm(tv_resnet.resnet50(weights=None), 2)
  path = str(tmp_path / 'resnet50-0676ba61.pth')
  torch.save(net.state_dict(), path)
  config = voc_fcn_resnet50.get_config()
  converted = convert.read(path, config)
  assert converted.source == convert.torchvision.IMAGENET
  assert set(converted.dropped) == {'fc.weight', 'fc.bias'}
  variables, reinit = convert.assemble(converted, config, path=path)
  assert reinit and all(p.startswith(('params/head/', 'batch_stats/head/')) for p in reinit)
  np.testing.assert_array_equal(
      variables['params']['trunk']['layer2']['block1']['conv3x3']['conv']['kernel'],
      net.layer1[0].conv2.weight.detach().numpy().transpose(2, 3, 1, 0))


def test_a_caffe_layout_config_is_a_clear_error(fcn50):
  _, path = fcn50
  config = voc_fcn_resnet50.get_config()
  config.model.backbone.stride_in_1x1 = True
  with pytest.raises(UserError, match='stride_in_1x1=False'):
    convert.read(path, config)


def test_another_depth_names_what_does_not_fit(fcn50):
  _, path = fcn50
  config = voc_fcn_resnet50.get_config()
  config.model.backbone.depth = 101
  with pytest.raises(UserError, match=r'missing from the file(.|\n)*backbone\.layer3\.6\.conv1'):
    convert.read(path, config)


def test_deeplabv3_resnet50_logits_equal_torchvision(images, tmp_path):
  from configs import voc_deeplabv3_resnet50  # pylint: disable=import-outside-toplevel
  net = torchvision_models.randomise_batch_norm(segmentation.deeplabv3_resnet50(
      weights=None, weights_backbone=None, num_classes=21, aux_loss=True), 3)
  path = str(tmp_path / 'deeplabv3_resnet50_coco-cd0a2569.pth')
  torch.save(net.state_dict(), path)
  config = voc_deeplabv3_resnet50.get_config()
  variables = convert.from_file(path, config)
  logits = jax.jit(lambda v, x: models.build(config).apply(v, x, train=False))(variables, images)
  ours = np.asarray(resize_bilinear(logits, SIZE, align_corners=False))
  theirs = _torch_out(net, config, images)
  np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-4 * np.abs(theirs).max())


def test_a_run_starts_from_the_converted_imagenet_resnet(data_dir, tmp_path):
  """`--config.init_from` reads the converted ImageNet backbone: a run of
  the torchvision FCN (full ResNet-50 trunk, the rest tiny) whose first
  step has learning rate 0 holds the file's trunk weights."""
  from configs import tiny  # pylint: disable=import-outside-toplevel
  from deeplab_jax import train_lib  # pylint: disable=import-outside-toplevel
  net = torchvision_models.randomise_batch_norm(tv_resnet.resnet50(weights=None), 4)
  path = str(tmp_path / 'resnet50-0676ba61.pth')
  torch.save(net.state_dict(), path)
  config = tiny.get_config('voc_fcn_resnet50')
  tiny.override(config.model, backbone=voc_fcn_resnet50.get_config().model.backbone)
  config.dataset.data_dir = data_dir
  output = str(tmp_path / 'weights')
  record = convert.convert_to_workdir(path, config, output)
  assert record['initialised_afresh']
  config.init_from = output
  config.num_train_steps = 1
  config.optim.base_lr = 0.0
  state = jax.device_get(train_lib.train_and_evaluate(config, str(tmp_path / 'run')))
  assert int(state.step) == 1
  np.testing.assert_array_equal(
      state.params['trunk']['layer5']['block3']['increase']['conv']['kernel'],
      net.layer4[2].conv3.weight.detach().numpy().transpose(2, 3, 1, 0))
