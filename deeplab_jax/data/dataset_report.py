"""A dataset's report: images and sizes per split, class shares, void, label mistakes.

    result = dataset_report.inspect_dataset(config, output_dir='inspect/mine')
    print(result.markdown)  # also in report.md, with statistics.json, grid.png

What `python -m deeplab_jax.data.inspect` runs. Any dataset a config names
is read through its prepared TFDS files (prepared first if needed), masks
only (`statistics.split_statistics`), except a `segmentation_folder` not
prepared yet: its mask files are read as they are (`folder.folder_statistics`),
so a folder the builder would refuse is still reported on. The findings are
`label_checks.check`'s, plus a warning for eval images larger than
`input.eval_size`. Images are read only for the grid picture.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os

import numpy as np

from deeplab_jax import visualize
from deeplab_jax.data import datasets
from deeplab_jax.data import files
from deeplab_jax.data import label_checks
from deeplab_jax.data import statistics
from deeplab_jax.errors import UserError

GRID_IMAGES = 8  # Examples in grid.png.
GRID_HEIGHT = 96  # Pixels per grid row (nearest-neighbour scaling).


@dataclasses.dataclass
class Inspection:
  """What `inspect_dataset` found: `stats` split -> SplitStatistics, the
  findings, the report's Markdown and where the files went (None: not written)."""
  title: str
  source: str
  class_names: tuple[str, ...]
  stats: dict
  findings: list
  markdown: str
  output_dir: str | None

  @property
  def errors(self) -> list:
    """The findings of level 'error'."""
    return [f for f in self.findings if f.level == 'error']


def default_output_dir(dataset_config) -> str:
  """`inspect/<name>[_<builder_config>]` under the current directory."""
  name = dataset_config.name + (f'_{dataset_config.builder_config}'
                                if dataset_config.builder_config else '')
  return os.path.join('inspect', name)


def inspect_dataset(config, splits=None, output_dir=None) -> Inspection:
  """Reads `splits` (default the config's train and eval splits) of
  `config.dataset`, checks them and, with `output_dir`, writes report.md,
  statistics.json and grid.png there."""
  dc = config.dataset
  num_classes = int(dc.num_classes)
  entry = datasets.lookup(dc.name) or datasets.Dataset(dc.name)
  features = entry.features
  class_names = tuple(dc.get('class_names') or features.class_names
                      or [str(i) for i in range(num_classes)])
  if len(class_names) != num_classes:
    raise UserError(f'config.dataset.class_names has {len(class_names)} names but '
                    f'config.dataset.num_classes={num_classes}')
  splits = list(dict.fromkeys(splits or [dc.train_split, dc.eval_split]))
  ignore = int(dc.get('ignore_label', files.IGNORE_LABEL))
  title = dc.name + (f'/{dc.builder_config}' if dc.builder_config else '')
  reader = _reader(dc, entry, features, splits, num_classes, ignore)
  source, stats, name, examples = reader
  found = label_checks.check(stats, class_names, dc.train_split, name)
  found += _eval_size_findings(config, stats)
  found.sort(key=lambda f: f.level != 'error')
  grid_ids, grid = _grid(examples)
  markdown = report_markdown(title, source, class_names, stats, found, grid_ids)
  if output_dir:
    os.makedirs(output_dir, exist_ok=True)
    with open(os.path.join(output_dir, 'report.md'), 'w', encoding='utf-8') as f:
      f.write(markdown)
    with open(os.path.join(output_dir, 'statistics.json'), 'w', encoding='utf-8') as f:
      json.dump({'dataset': title, 'source': source, 'class_names': list(class_names),
                 'splits': {s: st.to_dict() for s, st in stats.items()},
                 'findings': [dataclasses.asdict(x) for x in found]}, f, indent=1)
    if grid is not None:
      from PIL import Image  # pylint: disable=import-outside-toplevel
      Image.fromarray(grid, 'RGB').save(os.path.join(output_dir, 'grid.png'))
  return Inspection(title, source, class_names, stats, found, markdown, output_dir)


