"""The Python inference API: masks for your images in three lines.

    from deeplab_jax.segmenter import Segmenter
    segmenter = Segmenter.from_workdir('configs/shapes.py', 'runs/shapes')  # after `make demo`
    result = segmenter('photo.jpg')        # or a numpy HxWx3 uint8 array, a PIL image, a list
    result.labels                          # HxW uint8 class indices, the image's size

`Segmenter.from_exported('exported/shapes.stablehlo')` runs an exported model
(any format of deeplab_jax/export) instead. Calls take one image or a list:
numpy arrays (HxWx3 RGB uint8; HxW greyscale; HxWx4 RGBA, alpha dropped),
PIL images or paths, any sizes. A list is batched: images whose sides pad
to the same bucket (`serving.padded_side`) go through together,
`batch_size` at a time, on every device JAX has (from_workdir; the batch
is sharded over them). Options per call: `probabilities=True` adds the
softmax (HxWxC float32), `crf=True` refines with the dense CRF (the model's
`config.crf`, backend `config.eval.crf_backend`; an export carries both in
its metadata). The labels equal `predict.py`'s (which uses this class).
"""

from __future__ import annotations

import dataclasses
import os
import time
from typing import Optional, Sequence

import numpy as np

from deeplab_jax.errors import UserError
from deeplab_jax.export import serving

MAX_PIXELS = 50_000_000  # A decompression bomb guard: PIL's own limit is ~89 M.


@dataclasses.dataclass
class Segmentation:
  """One image's result. labels: HxW uint8; probabilities: HxWxC float32 or None."""
  labels: np.ndarray
  class_names: tuple[str, ...]
  probabilities: Optional[np.ndarray] = None
  logits: Optional[np.ndarray] = None
  crf_seconds: Optional[float] = None

  def class_shares(self) -> dict[str, float]:
    """{class name: fraction of the image's pixels}, for every class."""
    counts = np.bincount(self.labels.ravel(), minlength=len(self.class_names))
    return {name: float(c) / self.labels.size for name, c in zip(self.class_names, counts)}

  def save_png(self, path, palette=None):
    """The mask as a palette PNG (pixel value = class index, VOC colours)."""
    from deeplab_jax import visualize  # pylint: disable=import-outside-toplevel
    visualize.write_mask_png(path, self.labels, palette)


def as_rgb(image, name='image') -> np.ndarray:
  """HxWx3 uint8 RGB from a numpy array, PIL image or path; UserError otherwise."""
  from PIL import Image  # pylint: disable=import-outside-toplevel
  if isinstance(image, (str, os.PathLike)):
    from deeplab_jax import predict_lib  # pylint: disable=import-outside-toplevel
    return check_size(predict_lib.read(os.fspath(image)), os.fspath(image))
  if isinstance(image, Image.Image):
    if image.mode in ('I;16', 'I;16B', 'I;16L', 'I', 'F'):
      raise UserError(f'{name} is a {image.mode!r} (16/32-bit) image: convert it to 8-bit '
                      'RGB first, e.g. (image / 256).astype(uint8) for 16-bit data')
    return check_size(np.asarray(image.convert('RGB'), np.uint8), name)
  array = np.asarray(image)
  if array.ndim == 2:
    array = np.repeat(array[:, :, None], 3, axis=2)
  if array.ndim != 3 or array.shape[2] not in (3, 4):
    raise UserError(f'{name} has shape {array.shape}: expected HxWx3 RGB (or HxW grey, '
                    'HxWx4 RGBA)')
  array = array[:, :, :3]
  if array.dtype != np.uint8:
    if not np.issubdtype(array.dtype, np.integer) or array.min() < 0 or array.max() > 255:
      raise UserError(f'{name} is {array.dtype} with values {array.min()}..{array.max()}: '
                      'pass uint8 RGB (0-255); scale 16-bit or float images first')
    array = array.astype(np.uint8)
  return check_size(array, name)


