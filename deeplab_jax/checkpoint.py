"""Orbax checkpoints in `<workdir>/checkpoints/<step>/`; runs resume by themselves.

Each step holds the item `default` (the TrainState: step, params,
batch_stats, optimizer state) and, for checkpoints written by training, the
item `data` (JSON: how far each process's input stream has gone and what it
depends on, see `train_lib`). Orbax writes a step into a temporary directory
and renames it into place once complete (collectively, on every process of a
multi-host run), so a crash, a kill or a full disk during a save leaves the
previous checkpoint as the latest readable one. Checkpoints of older versions
(only `default`) restore as before. `load_variables` reads a checkpoint's
variables for evaluation and prediction, checked against the config's model.

Training with evaluation (`config.eval_every_steps`) also keeps the best
checkpoint by val mIoU in `<workdir>/best/checkpoints/<step>/` (variables
only, `best_checkpoint.py`), a directory of the same layout, out of reach of
`max_checkpoints_to_keep`. Wherever a step is accepted (evaluate.py,
predict.py, export.py `--step`, `Segmenter.from_workdir`, `load_variables`)
it may be an integer, 'latest' (None) or 'best': `resolve_step` says where
that checkpoint lies.
"""

from __future__ import annotations

import os

import jax
import orbax.checkpoint as ocp

from deeplab_jax import sharding
from deeplab_jax import variables_tree
from deeplab_jax.errors import UserError

STATE, DATA = 'default', 'data'
LATEST, BEST = 'latest', 'best'  # The step names `resolve_step` accepts besides integers.


class CheckpointWriteError(UserError):
  """A checkpoint could not be written (disk full, permissions, ...)."""


def checkpoint_dir(workdir):
  """`<workdir>/checkpoints`: where the orbax manager keeps one folder per step."""
  return os.path.join(os.path.abspath(workdir), 'checkpoints')


def best_dir(workdir):
  """`<workdir>/best`: the best checkpoint's run-like directory (its own
  `checkpoints/<step>`, and `best.json`), written by `best_checkpoint.py`."""
  return os.path.join(os.path.abspath(workdir), BEST)


def _steps(directory):
  """The sorted steps of `directory`'s checkpoints ([] without any)."""
  if not os.path.isdir(checkpoint_dir(directory)):
    return []
  mngr = manager(directory, read_only=True)
  steps = sorted(mngr.all_steps())
  mngr.close()
  return steps


def resolve_step(workdir, step=None):
  """(directory, step) of the checkpoint `step` names in `workdir`.

  `step`: None or 'latest' (the newest of `<workdir>/checkpoints`), an int or
  a string of digits (that step), or 'best' (the best by val mIoU,
  `<workdir>/best/checkpoints`). `directory` is a run-like directory
  (`checkpoint_dir(directory)` holds the step): `workdir` or
  `best_dir(workdir)`. Raises UserError for an unknown name, a missing step,
  a workdir without checkpoints or without a best one.
  """
  if isinstance(step, str):
    name = step.strip().lower()
    if name in ('', LATEST):
      step = None
    elif name.isdigit():
      step = int(name)
    elif name != BEST:
      raise UserError(f"--step must be an integer, 'latest' or 'best', got {step!r}")
  directory = workdir
  if step == BEST:
    directory = best_dir(workdir)
    steps = _steps(directory)
    if not steps:
      raise UserError(
          f'no best checkpoint in {directory}: training keeps one only while it '
          f'evaluates; set --config.eval_every_steps=N when training, or pass '
          f'--step latest (or a step number).')
    return directory, steps[-1]
  steps = _steps(workdir)
  if not steps:
    raise UserError(
        f'no checkpoint in {checkpoint_dir(workdir)}; train first with '
        '`python train.py --config ... --workdir <this workdir>`, or point '
        '--workdir at a run (or converted weights) that has one.')
  if step is None:
    return directory, steps[-1]
  if int(step) not in steps:
    raise UserError(f'no checkpoint for step {step} in {checkpoint_dir(workdir)}; '
                    f'available steps: {steps}')
  return directory, int(step)


