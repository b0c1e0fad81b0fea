"""Class weights from the training split's class frequencies (`loss.class_balance`).

    --config.loss.class_balance=median_frequency   # or inverse, inverse_sqrt

`resolve(config, builder, workdir)` counts the training split's pixels once
(`data/statistics.py`), stores counts and weights in
`<workdir>/class_weights.json` and reads them from there when the run
resumes, so a resumed run trains with the weights it started with. Each
rule's weights are scaled so that the average weight of a training pixel
is 1 (sum over classes of share x weight = 1), which keeps the loss and the
learning rate on the unweighted loss's scale. A class with no training pixel
gets weight 0 (no pixel carries it; data.inspect warns about it).
"""

from __future__ import annotations

import json
import os

import numpy as np
from absl import logging

from deeplab_jax.errors import UserError

FILE_NAME = 'class_weights.json'


def from_counts(rule, pixel_counts, present_pixels=None):
  """Weights (float64, one per class) of `rule` from the split's counts.

  pixel_counts[c]: pixels of class c; present_pixels[c]: all pixels of the
  images in which c occurs (for 'median_frequency').
    'inverse'          w_c ~ 1 / f_c, f_c = c's share of the labelled pixels
    'inverse_sqrt'     w_c ~ 1 / sqrt(f_c)
    'median_frequency' w_c = median(freq) / freq_c, freq_c = pixel_counts[c] /
                       present_pixels[c] (Eigen & Fergus 2015, "Predicting
                       depth, surface normals and semantic labels": "the
                       total number of pixels in images where c is
                       present"; SegNet's class balancing), median over
                       the classes that occur
  """
  counts = np.asarray(pixel_counts, np.float64)
  occurs = counts > 0
  if not occurs.any():
    raise UserError('the training split has no labelled pixel; class weights cannot be '
                    'computed (python -m deeplab_jax.data.inspect --config ... shows why)')
  share = counts / counts.sum()
  weights = np.zeros_like(share)
  if rule == 'inverse':
    weights[occurs] = 1.0 / share[occurs]
  elif rule == 'inverse_sqrt':
    weights[occurs] = 1.0 / np.sqrt(share[occurs])
  elif rule == 'median_frequency':
    if present_pixels is None:
      raise ValueError('median_frequency needs present_pixels')
    freq = counts[occurs] / np.asarray(present_pixels, np.float64)[occurs]
    weights[occurs] = np.median(freq) / freq
    return weights  # Eigen & Fergus's own scale (the median class weighs 1).
  else:
    raise ValueError(f'class balance rule {rule!r}')
  return weights / (share * weights).sum()


def resolve(config, builder, workdir=None):
  """The weights `config.loss.class_balance` asks for (None without one).

  Computed from `config.dataset.train_split`'s masks, or read from
  `<workdir>/class_weights.json` when an earlier start of this run wrote it
  with the same rule and dataset; written there otherwise (process 0).
  """
  rule = config.loss.get('class_balance', '')
  if not rule:
    return None
  key = {'rule': rule, 'dataset': config.dataset.name,
         'builder_config': config.dataset.get('builder_config') or '',
         'split': config.dataset.train_split, 'num_classes': config.dataset.num_classes}
  path = os.path.join(workdir, FILE_NAME) if workdir else None
  if path and os.path.exists(path):
    with open(path, encoding='utf-8') as f:
      saved = json.load(f)
    if {k: saved.get(k) for k in key} == key:
      return tuple(saved['weights'])
    logging.warning('%s was written for %s, not %s: computing the weights again.',
                    path, {k: saved.get(k) for k in key}, key)
  # pylint: disable=import-outside-toplevel
  from deeplab_jax.data import datasets, statistics  # The input pipeline's TF.
  entry = datasets.lookup(config.dataset.name) or datasets.Dataset(config.dataset.name)
  stats = statistics.split_statistics(builder, config.dataset.train_split,
                                      config.dataset.num_classes, config.dataset.ignore_label,
                                      entry.features)
  weights = from_counts(rule, stats.pixel_counts, stats.present_image_pixels)
  names = config.dataset.class_names or [str(c) for c in range(len(weights))]
  logging.info('Class weights (%s, from %d %s images): %s', rule, stats.num_images,
               config.dataset.train_split,
               ', '.join(f'{n} {w:.3g}' for n, w in zip(names, weights)))
  import jax  # pylint: disable=import-outside-toplevel
  if path and jax.process_index() == 0:
    with open(path + '.tmp', 'w', encoding='utf-8') as f:
      json.dump({**key, 'weights': weights.tolist(),
                 'pixel_counts': np.asarray(stats.pixel_counts).tolist(),
                 'present_pixels': np.asarray(stats.present_image_pixels).tolist()}, f, indent=2)
    os.replace(path + '.tmp', path)
  return tuple(float(w) for w in weights)
