"""Variables trees by '/'-joined path, and whether one fits another.

A flax variables tree ({'params': {...}, 'batch_stats': {...}}) is a nested
dict; converters and checkpoint loading compare it leaf by leaf with the
model's own tree (`models.variable_shapes(config)`), by path:

    flat = flatten(variables)     # {'params/head/branch0_classifier/kernel': array, ...}
    variables = unflatten(flat, roots=('params', 'batch_stats'))
    for m in mismatches(shapes(variables), models.variable_shapes(config)):
      print(m)                    # params/head/...: missing | unexpected | (3,3,64,7) != ...

What a mismatch means (a fresh initialisation, a re-initialised
classifier, an error) is the caller's decision: `mismatches` only lists them.
"""

from __future__ import annotations

import dataclasses
from typing import Mapping

import numpy as np

MISSING, UNEXPECTED, SHAPE = 'missing', 'unexpected', 'shape'


def flatten(tree: Mapping, prefix: str = '') -> dict:
  """{'/'-joined path: leaf} of a nested dict (a flat dict comes back as it is)."""
  out = {}
  for key, value in tree.items():
    path = f'{prefix}/{key}' if prefix else key
    if isinstance(value, dict):
      out.update(flatten(value, path))
    else:
      out[path] = value
  return out


def unflatten(flat: Mapping, roots: tuple = ()) -> dict:
  """The nested dict of `flat` ({'/'-joined path: leaf}), in `flat`'s order.

  `roots`: top-level keys the tree has even when `flat` has nothing under
  them (e.g. ('params', 'batch_stats'): VGG's empty 'batch_stats'), first.
  """
  tree = {root: {} for root in roots}
  for path, value in flat.items():
    node = tree
    *parents, leaf = path.split('/')
    for key in parents:
      node = node.setdefault(key, {})
    node[leaf] = value
  return tree


def shapes(tree: Mapping) -> dict[str, tuple[int, ...]]:
  """{'/'-joined path: shape} of a nested (or already flat) dict of arrays."""
  return {path: tuple(np.shape(leaf)) for path, leaf in flatten(tree).items()}


@dataclasses.dataclass(frozen=True)
class Mismatch:
  """One leaf where two trees differ: `problem` is MISSING (in `want` only),
  UNEXPECTED (in `have` only) or SHAPE (in both, of other shapes)."""
  path: str
  problem: str
  have: tuple | None  # The shape in `have`; None when MISSING.
  want: tuple | None  # The shape in `want`; None when UNEXPECTED.

  def __str__(self):
    if self.problem == MISSING:
      return f'{self.path}: missing (needs {self.want})'
    if self.problem == UNEXPECTED:
      return f'{self.path}: unexpected {self.have}'
    return f'{self.path}: {self.have}, needs {self.want}'


def mismatches(have: Mapping[str, tuple], want: Mapping[str, tuple]) -> list[Mismatch]:
  """Every leaf where `have` does not fit `want` (both {path: shape}).

  In `want`'s order (MISSING and SHAPE), then UNEXPECTED in `have`'s order;
  empty when every leaf of `want` is in `have` with its shape and nothing else is.

      mismatches({'params/w': (2,)}, {'params/w': (3,), 'params/b': (1,)})
      # [Mismatch('params/w', SHAPE, (2,), (3,)), Mismatch('params/b', MISSING, None, (1,))]
  """
  out = []
  for path, shape in want.items():
    got = have.get(path)
    if got is None:
      out.append(Mismatch(path, MISSING, None, tuple(shape)))
    elif tuple(got) != tuple(shape):
      out.append(Mismatch(path, SHAPE, tuple(got), tuple(shape)))
  out += [Mismatch(path, UNEXPECTED, tuple(got), None)
          for path, got in have.items() if path not in want]
  return out
