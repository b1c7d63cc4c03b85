"""Several processes, one run: JAX's multi-controller runtime (``jax.distributed``) from the standard settings.

Every process runs the same program on its own devices; ``jax.devices()`` then lists the devices of all
processes and one ``Mesh`` spans them (``--parallel jit``), or ``jax.pmap`` maps over them
(``--parallel pmap``). ``initialize_from_environment`` (called by ``nnjax.cli.run`` before anything else
touches JAX) starts the runtime when the settings say so:

- ``JAX_COORDINATOR_ADDRESS`` (``host:port`` of process 0), ``JAX_NUM_PROCESSES`` and ``JAX_PROCESS_ID``, as
  ``python -m nnjax.launch`` sets them for local processes, or as a job script sets them;
- or, with none of those, a cluster JAX detects by itself: a SLURM job step of several tasks, a multi-host
  Cloud TPU slice (``jax.distributed.initialize()`` with no arguments);
- ``NNJAX_CPU_DEVICES=N`` gives each process N CPU devices (``jax_num_cpu_devices``), to test on one machine.

Only the main process (index 0) writes metrics, plots, TensorBoard events and the final JSON line; every
process takes part in every collective and in checkpoint saves. When a process dies, the others are stopped
within ``HEARTBEAT_TIMEOUT_S`` plus a poll (the runtime's "another task died" line, then exit);
``nnjax.launch`` stops them at once and says which process failed. A process that *fails* (an uncaught
exception, or one of ``cli.run``'s one-line errors: ``end_failed_process``) exits at once with its code: JAX's
exit handler would first wait in a shutdown barrier for the processes it left blocked in a collective, and the
run would hang until a timeout that names another process.
"""

from __future__ import annotations

import dataclasses
import os
import sys

import jax

from nnjax.errors import ConfigError

COORDINATOR_ENV, NUM_PROCESSES_ENV, PROCESS_ID_ENV = "JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID"
CPU_DEVICES_ENV = "NNJAX_CPU_DEVICES"
INITIALIZATION_TIMEOUT_S = 60  # a process that never arrives fails the others after this long, never a hang
# A process whose peer died (stopped sending heartbeats) is stopped by the runtime after this long (JAX's default,
# 100 s, leaves a job idle for minutes); a heartbeat comes from a background thread, so long compiles never miss one.
HEARTBEAT_TIMEOUT_S = 20


@dataclasses.dataclass(frozen=True)
class Settings:
    """Where this process stands: ``None`` fields mean "let JAX detect them" (SLURM, Cloud TPU)."""

    coordinator_address: str | None
    num_processes: int | None
    process_id: int | None


def settings_from_environment(environ: os._Environ | dict[str, str] = os.environ) -> Settings | None:
    """The multi-process settings ``environ`` asks for, or None for one process (``ConfigError`` if incomplete)."""
    given = {name: environ.get(name) for name in (COORDINATOR_ENV, NUM_PROCESSES_ENV, PROCESS_ID_ENV)}
    if any(given.values()):
        missing = [name for name, value in given.items() if not value]
        if missing:
            raise ConfigError(f"multi-process settings need {', '.join(missing)} as well (set all three, or none)")
        try:
            num, index = int(given[NUM_PROCESSES_ENV]), int(given[PROCESS_ID_ENV])
        except ValueError as err:
            raise ConfigError(f"{NUM_PROCESSES_ENV} and {PROCESS_ID_ENV} must be integers: {err}") from err
        if not 0 <= index < num:
            raise ConfigError(f"{PROCESS_ID_ENV} must be in [0, {NUM_PROCESSES_ENV}={num}), got {index}")
        return Settings(given[COORDINATOR_ENV], num, index)
    slurm_tasks = int(environ.get("SLURM_STEP_NUM_TASKS") or environ.get("SLURM_NTASKS") or 1)
    tpu_hosts = [h for h in environ.get("TPU_WORKER_HOSTNAMES", "").split(",") if h]
    if slurm_tasks > 1 or len(tpu_hosts) > 1:
        return Settings(None, None, None)
    return None


def initialize_from_environment(environ: os._Environ | dict[str, str] = os.environ) -> Settings | None:
    """Apply ``NNJAX_CPU_DEVICES`` and start ``jax.distributed`` when ``environ`` asks for several processes;
    returns the settings used (None: one process). Call before any JAX computation."""
    if environ.get(CPU_DEVICES_ENV) and jax.config.jax_num_cpu_devices != int(environ[CPU_DEVICES_ENV]):
        jax.config.update("jax_num_cpu_devices", int(environ[CPU_DEVICES_ENV]))
    settings = settings_from_environment(environ)
    if settings is not None and not jax.distributed.is_initialized():
        jax.distributed.initialize(
            settings.coordinator_address, settings.num_processes, settings.process_id,
            initialization_timeout=INITIALIZATION_TIMEOUT_S, heartbeat_timeout_seconds=HEARTBEAT_TIMEOUT_S,
        )
        sys.excepthook = _exiting_at_once(sys.excepthook)
    return settings


def exit_now(code: int) -> None:
    """End this process with ``code`` now: flush stdout and stderr, then skip the exit handlers (above all
    ``jax.distributed``'s shutdown barrier, which a failed process must not wait in)."""
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    os._exit(code)


def end_failed_process(code: int, message: str = "") -> None:
    """In a multi-process run, write ``message`` to stderr and ``exit_now(code)``; with one process, nothing
    (the caller returns its code or raises)."""
    if jax.distributed.is_initialized():
        sys.stderr.write(message)
        exit_now(code)


def _exiting_at_once(excepthook):
    """``excepthook`` (it prints the traceback), then ``exit_now(1)``."""

    def hook(kind, value, traceback):
        excepthook(kind, value, traceback)
        exit_now(1)

    return hook


def is_main_process() -> bool:
    """Whether this process writes the run's files (process 0; always true for one process)."""
    return jax.process_index() == 0


def barrier(name: str) -> None:
    """Wait until every process reaches the barrier ``name`` (nothing to wait for with one process)."""
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)
