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
