"""The input-pipeline benchmark runs end to end on a few generated VOC-sized images."""

import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_input_pipeline_benchmark_prints_train_and_eval_rates():
  out = subprocess.run(
      [sys.executable, '-m', 'benchmarks.input_pipeline', '--config', 'configs/voc_aspp.py',
       '--num_images', '12', '--batches', '2', '--warmup', '1',
       '--config.batch_size', '2', '--config.eval_batch_size', '2'],
      cwd=ROOT, capture_output=True, text=True, timeout=600, check=True)
  lines = [json.loads(l) for l in out.stdout.splitlines() if l.startswith('{')]
  assert [l['pipeline'] for l in lines] == ['train', 'eval']
  train, evaluation = lines
  assert train['images'] == 4 and train['crop'] == 321 and train['images_per_sec'] > 0
  assert train['dataset'].startswith('voc2012_sbd') and train['prepare_s'] > 0
  assert evaluation['images'] == 2 and evaluation['eval_size'] == 513
