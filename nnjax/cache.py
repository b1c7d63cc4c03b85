"""nnjax's per-user cache directory (data fetched once, compiled programs): where it is, one rule for all.

JAX's persistent compilation cache is on by default for every experiment (``nnjax.cli``) where this machine's
XLA loads the programs it cached without complaint: ``compilation_cache_fault`` checks that once per machine
and jaxlib, in a child process, and keeps its verdict beside the cache. ``CompileClock`` measures what
compiling costs a process, cached or not.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import re
import subprocess
import sys
import tempfile
from typing import Any

import jax
import jaxlib

CACHE_ENV = "NNJAX_CACHE_DIR"
COMPILE_CACHE_ENV = "NNJAX_COMPILE_CACHE"  # "0": no run caches (as --no-compile-cache); "1": every run, unchecked
CPP_ERROR_LINE = re.compile(r"^E\d{4} ")  # absl's error lines, e.g. 'E1207 23:48:04.92 ...'

# Compiles one program into the empty cache directory argv[1], drops JAX's in-memory caches and runs it again,
# which must load it from the directory; prints the number of persistent-cache hits (1 where loading works).
_PROBE = """
import sys, jax, jax.numpy as jnp
jax.config.update("jax_compilation_cache_dir", sys.argv[1])
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
hits = []
jax.monitoring.register_event_listener(lambda event, **_: event.endswith("/cache_hits") and hits.append(event))
def probe(x):
    return (x @ x.T + 1.0).sum()
x = jnp.ones((8, 8))
jax.jit(probe).lower(x).compile()
jax.clear_caches()
assert float(jax.jit(probe)(x)) == 576.0
print(len(hits))
"""

log = logging.getLogger(__name__)


def cache_dir(*parts: str) -> str:
    """``$NNJAX_CACHE_DIR``, else ``$XDG_CACHE_HOME/nnjax``, else ``~/.cache/nnjax``, joined with ``parts``
    (not created)."""
    root = os.environ.get(CACHE_ENV) or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "nnjax"
    )
    return os.path.join(root, *parts)


def enable_compilation_cache(directory: str | None = None) -> str:
    """Keep the XLA programs this process compiles in ``directory`` (default ``cache_dir('jax')``), JAX's persistent
    compilation cache, so a later process that compiles the same program (same computation, shapes, flags and
    jaxlib) loads it instead; returns the directory. Call it before the first compile. Nothing is evicted (JAX's
    size limit rescans the whole directory on every write: minutes over a test suite); delete the directory to
    reclaim its space."""
    directory = directory or cache_dir("jax")
    jax.config.update("jax_compilation_cache_dir", directory)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.05)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return directory


def _machine_key() -> str:
    """This machine's CPU (model and feature flags) and jaxlib, as a short hash: the probe's verdict holds for it."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            cpu = [line for line in f if line.startswith(("model name", "flags", "Features"))][:2]
    except OSError:
        cpu = []
    text = "|".join([platform.machine(), jaxlib.__version__, *cpu])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def compilation_cache_fault(directory: str) -> str | None:
    """``None`` if this machine's XLA loads a program it cached, silently; else why not, in one line.

    Decided once per machine and jaxlib by a child process (``_PROBE``: ~3 s) whose verdict is kept beside
    ``directory``, in ``<directory>.probe`` (where that cannot be written, the next run checks again): jaxlib
    0.10.1's CPU loader, on some CPUs (openxla/xla#44565), logs two error lines for every program it loads,
    taking the tuning flags it compiled with for missing CPU features.
    """
    probe_dir = os.path.normpath(directory) + ".probe"  # beside the cache, not in it: JAX owns that directory
    verdict_path = os.path.join(probe_dir, f"verdict-{_machine_key()}.json")
    try:
        with open(verdict_path, encoding="utf-8") as f:
            return json.load(f)["fault"]
    except (OSError, ValueError, KeyError):
        pass
    log.info("checking once that this machine's XLA loads the programs it caches (a few seconds)")
    try:
        with tempfile.TemporaryDirectory(prefix="nnjax-cache-probe-") as scratch:  # empty: the first compile misses
            done = subprocess.run([sys.executable, "-c", _PROBE, scratch], capture_output=True, text=True, timeout=120,
                                  env=os.environ | {"JAX_PLATFORMS": "cpu"})
        errors = [line for line in done.stderr.splitlines() if CPP_ERROR_LINE.match(line)]
        if done.returncode:
            fault = f"the probe failed: {done.stderr.strip().splitlines()[-1] if done.stderr.strip() else done.returncode}"
        elif errors:
            fault = f"XLA logs errors when it loads a cached program (openxla/xla#44565): {errors[0][:200]}"
        elif done.stdout.split()[-1:] in ([], ["0"]):  # the hit count it printed last
            fault = "XLA did not load the program it had just cached"
        else:
            fault = None
    except subprocess.TimeoutExpired:
        fault = "the probe took longer than 120 s"
    try:
        os.makedirs(probe_dir, exist_ok=True)
        with open(verdict_path, "w", encoding="utf-8") as f:
            json.dump({"fault": fault, "jaxlib": jaxlib.__version__}, f)
    except OSError as err:
        log.info("could not keep the verdict in %s: %s", probe_dir, err)
    return fault


def default_compilation_cache(directory: str | None = None) -> str | None:
    """``enable_compilation_cache(directory)`` unless ``compilation_cache_fault`` finds this machine unfit (then
    logs why and returns ``None``); returns the directory. The default of every experiment (``nnjax.cli``)."""
    directory = directory or cache_dir("jax")
    if jax.default_backend() != "cpu" or (fault := compilation_cache_fault(directory)) is None:
        return enable_compilation_cache(directory)
    log.info("compiled programs are not cached on this machine: %s", fault)
    return None


# JAX's own timers of its compile path (jax._src.dispatch); a cache load is timed as the backend compile.
COMPILE_EVENTS = (
    "/jax/core/compile/jaxpr_trace_duration",
    "/jax/core/compile/jaxpr_to_mlir_module_duration",
    "/jax/core/compile/backend_compile_duration",
)


class CompileClock:
    """Wall seconds the process spends in JAX's compile path while the clock is entered: tracing to a jaxpr,
    lowering to MLIR and XLA compilation (or a persistent-cache load), for every program whoever compiles it
    (initialisation, training, evaluation, sampling). A jit traced inside another's trace counts once: the
    seconds are the union of JAX's reported time spans.

        with CompileClock() as clock:
            ...
        clock.seconds
    """

    def __init__(self) -> None:
        self._spans: list[tuple[float, float]] = []

    def _record(self, event: str, start: float, end: float, **_: Any) -> None:
        if event in COMPILE_EVENTS:
            self._spans.append((start, end))

    def __enter__(self) -> CompileClock:
        jax.monitoring.register_event_time_span_listener(self._record)
        return self

    def __exit__(self, *exc_info: Any) -> None:
        jax.monitoring.unregister_event_time_span_listener(self._record)

    @property
    def seconds(self) -> float:
        """The union of the recorded spans' lengths."""
        total, reach = 0.0, float("-inf")
        for start, end in sorted(self._spans):
            if end > reach:
                total += end - max(start, reach)
                reach = end
        return total
