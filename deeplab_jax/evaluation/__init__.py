"""Evaluation the way the papers computed it: one confusion matrix per split.

    python evaluate.py --config configs/voc_aspp.py --workdir runs/x [--crf]

    from deeplab_jax import evaluation
    summary = evaluation.evaluate_checkpoint(config, workdir)

Per batch of images padded to `input.eval_size`: logits at the padded size
(`inference.py`: whole image or sliding windows, test-time scales and flip,
bilinear upsampling with `model.align_corners`), argmax, confusion counts of
the valid, non-void pixels; with `eval.crf` the dense CRF (`config.crf`,
backend `eval.crf_backend`) refines the same logits and a second matrix
counts its labels, so one run reports before and after. Boundary accuracy:
a confusion matrix per trimap band width (`eval.trimap_widths`). Everything
is summed over the split (and over processes: each process scores its own
shard), then turned into mIoU and friends once (`metrics.py`).

One job per module:
  step.py         the jitted eval step (`make_eval_step`, `eval_batch_size`)
  crf_step.py     the CRF step (`make_crf_step`; lattices sized by `crf/sizing.py`)
  loop.py         `evaluate`: the steps over a split, the totals, the summary
  report.py       `format_report` (Markdown), the summary's trimap entry
  writer.py       per-image files (`Writer`), TensorBoard's strips (`Pictures`),
                  `write_outputs` (metrics.json, PNGs)
  checkpoints.py  `evaluate_checkpoint` (what evaluate.py runs), `default_output_dir`
  during_training.py  `Watch`: evaluation every `eval_every_steps` (TensorBoard,
                  the best checkpoint of `best_checkpoint.py`, log lines)
Checkpoint loading itself (`load_variables`) is `checkpoint.load_variables`,
which predict.py shares; the CRF's settings and scores are `crf.settings` and
`crf.scores_from_logits`.
"""

from deeplab_jax.checkpoint import load_variables
from deeplab_jax.evaluation.checkpoints import default_output_dir, evaluate_checkpoint
from deeplab_jax.evaluation.crf_step import make_crf_step
from deeplab_jax.evaluation.loop import evaluate
from deeplab_jax.evaluation.report import format_report
from deeplab_jax.evaluation.step import eval_batch_size, make_eval_step
from deeplab_jax.evaluation.writer import write_outputs

__all__ = ['default_output_dir', 'eval_batch_size', 'evaluate', 'evaluate_checkpoint',
           'format_report', 'load_variables', 'make_crf_step', 'make_eval_step',
           'write_outputs']
