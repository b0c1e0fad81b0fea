"""The benchmark scripts run and report sane figures (no timing assertions)."""

from benchmarks import train_step as train_step_benchmark


def test_train_step_benchmark_reports_figures(tiny_config):
  result = train_step_benchmark.benchmark(tiny_config, steps=2)
  assert result['device'].startswith('8 x ')
  assert result['batch_size'] == 8 and result['crop_size'] == 32
  assert result['ms_per_step'] > 0 and result['images_per_sec'] > 0
  assert result['flops_per_step'] > 0 and result['loss_is_finite']


def test_models_benchmark_times_jax_and_pytorch_twins():
  from benchmarks import models as models_benchmark  # pylint: disable=import-outside-toplevel
  from configs import voc_aspp  # pylint: disable=import-outside-toplevel
  config = voc_aspp.get_config('tiny')
  config.model.input_scales = (1.0,)
  config.model.atrous_impl = 'taps'
  line = models_benchmark.time_jax_forward(config, batch=1, steps=1)
  assert line['framework'] == 'jax' and line['impl'] == 'taps' and line['ms'] > 0
  assert line['gflop_per_sec'] > 0 and line['compile_s'] >= 0
  for mode in ('forward', 'train_step'):
    line = models_benchmark.time_torch(config, mode, batch=2, steps=1)
    assert line['framework'] == 'torch' and line['mode'] == mode and line['ms'] > 0


def test_atrous_benchmark_times_every_implementation_and_pytorch():
  from benchmarks import atrous as atrous_benchmark  # pylint: disable=import-outside-toplevel
  line = atrous_benchmark.time_shape(atrous_benchmark.parse_shape('1x9x7x8x4r2'),
                                     ['dilation', 'taps'], steps=1, with_torch=True)
  assert line['shape'] == '1x9x7x8x4r2'
  for name in ('dilation', 'taps', 'torch'):
    assert line[name]['forward_ms'] > 0 and line[name]['grad_ms'] > 0
