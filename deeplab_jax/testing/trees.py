"""Comparing pytrees of arrays leaf by leaf, naming the leaf that differs."""

from __future__ import annotations

import jax
import numpy as np


def assert_trees_equal(a, b):
  """Bit-identical leaves (the same structure assumed), the path in the message."""
  for (path, x), y in zip(jax.tree_util.tree_leaves_with_path(a), jax.tree_util.tree_leaves(b)):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y), err_msg=jax.tree_util.keystr(path))
