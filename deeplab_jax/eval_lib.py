"""Evaluation the way the papers computed it: one confusion matrix per split.

    python evaluate.py --config configs/voc_aspp.py --workdir runs/x [--crf]

Per batch of images padded to `input.eval_size`: logits at the padded size
(`inference.py`: whole image or sliding windows, test-time scales and flip,
bilinear upsampling with `model.align_corners`), argmax, confusion counts of
the valid, non-void pixels; with `eval.crf` the dense CRF (`config.crf`,
backend `eval.crf_backend`) refines the same logits and a second matrix
counts its labels, so one run reports before and after. Boundary accuracy:
a confusion matrix per trimap band width (`eval.trimap_widths`). Everything
is summed over the split (and over processes: each process scores its own
shard), then turned into mIoU and friends once (`metrics.py`).

`evaluate_checkpoint` also writes, into the output directory
(default `<workdir>/eval/<split>_step<step>/`): metrics.json, report.md,
confusion.png, trimap.png, overlays/ (first `eval.num_overlays` images),
predictions/ (every mask as a VOC palette PNG, with `eval.save_predictions`)
and logits/ (`eval.save_logits` images, for `python -m deeplab_jax.crf.search`).
The input pipeline (TensorFlow) is imported only by `evaluate`, so
`load_variables` and `crf_settings` serve predict.py without it.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

from deeplab_jax import checkpoint
from deeplab_jax import inference
from deeplab_jax import metrics
from deeplab_jax import models
from deeplab_jax import sharding
from deeplab_jax.crf import params as crf_params
from deeplab_jax.errors import UserError

CRF_BACKENDS = ('jax', 'host')


def eval_batch_size(config, mesh):
  """config.eval_batch_size rounded up to a multiple of the device count."""
  return math.ceil(config.eval_batch_size / mesh.size) * mesh.size


def _label_dtype(num_classes):
  return jnp.uint8 if num_classes <= 255 else jnp.int32


def make_eval_step(config, model, mesh):
  """Jitted pieces, compiled once: `step(variables, batch) -> dict`.

  The dict holds 'logits' (B x H x W x C float32 at the padded size),
  'preds' (B x H x W labels) and 'confusion' (C x C counts of the valid
  pixels), the first two sharded over the batch like the input.

  With `config.input.resize='caffe'` the padding (batch 'valid' False) is
  set to the mean colour in float32 before inference, so the model's
  normalisation makes it exactly 0 (Caffe's test-phase data layer pads with
  the mean in double: data_transformer.cpp l. 557-566, 628-629), as
  `model(..., valid=...)` does in training; the uint8 mean colour the
  pipeline pads with is off by up to 0.5. In float it also stays exact
  through eval.mode 'sliding' (whose window padding is that colour) and
  through test-time scales and flip.
  """
  num_classes = config.dataset.num_classes
  predict = inference.make_predict_fn(config, model, mesh)
  zero_padding = config.input.get('resize', 'aligned') == 'caffe'
  pad = jnp.asarray(inference.pad_colour(config.model), jnp.float32)

  def score(logits, labels, valid):
    preds = jnp.argmax(logits, axis=-1).astype(jnp.int32)
    confusion = metrics.confusion_matrix(labels, preds, num_classes, valid,
                                         config.dataset.ignore_label)
    return preds.astype(_label_dtype(num_classes)), confusion

  batch = sharding.batch_sharded(mesh)
  score = jax.jit(score, in_shardings=(batch, batch, batch),
                  out_shardings=(batch, sharding.replicated(mesh)))

  fill = jax.jit(lambda images, valid: jnp.where(valid[..., None], images.astype(jnp.float32), pad),
                 in_shardings=(batch, batch), out_shardings=batch)

  def step(variables, batch):
    images = fill(batch['image'], batch['valid']) if zero_padding else batch['image']
    logits = predict(variables, images)
    preds, confusion = score(logits, batch['label'], batch['valid'])
    return {'logits': logits, 'preds': preds, 'confusion': confusion}
  return step


def crf_settings(config):
  """(CRFParams, backend) from config.crf / config.eval, checked."""
  params = crf_params.from_config(config.crf)
  backend = config.eval.crf_backend
  if backend not in CRF_BACKENDS:
    raise UserError(f'eval.crf_backend {backend!r} is not one of {CRF_BACKENDS}')
  return params, backend


def make_crf_step(config, mesh, lattice_on_host=None):
  """`step(images, logits, labels, valid) -> (labels, confusion)` after the CRF.

  Backend 'jax' on an accelerator: jitted on the mesh, batch-sharded, in two
  calls: the bilateral lattices' vertices are sorted, the largest number of
  lattice points any image needs is read back (a maximum over processes),
  and mean-field runs on lattices of that bucketed static size (one compile
  per bucket). Backend 'jax' on a CPU (`lattice_on_host`, default: when JAX
  runs on the CPU): each process refines its own rows with `crf.refine`,
  whose lattices numpy builds, several times faster there than XLA's sorts.
  Backend 'host': each process's rows go to pydensecrf2 workers.
  """
  params, backend = crf_settings(config)
  num_classes = config.dataset.num_classes
  ignore = config.dataset.ignore_label
  if lattice_on_host is None:
    lattice_on_host = jax.default_backend() == 'cpu'
  if backend == 'jax' and not lattice_on_host:
    return _make_device_crf_step(params, num_classes, ignore, mesh)

  from deeplab_jax import crf  # pylint: disable=import-outside-toplevel
  processes = config.eval.crf_processes or None

  def run_local(images, logits, labels, valid):
    images, logits, labels, valid = (local_rows(x) for x in (images, logits, labels, valid))
    scores = crf_scores(logits, params)
    q = crf.refine(images, scores, params, backend=backend, valid=valid,
                   processes=processes)
    preds = q.argmax(-1).astype(np.int32)
    confusion = np.asarray(metrics.confusion_matrix(labels, preds, num_classes, valid, ignore))
    return preds, sum_over_processes(confusion)
  return run_local


def _make_device_crf_step(params, num_classes, ignore, mesh):
  """The JAX CRF on the mesh, its lattices as tight as the batch allows."""
  from deeplab_jax.crf import dense_crf  # pylint: disable=import-outside-toplevel
  from deeplab_jax.crf import lattice  # pylint: disable=import-outside-toplevel
  batch = sharding.batch_sharded(mesh)
  sort = jax.jit(lambda images, valid: dense_crf.sort_bilateral_vertices(images, valid, params),
                 in_shardings=(batch, batch), out_shardings=batch)
  compiled = {}

  def run(images, logits, labels, valid, sorted_vertices, max_points):
    scores = crf_scores(logits, params)
    q = dense_crf.mean_field(images, dense_crf.unary_energy(scores, params.unary),
                             valid, params, max_points=max_points,
                             sorted_vertices=sorted_vertices)
    preds = jnp.argmax(q, axis=-1).astype(jnp.int32)
    confusion = metrics.confusion_matrix(labels, preds, num_classes, valid, ignore)
    return preds.astype(_label_dtype(num_classes)), confusion

  def step(images, logits, labels, valid):
    sorted_vertices = sort(images, valid)
    max_points = lattice.bucket(_max_over_processes(sorted_vertices.num_points))
    if max_points not in compiled:
      compiled[max_points] = jax.jit(
          functools.partial(run, max_points=max_points), in_shardings=(batch,) * 5,
          out_shardings=(batch, sharding.replicated(mesh)))
    return compiled[max_points](images, logits, labels, valid, sorted_vertices)
  return step


def _max_over_processes(x):
  """The largest element of a (possibly multi-process) global array, an int."""
  if jax.process_count() == 1:
    return int(np.max(np.asarray(x)))
  from jax.experimental import multihost_utils  # pylint: disable=import-outside-toplevel
  return int(np.max(multihost_utils.process_allgather(x, tiled=True)))


def crf_scores(logits_BxHxWxC, params):
  """What the CRF reads from the logits, as `params.unary` says: the logits
  themselves or their softmax probabilities (numpy in, numpy out)."""
  if params.unary == 'logits':
    return logits_BxHxWxC
  if isinstance(logits_BxHxWxC, np.ndarray):
    e = np.exp(logits_BxHxWxC - logits_BxHxWxC.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)
  return jax.nn.softmax(logits_BxHxWxC, -1)


def local_rows(x):
  """This process's rows of a batch-sharded global array, as numpy."""
  if isinstance(x, np.ndarray):
    return x
  shards = sorted(x.addressable_shards, key=lambda s: s.index[0].start or 0)
  rows, seen = [], set()
  for shard in shards:
    start = shard.index[0].start or 0
    if start not in seen:  # Replicated over other axes: one copy.
      seen.add(start)
      rows.append(np.asarray(shard.data))
  return np.concatenate(rows)


