"""Writes a small folder of images and masks in the layout your data takes.

    python -m deeplab_jax.data.example_folder --output /tmp/my_data

gives `images/<id>.jpg`, `masks/<id>.png` (grey PNGs: 0 background, 1 the
object, 255 void on its outline) and `splits/{train,val}.txt`: a binary
task (one object class: every shape of the built-in dataset) to walk
docs/own_data.md through without data of your own. `--mask_values=0,255`
writes the foreground as 255 instead, the mistake that guide's
`python -m deeplab_jax.data.inspect` catches.
"""

from __future__ import annotations

import os

from absl import flags
import numpy as np
from PIL import Image

from deeplab_jax import cli
from deeplab_jax.data import shapes_render
from deeplab_jax.errors import UserError

CLASS_NAMES = ('background', 'object')

_OUTPUT = flags.DEFINE_string('output', None, 'The folder to write (must not exist).')
_NUM_TRAIN = flags.DEFINE_integer('num_train', 300, 'Training images.')
_NUM_VAL = flags.DEFINE_integer('num_val', 60, 'Validation images.')
_MASK_VALUES = flags.DEFINE_list('mask_values', ['0', '1'],
                                 'Stored values of background and object.')
_SEED = flags.DEFINE_integer('seed', 0, 'Which images.')


def write(output, num_train=300, num_val=60, mask_values=(0, 1), seed=0,
          style=shapes_render.Style(min_size=64, max_size=128, void_width=1)):
  """Writes the folder (see module doc); returns {split: ids}."""
  if os.path.exists(output):
    raise UserError(f'{output} exists; give a new folder to write the example into')
  for sub in ('images', 'masks', 'splits'):
    os.makedirs(os.path.join(output, sub))
  lut = np.full(256, shapes_render.IGNORE_LABEL, np.uint8)
  lut[0] = mask_values[0]
  lut[1:shapes_render.NUM_CLASSES] = mask_values[1]
  splits = {}
  for split, count in (('train', num_train), ('val', num_val)):
    ids = []
    for index in range(count):
      image, label = shapes_render.render_example(seed, split, index, style)
      image_id = f'{split}_{index:04d}'
      Image.fromarray(image).save(os.path.join(output, 'images', image_id + '.jpg'),
                                  quality=95)
      Image.fromarray(lut[label]).save(os.path.join(output, 'masks', image_id + '.png'))
      ids.append(image_id)
    with open(os.path.join(output, 'splits', split + '.txt'), 'w', encoding='utf-8') as f:
      f.write('\n'.join(ids) + '\n')
    splits[split] = ids
  return splits


def main():
  if not _OUTPUT.value:
    raise UserError('--output=DIR is required: the folder to write')
  values = tuple(int(v) for v in _MASK_VALUES.value)
  splits = write(_OUTPUT.value, _NUM_TRAIN.value, _NUM_VAL.value, values, _SEED.value)
  print(f'Wrote {sum(map(len, splits.values()))} images and masks to {_OUTPUT.value} '
        f'(classes {CLASS_NAMES}, stored as {values}, 255 void).')


if __name__ == '__main__':
  cli.run(main)
