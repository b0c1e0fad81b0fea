"""The command-line error boundary shared by the entry points.

Mistakes a user can fix (a config file that does not exist, a mistyped
`--config.<field>`, a bad workdir, a batch size the devices cannot split) end
with one `error: ...` line and exit status 1, never a traceback.
"""

from __future__ import annotations

import sys

from absl import app
from absl import flags

from deeplab_jax import logs
from deeplab_jax import xla_flags
from deeplab_jax.errors import UserError

# What ml_collections raises while loading or overriding a config file.
_CONFIG_ERRORS = (AttributeError, KeyError, OSError, TypeError, ValueError)


def _parse_flags(argv):
  try:
    rest = flags.FLAGS(argv)
    if 'config' in flags.FLAGS:  # Surfaces a deferred loading error now.
      flags.FLAGS['config'].value.to_dict()
  except flags.Error as e:
    sys.exit(f'error: {e}\nRun with --help for the flags.')
  except _CONFIG_ERRORS as e:
    message = e.args[0] if e.args and isinstance(e.args[0], str) else str(e)
    if message.startswith("'") and message.endswith("'"):  # A KeyError's repr.
      message = message[1:-1].replace("\\'", "'").replace('\\n', '\n')
    sys.exit(f'error: bad --config: {message}')
  return rest


def run(main):
  """`app.run` for an entry point whose `main()` takes no arguments."""
  xla_flags.set_defaults()

  def _main(argv):
    if len(argv) > 1:
      raise app.UsageError(f'unexpected arguments: {argv[1:]}')
    logs.quiet_libraries()
    try:
      main()
    except UserError as e:
      sys.exit(f'error: {e}')
  app.run(_main, flags_parser=_parse_flags)