def sum_over_processes(x):
  """`x` (numpy) summed over all processes; itself with one process."""
  if jax.process_count() == 1:
    return x
  from jax.experimental import multihost_utils  # pylint: disable=import-outside-toplevel
  return np.asarray(multihost_utils.process_allgather(x)).sum(axis=0)


@dataclasses.dataclass
class _Totals:
  """What is summed over the split."""
  confusion: np.ndarray
  crf_confusion: np.ndarray | None
  trimap: np.ndarray | None
  crf_trimap: np.ndarray | None
  images: int = 0


class _Writer:
  """Per-image files of one evaluation (each process writes its own images)."""

  def __init__(self, config, output_dir):
    self.dir = output_dir
    self.config = config
    self.overlays_left = config.eval.num_overlays
    self.logits_left = config.eval.save_logits
    self.enabled = output_dir is not None and (
        self.overlays_left or self.logits_left or config.eval.save_predictions)

  def add(self, images, labels, valid, sizes, ids, preds, crf_preds, logits_fn):
    from deeplab_jax import visualize  # pylint: disable=import-outside-toplevel
    for i, (h, w) in enumerate(sizes):
      if not valid[i].any():
        continue  # A padding example.
      name = ids[i].decode() if isinstance(ids[i], bytes) else str(ids[i])
      name = name.replace('/', '_') or f'image_{i}'
      image, label, pred = images[i, :h, :w], labels[i, :h, :w], preds[i, :h, :w]
      crf_pred = None if crf_preds is None else crf_preds[i, :h, :w]
      if self.config.eval.save_predictions:
        visualize.write_mask_png(self._path('predictions', f'{name}.png'),
                                 pred.astype(np.uint8))
        if crf_pred is not None:
          visualize.write_mask_png(self._path('predictions_crf', f'{name}.png'),
                                   crf_pred.astype(np.uint8))
      label_u8 = np.where((label >= 0) & (label < 256), label, 255).astype(np.uint8)
      if self.overlays_left:
        self.overlays_left -= 1
        visualize.write_overlay_png(self._path('overlays', f'{name}.png'), image,
                                    pred.astype(np.uint8), label=label_u8)
        if crf_pred is not None:
          visualize.write_overlay_png(self._path('overlays', f'{name}_crf.png'), image,
                                      crf_pred.astype(np.uint8), label=label_u8)
      if self.logits_left:
        self.logits_left -= 1
        np.savez(self._path('logits', f'{name}.npz'), image=image, label=label_u8,
                 logits=logits_fn(i)[:h, :w].astype(np.float16))

  def _path(self, sub, name):
    os.makedirs(os.path.join(self.dir, sub), exist_ok=True)
    return os.path.join(self.dir, sub, name)


