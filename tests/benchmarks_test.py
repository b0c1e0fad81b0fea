"""The benchmark scripts run and report sane figures (no timing assertions)."""

from benchmarks import train_step as train_step_benchmark


def test_train_step_benchmark_reports_figures(tiny_config):
  result = train_step_benchmark.benchmark(tiny_config, steps=2)
  assert result['device'].startswith('8 x ')
  assert result['batch_size'] == 8 and result['crop_size'] == 32
  assert result['ms_per_step'] > 0 and result['images_per_sec'] > 0
  assert result['flops_per_step'] > 0 and result['loss_is_finite']
