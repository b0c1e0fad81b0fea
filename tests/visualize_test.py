"""Palette PNGs, overlays and plots, read back with PIL."""

import numpy as np
import pytest
from PIL import Image

from deeplab_jax import visualize
from deeplab_jax.errors import UserError

# PASCAL VOC's colour map, first classes, written out (background, aeroplane,
# bicycle, bird, boat, bottle, bus, car, cat).
VOC_COLOURS = [(0, 0, 0), (128, 0, 0), (0, 128, 0), (128, 128, 0), (0, 0, 128),
               (128, 0, 128), (0, 128, 128), (128, 128, 128), (64, 0, 0)]
VOID_COLOUR = (224, 224, 192)  # Index 255: VOC's cream boundary colour.


def _png_header_ok(path):
  with open(path, 'rb') as f:
    return f.read(8) == b'\x89PNG\r\n\x1a\n'


def test_mask_png_is_voc_palette_png(tmp_path):
  rng = np.random.default_rng(0)
  mask = rng.integers(0, 21, size=(17, 23)).astype(np.uint8)
  mask[3:5] = 255
  path = tmp_path / 'sub' / 'mask.png'  # Missing directory is created.
  visualize.write_mask_png(path, mask)
  with Image.open(path) as png:
    assert png.format == 'PNG' and png.mode == 'P' and png.size == (23, 17)
    np.testing.assert_array_equal(np.asarray(png), mask)
    palette = np.array(png.getpalette(), np.uint8).reshape(-1, 3)
  assert [tuple(c) for c in palette[:9]] == VOC_COLOURS
  assert tuple(palette[255]) == VOID_COLOUR


def test_mask_png_custom_palette_and_int_input(tmp_path):
  mask = np.array([[0, 1], [2, 255]], np.int32)
  palette = np.array([[10, 20, 30], [40, 50, 60], [70, 80, 90]], np.uint8)
  visualize.write_mask_png(tmp_path / 'm.png', mask, palette)
  with Image.open(tmp_path / 'm.png') as png:
    np.testing.assert_array_equal(np.asarray(png), mask)
    colours = np.array(png.convert('RGB'))
  np.testing.assert_array_equal(colours[0], [[10, 20, 30], [40, 50, 60]])
  np.testing.assert_array_equal(colours[1, 0], [70, 80, 90])


@pytest.mark.parametrize('bad', [np.full((2, 2), 256), np.full((2, 2), -1),
                                 np.zeros((2, 2, 1), int), np.zeros((2, 2))])
def test_mask_png_rejects_what_a_png_index_cannot_hold(tmp_path, bad):
  with pytest.raises(UserError):
    visualize.write_mask_png(tmp_path / 'bad.png', bad)


def test_overlay_blends_classes_and_leaves_void():
  rng = np.random.default_rng(1)
  image = rng.integers(0, 256, size=(6, 7, 3)).astype(np.uint8)
  mask = rng.integers(0, 9, size=(6, 7))
  mask[0] = 255
  out = visualize.overlay(image, mask, alpha=0.25)
  assert out.dtype == np.uint8 and out.shape == image.shape
  np.testing.assert_array_equal(out[0], image[0])
  for y in range(1, 6):
    for x in range(7):
      want = np.rint(0.75 * image[y, x] + 0.25 * np.array(VOC_COLOURS[mask[y, x]]))
      np.testing.assert_array_equal(out[y, x], want)
  np.testing.assert_array_equal(visualize.overlay(image, mask, alpha=0.0), image)
  full = visualize.overlay(image, mask, alpha=1.0)
  np.testing.assert_array_equal(full[1:], np.array(VOC_COLOURS)[mask[1:]])


def test_comparison_panels_and_overlay_png(tmp_path):
  image = np.full((5, 4, 3), 200, np.uint8)
  pred = np.ones((5, 4), np.int32)
  gt = np.full((5, 4), 2)
  gt[:, 0] = 255
  two = visualize.comparison(image, pred)
  three = visualize.comparison(image, pred, gt)
  assert two.shape == (5, 2 * 4 + visualize.GAP, 3)
  assert three.shape == (5, 3 * 4 + 2 * visualize.GAP, 3)
  np.testing.assert_array_equal(three[:, :4], image)
  np.testing.assert_array_equal(three[:, 4:8], 255)
  np.testing.assert_array_equal(three[:, 8:12], visualize.overlay(image, pred))
  np.testing.assert_array_equal(three[:, 16:], visualize.overlay(image, gt))
  visualize.write_overlay_png(tmp_path / 'a.png', image, pred)
  visualize.write_overlay_png(tmp_path / 'b.png', image, pred, label=gt)
  with Image.open(tmp_path / 'a.png') as a, Image.open(tmp_path / 'b.png') as b:
    assert a.mode == 'RGB' and b.mode == 'RGB'
    np.testing.assert_array_equal(np.asarray(a), visualize.overlay(image, pred))
    np.testing.assert_array_equal(np.asarray(b), three)


def test_overlay_rejects_mismatched_sizes():
  with pytest.raises(UserError):
    visualize.overlay(np.zeros((4, 4, 3), np.uint8), np.zeros((4, 5), int))
  with pytest.raises(UserError):
    visualize.overlay(np.zeros((4, 4, 3), np.float32), np.zeros((4, 4), int))


def test_normalize_confusion():
  cm = np.array([[3, 1, 0], [0, 0, 0], [2, 0, 2]])
  np.testing.assert_allclose(visualize.normalize_confusion(cm),
                             [[0.75, 0.25, 0], [0, 0, 0], [0.5, 0, 0.5]])
  np.testing.assert_allclose(visualize.normalize_confusion(cm, 'pred'),
                             [[0.6, 1, 0], [0, 0, 0], [0.4, 0, 1]])
  np.testing.assert_allclose(visualize.normalize_confusion(cm, 'all'), cm / 8)
  with pytest.raises(UserError):
    visualize.normalize_confusion(cm, 'rows')


@pytest.mark.parametrize('num', [21, 19])
def test_confusion_png(tmp_path, num):
  rng = np.random.default_rng(num)
  cm = rng.integers(0, 30, size=(num, num)) + np.diag(rng.integers(100, 900, num))
  cm[2] = 0  # A class absent from the ground truth.
  names = [f'class_{i}_name' for i in range(num)]
  path = tmp_path / 'confusion.png'
  visualize.write_confusion_png(path, cm, names)
  assert _png_header_ok(path)
  with Image.open(path) as png:
    width, height = png.size
    pixels = np.asarray(png.convert('RGB'))
  assert 800 <= width <= 2000 and 800 <= height <= 2000
  assert pixels.std() > 10  # Not a blank canvas.
  with pytest.raises(UserError):
    visualize.write_confusion_png(path, cm, names[:-1])


def test_trimap_plot(tmp_path):
  widths = [1, 2, 5, 10, 20, 40]
  curves = {'before CRF': [0.4, 0.45, 0.5, 0.55, 0.6, 0.62],
            'after CRF': [0.5, 0.55, 0.58, float('nan'), 0.64, 0.66]}
  path = tmp_path / 'plots' / 'trimap.png'
  visualize.write_trimap_plot(path, widths, curves)
  assert _png_header_ok(path)
  with Image.open(path) as png:
    assert png.size == (640, 480)
    pixels = np.asarray(png.convert('RGB'))
  assert pixels.std() > 10
  with pytest.raises(UserError):
    visualize.write_trimap_plot(path, widths, {'short': [0.5]})
