"""nnjax's per-user cache directory (data fetched once, compiled programs): where it is, one rule for all."""

from __future__ import annotations

import os

import jax

CACHE_ENV = "NNJAX_CACHE_DIR"
COMPILE_CACHE_ENV = "NNJAX_COMPILE_CACHE"  # "1": every run keeps its compiled programs (as --compile-cache does)


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
    jaxlib) loads it instead; returns the directory. Call it before the first compile. jaxlib 0.10.1's CPU loader
    logs two error lines ('Target machine feature +prefer-no-gather is not supported') for every program it loads,
    although it was compiled on the same machine (openxla/xla#44565: tuning flags taken for ISA features); the
    programs load and run."""
    directory = directory or cache_dir("jax")
    jax.config.update("jax_compilation_cache_dir", directory)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.05)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return directory
