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
    """

    def __init__(self, skip: int = 1):
        self.seconds = 0.0
        self._skip = skip
        self._executables: dict[Any, Any] = {}

    def __call__(self, name: str, fn: Callable, *args: Any) -> Any:
        key = (name, tuple((np.shape(leaf), str(getattr(leaf, "dtype", type(leaf)))) for leaf in jax.tree.leaves(args[self._skip:])))
        if key not in self._executables:
            start = time.perf_counter()
            self._executables[key] = fn.lower(*args).compile()
            seconds = time.perf_counter() - start
            self.seconds += seconds
            log.info("compiled %s for %s in %.2f s", name, [shape for shape, _ in key[1]], seconds)
        return self._executables[key](*args)
