"""A new dataset is one module that registers itself: here, this test file.

`ToyStripes` is defined and registered below and nowhere else; the stock
`input_pipeline` builds it, reads its own feature names, maps its stored
label values through its table, and runs its manual-download check.
"""

import numpy as np
import pytest
import tensorflow_datasets as tfds

from configs import shapes as shapes_config
from configs import tiny
from deeplab_jax.data import datasets
from deeplab_jax.data import input_pipeline
from deeplab_jax.errors import UserError

TOY_CLASSES = ('background', 'stripe', 'dot')
# Stored mask values 0, 10, 20 are classes 0, 1, 2; 99 is void; the rest too.
TOY_TABLE = np.full(256, 255, np.uint8)
TOY_TABLE[[0, 10, 20]] = [0, 1, 2]


class ToyStripes(tfds.core.GeneratorBasedBuilder):
  """Vertical stripes (class 1) and a dot (class 2) on a grey background."""

  VERSION = tfds.core.Version('1.0.0')

  def _info(self):
    return self.dataset_info_from_configs(features=tfds.features.FeaturesDict({
        'photo': tfds.features.Image(shape=(None, None, 3)),
        'mask': tfds.features.Image(shape=(None, None, 1)),
        'image_id': tfds.features.Text(),
    }))

  def _split_generators(self, dl_manager):
    del dl_manager
    return {'train': self._generate_examples(6), 'val': self._generate_examples(3)}

  def _generate_examples(self, count):
    for i in range(count):
      height, width = 40 + 2 * i, 48
      mask = np.zeros((height, width, 1), np.uint8)
      mask[:, i % 8::8] = 10
      mask[5:9, 5:9] = 20
      mask[-1] = 99
      image = np.full((height, width, 3), 128, np.uint8)
      image[mask[..., 0] == 10] = (200, 30, 30)
      image[mask[..., 0] == 20] = (30, 30, 200)
      yield f'toy_{i}', {'photo': image, 'mask': mask, 'image_id': f'toy_{i}'}


datasets.register(
    'toy_stripes',
    features=datasets.Features(image='photo', label='mask', label_table=TOY_TABLE,
                               class_names=TOY_CLASSES))


def _needs_archive(manual_dir):
  raise UserError(f'toy_manual needs toy.zip in {manual_dir}')


datasets.register('toy_manual', features=datasets.Features(class_names=TOY_CLASSES),
                  builder=lambda config, data_dir: ToyStripes(data_dir=data_dir),
                  check_manual_dir=_needs_archive)


def _toy_config(tmp_path, name='toy_stripes'):
  config = tiny.get_config(shapes_config)
  config.dataset.name = name
  config.dataset.builder_config = ''
  config.dataset.data_dir = str(tmp_path)
  config.dataset.num_classes = len(TOY_CLASSES)
  config.dataset.class_names = TOY_CLASSES
  return config


def test_registered_toy_dataset_reads_through_input_pipeline(tmp_path):
  config = _toy_config(tmp_path)
  builder = input_pipeline.get_builder(config.dataset)
  assert builder.info.splits['train'].num_examples == 6
  batch = next(iter(input_pipeline.train_iterator(config, builder, 4)))
  crop = config.input.crop_size
  assert batch['image'].shape == (4, crop, crop, 3)
  assert set(np.unique(batch['label']).tolist()) <= {0, 1, 2, 255}
  assert 1 in batch['label']  # Stored 10 arrives as class 1.

  evals = list(input_pipeline.eval_iterator(config, builder, 'val', 3))
  assert len(evals) == 1
  first = evals[0]
  assert sorted(first['id'].tolist()) == [b'toy_0', b'toy_1', b'toy_2']
  index = first['id'].tolist().index(b'toy_0')
  height, width = first['size'][index]
  label = first['label'][index, :height, :width]
  assert (height, width) == (40, 48)
  assert label[6, 6] == 2 and label[20, 0] == 1 and label[20, 1] == 0
  assert (label[-1] == 255).all()  # Stored 99: void through the table.
  np.testing.assert_array_equal(first['image'][index, 6, 6], (30, 30, 200))


def test_registry_entry_checks_classes_and_manual_dir(tmp_path):
  assert {'toy_stripes', 'toy_manual', 'synthetic_shapes', 'voc2012_sbd', 'cityscapes',
          'segmentation_folder'} <= set(datasets.names())
  config = _toy_config(tmp_path)
  config.dataset.num_classes = 4
  config.dataset.class_names = TOY_CLASSES + ('extra',)
  with pytest.raises(UserError, match="dataset 'toy_stripes' has 3 classes but "
                     'config.dataset.num_classes=4'):
    input_pipeline.get_builder(config.dataset)
  config = _toy_config(tmp_path / 'manual', name='toy_manual')
  with pytest.raises(UserError, match='toy_manual needs toy.zip in .*downloads/manual'):
    input_pipeline.get_builder(config.dataset)
  with pytest.raises(ValueError, match='already registered'):
    datasets.register('toy_stripes')


def test_unregistered_name_is_a_plain_tfds_dataset(tmp_path):
  config = _toy_config(tmp_path, name='no_such_dataset_anywhere')
  config.dataset.builder_config = 'x'
  assert datasets.features(config.dataset) == datasets.Features()
  with pytest.raises(UserError, match="cannot load dataset 'no_such_dataset_anywhere/x'"):
    input_pipeline.get_builder(config.dataset)
