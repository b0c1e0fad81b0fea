"""Exports a trained or converted model to StableHLO, ONNX or a TF SavedModel.

    python export.py --config configs/shapes.py --workdir runs/shapes \
        --format stablehlo --output exported/shapes.stablehlo
    python export.py --config configs/shapes.py --workdir runs/shapes \
        --format onnx --output exported/shapes.onnx --height 192 --width 192
    python export.py --config configs/shapes.py --workdir runs/shapes \
        --format savedmodel --output exported/shapes_savedmodel

The exported function takes uint8 RGB images (NHWC) and returns logits and
labels at their size, as `predict.py` computes them (deeplab_jax/export/,
docs/deployment.md). Each export is checked against JAX on random images
before this returns, and `<output>.json` records the class names, the input
spec and that check.
"""

from absl import flags
from ml_collections import config_flags

from deeplab_jax import cli
from deeplab_jax import export as export_lib

_CONFIG = config_flags.DEFINE_config_file(
    'config', None, 'The configuration the weights were trained with.', lock_config=True)
_WORKDIR = flags.DEFINE_string('workdir', None, 'A run or converted-weights directory.')
_FORMAT = flags.DEFINE_enum('format', None, sorted(export_lib.FORMATS), 'Export format.')
_OUTPUT = flags.DEFINE_string('output', None, 'File (stablehlo, onnx) or folder (savedmodel).')
_STEP = flags.DEFINE_string(
    'step', 'latest', "Checkpoint: a step number, 'latest' or 'best' (the best val mIoU "
    'kept by training with --config.eval_every_steps).')
_BATCH = flags.DEFINE_integer('batch', None, 'Fixed batch size (default: symbolic).')
_HEIGHT = flags.DEFINE_integer('height', None, 'Fixed image height (default: symbolic).')
_WIDTH = flags.DEFINE_integer('width', None, 'Fixed image width (default: symbolic).')
_OUTPUTS = flags.DEFINE_list('outputs', ['logits', 'labels'],
                             'Any of logits, labels, probabilities.')
_ATROUS = flags.DEFINE_string('atrous_impl', 'dilation',
                              'Atrous implementation in the exported program.')
_PLATFORMS = flags.DEFINE_list('platforms', [], 'stablehlo / savedmodel: lower for these '
                               '(cpu, cuda, rocm, tpu; default: this machine\'s).')
flags.mark_flags_as_required(['config', 'workdir', 'format', 'output'])


def main():
  export_lib.export_checkpoint(
      _CONFIG.value, _WORKDIR.value, _FORMAT.value, _OUTPUT.value, step=_STEP.value,
      spec=export_lib.InputSpec(_BATCH.value, _HEIGHT.value, _WIDTH.value),
      outputs=_OUTPUTS.value, atrous_impl=_ATROUS.value, platforms=_PLATFORMS.value or None)


if __name__ == '__main__':
  cli.run(main)