def manager(workdir, max_to_keep=2, read_only=False):
  options = ocp.CheckpointManagerOptions(
      max_to_keep=max_to_keep,
      create=not read_only, read_only=read_only)
  return ocp.CheckpointManager(checkpoint_dir(workdir), item_names=(STATE, DATA),
                               options=options)


def _os_error(exc):
  """The OSError in `exc`'s chain of causes, or None."""
  seen = set()
  while exc is not None and id(exc) not in seen:
    if isinstance(exc, OSError):
      return exc
    seen.add(id(exc))
    exc = exc.__cause__ or exc.__context__
  return None


def _write_error(mngr, step, exc, kept=None):
  """The CheckpointWriteError for `exc` (None if no OSError caused it); `kept`:
  what is left (default: the latest checkpoint, which the same command resumes from)."""
  os_error = _os_error(exc)
  if os_error is None:
    return None
  reason = os_error.strerror or str(os_error)
  where = f' ({os_error.filename})' if os_error.filename else ''
  if kept is None:
    try:
      last = manager(os.path.dirname(str(mngr.directory)), read_only=True).latest_step()
    except Exception:  # pylint: disable=broad-except  # Only for the message.
      last = None
    kept = (f'the checkpoint of step {last} is complete and untouched, and running the '
            'same command again resumes from it' if last is not None else
            'no earlier checkpoint exists')
  return CheckpointWriteError(
      f'could not write the checkpoint of step {step} to {mngr.directory}: '
      f'{reason}{where}. Free disk space or make the directory writable; {kept}.')


def save(mngr, step, state, data=None, kept=None):
  """Saves `state` (and the JSON-able dict `data`) at `step`, asynchronously.

  Orbax finishes the previous save first, so a failure of that one surfaces
  here; `wait(mngr, step)` surfaces this one's. Write failures (an OSError
  anywhere in the cause chain) become a CheckpointWriteError; `kept`: what
  its message says is left (default: the manager's latest checkpoint, which
  running the same command again resumes from).
  """
  items = {STATE: ocp.args.StandardSave(state)}
  if data is not None:
    items[DATA] = ocp.args.JsonSave(data)
  try:
    return mngr.save(step, args=ocp.args.Composite(**items), force=True)
  except Exception as e:  # pylint: disable=broad-except
    error = _write_error(mngr, step, e, kept)
    if error is None:
      raise
    raise error from e


def wait(mngr, step=None, kept=None):
  """Waits for the pending save (of `step`, for the message) to finish;
  `kept` as in `save`."""
  try:
    mngr.wait_until_finished()
  except Exception as e:  # pylint: disable=broad-except
    error = _write_error(mngr, 'pending' if step is None else step, e, kept)
    if error is None:
      raise
    raise error from e


def _check_step(mngr, step):
  step = mngr.latest_step() if step is None else step
  if step is None:
    raise UserError(
        f'no checkpoint in {mngr.directory}; train first with '
        f'`python train.py --config ... --workdir <this workdir>`, or point '
        f'--workdir at a run that has one.')
  if step not in mngr.all_steps():
    raise UserError(f'no checkpoint for step {step} in {mngr.directory}; '
                    f'available steps: {sorted(mngr.all_steps())}')
  return step


def restore(mngr, abstract_state, step=None):
  """Restores the checkpoint at `step` (default: latest) onto `abstract_state`.

  `abstract_state` carries each leaf's shape, dtype and sharding (from
  `jax.eval_shape` plus shardings), so arrays land directly on the mesh.
  """
  step = _check_step(mngr, step)
  try:
    restored = mngr.restore(step, args=ocp.args.Composite(
        **{STATE: ocp.args.StandardRestore(abstract_state)}))
  except ValueError as e:  # Orbax: the trees' structures differ.
    raise UserError(
        f'the checkpoint at step {step} in {mngr.directory} does not fit this config\'s '
        f'training state (another model or optimizer: e.g. model.batch_norm, the '
        f'classes, or a checkpoint of an older version); resume it with the config '
        f'it was written with, or start a new --workdir with '
        f'--config.init_from={os.path.dirname(str(mngr.directory))} to keep its '
        f'weights. Orbax says: {str(e)[:500]}') from e
  return restored[STATE]


