"""Loss options (config.loss): class weights, OHEM, Dice, Lovasz-softmax.

Each against a computation written from its definition (numpy, or PyTorch's
own CrossEntropyLoss where PyTorch has the loss), void never counting, and
the sums of micro-batches giving the whole batch's loss and gradient.
"""

import itertools
import json

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
import torch

from deeplab_jax import losses
from deeplab_jax.errors import UserError
from deeplab_jax.losses import class_weights
from deeplab_jax.losses import cross_entropy


def _batch(seed, shape=(3, 5, 6), num_classes=4, void=0.25):
  rng = np.random.default_rng(seed)
  logits = rng.normal(size=shape + (num_classes,)).astype(np.float32) * 2
  labels = rng.integers(0, num_classes, size=shape).astype(np.int32)
  labels[rng.random(shape) < void] = 255
  return logits, labels


def _softmax(logits):
  e = np.exp(logits - logits.max(-1, keepdims=True))
  return e / e.sum(-1, keepdims=True)


def _objective(**kwargs):
  return losses.Objective(upsample_logits=True, **kwargs)


# ------------------------------------------------------- class weights ----

def test_weighted_cross_entropy_equals_pytorchs():
  logits, labels = _batch(0)
  weights = (0.5, 2.0, 1.0, 3.5)
  ours, grad = jax.value_and_grad(lambda x: losses.softmax_cross_entropy(
      x, jnp.asarray(labels), class_weights=weights)[0])(jnp.asarray(logits))
  x = torch.tensor(logits).permute(0, 3, 1, 2).requires_grad_()
  theirs = torch.nn.functional.cross_entropy(
      x, torch.tensor(labels).long(), weight=torch.tensor(weights), ignore_index=255)
  theirs.backward()
  np.testing.assert_allclose(float(ours), theirs.item(), rtol=1e-6)
  np.testing.assert_allclose(np.asarray(grad), x.grad.permute(0, 2, 3, 1).numpy(),
                             rtol=1e-5, atol=1e-8)


def test_weighted_per_image_normalisation_by_hand():
  logits, labels = _batch(1)
  weights = np.array([0.5, 2.0, 1.0, 3.5])
  loss, _ = losses.softmax_cross_entropy(jnp.asarray(logits), jnp.asarray(labels),
                                         normalize='image', class_weights=tuple(weights))
  nll = -np.log(_softmax(logits))
  expected = []
  for b in range(len(labels)):
    valid = labels[b] != 255
    y = labels[b][valid]
    w = weights[y]
    expected.append((w * nll[b][valid, y]).sum() / w.sum())
  np.testing.assert_allclose(float(loss), np.mean(expected), rtol=1e-6)


def test_class_balance_rules_by_hand():
  counts = np.array([600, 300, 100, 0])
  present = np.array([1000, 800, 400, 0])  # Pixels of the images holding each class.
  share = np.array([0.6, 0.3, 0.1])
  inverse = class_weights.from_counts('inverse', counts)
  np.testing.assert_allclose(inverse[:3], (1 / share) / 3)  # sum(share * w) = 1.
  assert inverse[3] == 0  # Never occurs: weight 0.
  sqrt = class_weights.from_counts('inverse_sqrt', counts)
  np.testing.assert_allclose(sqrt[:3], (1 / np.sqrt(share)) / (np.sqrt(share).sum()))
  median = class_weights.from_counts('median_frequency', counts, present)
  freq = np.array([0.6, 0.375, 0.25])
  np.testing.assert_allclose(median[:3], 0.375 / freq)
  assert median[1] == 1.0 and median[3] == 0
  assert sqrt[2] < inverse[2] and sqrt[0] > inverse[0]  # Milder.


# ------------------------------------------------------------- OHEM -------

