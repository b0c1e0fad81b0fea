"""Evaluates a trained (or converted) DeepLab checkpoint the way the papers did.

    python evaluate.py --config configs/shapes.py --workdir runs/shapes
    python evaluate.py --config configs/voc_aspp.py --workdir runs/voc_aspp --crf
    python evaluate.py --config configs/voc_aspp.py --workdir runs/voc_aspp \\
        --config.eval.scales=0.5,0.75,1.0,1.25,1.5 --config.eval.flip=True
    python evaluate.py --config configs/shapes.py --workdir runs/shapes --step best

Prints a Markdown report (per-class IoU, mIoU, pixel / mean class accuracy,
frequency-weighted IoU, boundary-band mIoU; before and after the CRF with
--crf) and writes metrics.json, report.md, confusion.png, trimap.png and
overlays to --output_dir (default <workdir>/eval/<split>_step<step>).
Inference, CRF and output options: `config.eval` and `config.crf`
(configs/common.py).
"""

from absl import flags
from ml_collections import config_flags

from deeplab_jax import cli
from deeplab_jax import distributed
from deeplab_jax import evaluation

_CONFIG = config_flags.DEFINE_config_file(
    'config', None, 'The configuration the run was trained with.',
    lock_config=True)
_WORKDIR = flags.DEFINE_string(
    'workdir', None, 'The training run (or converted weights) directory.')
_STEP = flags.DEFINE_string(
    'step', 'latest', "Checkpoint: a step number, 'latest' or 'best' (the best val mIoU "
    'kept by training with --config.eval_every_steps).')
_SPLIT = flags.DEFINE_string('split', None, 'Split (default: config.dataset.eval_split).')
_CRF = flags.DEFINE_bool(
    'crf', None, 'Also score after the dense CRF (config.crf parameters, '
    'config.eval.crf_backend); same as --config.eval.crf=True.')
_OUTPUT_DIR = flags.DEFINE_string(
    'output_dir', None, 'Where reports and pictures go '
    '(default: <workdir>/eval/<split>_step<step>).')
flags.mark_flags_as_required(['config', 'workdir'])


def main():
  # Several processes (SLURM, Open MPI, TPU pod, torchrun-style variables):
  # each scores its shard, the counts are summed (README "Training at scale").
  distributed.initialize()
  config = _CONFIG.value
  if _CRF.value is not None:
    config.eval.crf = _CRF.value
  evaluation.evaluate_checkpoint(config, _WORKDIR.value, _STEP.value,
                                 split=_SPLIT.value, output_dir=_OUTPUT_DIR.value)


if __name__ == '__main__':
  cli.run(main)
