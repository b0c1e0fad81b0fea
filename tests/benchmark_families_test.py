"""benchmarks/models.py's FAMILIES table: each row's config and PyTorch twin
time side by side (figures not asserted, only their sense)."""

import pytest

from benchmarks import models as models_benchmark
from configs import tiny


def test_each_family_row_finds_its_twin():
  for name, twin in models_benchmark.FAMILIES:
    assert models_benchmark.twin_for(tiny.get_config(name)) is twin
  config = tiny.get_config('shapes')  # The small trunk has no PyTorch twin.
  with pytest.raises(ValueError, match='add the family'):
    models_benchmark.twin_for(config)


def test_family_rows_time_jax_against_pytorch():
  plan = [('forward', 1)]
  rows = list(models_benchmark.family_rows(['voc_largefov'], plan, steps=1, tiny=True))
  assert [r['family'] for r in rows] == ['voc_largefov'] and rows[0]['crop'] == 32
  line = rows[0]['forward_b1']
  assert line['jax_ms'] > 0 and line['torch_ms'] > 0 and line['gflop_per_image'] is not None
  assert line['ratio'] == round(line['jax_ms'] / line['torch_ms'], 3)
  assert '| `voc_largefov` | 32 |' in models_benchmark.family_markdown(rows, plan)
