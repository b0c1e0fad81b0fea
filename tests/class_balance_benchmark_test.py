"""benchmarks/class_balance.py at its tiniest: two rules, the tiny config's 4 steps."""

import json
import os

import numpy as np

from benchmarks import class_balance
from configs import shapes
from configs import tiny


def test_table_holds_each_runs_weights_and_ious(data_dir, tmp_path):
  config = tiny.get_config(shapes)
  config.dataset.data_dir = data_dir
  rows = class_balance.run(str(tmp_path), config, rules=('', 'inverse'))
  assert [row['rule'] for row in rows] == ['none', 'inverse']
  assert rows[0]['weights'] is None and not os.path.exists(
      tmp_path / 'unweighted' / 'class_weights.json')
  saved = json.loads((tmp_path / 'inverse' / 'class_weights.json').read_text())
  assert rows[1]['weights'] == saved['weights']
  share = np.asarray(saved['pixel_counts'], float) / sum(saved['pixel_counts'])
  np.testing.assert_allclose((share * rows[1]['weights']).sum(), 1.0)  # Average pixel: 1.
  for row, name in zip(rows, ('unweighted', 'inverse')):
    metrics = json.loads((tmp_path / name / 'metrics.json').read_text())
    assert row['mean_iou'] == metrics['mean_iou'] and row['iou'] == metrics['per_class_iou']
  table = (tmp_path / 'class_balance.md').read_text()
  assert f'{rows[1]["mean_iou"]:.4f} |' in table and f'(w {rows[1]["weights"][0]:.2f})' in table
  assert 'smoke run' in table  # Not rare_star: flagged.