def check_size(image_HxWx3, name):
  h, w = image_HxWx3.shape[:2]
  if h < 1 or w < 1:
    raise UserError(f'{name} is empty ({h}x{w})')
  if h * w > MAX_PIXELS:
    raise UserError(f'{name} is {w}x{h} = {h * w / 1e6:.0f} megapixels, more than the '
                    f'{MAX_PIXELS / 1e6:.0f} this accepts: downscale it first')
  return image_HxWx3


def _power_of_two_at_least(n, cap):
  size = 1
  while size < n:
    size *= 2
  return min(size, cap)


class Segmenter:
  """Images in, `Segmentation`s out (see the module docstring)."""

  def __init__(self, run, class_names, pad_value, align_corners, crf=None,
               batch_size=8, batch_multiple=1, exported=False, fixed_size=None,
               fixed_batch=None):
    """`run(images_BxHxWx3) -> {'logits': BxHxWxC}`: a serving function (float
    images padded to their bucket) or, `exported`, an export's (uint8 images)."""
    self.exported = bool(exported)
    self._run = run
    self.class_names = tuple(class_names)
    self.pad_value = np.asarray(pad_value, np.float32)
    self.align_corners = bool(align_corners)
    self.crf_settings = crf  # (CRFParams, backend, processes) or None.
    self.batch_size = int(batch_size)
    self.batch_multiple = int(batch_multiple)
    self.fixed_size = fixed_size
    self.fixed_batch = fixed_batch

  @classmethod
  def from_workdir(cls, config, workdir, step=None, devices=None, batch_size=8):
    """A checkpoint (training run or converted weights) of `config` (a
    ConfigDict or a path to a config file), on `devices` (default: all);
    `step`: None / 'latest', a step number or 'best' (checkpoint.resolve_step)."""
    import jax  # pylint: disable=import-outside-toplevel
    from deeplab_jax import checkpoint  # pylint: disable=import-outside-toplevel
    from deeplab_jax import crf as crf_lib  # pylint: disable=import-outside-toplevel
    from deeplab_jax import inference  # pylint: disable=import-outside-toplevel
    from deeplab_jax import models  # pylint: disable=import-outside-toplevel
    from deeplab_jax import sharding  # pylint: disable=import-outside-toplevel
    if isinstance(config, (str, os.PathLike)):
      config = load_config(os.fspath(config))
    mesh = sharding.make_mesh(list(devices) if devices else jax.devices())
    variables, _ = checkpoint.load_variables(config, workdir, step, mesh)
    model = models.build(config)
    params, backend = crf_lib.settings(config)
    batch = sharding.batch_sharded(mesh)
    fn = jax.jit(lambda v, x: serving.make_serving_fn(config, model, v, ('logits',))(x),
                 in_shardings=(sharding.replicated(mesh), batch), out_shardings=batch)

    def run(images):
      return {'logits': np.asarray(fn(variables, images)['logits'])}
    size = mesh.devices.size
    return cls(run, config.dataset.class_names, inference.pad_colour(config.model),
               config.model.align_corners,
               (params, backend, config.eval.crf_processes or None),
               batch_size=-(-batch_size // size) * size, batch_multiple=size)

  @classmethod
  def from_exported(cls, path, batch_size=8):
    """An artifact of `python export.py` (its metadata must sit beside it)."""
    from deeplab_jax import crf as crf_lib  # pylint: disable=import-outside-toplevel
    from deeplab_jax import export  # pylint: disable=import-outside-toplevel
    run, metadata = export.load(path)
    if 'logits' not in metadata['outputs']:
      raise UserError(f'{path} was exported without logits (--outputs '
                      f'{",".join(metadata["outputs"])}); export with --outputs logits,labels')
    dims = [d.strip() for d in metadata['input']['shape'].split(',')]
    fixed = tuple(int(d) for d in dims[1:3]) if all(d.isdigit() for d in dims[1:3]) else None
    return cls(run, metadata['class_names'], metadata['pad_value'],
               metadata['align_corners'],
               (crf_lib.from_config(metadata['crf']), 'jax', None),
               batch_size=batch_size, exported=True, fixed_size=fixed,
               fixed_batch=int(dims[0]) if dims[0].isdigit() else None)

  def __call__(self, images, probabilities=False, crf=False):
    """One image -> a Segmentation; a list (or tuple) -> a list of them."""
    single = not isinstance(images, (list, tuple))
    items = [images] if single else list(images)
    arrays = [as_rgb(image, f'image {i}' if not isinstance(image, (str, os.PathLike))
                     else os.fspath(image)) for i, image in enumerate(items)]
    logits = self.logits(arrays)
    results = []
    for image, image_logits in zip(arrays, logits):
      labels, seconds = image_logits.argmax(-1), None
      if crf:
        labels, seconds = self._refine(image, image_logits)
      probs = None
      if probabilities:
        e = np.exp(image_logits - image_logits.max(-1, keepdims=True))
        probs = e / e.sum(-1, keepdims=True)
      results.append(Segmentation(labels.astype(np.uint8), self.class_names, probs,
                                  image_logits, seconds))
    return results[0] if single else results

  def _target(self, h, w):
    """The size an h x w image is batched at: its bucket (`serving.padded_side`,
    padded on the host with the exact mean colour, as predict.py does) for a
    checkpoint; its own size for an export, which pads inside (a uint8 input
    cannot hold the mean colour exactly), and a fixed-size export's size."""
    if self.exported and self.fixed_size is not None and (h, w) != tuple(self.fixed_size):
      fh, fw = self.fixed_size
      raise UserError(f'this export takes {fh}x{fw} images (fixed at export), not {h}x{w}: '
                      'resize the image, or export with symbolic sizes (--format stablehlo '
                      'or savedmodel, no --height / --width)')
    if self.exported:
      return h, w
    return (serving.padded_side(h, self.align_corners),
            serving.padded_side(w, self.align_corners))

  def logits(self, images_HxWx3: Sequence[np.ndarray]) -> list[np.ndarray]:
    """float32 HxWxC logits of each image, batched by `_target` size."""
    groups = {}
    for index, image in enumerate(images_HxWx3):
      groups.setdefault(self._target(*image.shape[:2]), []).append(index)
    out = [None] * len(images_HxWx3)
    for (ph, pw), indices in groups.items():
      for start in range(0, len(indices), self.batch_size):
        chunk = indices[start:start + self.batch_size]
        size = self.fixed_batch or _power_of_two_at_least(len(chunk), self.batch_size)
        size = -(-size // self.batch_multiple) * self.batch_multiple
        if self.exported:
          batch = np.zeros((size, ph, pw, 3), np.uint8)
        else:
          batch = np.empty((size, ph, pw, 3), np.float32)
          batch[:] = self.pad_value
        for row, index in enumerate(chunk):
          h, w = images_HxWx3[index].shape[:2]
          batch[row, :h, :w] = images_HxWx3[index]
        logits = self._run(batch)['logits']
        for row, index in enumerate(chunk):
          h, w = images_HxWx3[index].shape[:2]
          out[index] = np.asarray(logits[row, :h, :w], np.float32)
    return out

  def _refine(self, image_HxWx3, logits_HxWxC):
    from deeplab_jax import crf  # pylint: disable=import-outside-toplevel
    params, backend, processes = self.crf_settings
    start = time.perf_counter()
    scores = crf.scores_from_logits(logits_HxWxC, params)
    q = crf.refine(image_HxWx3[None], scores[None], params, backend=backend,
                   processes=processes)[0]
    return q.argmax(-1), time.perf_counter() - start


def load_config(path):
  """A config file's `get_config()` (`path` or `path:argument`, as --config takes)."""
  from ml_collections.config_flags import config_flags  # pylint: disable=import-outside-toplevel
  try:
    return config_flags.ConfigFileFlagParser('config', lock_config=False).parse(path)
  except (OSError, AttributeError, ImportError, SyntaxError, ValueError) as e:
    raise UserError(f'cannot load config {path}: {e}') from e
