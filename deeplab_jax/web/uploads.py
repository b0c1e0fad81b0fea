"""Uploaded files to RGB images, or a message the page shows instead of a trace.

Accepted: anything PIL decodes to 8-bit (JPEG, PNG, BMP, GIF, WebP, TIFF),
greyscale and palette images as RGB; RGBA with a note that the transparency
was dropped. Refused, each with what to do: not an image, more than
MAX_BYTES or `segmenter.MAX_PIXELS`, 16- or 32-bit images (PIL would clip
their values, giving a wrong image without a word).
"""

from __future__ import annotations

import io
import warnings

import numpy as np

from deeplab_jax.errors import UserError
from deeplab_jax.segmenter import MAX_PIXELS, check_size

MAX_BYTES = 30 * 1024 * 1024
HIGH_DEPTH_MODES = ('I', 'I;16', 'I;16B', 'I;16L', 'I;16N', 'F')


def decode(data: bytes, name: str = 'upload') -> tuple[np.ndarray, list[str]]:
  """(HxWx3 uint8 RGB, notes) of an uploaded file; UserError for a bad one."""
  from PIL import Image  # pylint: disable=import-outside-toplevel
  if not data:
    raise UserError(f'{name} is empty: choose an image file')
  if len(data) > MAX_BYTES:
    raise UserError(f'{name} is {len(data) / 2**20:.0f} MB, more than the '
                    f'{MAX_BYTES // 2**20} MB this page accepts: downscale or recompress it')
  notes = []
  try:
    with warnings.catch_warnings():
      warnings.simplefilter('error', Image.DecompressionBombWarning)
      with Image.open(io.BytesIO(data)) as image:
        width, height = image.size
        if width * height > MAX_PIXELS:
          raise UserError(f'{name} is {width}x{height} pixels, more than '
                          f'{MAX_PIXELS / 1e6:.0f} megapixels: downscale it first')
        if image.mode in HIGH_DEPTH_MODES:
          raise UserError(f'{name} is a {image.mode!r} (16- or 32-bit) image; the model '
                          'takes 8-bit RGB: convert it (e.g. scale 16-bit values by 1/256) '
                          'and upload again')
        if image.mode in ('RGBA', 'LA', 'PA') or 'transparency' in image.info:
          notes.append('the image has transparency (alpha); it was dropped')
        rgb = np.asarray(image.convert('RGB'), np.uint8)
  except UserError:
    raise
  except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
    raise UserError(f'{name} is too large to decode safely ({e}): downscale it first') from e
  except Exception as e:  # PIL raises several types for files it cannot read.
    raise UserError(f'{name} is not an image this page can read ({type(e).__name__}: {e}); '
                    'upload a JPEG, PNG, BMP, GIF, WebP or TIFF') from e
  return check_size(rgb, name), notes
