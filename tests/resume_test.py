"""Exact resume: the data stream jumps to any step, and a training process
killed (kill -9) or stopped (SIGTERM) and restarted ends with parameters
bit-identical to an uninterrupted run's."""

import os
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from deeplab_jax import checkpoint
from deeplab_jax import models
from deeplab_jax import optim
from deeplab_jax import sharding
from deeplab_jax import train_step
from deeplab_jax.data import input_pipeline

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _take(iterator, n):
  return [next(iterator) for _ in range(n)]


@pytest.mark.parametrize('cache', [True, False])
def test_stream_started_at_a_step_is_the_tail_of_the_whole_stream(tiny_config,
                                                                  tiny_builder, cache):
  # Process 1 of 2: a 12-image shard, 3 batches of 4 per epoch; 8 batches
  # cross two epoch boundaries, and the resumed stream starts mid-epoch.
  tiny_config.input.cache = cache
  kwargs = dict(process_index=1, process_count=2)
  whole = _take(iter(input_pipeline.train_iterator(
      tiny_config, tiny_builder, 4, **kwargs)), 8)
  resumed = _take(iter(input_pipeline.train_iterator(
      tiny_config, tiny_builder, 4, start_step=4, **kwargs)), 4)
  for a, b in zip(whole[4:], resumed):
    np.testing.assert_array_equal(a['image'], b['image'])
    np.testing.assert_array_equal(a['label'], b['label'])
  # Every epoch is a new order of the same 12 images (epochs 0 and 1).
  firsts = [tuple(b['image'][:, 16, 16, 0]) for b in whole[:6]]
  assert firsts[:3] != firsts[3:6]


def test_resuming_far_into_a_run_reads_at_most_one_epoch(tiny_config, tiny_builder):
  # 10 million steps in: the old `skip(step * batch)` would read 80 million
  # examples; the epoch-addressed stream starts at once.
  start = time.perf_counter()
  far = next(iter(input_pipeline.train_iterator(
      tiny_config, tiny_builder, 8, start_step=10_000_000)))
  assert time.perf_counter() - start < 30
  # Position 8e7 is position 8e7 mod 24 of epoch 8e7 // 24: the same batch
  # as starting from that epoch's first example and skipping within it.
  epoch_start = 80_000_000 // 24 * 24
  same = next(iter(input_pipeline.train_iterator(
      tiny_config, tiny_builder, 8, start_position=80_000_000)))
  np.testing.assert_array_equal(far['image'], same['image'])
  earlier = _take(iter(input_pipeline.train_iterator(
      tiny_config, tiny_builder, 8, start_position=epoch_start)), 3)
  offset = (80_000_000 - epoch_start) // 8
  np.testing.assert_array_equal(far['image'], earlier[offset]['image'])
