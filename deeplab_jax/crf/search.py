"""CRF parameter search the way the papers did it: a grid on held-out images.

    python evaluate.py --config configs/voc_aspp.py --workdir runs/x \\
        --config.eval.save_logits=100            # once: logits of 100 images
    python -m deeplab_jax.crf.search --config configs/voc_aspp.py \\
        --logits_dir runs/x/eval/val_step20000/logits

The network does not run again: `evaluate.py` saved each image, its ground
truth and its logits at image size (float16). The search scores mIoU after
the CRF (`config.crf`, backend `config.eval.crf_backend`) for every point of
a coarse grid over w1, sigma_alpha, sigma_beta (the papers: w1 in 3..6,
sigma_alpha in 30..100, sigma_beta in 3..6, w2 and sigma_gamma fixed), then
of a fine grid around the coarse optimum; w2, sigma_gamma, iterations,
normalization and unary stay as the config says. Prints a Markdown table
(best first, with the no-CRF baseline), writes crf_search.json next to the
logits, and the overrides that select the best parameters.
"""

from __future__ import annotations

import dataclasses
import glob
import itertools
import json
import os
import time

import numpy as np

from deeplab_jax.crf import params as crf_params
from deeplab_jax.errors import UserError

COARSE = {'w1': (3.0, 4.0, 5.0, 6.0), 'sigma_alpha': (30.0, 50.0, 70.0, 90.0),
          'sigma_beta': (3.0, 5.0)}
# Fine grid: these offsets around the coarse optimum (kept > 0).
FINE_STEPS = {'w1': (-0.5, 0.0, 0.5), 'sigma_alpha': (-10.0, 0.0, 10.0),
              'sigma_beta': (-1.0, 0.0, 1.0)}


def load(logits_dir, limit=None):
  """[(image HxWx3 uint8, label HxW uint8, logits HxWxC float32)] saved by evaluate.py."""
  paths = sorted(glob.glob(os.path.join(logits_dir, '*.npz')))
  if not paths:
    raise UserError(f'no saved logits (*.npz) in {logits_dir}; write them with '
                    '`python evaluate.py ... --config.eval.save_logits=100`')
  examples = []
  for path in paths[:limit]:
    with np.load(path) as data:
      examples.append((data['image'], data['label'], data['logits'].astype(np.float32)))
  return examples


def _batches(examples, batch_size):
  """Padded batches: (images, scores, valid, [(label, h, w)])."""
  for start in range(0, len(examples), batch_size):
    chunk = examples[start:start + batch_size]
    height = max(e[0].shape[0] for e in chunk)
    width = max(e[0].shape[1] for e in chunk)
    classes = chunk[0][2].shape[-1]
    images = np.zeros((len(chunk), height, width, 3), np.uint8)
    scores = np.zeros((len(chunk), height, width, classes), np.float32)
    valid = np.zeros((len(chunk), height, width), bool)
    for i, (image, _, logits) in enumerate(chunk):
      h, w = image.shape[:2]
      images[i, :h, :w], scores[i, :h, :w], valid[i, :h, :w] = image, logits, True
    yield images, scores, valid, [(e[1], *e[0].shape[:2]) for e in chunk]


def score(examples, params, backend='jax', batch_size=8, ignore_label=255, processes=None):
  """mIoU over `examples` after the CRF with `params` (None: the logits' argmax)."""
  from deeplab_jax import crf  # pylint: disable=import-outside-toplevel
  from deeplab_jax import metrics  # pylint: disable=import-outside-toplevel
  classes = examples[0][2].shape[-1]
  total = np.zeros((classes, classes), np.int64)
  for images, logits, valid, labels in _batches(examples, batch_size):
    if params is None:
      out = logits
    else:
      out = crf.refine(images, crf.scores_from_logits(logits, params), params,
                       backend=backend, valid=valid, processes=processes)
    preds = out.argmax(-1)
    for pred, (label, h, w) in zip(preds, labels):
      total += np.asarray(metrics.confusion_matrix(label.astype(np.int32), pred[:h, :w], classes,
                                                   ignore_label=ignore_label))
  return metrics.summarize(total, [str(c) for c in range(classes)])['mean_iou']


def grid(axes: dict) -> list[dict]:
  names = list(axes)
  return [dict(zip(names, values)) for values in itertools.product(*(axes[n] for n in names))]


