"""Logical axis names of parameters: how a model says what each axis of a weight is, for sharding.

A model names the axes of a param through ``logical_init(init, names)`` (or ``box`` for a value it builds).
Inside ``with logical_axes_boxed():`` those params come out of ``model.init`` as flax's
``nn.LogicallyPartitioned`` boxes (what ``nn.with_logical_partitioning`` makes), so ``nnjax.train.sharding``
can read the names from ``jax.eval_shape(model.init, ...)`` and shard by them; outside it ``model.init``
returns plain arrays, as every other model's does.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

_BOXED = contextvars.ContextVar("nnjax_logical_axes_boxed", default=False)


@contextlib.contextmanager
def logical_axes_boxed() -> Iterator[None]:
    """Within: params named with ``logical_init``/``box`` are initialised as ``nn.LogicallyPartitioned`` boxes."""
    token = _BOXED.set(True)
    try:
        yield
    finally:
        _BOXED.reset(token)


def box(value: Any, names: tuple[str | None, ...]) -> Any:
    """``value`` boxed with its logical axis ``names`` inside ``logical_axes_boxed()``, else ``value`` itself."""
    return nn.LogicallyPartitioned(value, names) if _BOXED.get() else value


def logical_init(init: nn.initializers.Initializer, names: tuple[str | None, ...]) -> nn.initializers.Initializer:
    """``init`` whose result carries the logical axis ``names`` (one per axis) inside ``logical_axes_boxed()``."""
    return lambda key, shape, dtype=jnp.float32: box(init(key, shape, dtype), names)
