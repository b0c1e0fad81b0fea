"""TFDS builder for the built-in synthetic shapes dataset (nothing downloaded).

    import tensorflow_datasets as tfds
    from deeplab_jax.data import shapes  # registers 'synthetic_shapes'
    ds = tfds.load('synthetic_shapes', split='val')  # builds on first use

Features match the VOC builder's, so the same pipelines read both: `image`
(uint8 HxWx3), `segmentation_mask` (uint8 HxWx1, class index or 255 = void),
`image_id` (text). Images are rendered by `shapes_render.render_example`.

Configs: `default` (2,000 train / 300 val images, 96-192 px a side, about
40 s to build on one core), `tiny` (24 / 8 images, 40-64 px, for tests) and
`rare_star` (`default` with stars rare in the train split).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import tensorflow_datasets as tfds

from deeplab_jax.data import datasets
from deeplab_jax.data import shapes_render

CLASS_NAMES = shapes_render.CLASS_NAMES


@dataclasses.dataclass
class ShapesConfig(tfds.core.BuilderConfig):
  num_train: int = 2000
  num_val: int = 300
  style: shapes_render.Style = dataclasses.field(default_factory=shapes_render.Style)
  seed: int = 0


class SyntheticShapes(tfds.core.GeneratorBasedBuilder):
  """Textured images of overlapping shapes; the class is the shape."""

  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'Initial release.'}
  BUILDER_CONFIGS = [
      ShapesConfig(name='default', description='2,000 train / 300 val.'),
      ShapesConfig(name='tiny', description='24 train / 8 val, small images.',
                   num_train=24, num_val=8,
                   style=shapes_render.Style(min_size=40, max_size=64,
                                             max_objects=2)),
      # Stars made rare in train (1 in 10 kept: in 108 of 2,000 images, 0.53%
      # of the labelled pixels; default: 862 images, 4.9%), val as
      # `default`'s: class weighting's test case (docs/own_data.md).
      ShapesConfig(name='rare_star', description='default, stars rare in train.',
                   style=shapes_render.Style(rare_class=CLASS_NAMES.index('star'),
                                             rare_keep=0.1)),
  ]

  def _info(self):
    return self.dataset_info_from_configs(
        features=tfds.features.FeaturesDict({
            'image': tfds.features.Image(shape=(None, None, 3)),
            'segmentation_mask': tfds.features.Image(shape=(None, None, 1)),
            'image_id': tfds.features.Text(),
        }),
        supervised_keys=('image', 'segmentation_mask'),
        description=__doc__,
    )

  def _split_generators(self, dl_manager):
    del dl_manager  # Nothing to download.
    cfg = self.builder_config
    return {
        'train': self._generate_examples('train', cfg.num_train),
        'val': self._generate_examples('val', cfg.num_val),
    }

  def _generate_examples(self, split, num_examples):
    cfg = self.builder_config
    for index in range(num_examples):
      image, label = shapes_render.render_example(cfg.seed, split, index,
                                                  cfg.style)
      image_id = f'{split}_{index:05d}'
      yield image_id, {
          'image': image,
          'segmentation_mask': label[..., None].astype(np.uint8),
          'image_id': image_id,
      }


datasets.register('synthetic_shapes', features=datasets.Features(class_names=CLASS_NAMES))
