"""input.resize='caffe': DeepLab's Caffe data layer, checked against OpenCV.

Caffe (deeplab-public-ver2 src/caffe/data_transformer.cpp, TransformImgAndSeg)
scales by a truncated size (`img_height *= scale` on an int), resizes images
with cv::resize INTER_LINEAR and labels with INTER_NEAREST, pads bottom/right
in double with the mean (label: ignore_label), crops at a uniform offset and
mirrors the crop; the mean is subtracted after padding, so padding is exactly
0 at the network's input. The reference here does the same with cv2 and numpy.
"""

import cv2
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
import tensorflow as tf

from configs import voc_largefov
from deeplab_jax import evaluation
from deeplab_jax import inference
from deeplab_jax import models
from deeplab_jax import optim
from deeplab_jax import sharding
from deeplab_jax import train_step
from deeplab_jax.data import caffe_layer
from deeplab_jax.data import input_pipeline
from deeplab_jax.errors import UserError

SCALES = (0.5, 0.75, 1.0, 1.25, 1.5)
CAFFE_MEAN_BGR = (104.008, 116.669, 122.675)


def _input_config(resize='caffe', scales=SCALES, crop=41, flip=True):
  return ml_collections.ConfigDict({'crop_size': crop, 'scales': scales,
                                    'scale_range': (1.0, 1.0), 'flip': flip,
                                    'resize': resize})


def _example(height, width, seed=0):
  """Smooth-ish random colours (so bilinear weights matter) and labels with void."""
  rng = np.random.default_rng(seed)
  image = rng.integers(0, 256, (height, width, 3)).astype(np.uint8)
  image = cv2.GaussianBlur(image, (0, 0), 1.0)  # Any uint8 image would do.
  label = rng.integers(0, 21, (height, width)).astype(np.int32)
  label[rng.random((height, width)) < 0.1] = 255
  return image, label


def _seed(i):
  return tf.stack([tf.constant(11, tf.int64), tf.cast(i, tf.int64)])


def _caffe_reference(image, label, draw, crop, mean_rgb):
  """TransformImgAndSeg with cv2 / numpy: (float image crop, label crop, valid)."""
  h, w = (int(v) for v in draw['size'])
  if (h, w) != image.shape[:2]:
    image = cv2.resize(image, (w, h), interpolation=cv2.INTER_LINEAR)
    label = cv2.resize(label.astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST)
  image = image.astype(np.float64)
  ph, pw = max(crop - h, 0), max(crop - w, 0)
  image = cv2.copyMakeBorder(image, 0, ph, 0, pw, cv2.BORDER_CONSTANT,
                             value=tuple(float(m) for m in mean_rgb))
  label = cv2.copyMakeBorder(label.astype(np.uint8), 0, ph, 0, pw, cv2.BORDER_CONSTANT,
                             value=255)
  valid = np.zeros(image.shape[:2], bool)
  valid[:h, :w] = True
  top, left = int(draw['top']), int(draw['left'])
  crops = [a[top:top + crop, left:left + crop] for a in (image, label, valid)]
  if bool(draw['flip']):
    crops = [a[:, ::-1] for a in crops]
  return crops


@pytest.mark.parametrize('height,width', [(37, 53), (45, 31), (50, 61)])
def test_scaled_sizes_are_truncated_as_caffe(height, width):
  sizes = {tuple(int(v) for v in input_pipeline.draw_augmentation(
      _seed(i), height, width, _input_config())['size']) for i in range(60)}
  want = {(int(np.float32(height) * np.float32(s)), int(np.float32(width) * np.float32(s)))
          for s in SCALES}
  assert sizes == want
  assert want == {(int(height * s), int(width * s)) for s in SCALES}  # Exact scales.
  # 'aligned' rounds: 37 * 0.75 = 27.75 -> 28, not Caffe's 27.
  aligned = {tuple(int(v) for v in input_pipeline.draw_augmentation(
      _seed(i), height, width, _input_config('aligned'))['size']) for i in range(60)}
  assert aligned == {(round(height * s), round(width * s)) for s in SCALES} != want


@pytest.mark.parametrize('scale', [0.5, 0.75, 1.0, 1.25, 1.5, 0.37, 2.3])
@pytest.mark.parametrize('height,width', [(37, 53), (20, 9), (64, 48)])
def test_resizing_equals_opencv_bit_for_bit(height, width, scale):
  image, label = _example(height, width, seed=int(scale * 100))
  size = (int(height * scale), int(width * scale))
  want = cv2.resize(image, size[::-1], interpolation=cv2.INTER_LINEAR)
  got = caffe_layer.cv_resize_linear(image, tf.constant(size)).numpy()
  np.testing.assert_array_equal(got, want)  # OpenCV's fixed point, exactly.
  want = cv2.resize(label.astype(np.uint8), size[::-1], interpolation=cv2.INTER_NEAREST)
  got = caffe_layer.cv_resize_nearest(label[..., None], tf.constant(size)).numpy()
  np.testing.assert_array_equal(got[..., 0], want)


