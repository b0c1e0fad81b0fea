"""Launching and collecting the processes of a multi-process test on one machine."""

from __future__ import annotations

import contextlib
import os
import re
import socket


def free_port() -> int:
  """A localhost port nothing listens on now (the coordinator's)."""
  with socket.socket() as s:
    s.bind(('localhost', 0))
    return s.getsockname()[1]


def cpu_env(devices: int, **extra) -> dict:
  """os.environ for a CPU-only child with `devices` fake devices (replacing the
  suite's --xla_force_host_platform_device_count)."""
  flags = re.sub(r'--xla_force_host_platform_device_count=\d+', '',
                 os.environ.get('XLA_FLAGS', ''))
  return dict(os.environ, JAX_PLATFORMS='cpu', **extra,
              XLA_FLAGS=f'{flags} --xla_force_host_platform_device_count={devices}')


def _kill(processes):
  for process in processes:
    if process.poll() is None:
      process.kill()


@contextlib.contextmanager
def killed_on_error(processes):
  """Runs the body (this process's share of the test); if it raises, the
  children are killed at once rather than waited for."""
  try:
    yield
  except BaseException:
    _kill(processes)
    raise


def wait_all(processes, timeout=300):
  """Each process's (stdout, stderr) once all have exited; any still running
  when this raises (a timeout, or an error while waiting) is killed. Asserts
  every exit status is 0, showing the failing process's stderr tail."""
  try:
    outs = [process.communicate(timeout=timeout) for process in processes]
  finally:
    _kill(processes)
  for i, (process, (_, err)) in enumerate(zip(processes, outs)):
    assert process.returncode == 0, f'process {i}: {(err or "")[-3000:]}'
  return outs
