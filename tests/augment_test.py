"""Training augmentation keeps image and label aligned, op by op, eagerly and in tf.data.

The test image is made of blocks, one class per block and one colour per
class; label pixels within 2 px of a colour edge are void (255), as VOC's
object borders are. Bilinear resizing mixes colours only across edges, so
after any aligned augmentation every non-void label pixel still has exactly
its class's colour. A misalignment of more than the void band (a crop offset,
a flip or a scale applied to one and not the other) breaks that.
"""

import ml_collections
import numpy as np
import pytest
import tensorflow as tf

from deeplab_jax.data import input_pipeline

NUM_CLASSES = 6
COLOURS = np.array([[250, 10, 10], [10, 250, 10], [10, 10, 250], [250, 250, 10],
                    [10, 250, 250], [130, 60, 200]], np.float32)
MEAN = np.array([123.675, 116.28, 103.53], np.float32)
SCALES = (0.5, 0.75, 1.0, 1.25, 1.5)


def _patterned(height=70, width=90, block=10, band=2, seed=0):
  rng = np.random.default_rng(seed)
  blocks = rng.integers(0, NUM_CLASSES, (height // block + 1, width // block + 1))
  classes = np.kron(blocks, np.ones((block, block), np.int64))[:height, :width]
  image = COLOURS[classes]
  label = classes.copy()
  edge = np.zeros_like(classes, bool)
  edge[1:] |= classes[1:] != classes[:-1]
  edge[:-1] |= classes[1:] != classes[:-1]
  edge[:, 1:] |= classes[:, 1:] != classes[:, :-1]
  edge[:, :-1] |= classes[:, 1:] != classes[:, :-1]
  for _ in range(band - 1):  # Grow the edge to a band.
    grown = edge.copy()
    grown[1:] |= edge[:-1]
    grown[:-1] |= edge[1:]
    grown[:, 1:] |= edge[:, :-1]
    grown[:, :-1] |= edge[:, 1:]
    edge = grown
  label[edge] = 255
  return {'image': tf.constant(image), 'label': tf.constant(label[..., None], tf.int32)}


def _assert_aligned(out):
  image = np.round(np.asarray(out['image'], np.float32))
  label = np.asarray(out['label'])
  label = label[..., 0] if label.ndim == 3 else label
  assert image.shape[:2] == label.shape
  valid = label != 255
  assert valid.any()
  assert set(np.unique(label[valid]).tolist()) <= set(range(NUM_CLASSES))  # Nearest only.
  np.testing.assert_allclose(image[valid], COLOURS[label[valid]], atol=1)


def _seed(i):
  return tf.stack([tf.constant(7, tf.int64), tf.cast(i, tf.int64)])


def _input_config(scales=SCALES, scale_range=(1.0, 1.0), crop=81, flip=True):
  return ml_collections.ConfigDict({'crop_size': crop, 'scales': scales,
                                    'scale_range': scale_range, 'flip': flip})


CONFIGS = {
    'discrete_scales': _input_config(),
    'scale_range': _input_config(scales=(), scale_range=(0.5, 1.5)),
    'no_scale_small_crop': _input_config(scales=(), crop=33),
    'crop_larger_than_image': _input_config(scales=(0.5, 0.75), crop=101),
}


def _draw(example, i, config):
  shape = tf.shape(example['image'])
  return input_pipeline.draw_augmentation(_seed(i), shape[0], shape[1], config)


OPS = {
    'draw+apply': lambda ex, i, c: input_pipeline.apply_augmentation(
        ex, _draw(ex, i, c), c.crop_size, MEAN),
    'train_preprocess': lambda ex, i, c: input_pipeline.train_preprocess(
        ex, _seed(i), c, MEAN),
}


@pytest.mark.parametrize('op', list(OPS))
@pytest.mark.parametrize('name', list(CONFIGS))
def test_augmentation_keeps_alignment_eagerly_and_in_tf_data(op, name):
  example, config, fn = _patterned(), CONFIGS[name], OPS[op]
  eager = [fn(example, i, config) for i in range(10)]
  ds = tf.data.Dataset.range(10).map(lambda i: fn(example, i, config),
                                     num_parallel_calls=tf.data.AUTOTUNE,
                                     deterministic=True)
  for a, b in zip(eager, ds.as_numpy_iterator()):
    assert np.asarray(a['image']).shape[:2] == (config.crop_size, config.crop_size)
    _assert_aligned(a)
    _assert_aligned(b)
    # One seed, one result: eager and tf.data agree exactly.
    np.testing.assert_array_equal(np.asarray(a['image']), b['image'])
    np.testing.assert_array_equal(np.asarray(a['label']), b['label'])


def test_discrete_scales_give_exactly_the_configured_sizes():
  example = _patterned(height=40, width=60)
  sizes = {tuple(_draw(example, i, _input_config())['size'].numpy()) for i in range(80)}
  assert sizes == {(round(40 * s), round(60 * s)) for s in SCALES}


def test_scale_range_stays_in_range_and_varies():
  example = _patterned(height=40, width=60)
  config = _input_config(scales=(), scale_range=(0.5, 1.5))
  heights = {int(_draw(example, i, config)['size'][0]) for i in range(30)}
  assert min(heights) >= 20 and max(heights) <= 60 and len(heights) > 5


def test_unscaled_crop_is_an_exact_window_of_the_image_mirrored_or_not():
  example = _patterned()
  image, label = example['image'].numpy(), example['label'].numpy()
  config = _input_config(scales=(), crop=33)
  flips, places = 0, set()
  for i in range(20):
    draw = _draw(example, i, config)
    top, left = int(draw['top']), int(draw['left'])
    out = input_pipeline.apply_augmentation(example, draw, 33, MEAN)
    want_image = image[top:top + 33, left:left + 33]
    want_label = label[top:top + 33, left:left + 33]
    if bool(draw['flip']):
      flips += 1
      want_image, want_label = want_image[:, ::-1], want_label[:, ::-1]
    np.testing.assert_allclose(out['image'].numpy(), want_image, atol=0.05)
    np.testing.assert_array_equal(out['label'].numpy(), want_label)
    places.add((top, left))
  assert 0 < flips < 20 and len(places) > 10


def test_padding_is_the_mean_colour_and_void_past_the_scaled_image():
  example = _patterned(height=20, width=30)
  config = _input_config(scales=(1.0,), crop=41)
  draw = _draw(example, 0, config)
  draw['flip'] = tf.constant(False)
  out = input_pipeline.apply_augmentation(example, draw, 41, MEAN)
  image, label = out['image'].numpy(), out['label'].numpy()[..., 0]
  np.testing.assert_allclose(image[20:], np.broadcast_to(MEAN, (21, 41, 3)), atol=1e-4)
  np.testing.assert_allclose(image[:, 30:], np.broadcast_to(MEAN, (41, 11, 3)), atol=1e-4)
  assert (label[20:] == 255).all() and (label[:, 30:] == 255).all()
  np.testing.assert_array_equal(label[:20, :30], example['label'].numpy()[..., 0])


def test_pad_to_fills_image_with_mean_and_label_with_void():
  out = input_pipeline.pad_to(_patterned(height=20, width=30), 25, 32, MEAN)
  image, label = out['image'].numpy(), out['label'].numpy()[..., 0]
  assert image.shape == (25, 32, 3)
  np.testing.assert_allclose(image[20:], np.broadcast_to(MEAN, (5, 32, 3)), atol=1e-4)
  np.testing.assert_allclose(image[:, 30:], np.broadcast_to(MEAN, (25, 2, 3)), atol=1e-4)
  assert (label[20:] == 255).all() and (label[:, 30:] == 255).all()


def test_padding_colour_is_the_model_mean_in_rgb():
  # Images are RGB in the pipeline; the model reorders channels itself. So the
  # padding colour is the mean in RGB, which the model's normalisation zeroes.
  caffe = ml_collections.ConfigDict({'pixel_mean': (104.008, 116.669, 122.675),
                                     'channel_order': 'bgr'})
  imagenet = ml_collections.ConfigDict({'pixel_mean': (123.675, 116.28, 103.53),
                                        'channel_order': 'rgb'})
  np.testing.assert_allclose(input_pipeline.pad_colour(caffe), (122.675, 116.669, 104.008))
  np.testing.assert_allclose(input_pipeline.pad_colour(imagenet), (123.675, 116.28, 103.53))