def test_ohem_keeps_pixels_below_the_threshold_and_the_minimum():
  p = jnp.asarray([[[0.9, 0.2, 0.65, 0.8],
                    [0.75, 0.3, 0.95, 0.1]]])  # One image, 8 pixels.
  valid = jnp.asarray([[[True, True, True, True], [True, False, True, True]]])
  # Threshold 0.7: 0.2, 0.65, 0.1 (0.3 is void).
  keep = cross_entropy.ohem_keep(p, valid, 0.7, 0)
  np.testing.assert_array_equal(keep[0], [[0, 1, 1, 0], [0, 0, 0, 1]])
  # At least 5: the 5 lowest valid (0.1, 0.2, 0.65, 0.75, 0.8).
  keep = cross_entropy.ohem_keep(p, valid, 0.7, 5)
  np.testing.assert_array_equal(keep[0], [[0, 1, 1, 1], [1, 0, 0, 1]])
  # More than it has: every valid pixel, never the void one.
  keep = cross_entropy.ohem_keep(p, valid, 0.01, 100)
  np.testing.assert_array_equal(keep, valid)


def test_ohem_loss_is_the_mean_over_kept_pixels_per_image():
  logits, labels = _batch(2, shape=(2, 6, 7))
  threshold, min_kept = 0.4, 6
  loss, _ = losses.softmax_cross_entropy(jnp.asarray(logits), jnp.asarray(labels),
                                         ohem=(threshold, min_kept))
  probs = _softmax(logits)
  nll_sum, count = 0.0, 0
  for b in range(2):
    valid = labels[b] != 255
    p_true = np.take_along_axis(probs[b], np.where(valid, labels[b], 0)[..., None], -1)[..., 0]
    order = np.argsort(np.where(valid, p_true, np.inf).ravel(), kind='stable')
    hardest = np.zeros(valid.size, bool)
    hardest[order[:min_kept]] = True
    kept = valid & ((p_true < threshold) | hardest.reshape(valid.shape))
    assert kept.sum() >= min_kept
    nll_sum += -np.log(p_true[kept]).sum()
    count += kept.sum()
  np.testing.assert_allclose(float(loss), nll_sum / count, rtol=1e-6)


# ------------------------------------------------------ Dice / Lovasz ----

def _numpy_dice(probs, labels, num_classes):
  valid = labels != 255
  scores = []
  for c in range(num_classes):
    y = (labels == c) & valid
    if not y.any():
      continue
    p = probs[..., c] * valid
    scores.append((2 * (p * y).sum() + 1) / (p.sum() + y.sum() + 1))
  return 1 - np.mean(scores) if scores else 0.0


def test_dice_per_image_and_per_batch_by_hand():
  logits, labels = _batch(3)
  labels[1][labels[1] == 2] = 0  # Class 2 absent from image 1.
  probs = _softmax(logits)
  for normalize in ('image', 'batch'):
    objective = _objective(normalize=normalize, ce_weight=0.0, dice_weight=1.0)
    loss, _ = losses.loss_and_valid(objective, jnp.asarray(logits), jnp.asarray(labels))
    expected = (np.mean([_numpy_dice(probs[b], labels[b], 4) for b in range(3)])
                if normalize == 'image' else _numpy_dice(probs, labels, 4))
    np.testing.assert_allclose(float(loss), expected, rtol=1e-5)


def _jaccard_loss(mistakes, truth):
  """Berman et al.'s Delta_J of a set of mispredicted pixels: |M| / |G u M|."""
  union = (truth | mistakes).sum()
  return mistakes.sum() / union if union else 0.0


def _lovasz_by_thresholds(errors, truth):
  """The Lovasz extension as the integral over t of Delta_J({errors >= t}),
  exactly, piecewise constant between the distinct error values."""
  levels = np.unique(np.concatenate([errors, [0.0]]))[::-1]
  return sum((hi - lo) * _jaccard_loss(errors >= hi, truth)
             for hi, lo in zip(levels[:-1], levels[1:]))