def _reader(dc, entry, features, splits, num_classes, ignore):
  """(source text, stats, namer, first grid examples as a generator)."""
  data_dir = os.path.expanduser(dc.data_dir) if dc.get('data_dir') else None
  if dc.name == 'segmentation_folder':
    from deeplab_jax.data import folder  # pylint: disable=import-outside-toplevel
    unprepared = entry.builder(dc, data_dir)
    if not unprepared.is_prepared():  # The files as they are: errors included.
      path = unprepared.builder_config.folder
      split_files = folder.split_files(path)
      _check_splits(splits, split_files, path)
      stats = {s: folder.mask_statistics(s, split_files[s], num_classes, ignore)
               for s in splits}
      return (f'the files in {path} (not prepared yet)', stats,
              lambda split, image_id: os.path.join(path, 'masks', image_id + '.png'),
              _folder_examples(split_files[splits[0]]))
  builder = datasets.builder(dc)
  _check_splits(splits, builder.info.splits, builder.info.full_name)
  stats = {s: statistics.split_statistics(builder, s, num_classes, ignore, features)
           for s in splits}
  return (f'the prepared dataset in {builder.data_dir}', stats, None,
          _tfds_examples(builder, splits[0], features))


def _check_splits(splits, available, where):
  missing = [s for s in splits if s not in available]
  if missing:
    raise UserError(f'{where} has no split {missing[0]!r}; its splits: '
                    f'{sorted(available)}; pick with --split')


def _folder_examples(pairs):
  for image_id, image_path, mask_path in pairs[:GRID_IMAGES]:
    with open(image_path, 'rb') as f:
      image = files.read_image(f.read(), image_path)
    with open(mask_path, 'rb') as f:
      data = f.read()
    from PIL import Image  # pylint: disable=import-outside-toplevel
    with Image.open(io.BytesIO(data)) as m:
      colour = m.mode in ('RGB', 'RGBA')
      mask = np.asarray(m.convert('RGB')) if colour else None
    if mask is None:
      mask = files.read_index_png(data, mask_path)
    yield image_id, image, mask


def _tfds_examples(builder, split, features):
  # pylint: disable=import-outside-toplevel
  import tensorflow_datasets as tfds
  from deeplab_jax.data import input_pipeline
  ds = builder.as_dataset(split=split, shuffle_files=False,
                          decoders=input_pipeline.skip_image_decoding(features))
  table = features.label_table
  for index, ex in enumerate(tfds.as_numpy(ds.take(GRID_IMAGES))):
    image_id = ex[input_pipeline.ID_FEATURE].decode() if input_pipeline.ID_FEATURE in ex \
        else f'{split}[{index}]'
    mask = ex[features.label]
    mask = mask[..., 0] if mask.shape[-1] == 1 else mask
    if table is not None and mask.ndim == 2:
      mask = np.asarray(table, np.uint8)[mask]
    yield image_id, files.read_image(ex[features.image], image_id), mask


def _grid(examples):
  """(ids, HxWx3 uint8): a row per example, image | mask overlaid (colour
  masks as they are), scaled to GRID_HEIGHT; None without examples."""
  from PIL import Image  # pylint: disable=import-outside-toplevel
  ids, rows = [], []
  for image_id, image, mask in examples:
    if mask.shape[:2] != image.shape[:2]:
      continue  # The builder reports it; nothing to overlay.
    if mask.ndim == 3:
      gap = np.full((image.shape[0], visualize.GAP, 3), 255, np.uint8)
      row = np.concatenate([image, gap, mask.astype(np.uint8)[..., :3]], axis=1)
    else:
      row = visualize.comparison(image, mask)
    width = max(1, round(row.shape[1] * GRID_HEIGHT / row.shape[0]))
    rows.append(np.asarray(Image.fromarray(row).resize((width, GRID_HEIGHT),
                                                       Image.NEAREST)))
    ids.append(image_id)
  if not rows:
    return ids, None
  width = max(r.shape[1] for r in rows)
  padded = []
  for r in rows:
    padded.append(np.pad(r, ((0, visualize.GAP), (0, width - r.shape[1]), (0, 0)),
                         constant_values=255))
  return ids, np.concatenate(padded)[:-visualize.GAP]


