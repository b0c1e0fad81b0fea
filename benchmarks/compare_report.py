"""What the comparison writes: the table (Markdown + JSON) and the picture (PNG).

`write_table` turns `compare_run.run_family`'s rows into compare.md and
compare.json (the rows as measured, plus the command, hardware and
versions); `picture` lays the families' predictions side by side on the
same val images: image | ground truth | one column per family, every mask as
the project's colour overlay (`visualize.overlay`, VOC colour map), column
titles above and a class legend below.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess

import numpy as np

from deeplab_jax import visualize
from deeplab_jax.data import files

GAP = visualize.GAP  # White pixels between panels.
TITLE_HEIGHT = 28  # Pixels of the title band (two lines) above the columns.
MIN_WIDTH = 128  # Small images are zoomed (whole factors) to at least this width.
LEGEND_HEIGHT = 20  # Pixels of each row of the legend below the grid.

COLUMNS = (  # (heading, row key, format)
    ('family', 'family', '{}'),
    ('config', 'config', '`{}`'),
    ('steps x batch', None, None),
    ('val mIoU', 'val_miou', '{:.4f}'),
    ('val mIoU + CRF', 'val_miou_crf', '{:.4f}'),
    ('parameters', 'params', '{:,}'),
    ('GFLOP / image (eval size)', None, None),
    ('train img/s', 'train_images_per_sec', '{:.1f}'),
    ('eval img/s', 'eval_images_per_sec', '{:.1f}'),
    ('train wall', 'train_seconds', None),
    ('eval wall (with CRF)', 'eval_seconds', None),
)


def _duration(seconds):
  seconds = int(round(seconds))
  return f'{seconds // 60}m{seconds % 60:02d}s' if seconds >= 60 else f'{seconds}s'


def _cell(heading, key, fmt, row):
  if heading == 'steps x batch':
    return f'{row["steps"]:,} x {row["batch_size"]}'
  if heading.startswith('GFLOP'):
    return f'{row["gflop_per_image"]:.3g} ({row["eval_size"][0]}x{row["eval_size"][1]})'
  value = row[key]
  if value is None:
    return 'n/a'
  if key.endswith('_seconds'):
    text = _duration(value)
    if key == 'train_seconds' and row.get('resumed_from_step'):
      text += f' (from step {row["resumed_from_step"]})'
    return text
  return fmt.format(value)


def markdown(rows):
  """The table as Markdown, one line per family."""
  lines = ['| ' + ' | '.join(c[0] for c in COLUMNS) + ' |',
           '|' + '---|' * len(COLUMNS)]
  for row in rows:
    lines.append('| ' + ' | '.join(_cell(*c, row) for c in COLUMNS) + ' |')
  return '\n'.join(lines)


def hardware():
  """{'cpu': lscpu's model name, 'cores', 'platform', versions}."""
  import jax  # pylint: disable=import-outside-toplevel
  model = platform.processor() or platform.machine()
  try:
    out = subprocess.run(['lscpu'], capture_output=True, text=True, check=False).stdout
    model = next(line.split(':', 1)[1].strip() for line in out.splitlines()
                 if line.startswith('Model name'))
  except (OSError, StopIteration):
    pass
  return {'cpu': model, 'cores': os.cpu_count(), 'platform': platform.platform(),
          'devices': f'{jax.device_count()} x {jax.devices()[0].device_kind}',
          'jax': jax.__version__, 'python': platform.python_version()}


def write_table(rows, output_dir, command, notes=()):
  """compare.md and compare.json in `output_dir`; returns their paths."""
  os.makedirs(output_dir, exist_ok=True)
  info = hardware()
  md_path = os.path.join(output_dir, 'compare.md')
  json_path = os.path.join(output_dir, 'compare.json')
  text = [f'`{command}`', '',
          f'{info["cpu"]}, {info["cores"]} cores, {info["devices"]}, JAX {info["jax"]}', '',
          markdown(rows), '']
  text += [f'- {note}' for note in notes]
  with open(md_path, 'w') as f:
    f.write('\n'.join(text) + '\n')
  with open(json_path, 'w') as f:
    json.dump({'command': command, 'hardware': info, 'notes': list(notes), 'rows': rows},
              f, indent=2)
  return md_path, json_path


def _fit(draw, text, width):
  """`text`, cut to fit `width` pixels in PIL's default font."""
  while text and draw.textlength(text) > width:
    text = text[:-1]
  return text


def _titles(columns, width):
  """A white band of two text lines (family, config) above each column."""
  from PIL import Image, ImageDraw  # pylint: disable=import-outside-toplevel
  total = len(columns) * width + GAP * (len(columns) - 1)
  band = Image.new('RGB', (total, TITLE_HEIGHT), (255, 255, 255))
  draw = ImageDraw.Draw(band)
  for i, lines in enumerate(columns):
    for j, text in enumerate(lines):
      draw.text((i * (width + GAP) + 2, 2 + 12 * j), _fit(draw, text, width - 4),
                fill=(0, 0, 0))
  return np.asarray(band)


def _legend(class_names, total_width):
  """White rows of a colour swatch and the name of each class (VOC colours)."""
  from PIL import Image, ImageDraw  # pylint: disable=import-outside-toplevel
  palette = files.voc_palette()
  probe = ImageDraw.Draw(Image.new('RGB', (1, 1)))
  places, x, y = [], 2, 0
  for name in class_names:
    item = 15 + int(probe.textlength(name)) + 10
    if x > 2 and x + item > total_width:
      x, y = 2, y + LEGEND_HEIGHT
    places.append((x, y))
    x += item
  band = Image.new('RGB', (total_width, y + LEGEND_HEIGHT), (255, 255, 255))
  draw = ImageDraw.Draw(band)
  for index, (name, (x, y)) in enumerate(zip(class_names, places)):
    draw.rectangle([x, y + 4, x + 11, y + 15], fill=tuple(int(c) for c in palette[index]),
                   outline=(0, 0, 0))
    draw.text((x + 15, y + 4), name, fill=(0, 0, 0))
  return np.asarray(band)


def panel_size(ground_truth):
  """(height, width, zoom): every panel is the largest image's size times
  `zoom` (whole, nearest neighbour), the smallest zoom that gives MIN_WIDTH."""
  shapes = [image.shape[:2] for image, _, _ in ground_truth.values()]
  height, width = max(s[0] for s in shapes), max(s[1] for s in shapes)
  zoom = max(1, -(-MIN_WIDTH // width))
  return height * zoom, width * zoom, zoom


def picture(ids, ground_truth, predictions_by_family, class_names, configs=None):
  """HxWx3 uint8: a row per image id, columns image | ground truth | each family.

  `ground_truth`: {id: (image, label, _)}; `predictions_by_family`: {family:
  {id: (image, label, prediction)}} (`compare_run.first_predictions`);
  `configs`: {family: config name} for the titles' second line. Each panel is
  `visualize.overlay` of the mask on the image (void pixels: the image),
  zoomed by `panel_size`'s whole factor and padded with white to the largest
  image; GAP white pixels between panels.
  """
  families = list(predictions_by_family)
  height, width, zoom = panel_size(ground_truth)
  columns = 2 + len(families)

  def pad(panel):
    panel = np.repeat(np.repeat(panel, zoom, axis=0), zoom, axis=1)
    out = np.full((height, width, 3), 255, np.uint8)
    out[:panel.shape[0], :panel.shape[1]] = panel
    return out

  rows = []
  for image_id in ids:
    image, label, _ = ground_truth[image_id]
    label = np.where((label >= 0) & (label < 256), label, 255).astype(np.uint8)
    panels = [image, visualize.overlay(image, label)]
    for family in families:
      _, _, pred = predictions_by_family[family][image_id]
      panels.append(visualize.overlay(image, pred.astype(np.uint8)))
    pieces = []
    for panel in panels:
      pieces += [pad(panel), np.full((height, GAP, 3), 255, np.uint8)]
    rows += [np.concatenate(pieces[:-1], axis=1),
             np.full((GAP, columns * width + (columns - 1) * GAP, 3), 255, np.uint8)]
  grid = np.concatenate(rows[:-1], axis=0)
  configs = configs or {}
  titles = _titles([('image',), ('ground truth',)] +
                   [(f, configs.get(f, '')) for f in families], width)
  return np.concatenate([titles, grid, _legend(class_names, grid.shape[1])], axis=0)


def write_picture(path, ids, ground_truth, predictions_by_family, class_names, configs=None):
  """Writes `picture(...)` as an RGB PNG; returns the array."""
  from PIL import Image  # pylint: disable=import-outside-toplevel
  array = picture(ids, ground_truth, predictions_by_family, class_names, configs)
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  Image.fromarray(array, 'RGB').save(path, format='PNG')
  return array