def evaluate(config, model, variables, mesh, builder=None, split=None,
             step_fn=None, crf_step=None, output_dir=None):
  """Scores `variables` on `split` (default config.dataset.eval_split).

  Pass `step_fn` from `make_eval_step` (and `crf_step` from `make_crf_step`)
  when evaluating repeatedly, during training, so they compile once. With
  `config.eval.crf` the summary holds a 'crf' entry (the same metrics after
  the CRF); with `eval.trimap_widths` a 'trimap' entry. `output_dir`: where
  per-image files go (None: none written).
  """
  from deeplab_jax.data import input_pipeline  # pylint: disable=import-outside-toplevel
  builder = builder or input_pipeline.get_builder(config.dataset)
  split = split or config.dataset.eval_split
  batch_size = eval_batch_size(config, mesh)
  local = sharding.local_batch_size(batch_size)
  num_batches = input_pipeline.eval_num_batches(builder, split, local)
  step_fn = step_fn or make_eval_step(config, model, mesh)
  use_crf = bool(config.eval.crf)
  if use_crf and crf_step is None:
    crf_step = make_crf_step(config, mesh)
  num_classes = config.dataset.num_classes
  widths = tuple(config.eval.trimap_widths)
  empty_trimap = np.zeros((len(widths), num_classes, num_classes), np.int64) if widths else None
  totals = _Totals(np.zeros((num_classes,) * 2, np.int64),
                   np.zeros((num_classes,) * 2, np.int64) if use_crf else None,
                   empty_trimap, None if empty_trimap is None or not use_crf
                   else empty_trimap.copy())
  writer = _Writer(config, output_dir)
  start = time.perf_counter()
  for i, batch in enumerate(input_pipeline.eval_iterator(config, builder, split, local)):
    global_batch = sharding.to_global(
        {k: batch[k] for k in ('image', 'label', 'valid')}, mesh)
    out = step_fn(variables, global_batch)
    totals.confusion += np.asarray(jax.device_get(out['confusion']), np.int64)
    totals.images += int(batch['valid'].any(axis=(1, 2)).sum())
    crf_preds = None
    if use_crf:
      crf_preds, crf_confusion = crf_step(global_batch['image'], out['logits'],
                                          global_batch['label'], global_batch['valid'])
      totals.crf_confusion += np.asarray(jax.device_get(crf_confusion), np.int64)
      crf_preds = local_rows(crf_preds)
    if widths or writer.enabled:
      preds = local_rows(out['preds'])
      if widths:
        ignore = config.dataset.ignore_label
        distance = metrics.boundary_distance(batch['label'], ignore,
                                             config.eval.trimap_boundary, batch['valid'])
        kwargs = dict(valid_BxHxW=batch['valid'], ignore_label=ignore,
                      distance_BxHxW=distance)
        totals.trimap += metrics.trimap_confusion(batch['label'], preds, num_classes,
                                                  widths, **kwargs)
        if use_crf:
          totals.crf_trimap += metrics.trimap_confusion(batch['label'], crf_preds,
                                                        num_classes, widths, **kwargs)
      if writer.enabled:
        logits = out['logits']
        writer.add(batch['image'], batch['label'], batch['valid'], batch['size'],
                   batch['id'], preds, crf_preds,
                   lambda j, logits=logits: local_rows(logits)[j])
    if (i + 1) % 10 == 0 or i + 1 == num_batches:
      rate = (i + 1) / (time.perf_counter() - start)
      logging.info('eval %s: batch %d/%d  %.1f img/s  ETA %.0fs', split, i + 1,
                   num_batches, rate * batch_size, (num_batches - i - 1) / rate)
  seconds = time.perf_counter() - start
  names = config.dataset.class_names
  summary = metrics.summarize(totals.confusion, names)
  summary['confusion_matrix'] = totals.confusion.tolist()
  summary['split'] = split
  summary['num_images'] = int(sum_over_processes(np.asarray(totals.images)))
  summary['seconds'] = seconds
  summary['inference'] = dataclasses.asdict(inference.options_from_config(config))
  if use_crf:
    params, backend = crf_settings(config)
    summary['crf'] = metrics.summarize(totals.crf_confusion, names)
    summary['crf']['confusion_matrix'] = totals.crf_confusion.tolist()
    summary['crf']['params'] = dataclasses.asdict(params)
    summary['crf']['backend'] = backend
  if widths:
    summary['trimap'] = {'before': _trimap(totals.trimap, widths, names)}
    if use_crf:
      summary['trimap']['after'] = _trimap(totals.crf_trimap, widths, names)
  return summary


