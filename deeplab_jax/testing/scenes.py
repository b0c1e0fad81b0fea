"""Generated scenes for testing and timing the CRF: an image of a few coloured
regions with shading, texture and noise, its true labels, and coarse, noisy
class probabilities like a segmentation network's upsampled output.

    rng = np.random.default_rng(0)
    image_HxWx3, labels_HxW, probs_HxWxC = natural_image_and_unaries(rng, 60, 80, 21)

The regions have curved boundaries (a Voronoi partition of warped
coordinates) and well-separated mean colours, so a CRF that follows colour
edges should recover the labels far better than probs' argmax.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def _smooth_noise(rng, shape, sigma):
  """Gaussian noise low-passed over the first two axes, scaled to unit std."""
  noise = ndimage.gaussian_filter(rng.standard_normal(shape),
                                  sigma=(sigma, sigma) + (0,) * (len(shape) - 2),
                                  mode='reflect')
  return noise / (noise.std() + 1e-12)


def _distinct_colours(rng, count, min_distance=70.0):
  """`count` RGB colours in 40..215, pairwise at least min_distance apart."""
  colours = []
  while len(colours) < count:
    candidate = rng.uniform(40, 215, size=3)
    if all(np.linalg.norm(candidate - c) >= min_distance for c in colours):
      colours.append(candidate)
  return np.stack(colours)


def natural_image_and_unaries(rng: np.random.Generator, height: int, width: int,
                              num_labels: int, num_regions: int | None = None):
  """A scene, its labels and noisy network-like probabilities.

  Args:
    rng: numpy Generator; the scene is a function of its state.
    height, width: image size in pixels.
    num_labels: classes C in the probabilities (>= 2).
    num_regions: regions in the image (each with its own label); None draws
      3 to 5, never more than num_labels.

  Returns:
    (image, labels, probs): uint8 HxWx3 RGB image; int32 HxW true labels in
    [0, num_labels); float32 HxWxC probabilities (sum 1 per pixel) whose
    argmax has blurred, shifted boundaries and blobs of wrong labels.
  """
  if num_labels < 2:
    raise ValueError(f'num_labels must be >= 2, got {num_labels}')
  if num_regions is None:
    num_regions = int(rng.integers(3, 6))
  num_regions = max(1, min(num_regions, num_labels))
  region_labels = rng.choice(num_labels, size=num_regions, replace=False)

  # Regions: nearest seed in coordinates warped by smooth noise (curved edges).
  scale = max(height, width)
  rows, cols = np.meshgrid(np.arange(height, dtype=np.float64),
                           np.arange(width, dtype=np.float64), indexing='ij')
  warp = _smooth_noise(rng, (height, width, 2), sigma=scale / 8) * scale / 12
  seeds = rng.uniform([0, 0], [height, width], size=(num_regions, 2))
  distance = ((rows[..., None] + warp[..., :1] - seeds[:, 0]) ** 2 +
              (cols[..., None] + warp[..., 1:] - seeds[:, 1]) ** 2)
  region = np.argmin(distance, axis=-1)
  labels = region_labels[region].astype(np.int32)

  # Image: flat colour per region, a gentle shading, a stripe texture in
  # every other region, pixel noise.
  image = _distinct_colours(rng, num_regions)[region]
  image += _smooth_noise(rng, (height, width, 1), sigma=scale / 4) * 10
  angle = rng.uniform(0, np.pi)
  stripes = np.sin((np.cos(angle) * cols + np.sin(angle) * rows) * 2 * np.pi / 6)
  image += ((region % 2 == 1) * stripes)[..., None] * 12
  image += rng.normal(0, 6, size=image.shape)
  image = np.clip(np.round(image), 0, 255).astype(np.uint8)

  # Probabilities: one-hot labels seen through a coarse network (blurred,
  # shifted a couple of pixels), plus smooth logit noise that makes blobs of
  # wrong labels, then a softmax.
  one_hot = np.eye(num_labels)[labels]
  shift = rng.integers(-2, 3, size=2)
  coarse = ndimage.gaussian_filter(np.roll(one_hot, tuple(shift), axis=(0, 1)),
                                   sigma=(scale / 20, scale / 20, 0), mode='nearest')
  logits = 4.0 * coarse + 1.1 * _smooth_noise(rng, one_hot.shape, sigma=scale / 25)
  logits -= logits.max(-1, keepdims=True)
  probs = np.exp(logits)
  probs /= probs.sum(-1, keepdims=True)
  return image, labels, probs.astype(np.float32)