def test_lovasz_softmax_equals_the_lovasz_extension_by_thresholds():
  logits, labels = _batch(4, shape=(2, 4, 5))
  labels[0][labels[0] == 3] = 1  # Class 3 absent from image 0.
  probs = _softmax(logits)
  objective = _objective(normalize='image', ce_weight=0.0, lovasz_weight=1.0)
  loss, _ = losses.loss_and_valid(objective, jnp.asarray(logits), jnp.asarray(labels))
  per_image = []
  for b in range(2):
    valid = labels[b] != 255
    terms = []
    for c in range(4):
      truth = labels[b][valid] == c
      if truth.any():
        terms.append(_lovasz_by_thresholds(np.abs(truth - probs[b][valid][:, c]), truth))
    per_image.append(np.mean(terms))
  np.testing.assert_allclose(float(loss), np.mean(per_image), rtol=1e-5)


def test_lovasz_of_a_perfect_prediction_is_zero_and_of_a_wrong_one_positive():
  labels = np.array([[[0, 1], [1, 255]]], np.int32)
  right = np.where(np.arange(2) == labels[..., None], 20.0, -20.0).astype(np.float32)
  objective = _objective(normalize='image', ce_weight=0.0, lovasz_weight=1.0)
  assert float(losses.loss_and_valid(objective, jnp.asarray(right), labels)[0]) < 1e-6
  assert float(losses.loss_and_valid(objective, jnp.asarray(-right), labels)[0]) > 0.9


# --------------------------------------------- void, accumulation, config --

OPTIONS = {
    'weights': dict(class_weights=(0.5, 2.0, 1.0, 3.5)),
    'ohem': dict(ohem=(0.6, 5)),
    'dice': dict(dice_weight=1.0),
    'lovasz': dict(lovasz_weight=0.5),
    'all': dict(class_weights=(1.0, 2.0, 1.0, 0.5), ohem=(0.6, 5), dice_weight=1.0,
                lovasz_weight=1.0),
}


@pytest.mark.parametrize('option, normalize', list(itertools.product(OPTIONS, losses.NORMALIZE)))
def test_void_pixels_change_neither_loss_nor_gradient(option, normalize):
  logits, labels = _batch(5)
  objective = _objective(normalize=normalize, **OPTIONS[option])
  other = logits.copy()
  other[labels == 255] = np.random.default_rng(6).normal(size=other[labels == 255].shape) * 50
  fn = jax.value_and_grad(lambda x: losses.loss_and_valid(objective, x, labels)[0])
  (loss_a, grad_a), (loss_b, grad_b) = fn(jnp.asarray(logits)), fn(jnp.asarray(other))
  np.testing.assert_allclose(float(loss_a), float(loss_b), rtol=1e-6)
  np.testing.assert_allclose(grad_a, grad_b, rtol=1e-5, atol=1e-8)
  assert np.all(np.asarray(grad_a)[labels == 255] == 0) and float(loss_a) > 0


@pytest.mark.parametrize('option, normalize', list(itertools.product(OPTIONS, losses.NORMALIZE)))
def test_micro_batch_sums_give_the_whole_batchs_loss_and_gradient(option, normalize):
  # What train_step's accumulation does, on the logits directly: the sums
  # of each half, weighted by d finalize / d sums at the WHOLE batch's sums.
  logits, labels = _batch(7, shape=(4, 5, 6))
  labels[0, :4] = 255  # Halves with different numbers of valid pixels.
  objective = _objective(normalize=normalize, **OPTIONS[option])
  whole_fn = lambda x: losses.loss_and_valid(objective, x, labels)[0]
  whole, whole_grad = jax.value_and_grad(whole_fn)(jnp.asarray(logits))
  halves = [(logits[k::2], labels[k::2]) for k in (0, 1)]
  sums = [losses.batch_sums(objective, jnp.asarray(x), y) for x, y in halves]
  total = losses.add_sums(*sums)
  if not objective.needs_statistics_pass:  # From the labels alone, as train_step.
    estimate = losses.label_sums(objective, [logits.shape], labels)
    cotangent = jax.grad(lambda s: losses.finalize(objective, s))(estimate)
  else:
    cotangent = jax.grad(lambda s: losses.finalize(objective, s))(total)
  np.testing.assert_allclose(float(losses.finalize(objective, total)), float(whole), rtol=1e-5)
  grads = []
  for x, y in halves:
    dot = lambda x, y=y: sum(jnp.vdot(cotangent[0][k], v) for k, v in
                             losses.batch_sums(objective, x, y)[0].items())
    grads.append(np.asarray(jax.grad(dot)(jnp.asarray(x))))
  np.testing.assert_allclose(grads[0], np.asarray(whole_grad)[0::2], rtol=1e-4, atol=1e-7)
  np.testing.assert_allclose(grads[1], np.asarray(whole_grad)[1::2], rtol=1e-4, atol=1e-7)


