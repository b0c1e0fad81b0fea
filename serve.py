"""A local web page to try a model: drop an image, see its mask.

    python serve.py --config configs/shapes.py --workdir runs/shapes   # after `make demo`
    # then open http://127.0.0.1:8000 in a browser

The page (deeplab_jax/web/) shows the colour overlay with a class legend and
each class's share of the pixels, a dense-CRF switch with the time each
step took, and a link to download the mask as the palette PNG `predict.py`
writes. Bad uploads (not an image, too large, 16-bit) get a message on the
page. Python's own http.server: nothing else to install.
"""

from absl import flags
from ml_collections import config_flags

from deeplab_jax import cli
from deeplab_jax.web import server

_CONFIG = config_flags.DEFINE_config_file(
    'config', None, 'The configuration the weights were trained with.', lock_config=True)
_WORKDIR = flags.DEFINE_string('workdir', None, 'A run or converted-weights directory.')
_STEP = flags.DEFINE_integer('step', None, 'Checkpoint step (default: latest).')
_HOST = flags.DEFINE_string('host', '127.0.0.1', 'Address to listen on (0.0.0.0: all).')
_PORT = flags.DEFINE_integer('port', 8000, 'Port (0: any free one).')
flags.mark_flags_as_required(['config', 'workdir'])


def main():
  server.serve(_CONFIG.value, _WORKDIR.value, _HOST.value, _PORT.value, _STEP.value)


if __name__ == '__main__':
  cli.run(main)
