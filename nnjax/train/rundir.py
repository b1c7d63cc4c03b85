"""A run directory holds one run: it is locked while a run uses it, and a resume must be the same run.

``open_run_directory`` creates ``--workdir`` (one-line errors for a path that is a file, read-only or
not writable), takes an exclusive lock on ``<workdir>/.lock`` for the life of the run (the kernel
drops it when the process ends, so a killed run never blocks its resume), and compares the run's
*identity* with the ``config.json`` already there: every config field except those that
``config.resumable_fields()`` names, plus the experiment and the data it resolved to. A mismatch is
refused with one line naming each differing field; ``--restart`` discards the earlier run instead.
``config.json`` is rewritten only for the same run (with the resumable fields as now given).

With several processes (``nnjax.distributed``) they share the directory, which ``--workdir`` must then
name: every process checks the identity itself (so all refuse alike), the main process alone takes the
lock, discards a run for ``--restart`` and writes ``config.json``, and the others wait for it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import fcntl
import json
import logging
import os
import shutil
import socket
from collections.abc import Iterator
from typing import Any

import jax

from nnjax.config import ResumableConfig, flag_name, make_workdir, run_record
from nnjax.distributed import barrier, is_main_process
from nnjax.errors import ConfigError, WorkdirError

log = logging.getLogger(__name__)

CONFIG_FILE = "config.json"
LOCK_FILE = ".lock"
RUN_ARTIFACTS = ("checkpoints", "checkpoints_damaged", "metrics.jsonl", "tensorboard", CONFIG_FILE)


def differences(saved: dict[str, Any], record: dict[str, Any], may_change: set[str], flags: set[str]) -> list[str]:
    """``'--name A there, B now'`` for each identity field in which two records differ (``flags``: the config's
    fields, named as flags; other keys such as ``experiment`` by their name)."""
    lines = []
    for name in sorted((saved.keys() | record.keys()) - may_change):
        there, now = saved.get(name, "(unset)"), record.get(name, "(unset)")
        if there != now:
            lines.append(f"{f'--{flag_name(name)}' if name in flags else name} {there!r} there, {now!r} now")
    return lines


@contextlib.contextmanager
def open_run_directory(config: ResumableConfig, experiment: str, **extra: Any) -> Iterator[str]:
    """The locked, checked run directory of ``config`` for the duration of the ``with`` block (see the module doc)."""
    if jax.process_count() > 1 and not config.workdir:
        raise ConfigError(f"--workdir is needed with {jax.process_count()} processes: they share one run directory")
    workdir = make_workdir(config, experiment)
    main = is_main_process()
    with _locked(workdir) if main else contextlib.nullcontext():
        record = run_record(config, experiment, **extra)
        if config.restart:
            if main:
                _discard_run(workdir)
        else:
            flags = {field.name for field in dataclasses.fields(config)}
            _check_same_run(workdir, record, config.resumable_fields(), flags)
        barrier("nnjax-run-directory-checked")
        if main:
            temporary = os.path.join(workdir, f".{CONFIG_FILE}.{os.getpid()}")
            with open(temporary, "w") as f:
                json.dump(record, f, indent=2)
            os.replace(temporary, os.path.join(workdir, CONFIG_FILE))  # whole, even for a reader in between
        barrier("nnjax-run-directory-ready")
        yield workdir


def _check_same_run(workdir: str, record: dict[str, Any], may_change: set[str], flags: set[str]) -> None:
    """``WorkdirError`` if ``workdir`` holds another run than ``record`` describes, or checkpoints of an unknown one."""
    path = os.path.join(workdir, CONFIG_FILE)
    ways = "use a new --workdir, or --restart to discard that run and start over"
    if not os.path.exists(path):
        if os.path.isdir(os.path.join(workdir, "checkpoints")) and os.listdir(os.path.join(workdir, "checkpoints")):
            raise WorkdirError(f"{workdir} has checkpoints but no {CONFIG_FILE}, so its run is unknown; {ways}")
        return
    try:
        with open(path) as f:
            saved = json.load(f)
    except (OSError, ValueError) as err:
        raise WorkdirError(f"{path} is unreadable ({type(err).__name__}), so its run is unknown; {ways}") from err
    changed = differences(saved, record, may_change, flags)
    if changed:
        raise WorkdirError(f"{workdir} holds a different run ({'; '.join(changed)}); {ways}")
    resumed = [f"--{flag_name(k)} {saved.get(k)!r} -> {record[k]!r}" for k in sorted(may_change & record.keys())
               if k not in ("workdir", "restart") and saved.get(k) != record[k]]
    if resumed:
        log.info("resuming %s with %s", workdir, ", ".join(resumed))


def _discard_run(workdir: str) -> None:
    """Remove the checkpoints, metrics, TensorBoard events and config of the run in ``workdir`` (``--restart``)."""
    present = [name for name in RUN_ARTIFACTS if os.path.exists(os.path.join(workdir, name))]
    for name in present:
        path = os.path.join(workdir, name)
        shutil.rmtree(path) if os.path.isdir(path) else os.remove(path)
    if present:
        log.warning("--restart: discarded the earlier run in %s (%s)", workdir, ", ".join(present))


@contextlib.contextmanager
def _locked(workdir: str) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``workdir/.lock``; ``WorkdirError`` naming the holder if another process has it."""
    path = os.path.join(workdir, LOCK_FILE)
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as err:
        raise WorkdirError(f"--workdir {workdir}: cannot create its lock file ({os.strerror(err.errno)})") from err
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            if err.errno not in (errno.EAGAIN, errno.EACCES):
                raise
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "another process"
            raise WorkdirError(
                f"{workdir} is in use by {holder}; wait for that run to end, or use another --workdir"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"process {os.getpid()} on {socket.gethostname()}".encode(), 0)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock
