"""Every model family trains, evaluates, resumes exactly and runs data-parallel.

One line per family in FAMILIES (configs/tiny.py's shrunk config names); for
each, on the tiny built-in dataset:
- train.py's code path (`train_lib.train_and_evaluate`, 4 steps, checkpoints
  at 2 and 4) on the 8 fake CPU devices of conftest.py, then evaluate.py's
  (`evaluation.evaluate_checkpoint`, with the dense CRF): every valid pixel
  of the val split scored once, before and after the CRF;
- resume after a kill: the run's directory as a kill after the step-2
  checkpoint leaves it (orbax commits a step by renaming its finished
  directory, so a kill leaves the committed steps and no step 4; the real
  kill -9 of a train.py process is tests/resume_test.py's, for `shapes`),
  resumed to step 4: parameters, BatchNorm statistics and optimizer state
  bit-identical to the uninterrupted run's;
- data parallel: the same 4 steps on 1 device equal the 8-device run's
  within float32 round-off (the per-device partial sums of the loss,
  gradients and BatchNorm statistics add up in another order).
"""

import os
import shutil

import jax
import numpy as np
import pytest

from configs import tiny
from deeplab_jax import checkpoint
from deeplab_jax import evaluation
from deeplab_jax import sharding
from deeplab_jax import train_lib
from deeplab_jax.data import input_pipeline

# configs/tiny.py:<name> of each family; a new family is one more name.
# DeepLab v1/v2's VGG and ResNet configs have these checks in train_test.py,
# resume_test.py and multihost_test.py; voc_deeplabv3plus covers v3's ASPP.
FAMILIES = ('shapes', 'voc_fcn8s', 'voc_deeplabv3plus', 'voc_fcn_resnet50', 'shapes_unet',
            'voc_lraspp_mobilenet_v3_large')
RTOL, ATOL = 2e-5, 2e-6  # As tests/train_test.py's 1 against 8 devices.


@pytest.fixture(scope='module', params=FAMILIES)
def family(request, tmp_path_factory, data_dir):
  """(config, workdir, final state) of the family's uninterrupted 8-device run."""
  config = tiny.get_config(request.param)
  config.dataset.data_dir = data_dir
  config.eval.crf = True
  workdir = str(tmp_path_factory.mktemp(request.param))
  state = jax.device_get(train_lib.train_and_evaluate(config, workdir))
  return config, workdir, state


def _leaves(tree):
  return jax.tree_util.tree_leaves_with_path(tree)


def test_trains_and_evaluates_with_the_crf(family, tiny_builder):
  config, workdir, state = family
  assert int(state.step) == config.num_train_steps == 4
  assert sorted(checkpoint.manager(workdir, read_only=True).all_steps()) == [2, 4]
  summary = evaluation.evaluate_checkpoint(config, workdir)
  pixels = sum(int((b['label'][b['valid']] != 255).sum()) for b in
               input_pipeline.eval_iterator(config, tiny_builder, 'val', 8))
  assert np.asarray(summary['confusion_matrix']).sum() == pixels
  assert np.asarray(summary['crf']['confusion_matrix']).sum() == pixels
  assert 0.0 <= summary['mean_iou'] <= 1.0 and 0.0 <= summary['crf']['mean_iou'] <= 1.0


def test_resumes_bit_identical_after_a_kill(family, tmp_path):
  config, workdir, final = family
  killed = str(tmp_path / 'killed')
  shutil.copytree(workdir, killed)
  shutil.rmtree(os.path.join(checkpoint.checkpoint_dir(killed), '4'))
  resumed = jax.device_get(train_lib.train_and_evaluate(config, killed))
  assert int(resumed.step) == 4
  for (path, x), y in zip(_leaves(resumed), jax.tree_util.tree_leaves(final)):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y), err_msg=jax.tree_util.keystr(path))


def test_one_device_trains_like_eight(family, tmp_path):
  config, _, eight = family
  one = jax.device_get(train_lib.train_and_evaluate(
      config, str(tmp_path / 'one'), mesh=sharding.make_mesh(jax.devices()[:1])))
  assert len(jax.tree_util.tree_leaves(one)) == len(jax.tree_util.tree_leaves(eight))
  for (path, x), y in zip(_leaves(one), jax.tree_util.tree_leaves(eight)):
    np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=RTOL, atol=ATOL,
                               err_msg=jax.tree_util.keystr(path))
