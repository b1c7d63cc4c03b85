"""Ahead-of-time compilation with measured compile time, for every compiled step a regime runs."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import jax
import numpy as np

log = logging.getLogger(__name__)


class Compiled:
    """Calls jitted functions through executables compiled once per argument shapes and dtypes.

    ``compiled(name, fn, *args)`` lowers and compiles ``fn`` (a ``jax.jit``/``jax.pmap`` function) for
    these argument shapes the first time it sees them, then runs the executable. ``seconds`` is the
    total compile time so far, so a loop can report it apart from training time. Arguments
    ``args[:skip]`` do not take part in the cache key (a training state's shapes never change, and
    walking its leaves on every step costs time).

    ``ahead_of_time=False`` calls ``fn`` itself and counts its first call per shapes (compilation plus one
    run) as compile time: a multi-process ``jax.pmap`` lowers for the global shapes, so its executable cannot
    take the per-process arguments that ``fn`` takes.
    """

    def __init__(self, skip: int = 1, ahead_of_time: bool = True):
        self.seconds = 0.0
        self._skip = skip
        self._ahead_of_time = ahead_of_time
        self._executables: dict[Any, Any] = {}

    def __call__(self, name: str, fn: Callable, *args: Any) -> Any:
        key = (name, tuple((np.shape(leaf), str(getattr(leaf, "dtype", type(leaf)))) for leaf in jax.tree.leaves(args[self._skip:])))
        if key in self._executables:
            return self._executables[key](*args)
        start = time.perf_counter()
        if self._ahead_of_time:
            self._executables[key] = fn.lower(*args).compile()
            out = None
        else:
            self._executables[key] = fn
            out = jax.block_until_ready(fn(*args))
        seconds = time.perf_counter() - start
        self.seconds += seconds
        log.info("compiled %s for %s in %.2f s", name, [shape for shape, _ in key[1]], seconds)
        return self._executables[key](*args) if out is None else out


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
