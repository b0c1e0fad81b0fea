"""The best checkpoint by val mIoU, kept beside the latest ones during training.

    <workdir>/best/checkpoints/<step>/   variables (params, batch_stats) + record
    <workdir>/best/best.json             {step, mean_iou, split, metric, ...}

Training with `config.eval_every_steps` calls `BestCheckpoint.update` after
each evaluation; a strictly higher mIoU (`METRIC`, before any CRF: the
network's own score) replaces the kept checkpoint. The best lives in its own
orbax manager and directory, so `max_checkpoints_to_keep` never deletes it,
and the training checkpoints (and so exact resume) are untouched by it. Its
record is saved inside the checkpoint (the orbax item `data`, written
atomically with the weights): that is what a resumed run reads, so it never
replaces an earlier, better best with a worse one. `best.json` is a copy for
people and tools, written by process 0 once the checkpoint is complete.

`<workdir>/best` has a run's layout: `--step best` (checkpoint.resolve_step)
reads it, and `--config.init_from=<workdir>/best` starts a run from it.
Multi-process runs: orbax saves are collective, so every process calls
`update` with the same mIoU (evaluation sums its counts over processes) and
takes the same decision.
"""

from __future__ import annotations

import json
import math
import os

import jax
from absl import logging

from deeplab_jax import checkpoint

METRIC = 'mean_iou'  # The summary entry that decides which checkpoint is best.
RECORD = 'best.json'


def record_path(workdir):
  """`<workdir>/best/best.json`."""
  return os.path.join(checkpoint.best_dir(workdir), RECORD)


def read_record(workdir):
  """The best checkpoint's record ({step, mean_iou, split, metric, ...}) as
  saved with it, or None when `workdir` has no best checkpoint."""
  directory = checkpoint.best_dir(workdir)
  if not os.path.isdir(checkpoint.checkpoint_dir(directory)):
    return None
  mngr = checkpoint.manager(directory, read_only=True)
  try:
    step = mngr.latest_step()
    return None if step is None else checkpoint.restore_data(mngr, step)
  finally:
    mngr.close()


class BestCheckpoint:
  """Keeps `<workdir>/best` holding the variables of the highest val mIoU."""

  def __init__(self, workdir, split):
    """Opens (or creates) `<workdir>/best`; a record already there (a resumed
    run) is the one to beat, unless it scored another split."""
    self.workdir = workdir
    self.split = split
    self.directory = checkpoint.best_dir(workdir)
    # Opened before anything is read: the same collective calls on every
    # process, whatever another one has created meanwhile.
    self._mngr = checkpoint.manager(self.directory, max_to_keep=1)
    step = self._mngr.latest_step()
    self.record = None if step is None else checkpoint.restore_data(self._mngr, step)
    if self.record is not None and self.record.get('split') != split:
      logging.warning('The best checkpoint in %s (step %d) was scored on split %r, this run '
                      'evaluates %r: the next evaluation replaces it.', self.directory,
                      self.record['step'], self.record.get('split'), split)
      self.record = None
    self._unwritten = None  # A record whose checkpoint is still being saved.
    if self.record is not None:
      logging.info('Best so far: val %s %.4f at step %d (%s).', METRIC,
                   self.record[METRIC], self.record['step'], self.directory)
      self._unwritten = self.record  # best.json may predate it (a crash).

  @property
  def step(self):
    """The best checkpoint's step, or None."""
    return None if self.record is None else self.record['step']

  @property
  def mean_iou(self):
    """The best checkpoint's val mIoU, or None."""
    return None if self.record is None else self.record[METRIC]

  def _kept(self):
    return ('the training checkpoints in '
            f'{checkpoint.checkpoint_dir(self.workdir)} are not affected, and running the '
            'same command again resumes from the latest of them')

  def update(self, step, summary, variables):
    """Saves `variables` (of `step`) as the best if `summary[METRIC]` beats the
    record; returns whether it did. Every process must call it."""
    self.flush()
    value = float(summary[METRIC])
    if math.isnan(value) or (self.record is not None and not value > self.record[METRIC]):
      return False  # NaN: nothing was scored.
    old = self.step
    if old is not None and old >= step:
      # A resumed run on another course: orbax keeps the highest step, so
      # the old one goes first (its record goes with it).
      checkpoint.wait(self._mngr, old, kept=self._kept())
      self._mngr.delete(old)
    record = {'step': int(step), METRIC: value, 'split': self.split, 'metric': METRIC,
              'num_images': int(summary.get('num_images', 0))}
    if 'crf' in summary:
      record['crf_mean_iou'] = float(summary['crf']['mean_iou'])
    checkpoint.save(self._mngr, step, variables, record, kept=self._kept())
    self.record = self._unwritten = record
    return True

  def flush(self):
    """Writes best.json (process 0) if the best checkpoint's save has
    completed since; cheap, called at every progress line. A save that
    failed raises its CheckpointWriteError here, and no best.json is written."""
    if self._unwritten is None or self._mngr.is_saving_in_progress():
      return
    checkpoint.wait(self._mngr, self._unwritten['step'], kept=self._kept())
    if jax.process_index() == 0:
      path = record_path(self.workdir)
      os.makedirs(os.path.dirname(path), exist_ok=True)
      with open(path + '.tmp', 'w') as f:
        json.dump(self._unwritten, f, indent=2)
      os.replace(path + '.tmp', path)
    self._unwritten = None

  def close(self):
    """Waits for the pending save (CheckpointWriteError if it failed), writes
    best.json and closes the manager."""
    checkpoint.wait(self._mngr, self.step, kept=self._kept())
    self.flush()
    self._mngr.close()
