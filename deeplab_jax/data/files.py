"""Reading the files datasets are made of, with errors that name the file.

Used by the TFDS builders (VOC 2012 + SBD, Cityscapes, custom folders) while
they prepare a dataset, so bad data stops the build with the file's name
rather than surfacing later as a shape error in training.

    image = files.read_image(data, 'VOC2012/JPEGImages/2007_000032.jpg')  # uint8 HxWx3
    mask = files.read_index_png(data, 'VOC2012/SegmentationClass/2007_000032.png')  # uint8 HxW
    files.check_example(image, mask, num_classes=21, name='2007_000032')

Segmentation masks are palette (or grey) PNGs whose pixel values *are* the
class indices (VOC: 0-20, 255 = void); they are read as indices, never as
colours (TF's PNG decoder would turn a palette PNG into RGB colours).
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from deeplab_jax.errors import UserError

IGNORE_LABEL = 255


def read_image(data: bytes, name: str) -> np.ndarray:
  """An RGB uint8 image (HxWx3) from encoded bytes (JPEG, PNG, ...)."""
  try:
    with Image.open(io.BytesIO(data)) as image:
      return np.asarray(image.convert('RGB'), np.uint8)
  except Exception as e:  # PIL raises several types for bad files.
    raise UserError(f'cannot read image {name}: {e}') from e


def read_index_png(data: bytes, name: str) -> np.ndarray:
  """A label map (HxW uint8) from a palette or greyscale PNG, read as indices."""
  try:
    with Image.open(io.BytesIO(data)) as mask:
      mode = mask.mode
      if mode not in ('P', 'L'):
        what = ('it looks like a colour mask: convert it to ' if mode in ('RGB', 'RGBA')
                else 'save it as ')
        raise UserError(
            f'segmentation mask {name} is a {mode!r} PNG; {what}a palette '
            "('P') or greyscale ('L') PNG whose pixel values are class indices "
            '(docs/datasets.md, "Inspecting a dataset")')
      return np.asarray(mask, np.uint8)
  except UserError:
    raise
  except Exception as e:  # PIL raises several types for bad files.
    raise UserError(f'cannot read segmentation mask {name}: {e}') from e


def check_example(image: np.ndarray, label: np.ndarray, num_classes: int,
                  name: str) -> None:
  """Raises UserError naming `name` if the label does not fit the image or classes."""
  if image.shape[:2] != label.shape[:2]:
    raise UserError(f'{name}: image is {image.shape[0]}x{image.shape[1]} but its '
                    f'segmentation mask is {label.shape[0]}x{label.shape[1]}')
  values = np.unique(label)
  bad = values[(values >= num_classes) & (values != IGNORE_LABEL)][:10]
  if bad.size:
    raise UserError(f'{name}: segmentation mask has values {bad.tolist()}, neither '
                    f'a class (0-{num_classes - 1}) nor {IGNORE_LABEL} (void)')


def encode_index_png(label: np.ndarray, palette: np.ndarray | None = None) -> bytes:
  """A palette PNG of `label` (HxW uint8): the format VOC masks come in."""
  label = np.ascontiguousarray(label, np.uint8)
  mask = Image.frombytes('P', (label.shape[1], label.shape[0]), label.tobytes())
  mask.putpalette((voc_palette() if palette is None else palette).reshape(-1).tolist())
  buffer = io.BytesIO()
  mask.save(buffer, format='PNG')
  return buffer.getvalue()


def voc_palette(num_colours: int = 256) -> np.ndarray:
  """PASCAL VOC's colour map (256x3 uint8): bit-interleaved index bits."""
  palette = np.zeros((num_colours, 3), np.uint8)
  for index in range(num_colours):
    value, r, g, b = index, 0, 0, 0
    for shift in range(7, -1, -1):
      r |= (value & 1) << shift
      g |= ((value >> 1) & 1) << shift
      b |= ((value >> 2) & 1) << shift
      value >>= 3
    palette[index] = (r, g, b)
  return palette
