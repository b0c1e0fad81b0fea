"""The entry points' XLA flags: added for tested jaxlib versions, never over the user's."""

from deeplab_jax import xla_flags


def test_flag_added_for_tested_jaxlib_and_kept_with_others():
  env = {'XLA_FLAGS': '--xla_force_host_platform_device_count=8'}
  xla_flags.set_defaults(env, jaxlib_version='0.10.2')
  assert env['XLA_FLAGS'] == ('--xla_force_host_platform_device_count=8 '
                              '--xla_cpu_experimental_ynn_fusion_type=+eltwise')
  xla_flags.set_defaults(env, jaxlib_version='0.10.2')  # Idempotent.
  assert env['XLA_FLAGS'].count('ynn_fusion_type') == 1


def test_users_setting_wins_and_untested_versions_get_nothing():
  env = {'XLA_FLAGS': '--xla_cpu_experimental_ynn_fusion_type=dot'}
  xla_flags.set_defaults(env, jaxlib_version='0.10.2')
  assert env['XLA_FLAGS'] == '--xla_cpu_experimental_ynn_fusion_type=dot'
  env = {}
  xla_flags.set_defaults(env, jaxlib_version='0.11.0')
  assert env == {}


def test_this_test_process_runs_with_the_flag():
  import os  # pylint: disable=import-outside-toplevel
  import jaxlib  # pylint: disable=import-outside-toplevel
  if jaxlib.__version__.startswith('0.10.'):
    assert '--xla_cpu_experimental_ynn_fusion_type=+eltwise' in os.environ['XLA_FLAGS']


def test_the_crf_compiles_with_xlas_defaults_instead_of_ours():
  import jax  # pylint: disable=import-outside-toplevel
  ours = {'XLA_FLAGS': '--xla_force_host_platform_device_count=8 '
                       '--xla_cpu_experimental_ynn_fusion_type=+eltwise'}
  options = xla_flags.without_cpu_flags(ours, backend='cpu')
  assert options == {'xla_cpu_experimental_ynn_fusion_type': ''}
  assert float(jax.jit(lambda x: x + 1, compiler_options=options)(1.0)) == 2.0  # XLA takes it.
  assert xla_flags.without_cpu_flags(ours, backend='gpu') is None
  users = {'XLA_FLAGS': '--xla_cpu_experimental_ynn_fusion_type=dot'}
  assert xla_flags.without_cpu_flags(users, backend='cpu') is None
  assert xla_flags.without_cpu_flags({}, backend='cpu') is None


def test_mobilenet_models_compile_with_xlas_defaults_and_others_with_ours():
  from configs import tiny  # pylint: disable=import-outside-toplevel
  ours = {'XLA_FLAGS': '--xla_cpu_experimental_ynn_fusion_type=+eltwise'}
  mobilenet = tiny.get_config('voc_lraspp_mobilenet_v3_large').model
  assert xla_flags.model_compiler_options(mobilenet, ours, backend='cpu') == {
      'xla_cpu_experimental_ynn_fusion_type': ''}
  assert xla_flags.model_compiler_options(mobilenet, ours, backend='gpu') is None
  assert xla_flags.model_compiler_options(tiny.get_config('voc_aspp').model, ours,
                                          backend='cpu') is None