def _trimap(counts, widths, names):
  result = metrics.trimap_summary(sum_over_processes(counts), widths, names)
  result.pop('per_class_iou', None)  # K per-class tables: too much for metrics.json.
  return result


def format_report(summary):
  """Markdown: per-class IoU (before / after CRF), totals, trimap bands."""
  crf = summary.get('crf')
  if crf is None:
    lines = [metrics.format_table(summary)]
  else:
    lines = ['| class | IoU | IoU after CRF |', '|---|---|---|']
    fmt = lambda v: 'n/a' if v is None or (isinstance(v, float) and math.isnan(v)) else f'{v:.4f}'
    for name, value in summary['per_class_iou'].items():
      lines.append(f'| {name} | {fmt(value)} | {fmt(crf["per_class_iou"][name])} |')
    lines.append(f'| **mean IoU** | **{fmt(summary["mean_iou"])}** | '
                 f'**{fmt(crf["mean_iou"])}** |')
    lines.append('')
    for key, title in (('pixel_accuracy', 'pixel accuracy'),
                       ('mean_class_accuracy', 'mean class accuracy'),
                       ('frequency_weighted_iou', 'frequency-weighted IoU')):
      lines.append(f'{title} {fmt(summary[key])} -> {fmt(crf[key])} after CRF')
    lines.append(f'{summary["num_pixels"]:,} scored pixels')
  if 'trimap' in summary:
    lines += ['', 'Boundary accuracy (mIoU within a band around void/boundary pixels):', '',
              metrics.format_trimap_table(summary['trimap']['before'],
                                          summary['trimap'].get('after'))]
  return '\n'.join(lines)