def test_resizing_a_voc_sized_image_equals_opencv():
  image, label = _example(375, 500)
  for scale in (0.5, 0.75, 1.25, 1.5):
    size = (int(375 * scale), int(500 * scale))
    np.testing.assert_array_equal(
        caffe_layer.cv_resize_linear(image, tf.constant(size)).numpy(),
        cv2.resize(image, size[::-1], interpolation=cv2.INTER_LINEAR))
    np.testing.assert_array_equal(
        caffe_layer.cv_resize_nearest(label[..., None], tf.constant(size)).numpy()[..., 0],
        cv2.resize(label.astype(np.uint8), size[::-1], interpolation=cv2.INTER_NEAREST))


@pytest.mark.parametrize('height,width,crop', [(37, 53, 41), (23, 29, 41), (61, 47, 33)])
def test_train_preprocess_is_caffes_transform(height, width, crop):
  image, label = _example(height, width)
  mean = input_pipeline.pad_colour(ml_collections.ConfigDict(
      {'pixel_mean': CAFFE_MEAN_BGR, 'channel_order': 'bgr'}))
  config = _input_config(crop=crop)
  example = {'image': tf.constant(image), 'label': tf.constant(label[..., None])}
  flips = pads = 0
  fn = lambda i: input_pipeline.train_preprocess(example, _seed(i), config, mean)
  ds = tf.data.Dataset.range(12).map(fn)
  for i, from_ds in zip(range(12), ds.as_numpy_iterator()):
    out = fn(i)
    draw = input_pipeline.draw_augmentation(_seed(i), height, width, config)
    want_image, want_label, want_valid = _caffe_reference(image, label, draw, crop, mean)
    assert out['image'].dtype == tf.uint8 and out['valid'].dtype == tf.bool
    np.testing.assert_array_equal(out['valid'].numpy(), want_valid)
    np.testing.assert_array_equal(out['label'].numpy(), want_label)
    np.testing.assert_array_equal(out['image'].numpy()[want_valid], want_image[want_valid])
    # Padding: the mean colour rounded to uint8 (the model zeroes it by 'valid').
    np.testing.assert_array_equal(out['image'].numpy()[~want_valid],
                                  np.broadcast_to(np.round(mean), want_image[~want_valid].shape))
    for key in ('image', 'label', 'valid'):
      np.testing.assert_array_equal(out[key].numpy(), from_ds[key])
    flips += bool(draw['flip'])
    pads += bool((~want_valid).any())
  assert 0 < flips < 12 and pads > 0


def test_unknown_resize_mode_is_a_user_error():
  with pytest.raises(UserError, match='input.resize'):
    input_pipeline.draw_augmentation(_seed(0), 20, 20, _input_config('bicubic'))


def _tiny_caffe_config(tiny_config):
  config = tiny_config
  config.input.resize = 'caffe'
  config.input.scales = (0.5, 0.75)  # Shapes' 64 px images: crops of 32 pad often.
  config.input.crop_size = 40
  config.model.channel_order = 'bgr'
  config.model.pixel_mean = CAFFE_MEAN_BGR
  config.model.pixel_std = (58.4, 57.1, 57.4)
  return config


def test_padding_is_exactly_zero_after_the_models_normalisation(tiny_config, tiny_builder):
  config = _tiny_caffe_config(tiny_config)
  batch = next(iter(input_pipeline.train_iterator(config, tiny_builder, 8)))
  valid = batch['valid']
  assert (~valid).any() and valid.any()
  assert (batch['label'][~valid] == 255).all()
  model = models.build(config)
  normalize = lambda *a: model.apply({}, *a, method=model.normalize)
  x = np.asarray(normalize(batch['image'], valid))
  assert (x[~valid] == 0).all()
  np.testing.assert_array_equal(x[valid], np.asarray(normalize(batch['image']))[valid])
  # Without the mask, the uint8 mean colour is not 0 (the issue: up to 0.5 / std off).
  assert np.abs(np.asarray(normalize(batch['image']))[~valid]).max() > 1e-3
  # Caffe's check: the real config's VGG model, 0-255 BGR minus the mean.
  voc = voc_largefov.get_config()
  vgg = models.build(voc)
  mean = input_pipeline.pad_colour(voc.model)
  padded = np.broadcast_to(np.round(mean).astype(np.uint8), (1, 4, 4, 3))
  x = np.asarray(vgg.apply({}, padded, np.zeros((1, 4, 4), bool), method=vgg.normalize))
  assert (x == 0).all()


