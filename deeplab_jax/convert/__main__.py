"""Converts official DeepLab weights into a checkpoint this project reads.

    python -m deeplab_jax.convert --input train_iter_20000.caffemodel \
        --config configs/voc_aspp.py --output weights/voc_aspp_caffe [--reinit_classifier]
    python -m deeplab_jax.convert --input init.caffemodel \
        --config configs/voc_aspp.py --output weights/coco_init   # fc1_coco dropped

Writes `<output>/checkpoints/0/` (evaluate.py / train.py --workdir, or
--config.init_from) and `<output>/converted.json`. See deeplab_jax/convert/__init__.py.
"""

import json

from absl import flags
from ml_collections import config_flags

from deeplab_jax import cli
from deeplab_jax import convert

_CONFIG = config_flags.DEFINE_config_file(
    'config', None, 'The configuration of the model the weights are for.', lock_config=True)
_INPUT = flags.DEFINE_string('input', None, '.caffemodel or PyTorch .pth file.')
_OUTPUT = flags.DEFINE_string('output', None, 'Directory to write (new or empty).')
_REINIT = flags.DEFINE_bool(
    'reinit_classifier', False,
    'Initialise the classifier afresh when the file has another class count.')
_KEEP_INIT = flags.DEFINE_bool(
    'keep_init_classifier', False,
    'Keep an init file\'s own classifier (fc1_coco, the 91-class 1x1 layer of the COCO '
    'init.caffemodel) as the head of a one-branch 1x1 model '
    '(--config.model.head.rates=1 --config.model.head.kernel_size=1 '
    '--config.dataset.num_classes=91) instead of dropping it.')
flags.mark_flags_as_required(['config', 'input', 'output'])


def main():
  record = convert.convert_to_workdir(_INPUT.value, _CONFIG.value, _OUTPUT.value,
                                      _REINIT.value, _KEEP_INIT.value)
  print(json.dumps(record, indent=2))
  print(f"\nconverted {record['converted_tensors']} tensors ({record['num_params']:,} "
        f"parameters) from {record['source']}; initialised afresh: "
        f"{len(record['initialised_afresh'])}")
  for line in record['dropped_from_file']:
    print(f'dropped from the file: {line}')
  for line in record['input_warnings']:
    print(f'warning: {line}')
  print(f'\nwrote {_OUTPUT.value}: evaluate with `python evaluate.py --config ... '
        f'--workdir {_OUTPUT.value}`, train from it with --config.init_from={_OUTPUT.value}')


if __name__ == '__main__':
  cli.run(main)