def restore_data(mngr, step=None):
  """The `data` dict saved with the checkpoint at `step`, or None (older
  checkpoints, converted weights)."""
  step = _check_step(mngr, step)
  if not os.path.isdir(os.path.join(str(mngr.directory), str(step), DATA)):
    return None
  return mngr.restore(step, args=ocp.args.Composite(
      **{DATA: ocp.args.JsonRestore()}))[DATA]


def restore_variables(workdir, step=None):
  """{'params', 'batch_stats'} of `workdir`'s latest (or `step`, any name
  `resolve_step` takes) checkpoint, as saved (host arrays), whatever
  optimizer state it holds: initial weights for another run
  (`--config.init_from`), e.g. converted official weights.
  """
  if not os.path.isdir(checkpoint_dir(workdir)) and step != BEST:
    raise UserError(f'no checkpoints in {workdir} (expected {checkpoint_dir(workdir)}/<step>); '
                    'convert weights with `python -m deeplab_jax.convert ... --output DIR` '
                    'or train a run there first')
  directory, step = resolve_step(workdir, step)
  mngr = manager(directory, read_only=True)
  state = mngr.restore(step, args=ocp.args.Composite(
      **{STATE: ocp.args.StandardRestore()}))[STATE]
  mngr.close()
  return {'params': state['params'], 'batch_stats': state.get('batch_stats', {})}


def load_variables(config, workdir, step=None, mesh=None):
  """(variables replicated on `mesh`, step) of `workdir`'s checkpoint `step`
  (None / 'latest', an integer or 'best': `resolve_step`).

  Works for training runs and converted weights alike (the optimizer state
  is not read). A checkpoint of another model or class count is a UserError
  naming each variable that does not fit.
  """
  from deeplab_jax import models  # pylint: disable=import-outside-toplevel
  mesh = sharding.make_mesh() if mesh is None else mesh
  directory, step = resolve_step(workdir, step)
  saved = restore_variables(directory, step)
  # In jax.tree_util's order (each level's keys sorted), as the model's are.
  have = dict(sorted(variables_tree.shapes(saved).items(), key=lambda kv: kv[0].split('/')))
  classes = config.dataset.num_classes
  classifiers = models.classifier_paths(config)
  bad = [_misfit(m, classes, lambda path: models.is_classifier(path, classifiers))
         for m in variables_tree.mismatches(have, models.variable_shapes(config))]
  if bad:
    raise UserError(f'the checkpoint in {workdir} (step {step}) does not fit '
                    f'this config\'s model:\n  ' + '\n  '.join(bad[:20]) +
                    (f'\n  ... and {len(bad) - 20} more' if len(bad) > 20 else ''))
  variables = jax.device_put({'params': saved['params'], 'batch_stats': saved['batch_stats']},
                             sharding.replicated(mesh))
  return variables, step


def _misfit(mismatch: variables_tree.Mismatch, num_classes, is_classifier) -> str:
  """One line of `load_variables`' error: a checkpoint leaf that does not fit."""
  name, got, shape = mismatch.path, mismatch.have, mismatch.want
  if mismatch.problem == variables_tree.MISSING:
    return f'{name}: missing from the checkpoint (model: {shape})'
  if mismatch.problem == variables_tree.UNEXPECTED:
    return f'{name}: not in this config\'s model'
  hint = (f' -- trained for {got[-1]} classes, config.dataset.num_classes={num_classes}'
          if is_classifier(name) and got[:-1] == shape[:-1] else '')
  return f'{name}: checkpoint {got}, model {shape}{hint}'
