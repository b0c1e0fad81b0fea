"""Orbax checkpoints in `<workdir>/checkpoints/<step>/`; runs resume by themselves."""

from __future__ import annotations

import os

import orbax.checkpoint as ocp

from deeplab_jax.errors import UserError


def checkpoint_dir(workdir):
  return os.path.join(os.path.abspath(workdir), 'checkpoints')


def manager(workdir, max_to_keep=2, read_only=False):
  options = ocp.CheckpointManagerOptions(
      max_to_keep=max_to_keep,
      create=not read_only, read_only=read_only)
  return ocp.CheckpointManager(checkpoint_dir(workdir), options=options)


def save(mngr, step, state):
  """Saves `state` at `step` (asynchronously; `mngr.wait_until_finished()`)."""
  return mngr.save(step, args=ocp.args.StandardSave(state), force=True)


def restore(mngr, abstract_state, step=None):
  """Restores the checkpoint at `step` (default: latest) onto `abstract_state`.

  `abstract_state` carries each leaf's shape, dtype and sharding (from
  `jax.eval_shape` plus shardings), so arrays land directly on the mesh.
  """
  step = mngr.latest_step() if step is None else step
  if step is None:
    raise UserError(
        f'no checkpoint in {mngr.directory}; train first with '
        f'`python train.py --config ... --workdir <this workdir>`, or point '
        f'--workdir at a run that has one.')
  if step not in mngr.all_steps():
    raise UserError(f'no checkpoint for step {step} in {mngr.directory}; '
                    f'available steps: {sorted(mngr.all_steps())}')
  return mngr.restore(step, args=ocp.args.StandardRestore(abstract_state))


def restore_variables(workdir, step=None):
  """{'params', 'batch_stats'} of `workdir`'s latest (or `step`) checkpoint, as
  saved (host arrays), whatever optimizer state it holds: initial weights for
  another run (`--config.init_from`), e.g. converted official weights.
  """
  if not os.path.isdir(checkpoint_dir(workdir)):
    raise UserError(f'no checkpoints in {workdir} (expected {checkpoint_dir(workdir)}/<step>); '
                    'convert weights with `python -m deeplab_jax.convert ... --output DIR` '
                    'or train a run there first')
  mngr = manager(workdir, read_only=True)
  step = mngr.latest_step() if step is None else step
  if step is None:
    raise UserError(f'no checkpoint in {mngr.directory}')
  state = mngr.restore(step, args=ocp.args.StandardRestore())
  mngr.close()
  return {'params': state['params'], 'batch_stats': state.get('batch_stats', {})}
