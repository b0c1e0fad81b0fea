"""The benchmark scripts run and report sane figures (no timing assertions)."""

from configs import tiny
from benchmarks import timing
from benchmarks import train_step as train_step_benchmark


def test_train_step_benchmark_reports_figures(tiny_config):
  result = train_step_benchmark.benchmark(tiny_config, steps=2)
  assert result['device'].startswith('8 x ')
  assert result['batch_size'] == 8 and result['crop_size'] == 32
  assert result['ms_per_step'] > 0 and result['images_per_sec'] > 0
  assert result['flops_per_step'] > 0 and result['loss_is_finite']
  assert 'mfu' not in result  # No peak known for CPUs.


def test_peak_flops_table_and_mfu():
  h100 = 'NVIDIA H100 80GB HBM3'
  assert timing.peak_flops('bfloat16', h100) == 989.4e12
  assert timing.peak_flops('float32', h100) == 494.7e12  # TF32, JAX's default on GPU.
  assert timing.peak_flops('bfloat16', 'TPU v5 lite') == 197e12
  assert timing.peak_flops('float32', 'TPU v4') is None
  assert timing.peak_flops('bfloat16', 'cpu') is None
  assert timing.add_mfu({}, 1e12, 'bfloat16', 1) == {}  # This CPU: no peak.


def test_xla_flops_counts_the_whole_program_also_without_lowered_analysis(monkeypatch):
  import jax  # pylint: disable=import-outside-toplevel
  import jax.numpy as jnp  # pylint: disable=import-outside-toplevel
  mesh = jax.make_mesh((8,), ('d',))
  x = jax.device_put(jnp.ones((64, 32)), jax.sharding.NamedSharding(
      mesh, jax.sharding.PartitionSpec('d')))
  matmul = jax.jit(lambda x, w: x @ w)
  whole = 2 * 64 * 32 * 16
  assert abs(timing.xla_flops(matmul, x, jnp.ones((32, 16))) - whole) <= 2  # Not 1/8.
  # GPU plugins return None here: the CPU client analyses the same program.
  monkeypatch.setattr(jax.stages.Lowered, 'cost_analysis', lambda self: None)
  assert abs(timing.xla_flops(matmul, x, jnp.ones((32, 16))) - whole) <= 2


def test_models_benchmark_times_jax_and_pytorch_twins():
  from benchmarks import models as models_benchmark  # pylint: disable=import-outside-toplevel
  from configs import voc_aspp  # pylint: disable=import-outside-toplevel
  config = tiny.get_config(voc_aspp)
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


def test_evaluate_benchmark_reports_each_setting():
  from benchmarks import evaluate as evaluate_benchmark  # pylint: disable=import-outside-toplevel
  from configs import shapes  # pylint: disable=import-outside-toplevel
  config = tiny.get_config(shapes)
  lines = list(evaluate_benchmark.measure(config, ['single', 'msc_flip'], steps=1))
  assert [line['setting'] for line in lines] == ['single', 'msc_flip']
  assert lines[0]['scales'] == [1.0] and not lines[0]['flip']
  assert lines[1]['scales'] == [0.5, 0.75, 1.0, 1.25, 1.5] and lines[1]['flip']
  for line in lines:
    assert line['device'].startswith('8 x ') and line['batch_size'] == 8
    assert line['eval_size'] == [64, 64] and line['images_per_sec'] > 0


def test_evaluate_benchmark_runs_a_model_with_its_own_compiler_options():
  """MobileNetV3's predict is compiled with XLA's default fusions
  (xla_flags.model_compiler_options); JAX refuses those options on a nested
  jit, so the benchmark must not wrap it in one."""
  from benchmarks import evaluate as evaluate_benchmark  # pylint: disable=import-outside-toplevel
  from deeplab_jax import xla_flags  # pylint: disable=import-outside-toplevel
  config = tiny.get_config('shapes_lraspp')
  assert xla_flags.model_compiler_options(config.model)  # This test process has the flag.
  (line,) = evaluate_benchmark.measure(config, ['single'], steps=1)
  assert line['images_per_sec'] > 0


def test_crf_benchmark_breakdown_times_every_part():
  import numpy as np  # pylint: disable=import-outside-toplevel
  from benchmarks import crf as crf_benchmark  # pylint: disable=import-outside-toplevel
  from deeplab_jax import crf  # pylint: disable=import-outside-toplevel
  from deeplab_jax.testing import scenes  # pylint: disable=import-outside-toplevel
  made = [scenes.natural_image_and_unaries(np.random.default_rng(i), 24, 32, 4) for i in range(2)]
  images = np.stack([m[0] for m in made])
  logits = np.log(np.stack([m[2] for m in made])).astype(np.float32)
  line = crf_benchmark.breakdown(images, logits, crf.RESNET_V2, steps=1)
  assert line['batch'] == 2 and line['size'] == [24, 32] and line['packed']
  assert 0 < line['max_points'] <= 24 * 32 * 6
  for part in ('sort', 'build', 'host_lattice', 'bilateral_filter', 'spatial_filter',
               'mean_field'):
    assert line[part] > 0, part