def _exact_mean_fill(config, images, valid):
  """What Caffe feeds: padding = the mean in float (normalised to exactly 0)."""
  mean = np.asarray(input_pipeline.pad_colour(config.model), np.float32)
  return np.where(valid[..., None], images.astype(np.float32), mean)


def test_model_with_valid_equals_float_mean_padding_with_msc(tiny_config, tiny_builder):
  config = _tiny_caffe_config(tiny_config)
  config.model.input_scales = (1.0, 0.5)  # MSC resizes the zeroed input.
  batch = next(iter(input_pipeline.train_iterator(config, tiny_builder, 2)))
  model = models.build(config)
  variables = model.init(jax.random.key(0), batch['image'], train=False)
  black = np.where(batch['valid'][..., None], batch['image'], 0)  # Any padding.
  masked = model.apply(variables, black, valid=batch['valid'])
  exact = model.apply(variables, _exact_mean_fill(config, batch['image'], batch['valid']))
  plain = model.apply(variables, black)
  np.testing.assert_allclose(np.asarray(masked), np.asarray(exact), rtol=1e-5, atol=1e-5)
  assert np.abs(np.asarray(masked) - np.asarray(plain)).max() > 1e-2


def test_train_step_and_grad_accum_use_the_padding_mask(tiny_config, tiny_builder):
  config = _tiny_caffe_config(tiny_config)
  config.model.batch_norm = 'frozen'
  batch = next(iter(input_pipeline.train_iterator(config, tiny_builder, 8)))
  assert (~batch['valid']).any()
  exact = {'image': _exact_mean_fill(config, batch['image'], batch['valid']),
           'label': batch['label']}
  mesh = sharding.make_mesh(jax.devices()[:2])
  model = models.build(config)
  tx, schedule = optim.create_optimizer(config.optim, config.num_train_steps, classifiers=models.classifier_paths(config))

  def loss(cfg, b):  # One step from the same initial state (seeded; donated).
    step = train_step.make_train_step(cfg, model, tx, schedule, mesh)
    state = train_step.create_train_state(cfg, model, tx, mesh)
    return float(step(state, sharding.to_global(b, mesh))[1]['loss'])

  # Whatever the padding holds, the model sees 0 there: black padding gives
  # the loss of the exact float mean (and the uint8 mean, 1e-6 off, too).
  black = dict(batch, image=np.where(batch['valid'][..., None], batch['image'], 0))
  masked = loss(config, black)
  np.testing.assert_allclose(masked, loss(config, exact), rtol=1e-5)
  np.testing.assert_allclose(masked, loss(config, batch), rtol=1e-5)
  config.grad_accum_steps = 2  # Micro-batches get their rows of the mask.
  np.testing.assert_allclose(masked, loss(config, black), rtol=1e-5)
  config.grad_accum_steps = 1
  config.input.resize = 'aligned'  # The mask unused: black padding is seen.
  assert abs(loss(config, black) - masked) > 1e-4 * masked


def test_eval_step_zeroes_padding_like_the_model(tiny_config, tiny_builder):
  config = _tiny_caffe_config(tiny_config)
  batch = next(input_pipeline.eval_iterator(config, tiny_builder,
                                            config.dataset.eval_split, 8))
  assert (~batch['valid']).any()
  mesh = sharding.make_mesh(jax.devices()[:2])
  model = models.build(config)
  variables = model.init(jax.random.key(0), batch['image'][:1], train=False)
  black = np.where(batch['valid'][..., None], batch['image'], 0)  # Any padding.
  global_batch = sharding.to_global(
      {'image': black, 'label': batch['label'], 'valid': batch['valid']}, mesh)
  out = evaluation.make_eval_step(config, model, mesh)(variables, global_batch)
  options = inference.options_from_config(config)
  want = inference.logits_at_image_size(
      lambda x: model.apply(variables, x, valid=jnp.asarray(batch['valid'])),
      batch['image'], options)
  np.testing.assert_allclose(np.asarray(out['logits']), np.asarray(want), rtol=1e-5, atol=1e-5)
  config.input.resize = 'aligned'  # Today's behaviour: the padding is seen as it is.
  plain = evaluation.make_eval_step(config, model, mesh)(variables, global_batch)
  assert np.abs(np.asarray(plain['logits']) - np.asarray(want)).max() > 1e-2
