"""Renders one synthetic segmentation example: textured image + label mask.

Pure numpy, no TensorFlow, so it can be tested and inspected on its own. The
TFDS builder in `shapes.py` wraps it.

What makes the task DeepLab's problem in miniature:
- an object's class is its SHAPE (disk, square, triangle, star); its
  colour is random, so the network has to look at the whole object (context,
  a large field of view) to label any of its pixels;
- backgrounds are textured gratings plus pixel noise, objects carry their own
  shading and noise, and objects overlap (later ones occlude earlier ones);
- a thin band of void (255) pixels surrounds every boundary, as in VOC's
  annotations, so scoring ignores the exact edge but the mask still has to be
  localised well at output stride 8.

Every example is a pure function of (seed, split, index): generation is
deterministic and order-independent.
"""

from __future__ import annotations

import dataclasses

import numpy as np

CLASS_NAMES = ('background', 'disk', 'square', 'triangle', 'star')
NUM_CLASSES = len(CLASS_NAMES)
IGNORE_LABEL = 255

_SPLIT_IDS = {'train': 0, 'val': 1}


def _polygon_mask(ys, xs, verts_Vx2):
  """Even-odd point-in-polygon test for every (ys, xs) pixel centre."""
  inside = np.zeros(ys.shape, dtype=bool)
  vy, vx = verts_Vx2[:, 0], verts_Vx2[:, 1]
  vy2, vx2 = np.roll(vy, -1), np.roll(vx, -1)
  for y0, x0, y1, x1 in zip(vy, vx, vy2, vx2):
    crosses = (y0 > ys) != (y1 > ys)
    with np.errstate(divide='ignore', invalid='ignore'):
      x_at = x0 + (ys - y0) * (x1 - x0) / (y1 - y0)
    inside ^= crosses & (xs < x_at)
  return inside


def _shape_vertices(cls, radius, angle):
  """Polygon vertices (V, 2) as (dy, dx) offsets for a polygonal class."""
  name = CLASS_NAMES[cls]
  if name == 'square':
    t = angle + np.arange(4) * np.pi / 2
    r = np.full(4, radius)
  elif name == 'triangle':
    t = angle + np.arange(3) * 2 * np.pi / 3
    r = np.full(3, radius * 1.15)
  elif name == 'star':
    t = angle + np.arange(10) * np.pi / 5
    r = np.where(np.arange(10) % 2 == 0, radius * 1.15, radius * 0.6)
  else:
    raise ValueError(f'{name} is not a polygon')
  return np.stack([r * np.sin(t), r * np.cos(t)], axis=-1)


def _texture(rng, height, width, amplitude, max_freq):
  """Sum of random oriented sinusoidal gratings, (H, W, 3) float."""
  ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
  out = np.zeros((height, width, 3), np.float32)
  for _ in range(3):
    theta = rng.uniform(0, np.pi)
    freq = rng.uniform(0.03, max_freq)
    phase = rng.uniform(0, 2 * np.pi)
    wave = np.sin(freq * (np.cos(theta) * xs + np.sin(theta) * ys) + phase)
    out += wave[..., None] * rng.uniform(-amplitude, amplitude, size=3)
  return out


def _random_colour(rng, avoid, min_distance=70.0):
  for _ in range(100):
    colour = rng.uniform(0, 255, size=3)
    if np.linalg.norm(colour - avoid) >= min_distance:
      return colour
  return colour


def void_boundaries(label_HxW, width=1):
  """Marks as void every pixel within `width` (Chebyshev) of another label."""
  lab = label_HxW.astype(np.int32)
  h, w = lab.shape
  padded = np.pad(lab, width, mode='edge')
  boundary = np.zeros((h, w), dtype=bool)
  for dy in range(-width, width + 1):
    for dx in range(-width, width + 1):
      shifted = padded[width + dy:width + dy + h, width + dx:width + dx + w]
      boundary |= shifted != lab
  out = label_HxW.copy()
  out[boundary] = IGNORE_LABEL
  return out


@dataclasses.dataclass(frozen=True)
class Style:
  """How examples look; the defaults are the built-in dataset's."""
  min_size: int = 96  # Image sides are drawn from [min_size, max_size].
  max_size: int = 192
  max_objects: int = 3  # 1..max_objects objects, later ones occluding.
  void_width: int = 2  # Void within this many pixels of a boundary (~4 px band).
  max_rotation: float = 0.0  # Degrees either way.
  texture_freq: float = 0.15  # Highest grating frequency (radians / pixel).
  radius_range: tuple = (0.22, 0.34)  # Object size, fraction of the short side.
  # A class made rare in the train split only (val keeps every class's
  # share, so its IoU can be measured): each object drawn as `rare_class`
  # stays one with probability `rare_keep`, else becomes another shape.
  rare_class: int = 0  # 0 = none.
  rare_keep: float = 1.0


def render_example(seed, split, index, style=Style()):
  """Returns (image uint8 HxWx3, label uint8 HxW) for one example."""
  rng = np.random.default_rng([seed, _SPLIT_IDS[split], index])
  height = int(rng.integers(style.min_size, style.max_size + 1))
  width = int(rng.integers(style.min_size, style.max_size + 1))

  base = rng.uniform(0, 255, size=3).astype(np.float32)
  image = base + _texture(rng, height, width, 45.0, style.texture_freq)
  label = np.zeros((height, width), np.uint8)
  ys, xs = np.mgrid[0:height, 0:width].astype(np.float32) + 0.5

  short = min(height, width)
  for _ in range(int(rng.integers(1, style.max_objects + 1))):
    cls = int(rng.integers(1, NUM_CLASSES))
    if split == 'train' and cls == style.rare_class and rng.random() >= style.rare_keep:
      cls = int(rng.choice([c for c in range(1, NUM_CLASSES) if c != cls]))
    radius = rng.uniform(*style.radius_range) * short
    cy = rng.uniform(radius * 0.6, height - radius * 0.6)
    cx = rng.uniform(radius * 0.6, width - radius * 0.6)
    if CLASS_NAMES[cls] == 'disk':
      inside = (ys - cy) ** 2 + (xs - cx) ** 2 < radius ** 2
    else:
      angle = np.deg2rad(rng.uniform(-1, 1) * style.max_rotation)
      verts = _shape_vertices(cls, radius, angle)
      inside = _polygon_mask(ys - cy, xs - cx, verts)
    colour = _random_colour(rng, base)
    shading = _texture(rng, height, width, 25.0, style.texture_freq)
    image = np.where(inside[..., None], colour + shading, image)
    label[inside] = cls

  image += rng.normal(0, 12.0, size=image.shape)
  image = np.clip(np.round(image), 0, 255).astype(np.uint8)
  return image, void_boundaries(label, style.void_width)
