"""The built-in dataset: deterministic, labels in range, VOC-like void band."""

import numpy as np
import tensorflow_datasets as tfds

from deeplab_jax.data import shapes_render
from deeplab_jax.data import input_pipeline

NUM_CLASSES = shapes_render.NUM_CLASSES


def _check_void_band(label):
  """No two 4-neighbours carry different non-void labels."""
  for a, b in ((label[1:], label[:-1]), (label[:, 1:], label[:, :-1])):
    both = (a != 255) & (b != 255)
    assert not np.any(both & (a != b))


def test_render_is_a_pure_function_of_seed_split_index():
  a = shapes_render.render_example(0, 'train', 7)
  b = shapes_render.render_example(0, 'train', 7)
  np.testing.assert_array_equal(a[0], b[0])
  np.testing.assert_array_equal(a[1], b[1])
  other = shapes_render.render_example(0, 'val', 7)
  assert a[0].shape != other[0].shape or not np.array_equal(a[0], other[0])


def test_rendered_examples_sizes_labels_and_void_band():
  shapes_seen = set()
  classes = set()
  for i in range(40):
    image, label = shapes_render.render_example(3, 'train', i)
    h, w, c = image.shape
    assert image.dtype == np.uint8 and c == 3
    assert 96 <= h <= 192 and 96 <= w <= 192
    assert label.shape == (h, w) and label.dtype == np.uint8
    values = set(np.unique(label).tolist())
    assert values <= set(range(NUM_CLASSES)) | {255}
    assert 255 in values  # Every image has at least one object, hence a boundary.
    _check_void_band(label)
    shapes_seen.add(h == w)
    classes |= values
  assert False in shapes_seen  # Non-square images occur.
  assert classes >= set(range(NUM_CLASSES))  # Every class occurs.


def test_colour_does_not_give_the_class():
  """The mean colour of objects of one class spans the colour range."""
  colours = {c: [] for c in range(1, NUM_CLASSES)}
  for i in range(60):
    image, label = shapes_render.render_example(1, 'train', i)
    for c in colours:
      if (label == c).sum() > 50:
        colours[c].append(image[label == c].mean(axis=0))
  for c, values in colours.items():
    spread = np.ptp(np.asarray(values), axis=0)
    assert values and spread.min() > 100, (c, spread)


def _examples(builder, split):
  ds = builder.as_dataset(split=split, shuffle_files=False)
  out = {}
  for ex in tfds.as_numpy(ds):
    out[ex['image_id'].decode()] = (ex['image'], ex['segmentation_mask'])
  return out


def test_builder_is_deterministic_and_labels_in_range(tiny_builder, tmp_path,
                                                      tiny_config):
  tiny_config.dataset.data_dir = str(tmp_path)
  again = input_pipeline.get_builder(tiny_config.dataset)
  for split, size in (('train', 24), ('val', 8)):
    first, second = _examples(tiny_builder, split), _examples(again, split)
    assert len(first) == size and first.keys() == second.keys()
    for key, (image, mask) in first.items():
      np.testing.assert_array_equal(image, second[key][0])
      np.testing.assert_array_equal(mask, second[key][1])
      assert mask.shape == image.shape[:2] + (1,)
      assert set(np.unique(mask).tolist()) <= set(range(NUM_CLASSES)) | {255}
  assert not set(_examples(tiny_builder, 'train')) & set(_examples(tiny_builder, 'val'))
