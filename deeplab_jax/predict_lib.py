"""Masks for anyone's images: files or folders in, VOC palette PNGs out.

    python predict.py --config configs/voc_aspp.py --workdir runs/voc_aspp \\
        --input photos/ --output masks/ [--crf]

Each image (JPEG, PNG, BMP, ...; any size) goes through the inference API
(deeplab_jax/segmenter.py): padded with the model's mean colour to a
bucketed size per side (`export.serving.padded_side`: a handful of compiled
sizes, not one per image), inferred as `config.eval` says (whole or sliding
windows, test-time scales, flip), its logits cropped back to the image and,
with `crf`, refined by the dense CRF (`config.crf`, backend
`config.eval.crf_backend`). Written per image: `<name>.png`, the mask as a
VOC palette PNG of the image's size (pixel value = class index), and with
`overlays` `<name>_overlay.png`, the mask's colours over the image.
Weights: any workdir with a checkpoint, from training or from
`python -m deeplab_jax.convert`. No TensorFlow needed.
"""

from __future__ import annotations

import os

import numpy as np

from deeplab_jax.data import files
from deeplab_jax.errors import UserError

IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp', '.gif', '.tif', '.tiff', '.webp', '.ppm')


def find_images(inputs) -> list[str]:
  """Image paths from files and folders (a folder: its images, sorted, not recursive)."""
  paths = []
  for item in inputs:
    if os.path.isdir(item):
      found = sorted(os.path.join(item, name) for name in os.listdir(item)
                     if name.lower().endswith(IMAGE_EXTENSIONS))
      if not found:
        raise UserError(f'no images ({", ".join(IMAGE_EXTENSIONS)}) in folder {item}')
      paths += found
    elif os.path.isfile(item):
      paths.append(item)
    else:
      raise UserError(f'input {item} is neither an image file nor a folder')
  if not paths:
    raise UserError('no input images: pass --input FILE_OR_FOLDER[,...]')
  return paths


def read(path) -> np.ndarray:
  """RGB uint8 HxWx3 of an image file, or a UserError naming it."""
  try:
    with open(path, 'rb') as f:
      data = f.read()
  except OSError as e:
    raise UserError(f'cannot read image {path}: {e.strerror}') from e
  return files.read_image(data, path)


def _output_names(paths):
  """Distinct output stems: the file's stem, numbered when two inputs share one."""
  names, used = [], {}
  for path in paths:
    stem = os.path.splitext(os.path.basename(path))[0]
    count = used.get(stem, 0)
    used[stem] = count + 1
    names.append(stem if count == 0 else f'{stem}_{count}')
  return names


def predict(config, workdir, inputs, output_dir, crf=False, overlays=True, step=None,
            devices=None, chunk=32):
  """Writes a mask (and overlay) per input image; returns the mask paths.

  The images go through `segmenter.Segmenter` (batched by padded size, on
  `devices`, default all), `chunk` files at a time.
  """
  from deeplab_jax import segmenter as segmenter_lib  # pylint: disable=import-outside-toplevel
  from deeplab_jax import visualize  # pylint: disable=import-outside-toplevel
  paths = find_images(inputs)
  segmenter = segmenter_lib.Segmenter.from_workdir(config, workdir, step, devices)
  os.makedirs(output_dir, exist_ok=True)
  written, names = [], _output_names(paths)
  for start in range(0, len(paths), chunk):
    images = [read(path) for path in paths[start:start + chunk]]
    results = segmenter(images, crf=crf)
    for offset, (image, result) in enumerate(zip(images, results)):
      index = start + offset
      mask_path = os.path.join(output_dir, f'{names[index]}.png')
      result.save_png(mask_path)
      if overlays:
        visualize.write_overlay_png(os.path.join(output_dir, f'{names[index]}_overlay.png'),
                                    image, result.labels)
      written.append(mask_path)
      print(f'[{index + 1}/{len(paths)}] {paths[index]} ({image.shape[1]}x{image.shape[0]}) '
            f'-> {mask_path}')
  return written
