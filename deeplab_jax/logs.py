"""Quiet console logs: the project's own progress lines, library warnings only.

orbax, TFDS and clu log every checkpoint write and dataset read at INFO through
absl, and TFDS draws progress bars while building; `quiet_libraries()` keeps
those out of the console (warnings and errors still show). TensorBoard still
receives every scalar.
"""

from __future__ import annotations

import logging
import os

_PROJECT_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class _ProjectOnly(logging.Filter):

  def filter(self, record):
    if record.levelno >= logging.WARNING:
      return True
    path = os.path.abspath(record.pathname)
    return path.startswith(_PROJECT_DIR) and 'site-packages' not in path


def quiet_libraries():
  """For entry points: library INFO lines and TFDS progress bars off the console."""
  from absl import logging as absl_logging  # pylint: disable=import-outside-toplevel
  absl_logging.get_absl_handler().addFilter(_ProjectOnly())
  try:  # predict.py, export.py and serve.py run where TFDS is not installed.
    import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel
  except ImportError:
    return
  tfds.disable_progress_bar()