def fine_axes(best: dict, steps=None) -> dict:
  steps = FINE_STEPS if steps is None else steps
  return {name: tuple(sorted({round(best[name] + d, 6) for d in deltas if best[name] + d > 0}))
          for name, deltas in steps.items()}


def search(examples, base: crf_params.CRFParams, backend='jax', coarse=None,
           fine_steps=None, batch_size=8, ignore_label=255, processes=None, log=print):
  """Coarse grid then fine grid; returns {'baseline', 'best', 'results'}.

  results: [{'w1', 'sigma_alpha', 'sigma_beta', 'mean_iou', 'stage'}], best
  first. `base` supplies every parameter the grid does not vary.
  """
  coarse = COARSE if coarse is None else coarse
  baseline = score(examples, None, ignore_label=ignore_label)
  log(f'{len(examples)} images; mIoU without CRF {baseline:.4f}')
  results, seen = [], set()

  def run(points, stage):
    for point in points:
      key = tuple(sorted(point.items()))
      if key in seen:
        continue
      seen.add(key)
      start = time.perf_counter()
      params = dataclasses.replace(base, **point)
      miou = score(examples, params, backend, batch_size, ignore_label, processes)
      results.append({**point, 'mean_iou': miou, 'stage': stage})
      log(f'{stage:6s} ' + ' '.join(f'{k}={v:g}' for k, v in point.items()) +
          f'  mIoU {miou:.4f}  ({time.perf_counter() - start:.1f}s)')

  run(grid(coarse), 'coarse')
  best = max(results, key=lambda r: r['mean_iou'])
  run(grid(fine_axes(best, fine_steps)), 'fine')
  results.sort(key=lambda r: -r['mean_iou'])
  best = dict(dataclasses.asdict(base), **{k: results[0][k] for k in COARSE})
  return {'baseline_mean_iou': baseline, 'best': best,
          'best_mean_iou': results[0]['mean_iou'], 'results': results}


def format_table(outcome, top=15):
  lines = ['| w1 | sigma_alpha | sigma_beta | stage | mIoU |', '|---:|---:|---:|---|---:|']
  for r in outcome['results'][:top]:
    lines.append(f'| {r["w1"]:g} | {r["sigma_alpha"]:g} | {r["sigma_beta"]:g} | '
                 f'{r["stage"]} | {r["mean_iou"]:.4f} |')
  lines.append(f'| - | - | - | no CRF | {outcome["baseline_mean_iou"]:.4f} |')
  return '\n'.join(lines)


def overrides(best) -> str:
  return ' '.join(f'--config.crf.{k}={best[k]:g}' for k in COARSE)


def main():
  """`python -m deeplab_jax.crf.search` (flags defined below)."""
  from absl import flags  # pylint: disable=import-outside-toplevel
  config = flags.FLAGS.config
  from deeplab_jax import crf  # pylint: disable=import-outside-toplevel
  base, backend = crf.settings(config)
  examples = load(flags.FLAGS.logits_dir, config.eval.search_images)
  outcome = search(examples, base, backend, batch_size=flags.FLAGS.batch_size,
                   ignore_label=config.dataset.ignore_label,
                   processes=config.eval.crf_processes or None)
  print()
  print(format_table(outcome))
  path = os.path.join(flags.FLAGS.logits_dir, 'crf_search.json')
  with open(path, 'w') as f:
    json.dump(outcome, f, indent=2)
  print(f'\nbest mIoU {outcome["best_mean_iou"]:.4f} (no CRF {outcome["baseline_mean_iou"]:.4f}): '
        f'{overrides(outcome["best"])}\nwritten to {path}')


if __name__ == '__main__':
  from absl import flags as _flags  # pylint: disable=g-import-not-at-top
  from ml_collections import config_flags as _config_flags  # pylint: disable=g-import-not-at-top

  from deeplab_jax import cli  # pylint: disable=g-import-not-at-top
  _config_flags.DEFINE_config_file('config', None, 'The model\'s config (config.crf, config.eval).',
                                   lock_config=True)
  _flags.DEFINE_string('logits_dir', None, 'Folder of *.npz written by evaluate.py '
                       '(--config.eval.save_logits=N): <output_dir>/logits.')
  _flags.DEFINE_integer('batch_size', 8, 'Images per CRF call.')
  _flags.mark_flags_as_required(['config', 'logits_dir'])
  cli.run(main)