def _eval_size_findings(config, stats):
  """A warning when eval images are larger than `input.eval_size`."""
  eval_split = config.dataset.eval_split
  if 'input' not in config or eval_split not in stats or not stats[eval_split].num_images:
    return []
  from deeplab_jax.inference import eval_hw  # pylint: disable=import-outside-toplevel
  height, width = eval_hw(config.input.eval_size)
  s = stats[eval_split]
  big = np.flatnonzero((s.heights > height) | (s.widths > width))
  if not big.size:
    return []
  ids = [s.image_ids[i] for i in big]
  need = f'{int(s.heights.max())},{int(s.widths.max())}'
  return [label_checks.Finding('warning', 'eval_size', (
      f'these images of {eval_split!r} are larger than input.eval_size='
      f'{config.input.eval_size}: {label_checks.names_text(ids)}; evaluation stops at '
      f'the first of them: set --config.input.eval_size={need} (height,width)'),
      tuple(ids))]


def _stray_images(s):
  values = np.arange(256)
  stray = (values >= s.num_classes) & (values != s.ignore_label)
  return int((s.present & stray).any(axis=1).sum())


def _pct(part, whole):
  return f'{100 * part / whole:.1f}%' if whole else '-'


def _sizes(values):
  return (f'{int(values.min())} / {int(np.median(values))} / {int(values.max())}'
          if values.size else '-')


def report_markdown(title, source, class_names, stats, findings, grid_ids=()) -> str:
  """The Markdown report of `inspect_dataset` (splits, sizes, classes, findings)."""
  lines = [f'# Dataset {title}', '', f'Read from {source}; {len(class_names)} classes, '
           f'void = {next(iter(stats.values())).ignore_label}.', '',
           '| split | images | height min / median / max | width min / median / max '
           '| most common sizes (HxW) | void pixels |', '|---|---|---|---|---|---|']
  for split, s in stats.items():
    sizes, counts = np.unique(np.stack([s.heights, s.widths], axis=1), axis=0,
                              return_counts=True) if s.num_images else ([], [])
    order = np.argsort(-np.asarray(counts), kind='stable')[:3]
    common = ', '.join(f'{sizes[i][0]}x{sizes[i][1]} ({counts[i]})' for i in order)
    lines.append(f'| {split} | {s.num_images} | {_sizes(s.heights)} | {_sizes(s.widths)} '
                 f'| {common or "-"} | {_pct(s.void_pixels, s.total_pixels)} |')
  lines += ['', 'Per class: share of all pixels, and images it occurs in.', '',
            '| class | ' + ' | '.join(f'{s} pixels | {s} images' for s in stats) + ' |',
            '|---|' + '---|---|' * len(stats)]
  for index, class_name in enumerate(class_names):
    cells = [f'{_pct(s.pixel_counts[index], s.total_pixels)} | {s.image_counts[index]}'
             for s in stats.values()]
    lines.append(f'| {index} {class_name} | ' + ' | '.join(cells) + ' |')
  void_cells = [f'{_pct(s.void_pixels, s.total_pixels)} | '
                f'{int((s.image_void > 0).sum())}' for s in stats.values()]
  lines.append('| void | ' + ' | '.join(void_cells) + ' |')
  if any(s.out_of_range_pixels for s in stats.values()):
    stray = [f'{_pct(sum(s.out_of_range_pixels.values()), s.total_pixels)} | '
             f'{_stray_images(s)}' for s in stats.values()]
    lines.append('| neither (stray values) | ' + ' | '.join(stray) + ' |')
  lines += ['', '## Findings', '']
  if not findings:
    lines.append('No label problems found.')
  for f in findings:
    lines.append(f'- **{f.level}** `{f.code}`: {f.message}')
  if grid_ids:
    lines += ['', f'grid.png: image | mask overlaid, one row each: {", ".join(grid_ids)}.']
  return '\n'.join(lines) + '\n'
