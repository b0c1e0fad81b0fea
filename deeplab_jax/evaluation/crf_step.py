"""The CRF step of evaluation: the dense CRF refines the eval step's logits.

With `eval.crf` the dense CRF (`config.crf`, backend `eval.crf_backend`)
refines the same logits as the eval step scores, and a second confusion
matrix counts its labels, so one run reports before and after.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from deeplab_jax import crf
from deeplab_jax import metrics
from deeplab_jax import sharding
from deeplab_jax.evaluation.step import label_dtype


def make_crf_step(config, mesh, lattice_on_host=None):
  """`step(images, logits, labels, valid) -> (labels, confusion)` after the CRF.

  Backend 'jax' on an accelerator: jitted on the mesh, batch-sharded, in two
  calls: the bilateral lattices' vertices are sorted, the largest number of
  lattice points any image needs is read back (a maximum over processes),
  and mean-field runs on lattices of that bucketed static size (one compile
  per bucket; `crf/sizing.py`). Backend 'jax' on a CPU (`lattice_on_host`,
  default: when JAX runs on the CPU): each process refines its own rows with
  `crf.refine`, whose lattices numpy builds, several times faster there than
  XLA's sorts. Backend 'host': each process's rows go to pydensecrf2 workers.
  """
  params, backend = crf.settings(config)
  num_classes = config.dataset.num_classes
  ignore = config.dataset.ignore_label
  if lattice_on_host is None:
    lattice_on_host = jax.default_backend() == 'cpu'
  if backend == 'jax' and not lattice_on_host:
    return _make_device_crf_step(params, num_classes, ignore, mesh)

  processes = config.eval.crf_processes or None

  def run_local(images, logits, labels, valid):
    images, logits, labels, valid = (sharding.local_rows(x)
                                     for x in (images, logits, labels, valid))
    scores = crf.scores_from_logits(logits, params)
    q = crf.refine(images, scores, params, backend=backend, valid=valid,
                   processes=processes)
    preds = q.argmax(-1).astype(np.int32)
    confusion = np.asarray(metrics.confusion_matrix(labels, preds, num_classes, valid, ignore))
    return preds, sharding.sum_over_processes(confusion)
  return run_local


def _make_device_crf_step(params, num_classes, ignore, mesh):
  """The JAX CRF on the mesh, its lattices as tight as the batch allows."""
  from deeplab_jax.crf import dense_crf  # pylint: disable=import-outside-toplevel
  from deeplab_jax.crf import sizing  # pylint: disable=import-outside-toplevel
  batch = sharding.batch_sharded(mesh)
  sort = jax.jit(lambda images, valid: dense_crf.sort_bilateral_vertices(images, valid, params),
                 in_shardings=(batch, batch), out_shardings=batch)

  def run(images, logits, labels, valid, sorted_vertices, max_points):
    scores = crf.scores_from_logits(logits, params)
    q = dense_crf.mean_field(images, dense_crf.unary_energy(scores, params.unary),
                             valid, params, max_points=max_points,
                             sorted_vertices=sorted_vertices)
    preds = jnp.argmax(q, axis=-1).astype(jnp.int32)
    confusion = metrics.confusion_matrix(labels, preds, num_classes, valid, ignore)
    return preds.astype(label_dtype(num_classes)), confusion

  def compile_for(max_points):
    return jax.jit(functools.partial(run, max_points=max_points), in_shardings=(batch,) * 5,
                   out_shardings=(batch, sharding.replicated(mesh)))
  sized = sizing.on_device(sort, compile_for, across_processes=True)

  def step(images, logits, labels, valid):
    run_sized, sorted_vertices = sized(images, valid)
    return run_sized(images, logits, labels, valid, sorted_vertices)
  return step
