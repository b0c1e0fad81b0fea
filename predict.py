"""Segments your images: masks as VOC palette PNGs, plus colour overlays.

    python predict.py --config configs/shapes.py --workdir runs/shapes \
        --input photo.jpg,more_photos/ --output masks/
    python predict.py --config configs/voc_aspp.py --workdir weights/voc_aspp \
        --input photos/ --output masks/ --crf

Any image size; weights from a training run or converted official weights
(`python -m deeplab_jax.convert`). Writes <output>/<name>.png (pixel value =
class index, VOC colours) and <output>/<name>_overlay.png. Inference and CRF
options: `config.eval`, `config.crf` (e.g. --config.eval.flip=True).
"""

from absl import flags
from ml_collections import config_flags

from deeplab_jax import cli
from deeplab_jax import predict_lib

_CONFIG = config_flags.DEFINE_config_file(
    'config', None, 'The configuration the weights were trained with.',
    lock_config=True)
_WORKDIR = flags.DEFINE_string(
    'workdir', None, 'A run or converted-weights directory with a checkpoint.')
_INPUT = flags.DEFINE_list('input', None, 'Image files and/or folders of images.')
_OUTPUT = flags.DEFINE_string('output', None, 'Folder the masks are written to.')
_CRF = flags.DEFINE_bool('crf', False, 'Refine with the dense CRF (config.crf).')
_OVERLAYS = flags.DEFINE_bool('overlays', True, 'Also write <name>_overlay.png.')
_STEP = flags.DEFINE_string(
    'step', 'latest', "Checkpoint: a step number, 'latest' or 'best' (the best val mIoU "
    'kept by training with --config.eval_every_steps).')
flags.mark_flags_as_required(['config', 'workdir', 'input', 'output'])


def main():
  predict_lib.predict(_CONFIG.value, _WORKDIR.value, _INPUT.value, _OUTPUT.value,
                      crf=_CRF.value, overlays=_OVERLAYS.value, step=_STEP.value)


if __name__ == '__main__':
  cli.run(main)