def _config(**loss_fields):
  config = ml_collections.ConfigDict({
      'loss': {'upsample_logits': True, 'normalize': 'batch', 'class_weights': (),
               'class_balance': '', 'ohem': False, 'ohem_threshold': 0.7,
               'ohem_min_kept': 100, 'ce_weight': 1.0, 'dice_weight': 0.0,
               'lovasz_weight': 0.0},
      'dataset': {'num_classes': 3, 'ignore_label': 255},
      'model': {'align_corners': False}})
  config.loss.update(loss_fields)
  return config


@pytest.mark.parametrize('fields, message', [
    (dict(class_weights=(1.0, 2.0)), 'give 3'),
    (dict(class_weights=(1.0, -2.0, 1.0)), '>= 0'),
    (dict(class_balance='frequency'), 'not one of'),
    (dict(class_balance='inverse', class_weights=(1.0, 1.0, 1.0)), 'not both'),
    (dict(ohem=True, ohem_threshold=1.5), 'ohem_threshold'),
    (dict(ce_weight=0.0), 'one of them > 0'),
    (dict(normalize='pixel'), 'normalize'),
])
def test_config_mistakes_are_user_errors(fields, message):
  with pytest.raises(UserError, match=message):
    losses.from_config(_config(**fields))


def test_config_gives_the_objective():
  objective = losses.from_config(_config(class_weights=(1.0, 3.0, 0.5), ohem=True,
                                         dice_weight=0.5))
  assert objective.class_weights == (1.0, 3.0, 0.5)
  assert objective.ohem == (0.7, 100) and objective.dice_weight == 0.5
  assert objective.needs_statistics_pass
  balanced = losses.from_config(_config(class_balance='inverse'), class_weights=(1, 2, 3))
  assert balanced.class_weights == (1.0, 2.0, 3.0) and not balanced.needs_statistics_pass


def test_class_balance_from_the_training_split_is_saved_and_reused(tiny_config, tiny_builder,
                                                                 tmp_path):
  from deeplab_jax.data import input_pipeline  # pylint: disable=import-outside-toplevel
  tiny_config.loss.class_balance = 'median_frequency'
  weights = class_weights.resolve(tiny_config, tiny_builder, str(tmp_path))
  # Independently: every training mask, counted with numpy.
  num_classes = tiny_config.dataset.num_classes
  counts, present = np.zeros(num_classes), np.zeros(num_classes)
  for example in input_pipeline.tfds.as_numpy(tiny_builder.as_dataset(split='train')):
    mask = example['segmentation_mask'][..., 0]
    hist = np.bincount(mask.ravel(), minlength=256)[:num_classes]
    counts += hist
    present += (hist > 0) * mask.size
  freq = np.where(counts > 0, counts / np.maximum(present, 1), np.nan)
  expected = np.where(counts > 0, np.nanmedian(freq) / freq, 0.0)
  np.testing.assert_allclose(weights, expected, rtol=1e-12)
  assert len(set(np.round(weights, 6))) > 2  # Not all equal.
  saved = json.loads((tmp_path / class_weights.FILE_NAME).read_text())
  assert saved['rule'] == 'median_frequency' and saved['pixel_counts'] == counts.tolist()
  saved['weights'] = [7.0] * num_classes  # A resumed run reads the file, not the data.
  (tmp_path / class_weights.FILE_NAME).write_text(json.dumps(saved))
  assert class_weights.resolve(tiny_config, tiny_builder, str(tmp_path)) == (7.0,) * num_classes
  tiny_config.loss.class_balance = 'inverse'  # Another rule: computed again.
  assert class_weights.resolve(tiny_config, tiny_builder, str(tmp_path)) != (7.0,) * num_classes
