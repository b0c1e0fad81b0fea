"""benchmarks/twins.py's FAMILIES table: each row's config and PyTorch twin
time side by side (figures not asserted, only their sense)."""

import jax
import numpy as np
import pytest

from benchmarks import models as models_benchmark
from benchmarks import twins
from configs import tiny
from deeplab_jax import models


def test_each_family_row_finds_its_twin():
  for name, twin in twins.FAMILIES:
    assert twins.twin_for(tiny.get_config(name)) is twin
  config = tiny.get_config('shapes')  # The small trunk has no PyTorch twin.
  with pytest.raises(ValueError, match='add the family'):
    twins.twin_for(config)


def test_family_rows_time_jax_against_pytorch():
  plan = [('forward', 1)]
  rows = list(models_benchmark.family_rows(['voc_largefov'], plan, steps=1, tiny=True))
  assert [r['family'] for r in rows] == ['voc_largefov'] and rows[0]['crop'] == 32
  line = rows[0]['forward_b1']
  assert line['jax_ms'] > 0 and line['torch_ms'] > 0 and line['gflop_per_image'] is not None
  assert line['ratio'] == round(line['jax_ms'] / line['torch_ms'], 3)
  assert '| `voc_largefov` | 32 |' in models_benchmark.family_markdown(rows, plan)


def test_family_rows_crop_override_and_a_head_without_rates():
  plan = [('forward', 1)]
  rows = list(models_benchmark.family_rows(['shapes_unet'], plan, steps=1, tiny=True,
                                           crop_size=24))
  assert rows[0]['crop'] == 24 and rows[0]['forward_b1']['torch_ms'] > 0


# ------------------------------------------- each twin's logits are ours ----

def _normalised(config, images):
  m = config.model
  x = images[..., ::-1] if m.channel_order == 'bgr' else images
  return ((x - np.asarray(m.pixel_mean, np.float32)) / np.asarray(m.pixel_std, np.float32))


@pytest.mark.parametrize('name', [name for name, _ in twins.FAMILIES])
def test_each_twin_gives_our_logits(name):
  """configs/tiny.py's config, random weights (BatchNorm statistics perturbed):
  the row's twin, holding the same weights, gives our logits within 1e-4."""
  import torch  # pylint: disable=import-outside-toplevel
  from deeplab_jax.models.resize import resize_bilinear  # pylint: disable=import-outside-toplevel
  config = tiny.get_config(name)
  size = config.input.crop_size
  images = np.random.default_rng(0).uniform(0, 255, (1, size, size, 3)).astype(np.float32)
  model = models.build(config)
  variables = jax.device_get(model.init(jax.random.key(0), images[:1], train=False))
  rng = np.random.default_rng(1)
  variables = jax.tree_util.tree_map(lambda v: np.array(v, np.float32), variables)
  for leaf in jax.tree_util.tree_leaves(variables.get('batch_stats', {})):
    leaf += rng.uniform(0.0, 0.5, leaf.shape).astype(np.float32)  # mean +, var > 1: in place.
  for leaf in jax.tree_util.tree_leaves(variables['params']):
    if not leaf.any():  # FCN's zero-initialised score layers: logits would be all 0.
      leaf += rng.normal(0.0, 0.05, leaf.shape).astype(np.float32)
  ours = np.asarray(jax.jit(lambda v, x: model.apply(v, x, train=False))(variables, images))
  net = twins.torch_model(config, variables).eval()
  x = torch.from_numpy(np.ascontiguousarray(_normalised(config, images).transpose(0, 3, 1, 2)))
  with torch.no_grad():
    theirs = net(x).numpy().transpose(0, 2, 3, 1)
  if theirs.shape != ours.shape:  # torchvision's: upsampled to the input inside forward.
    assert twins.twin_for(config) in (twins._torchvision_twin,  # pylint: disable=protected-access
                                      twins._torchvision_mobilenet_twin)  # pylint: disable=protected-access
    ours = np.asarray(resize_bilinear(ours, theirs.shape[1:3], align_corners=False))
  assert ours.shape == theirs.shape
  err = np.abs(ours - theirs).max() / np.abs(theirs).max()
  assert err < 1e-4, err


def test_torchvision_twin_at_full_width_is_torchvision_fcn_resnet50():
  """At the release widths the assembled twin has fcn_resnet50's keys and shapes."""
  from configs import voc_fcn_resnet50  # pylint: disable=import-outside-toplevel
  from deeplab_jax.testing import torchvision_models  # pylint: disable=import-outside-toplevel
  ref = torchvision_models.segmentation().fcn_resnet50(weights=None, weights_backbone=None,
                                                       num_classes=21, aux_loss=False)
  twin = twins.torch_model(voc_fcn_resnet50.get_config())
  shapes = lambda net: {k: tuple(v.shape) for k, v in net.state_dict().items()}
  assert shapes(twin.net) == shapes(ref)


def test_v3_and_torchvision_v3_pick_their_own_twins():
  from configs import voc_deeplabv3, voc_deeplabv3_resnet50  # pylint: disable=import-outside-toplevel
  assert twins.twin_for(voc_deeplabv3.get_config()) is twins._deeplab_v3_twin  # pylint: disable=protected-access
  assert twins.twin_for(
      voc_deeplabv3_resnet50.get_config()) is twins._torchvision_twin  # pylint: disable=protected-access
