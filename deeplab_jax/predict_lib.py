"""Masks for anyone's images: files or folders in, VOC palette PNGs out.

    python predict.py --config configs/voc_aspp.py --workdir runs/voc_aspp \\
        --input photos/ --output masks/ [--crf]

Each image (JPEG, PNG, BMP, ...; any size) is padded with the model's mean
colour to a bucketed size per side (`padded_side`: a handful of compiled
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

import jax
import numpy as np

from deeplab_jax import checkpoint
from deeplab_jax import inference
from deeplab_jax import models
from deeplab_jax import sharding
from deeplab_jax.data import files
from deeplab_jax.errors import UserError

IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp', '.gif', '.tif', '.tiff', '.webp', '.ppm')
_BUCKET = 64  # Padded sides step by this: few compilations.


def padded_side(n, align_corners):
  """The side an image side n is padded to: with corners aligned (Caffe's
  convention) the next 64 k + 1, so that the output-stride-8 score map's
  last cell lies on the last padded pixel, as at evaluation's 513 (a side of
  64 k would stretch the upsampled scores by up to a pixel); otherwise the
  next multiple of 64."""
  if align_corners:
    return -(-max(n - 1, 1) // _BUCKET) * _BUCKET + 1
  return -(-n // _BUCKET) * _BUCKET


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


class Predictor:
  """Compiled once per padded size: `labels(image_HxWx3) -> (labels_HxW, logits_HxWxC)`."""

  def __init__(self, config, variables, crf=False):
    self.config = config
    self.mesh = sharding.make_mesh(jax.devices()[:1])  # One image at a time.
    self.variables = jax.device_put(variables, sharding.replicated(self.mesh))
    self.predict = inference.make_predict_fn(config, models.build(config), self.mesh)
    self.pad_value = np.asarray(inference.pad_colour(config.model), np.float32)
    self.crf = None
    if crf:
      from deeplab_jax import crf as crf_lib  # pylint: disable=import-outside-toplevel
      self.crf = crf_lib.settings(config)

  def __call__(self, image_HxWx3):
    h, w = image_HxWx3.shape[:2]
    align = self.config.model.align_corners
    ph, pw = padded_side(h, align), padded_side(w, align)
    padded = np.empty((1, ph, pw, 3), np.float32)
    padded[:] = self.pad_value
    padded[0, :h, :w] = image_HxWx3
    logits = np.asarray(self.predict(self.variables, padded))[0, :h, :w]
    if self.crf is not None:
      from deeplab_jax import crf  # pylint: disable=import-outside-toplevel
      params, backend = self.crf
      scores = crf.scores_from_logits(logits, params)
      q = crf.refine(image_HxWx3[None], scores[None], params, backend=backend,
                     processes=self.config.eval.crf_processes or None)[0]
      return q.argmax(-1).astype(np.uint8), logits
    return logits.argmax(-1).astype(np.uint8), logits


def predict(config, workdir, inputs, output_dir, crf=False, overlays=True, step=None):
  """Writes a mask (and overlay) per input image; returns the mask paths."""
  from deeplab_jax import visualize  # pylint: disable=import-outside-toplevel
  paths = find_images(inputs)
  variables, step = checkpoint.load_variables(
      config, workdir, step, sharding.make_mesh(jax.devices()[:1]))
  predictor = Predictor(config, variables, crf=crf)
  os.makedirs(output_dir, exist_ok=True)
  written = []
  for index, (path, name) in enumerate(zip(paths, _output_names(paths))):
    image = read(path)
    labels, _ = predictor(image)
    mask_path = os.path.join(output_dir, f'{name}.png')
    visualize.write_mask_png(mask_path, labels)
    if overlays:
      visualize.write_overlay_png(os.path.join(output_dir, f'{name}_overlay.png'),
                                  image, labels)
    written.append(mask_path)
    print(f'[{index + 1}/{len(paths)}] {path} ({image.shape[1]}x{image.shape[0]}) -> {mask_path}')
  return written
