"""Optimizers built from a config."""

from __future__ import annotations

import optax

from nnjax.errors import ConfigError


def make_optimizer(name: str, learning_rate: float | optax.Schedule) -> optax.GradientTransformation:
    """An optax optimizer by name: 'adam', 'adamw', 'sgd' or 'momentum' (SGD with momentum 0.9)."""
    builders = {
        "adam": lambda: optax.adam(learning_rate),
        "adamw": lambda: optax.adamw(learning_rate),
        "sgd": lambda: optax.sgd(learning_rate),
        "momentum": lambda: optax.sgd(learning_rate, momentum=0.9),
    }
    if name not in builders:
        raise ConfigError(f"--optimizer must be one of {', '.join(builders)}, got {name!r}")
    return builders[name]()
