"""benchmarks/train_step.py's scaling sweep (devices x per-device batch) and
its PyTorch side-by-side lines (figures are not asserted, only their sense).

The PyTorch twin's own timing is run by benchmarks_test.py
(`time_torch`); here it is replaced by a stub that records what the sweep
asks for, so the test stays seconds long on a shared 2-core machine.
"""

from benchmarks import models as models_benchmark
from benchmarks import train_step as train_step_benchmark


def test_sweep_over_devices_and_per_device_batch_with_pytorch(tiny_config, monkeypatch):
  asked = []

  def fake_time_torch(config, mode, batch, steps, device='cpu'):
    asked.append((mode, batch, config.optim.base_lr, device))
    return {'ms': 10.0 * batch, 'images_per_sec': 100.0, 'device': f'torch {device}'}

  monkeypatch.setattr(models_benchmark, 'time_torch', fake_time_torch)
  lines = list(train_step_benchmark.sweep(tiny_config, 1, [1, 2], [2], with_torch=True))
  jax_lines = [l for l in lines if 'devices' in l and 'ratio' not in l]
  assert [(l['devices'], l['per_device_batch'], l['batch_size']) for l in jax_lines] == [
      (1, 2, 2), (2, 2, 4)]
  assert jax_lines[1]['device'].startswith('2 x ')
  # Twice the images per step, twice XLA's FLOP count (the whole program's).
  ratio = jax_lines[1]['flops_per_step'] / jax_lines[0]['flops_per_step']
  assert 1.9 < ratio < 2.1
  assert all(l['ms_per_step'] > 0 and l['loss_is_finite'] for l in jax_lines)
  assert asked == [('train_step', 2, 1e-9, 'cpu'), ('train_step', 4, 1e-9, 'cpu')]
  ratios = [l for l in lines if 'ratio' in l]
  assert [(l['batch_size'], l['devices'], l['torch_ms']) for l in ratios] == [
      (2, 1, 20.0), (4, 2, 40.0)]
  assert all(l['ratio'] == round(l['jax_ms'] / l['torch_ms'], 3) for l in ratios)


def test_default_line_uses_all_devices_and_the_config_batch(tiny_config):
  line = train_step_benchmark.benchmark(tiny_config, 1)
  assert line['devices'] == 8 and line['batch_size'] == 8 and line['per_device_batch'] == 1
  assert line['grad_accum_steps'] == 1
