"""The label mistakes people make with their own masks, found from the split statistics.

    found = label_checks.check({'train': train_stats, 'val': val_stats},
                               class_names, train_split='train')
    label_checks.log_or_raise(found)  # warnings logged, errors a UserError

Each `Finding` names the files (or ids) and says the fix. Errors are masks
training cannot use as they are; warnings are data that trains but probably
not as meant:

| code | level | what |
|---|---|---|
| `colour_mask` | error | an RGB (or RGBA) mask: colours, not class indices |
| `colour_values` | error | grey or palette mask whose values look like colours (few, large, spread: 0, 38, 75, 128, ...) |
| `shifted_ids` | error | no pixel of class 0 anywhere, value `num_classes` present: ids 1..N where 0..N-1 are meant |
| `out_of_range` | error | values neither a class nor `ignore_label` |
| `binary_void` | error / warning | masks of only 0 and 255: 255 is void, so the object is never learned (error when it is every mask of a split) |
| `mostly_void` | warning | void covers more than half of a mask |
| `class_not_in_train` | warning | a class with no training pixel that another split has |
| `class_missing` | warning | a class with no pixel in any split read |

All are pure functions of `statistics.SplitStatistics`; nothing here reads files.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Sequence

import numpy as np
from absl import logging

from deeplab_jax.errors import UserError

NAMES_SHOWN = 5  # Files named in a message before "and N more".
BINARY_VOID_SHARE = 0.2  # A 0/255 mask with this much void is suspicious ...
MOSTLY_VOID_SHARE = 0.5  # ... and any mask with more than this.
COLOUR_GAP = 4  # Stray values at least this far apart look like colours ...
MANY_VALUES = 16  # ... as do more stray values than this in one mask.
DOCS = 'docs/datasets.md, "Inspecting a dataset"'


@dataclasses.dataclass(frozen=True)
class Finding:
  """One problem: `level` 'error' or 'warning', a short `code` (module table),
  a one-line `message` naming the files and saying the fix, the `files`."""
  level: str
  code: str
  message: str
  files: tuple[str, ...] = ()


def names_text(names: Sequence[str]) -> str:
  """'a, b, c, d, e and 3 more': the first NAMES_SHOWN of `names`."""
  shown = ', '.join(names[:NAMES_SHOWN])
  return shown + (f' and {len(names) - NAMES_SHOWN} more' if len(names) > NAMES_SHOWN else '')


def _values(row: np.ndarray, num_classes: int, ignore_label: int) -> list[int]:
  """The values of a `present` row that are neither a class nor void."""
  return [int(v) for v in np.flatnonzero(row) if v >= num_classes and v != ignore_label]


def _looks_like_colours(values: list[int], row: np.ndarray, num_classes: int) -> bool:
  """Whether a mask's stray `values` look like colours (or their grey levels)
  rather than ids beyond the class list: at least as many as the classes in
  the mask and spread out (every gap between the mask's values >= 4: 0, 38,
  75 or 0, 128, 192, not 0, 1, 2, 3, 4), or very many (anti-aliased edges)."""
  classes = int(row[:num_classes].sum())
  held = np.asarray(sorted(set(np.flatnonzero(row[:num_classes]).tolist()) | set(values)))
  spread = held.size < 2 or int(np.diff(held).min()) >= COLOUR_GAP
  return len(values) >= 2 and ((len(values) >= classes and spread)
                               or len(values) > MANY_VALUES)


def check(stats: dict, class_names: Sequence[str], train_split: str | None = 'train',
          name: Callable[[str, str], str] | None = None) -> list[Finding]:
  """Every finding over `stats` (split -> `SplitStatistics`), errors first.

  Args:
    stats: the splits read, all with the same num_classes and ignore_label.
    class_names: index -> name, as many as `num_classes`.
    train_split: the split trained on (the class checks compare the others
      with it); None or absent from `stats`: classes are checked over all.
    name: `(split, image_id) -> what messages call it` (e.g. the mask's
      path); default the id.
  """
  if not stats:
    return []
  name = name or (lambda split, image_id: image_id)
  num_classes = next(iter(stats.values())).num_classes
  found = _value_errors(stats, class_names, name)
  binary = _binary_void(stats, name)
  found += binary
  flagged = {path for f in found for path in f.files}
  found += _mostly_void(stats, name, flagged)
  if not any(f.code == 'binary_void' and f.level == 'error' for f in binary):
    shifted = any(f.code == 'shifted_ids' for f in found)
    found += _missing_classes(stats, class_names[:num_classes], train_split, name,
                              skip_zero=shifted)
  return sorted(found, key=lambda f: f.level != 'error')


def _value_errors(stats, class_names, name) -> list[Finding]:
  """colour_mask, colour_values, shifted_ids and out_of_range: one per file."""
  first = next(iter(stats.values()))
  c, void = first.num_classes, first.ignore_label
  colour, colour_values, stray = {}, {}, {}
  for split, s in stats.items():
    for image_id, what in s.colour_masks.items():
      colour.setdefault(what, []).append(name(split, image_id))
    for row, image_id in zip(s.present, s.image_ids):
      values = _values(row, c, void)
      if not values:
        continue
      target = colour_values if _looks_like_colours(values, row, c) else stray
      target[name(split, image_id)] = values
  found = []
  for what, paths in colour.items():
    found.append(Finding('error', 'colour_mask', (
        f'these look like colour masks ({what}s), not class indices: '
        f'{names_text(paths)}; convert them with the colour -> index snippet in {DOCS} '
        '(or save each as a greyscale PNG whose pixel value is the class index, '
        f'{void} = void)'), tuple(paths)))
  if colour_values:
    paths = list(colour_values)
    example = sorted({v for vs in colour_values.values() for v in vs})[:8]
    found.append(Finding('error', 'colour_values', (
        'these masks hold values that look like colours (or their grey levels), '
        f'not class indices 0-{c - 1}: {names_text(paths)} (values such as {example}); '
        'they were probably saved or converted from colour masks: write each pixel\'s '
        f'class index instead (colour -> index snippet in {DOCS})'), tuple(paths)))
  no_zero = all(s.pixel_counts[0] == 0 for s in stats.values())
  stray_values = {v for vs in stray.values() for v in vs}
  if stray and no_zero and stray_values == {c}:
    paths = list(stray)
    found.append(Finding('error', 'shifted_ids', (
        f'class ids look shifted by one: no mask has a pixel of class 0 '
        f'({class_names[0]!r}) and these masks hold {c}, one past the last class '
        f'(0-{c - 1}): {names_text(paths)}; if your ids start at 1, subtract 1 '
        f'(m = np.where(m == {void}, {void}, m - 1)), or if 0 is a class no mask uses, '
        'add its name first in class_names'), tuple(paths)))
  elif stray:
    paths = [f'{path} (values {values})' for path, values in stray.items()]
    high = max(stray_values)
    found.append(Finding('error', 'out_of_range', (
        f'these masks have values neither a class (0-{c - 1}) nor {void} (void): '
        f'{names_text(paths)}; if they are classes, set num_classes to {high + 1} and '
        f'name them in class_names; if they are void, set them to {void} '
        f'(m[(m >= {c}) & (m != {void})] = {void})'), tuple(stray)))
  return found


def _binary_void(stats, name) -> list[Finding]:
  """Masks of only 0 and void: the object was written as 255."""
  found = []
  for split, s in stats.items():
    c, void = s.num_classes, s.ignore_label
    if c < 2 or not s.image_ids:
      continue
    only = np.zeros(256, bool)
    only[[0, void]] = True
    binary = (s.present[:, 0] & s.present[:, void] & ~(s.present & ~only).any(axis=1))
    pixels = s.heights * s.widths
    share = s.image_void / np.maximum(pixels, 1)
    indexed = np.asarray([i not in s.colour_masks for i in s.image_ids], bool)
    fix = (f'{void} is void (never trained on), so the object is never learned; if '
           f'{void} marks it, make it class 1 (m[m == {void}] = 1) and keep {void} '
           'for pixels to ignore')
    if indexed.any() and binary[indexed].all():
      paths = [name(split, s.image_ids[i]) for i in np.flatnonzero(binary)]
      found.append(Finding('error', 'binary_void', (
          f'every mask of split {split!r} holds only 0 and {void}: '
          f'{names_text(paths)}; {fix}'), tuple(paths)))
      continue
    rows = np.flatnonzero(binary & (share >= BINARY_VOID_SHARE))
    if rows.size:
      paths = [name(split, s.image_ids[i]) for i in rows]
      shown = [f'{p} ({share[i]:.0%} void)' for p, i in zip(paths, rows)]
      found.append(Finding('warning', 'binary_void', (
          f'these masks of split {split!r} hold only 0 and {void}, with '
          f'{BINARY_VOID_SHARE:.0%} or more void: {names_text(shown)}; {fix}'), tuple(paths)))
  return found


def _mostly_void(stats, name, flagged) -> list[Finding]:
  """Masks more than half void (beyond those already reported)."""
  found = []
  for split, s in stats.items():
    share = s.image_void / np.maximum(s.heights * s.widths, 1)
    rows = [i for i in np.flatnonzero(share > MOSTLY_VOID_SHARE)
            if name(split, s.image_ids[i]) not in flagged]
    if rows:
      paths = [name(split, s.image_ids[i]) for i in rows]
      shown = [f'{p} ({share[i]:.0%})' for p, i in zip(paths, rows)]
      found.append(Finding('warning', 'mostly_void', (
          f'void ({s.ignore_label}) covers more than half of these masks of split '
          f'{split!r}: {names_text(shown)}; void pixels are never trained on or scored: if '
          f'{s.ignore_label} marks a class there, write that class\'s index instead'),
          tuple(paths)))
  return found


def _missing_classes(stats, class_names, train_split, name, skip_zero) -> list[Finding]:
  """Classes with no pixel in the training split (or in any split read)."""
  found = []
  train = stats.get(train_split) if train_split else None
  for index, class_name in enumerate(class_names):
    if skip_zero and index == 0:
      continue
    label = f'class {index} ({class_name!r})'
    if train is None:
      if all(s.pixel_counts[index] == 0 for s in stats.values()):
        found.append(Finding('warning', 'class_missing', (
            f'{label} has no pixel in split(s) {", ".join(map(repr, stats))}: add images '
            'showing it, or drop it from class_names (and renumber the ids above it)')))
      continue
    if train.pixel_counts[index]:
      continue
    elsewhere = {split: [name(split, image_id) for image_id, row
                         in zip(s.image_ids, s.present) if row[index]]
                 for split, s in stats.items() if split != train_split}
    elsewhere = {split: paths for split, paths in elsewhere.items() if paths}
    if elsewhere:
      where = '; '.join(f'{split!r} has it in {len(p)} mask{"s" * (len(p) > 1)}: '
                        f'{names_text(p)}'
                        for split, p in elsewhere.items())
      found.append(Finding('warning', 'class_not_in_train', (
          f'{label} has no pixel in the training split {train_split!r} but occurs '
          f'elsewhere ({where}): the model never learns it and scores 0 IoU on it; '
          f'move some of those images into {train_split!r}'),
          tuple(p for paths in elsewhere.values() for p in paths)))
    else:
      found.append(Finding('warning', 'class_missing', (
          f'{label} has no pixel in the training split {train_split!r} (nor in '
          f'{", ".join(repr(s) for s in stats if s != train_split) or "any other split read"}): '
          'the model never learns it; add images showing it, or drop it from class_names '
          '(and renumber the ids above it)')))
  return found


def log_or_raise(findings: Sequence[Finding]) -> None:
  """Logs each warning (absl `logging.warning`); raises a UserError of the
  errors, one line each, if there are any."""
  for f in findings:
    if f.level == 'warning':
      logging.warning('%s', f.message)
  errors = [f.message for f in findings if f.level == 'error']
  if errors:
    raise UserError('\n'.join(errors))