def write_outputs(summary, output_dir, class_names):
  """metrics.json, report.md, confusion.png and trimap.png into `output_dir`."""
  from deeplab_jax import visualize  # pylint: disable=import-outside-toplevel
  os.makedirs(output_dir, exist_ok=True)
  with open(os.path.join(output_dir, 'metrics.json'), 'w') as f:
    json.dump(summary, f, indent=2)
  with open(os.path.join(output_dir, 'report.md'), 'w') as f:
    f.write(format_report(summary) + '\n')
  visualize.write_confusion_png(os.path.join(output_dir, 'confusion.png'),
                                np.asarray(summary['confusion_matrix']), class_names)
  if 'crf' in summary:
    visualize.write_confusion_png(os.path.join(output_dir, 'confusion_crf.png'),
                                  np.asarray(summary['crf']['confusion_matrix']), class_names)
  if 'trimap' in summary:
    curves = {'before CRF' if 'after' in summary['trimap'] else 'mIoU':
              summary['trimap']['before']['mean_iou']}
    if 'after' in summary['trimap']:
      curves['after CRF'] = summary['trimap']['after']['mean_iou']
    visualize.write_trimap_plot(os.path.join(output_dir, 'trimap.png'),
                                summary['trimap']['before']['widths'], curves)


def load_variables(config, workdir, step=None, mesh=None):
  """(variables replicated on `mesh`, step) of `workdir`'s checkpoint.

  Works for training runs and converted weights alike (the optimizer state
  is not read). A checkpoint of another model or class count is a UserError
  naming each variable that does not fit.
  """
  mesh = sharding.make_mesh() if mesh is None else mesh
  mngr = checkpoint.manager(workdir, read_only=True)
  steps = sorted(mngr.all_steps())
  mngr.close()
  if not steps:
    raise UserError(
        f'no checkpoint in {checkpoint.checkpoint_dir(workdir)}; train first with '
        '`python train.py --config ... --workdir <this workdir>`, or point '
        '--workdir at a run (or converted weights) that has one.')
  step = steps[-1] if step is None else step
  if step not in steps:
    raise UserError(f'no checkpoint for step {step} in {checkpoint.checkpoint_dir(workdir)}; '
                    f'available steps: {steps}')
  saved = checkpoint.restore_variables(workdir, step)
  want = models.variable_shapes(config)
  have = {'/'.join(str(getattr(k, 'key', k)) for k in path): tuple(np.shape(leaf))
          for path, leaf in jax.tree_util.tree_leaves_with_path(saved)}
  classes = config.dataset.num_classes
  bad = []
  for name, shape in want.items():
    got = have.get(name)
    if got is None:
      bad.append(f'{name}: missing from the checkpoint (model: {shape})')
    elif got != shape:
      hint = (f' -- trained for {got[-1]} classes, config.dataset.num_classes={classes}'
              if 'classifier' in name and got[:-1] == shape[:-1] else '')
      bad.append(f'{name}: checkpoint {got}, model {shape}{hint}')
  bad += [f'{name}: not in this config\'s model' for name in have if name not in want]
  if bad:
    raise UserError(f'the checkpoint in {workdir} (step {step}) does not fit '
                    f'this config\'s model:\n  ' + '\n  '.join(bad[:20]) +
                    (f'\n  ... and {len(bad) - 20} more' if len(bad) > 20 else ''))
  variables = jax.device_put({'params': saved['params'], 'batch_stats': saved['batch_stats']},
                             sharding.replicated(mesh))
  return variables, step


def default_output_dir(workdir, split, step):
  return os.path.join(workdir, 'eval', f'{split}_step{step}')


def evaluate_checkpoint(config, workdir, step=None, mesh=None, split=None,
                        output_dir=None):
  """Evaluates `workdir`'s latest (or `step`) checkpoint on `split`.

  Prints a Markdown report; writes metrics.json (also to
  `<workdir>/metrics.json`), report.md, PNGs and per-image files to
  `output_dir` (default `<workdir>/eval/<split>_step<step>`).
  """
  mesh = sharding.make_mesh() if mesh is None else mesh
  split = split or config.dataset.eval_split
  model = models.build(config)
  variables, step = load_variables(config, workdir, step, mesh)
  output_dir = output_dir or default_output_dir(workdir, split, step)
  summary = evaluate(config, model, variables, mesh, split=split,
                     output_dir=output_dir)
  summary['step'] = int(step)
  summary['workdir'] = os.path.abspath(workdir)
  summary['output_dir'] = os.path.abspath(output_dir)
  if jax.process_index() == 0:
    write_outputs(summary, output_dir, config.dataset.class_names)
    with open(os.path.join(workdir, 'metrics.json'), 'w') as f:
      json.dump(summary, f, indent=2)
    print(f'\n{config.dataset.name} {split}, step {step}, '
          f'{summary["num_images"]} images:\n')
    print(format_report(summary))
    after = (f', {summary["crf"]["mean_iou"]:.4f} after CRF'
             if 'crf' in summary else '')
    print(f'\nmean IoU {summary["mean_iou"]:.4f}{after}; '
          f'report in {output_dir} (and {os.path.join(workdir, "metrics.json")})')
  return summary
