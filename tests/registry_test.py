"""A toy head added through the registry, from this file alone (docs/extending.md)."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import pytest

from configs import parts
from configs import tiny
from deeplab_jax import models
from deeplab_jax import optim
from deeplab_jax.errors import UserError
from deeplab_jax.models import registry


class StrideFourHead(nn.Module):
  """Scores from the stride-4 features and the output, summed at stride 8."""
  num_classes: int
  layers: models.layers_lib.Layers
  reads = ('stage2', 'out')

  def classifier_layers(self):
    return ('fine_scores', 'coarse_scores')

  @nn.compact
  def __call__(self, features, train):
    fine = self.layers.conv(self.num_classes, 1, name='fine_scores')(features['stage2'])
    coarse = self.layers.conv(self.num_classes, 1, name='coarse_scores')(features['out'])
    return coarse + fine[:, ::2, ::2][:, :coarse.shape[1], :coarse.shape[2]]


@registry.register_head('toy_stride4')
def _build(section, layers, num_classes):
  registry.check_fields(section, "head 'toy_stride4'", ())
  return StrideFourHead(num_classes, layers)


def _config():
  config = tiny.get_config('shapes')
  config.model.head = ml_collections.ConfigDict({'name': 'toy_stride4'})
  return config


def test_a_registered_head_builds_runs_and_declares_its_classifier():
  config = _config()
  model = models.build(config)
  images = jnp.zeros((2, 32, 32, 3), jnp.uint8)
  variables = model.init(jax.random.key(0), images, train=False)
  assert model.apply(variables, images, train=False).shape == (2, 4, 4, config.dataset.num_classes)
  assert set(variables['params']['head']) == {'fine_scores', 'coarse_scores'}
  labels = optim.param_labels(variables['params'], classifiers=model.classifier_paths())
  assert labels['head']['fine_scores']['kernel'] == 'classifier_kernel'
  assert labels['trunk']['stage1_down']['conv']['kernel'] == 'backbone'


def test_unknown_names_fields_and_features_are_user_errors():
  config = _config()
  config.model.head.name = 'nope'
  with pytest.raises(UserError, match="model.head.name 'nope' is not one of"):
    models.build(config)
  config = tiny.get_config('shapes')
  config.model.head.rate = 3  # A typo of rates.
  with pytest.raises(UserError, match=r"head 'aspp' does not read \['rate'\]"):
    models.build(config)
  config = tiny.get_config('voc_aspp')
  config.model.multilayer = parts.multilayer((8, 8))  # MSc needs VGG's pools.
  with pytest.raises(UserError, match='reads features'):
    models.build(config)


def test_backbones_declare_the_features_they_return():
  vgg = models.build(tiny.get_config('voc_largefov')).trunk.feature_strides()
  assert vgg == {'image': 1, 'pool1': 2, 'pool2': 4, 'pool3': 8, 'pool4': 8, 'out': 8}
  resnet = models.build(tiny.get_config('voc_aspp')).trunk.feature_strides()
  assert resnet == {'layer1': 4, 'layer2': 4, 'layer3': 8, 'layer4': 8, 'layer5': 8, 'out': 8}
