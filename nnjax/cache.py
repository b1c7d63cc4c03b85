"""nnjax's per-user cache directory (data fetched once, compiled programs): where it is, one rule for all."""

from __future__ import annotations

import os

CACHE_ENV = "NNJAX_CACHE_DIR"


def cache_dir(*parts: str) -> str:
    """``$NNJAX_CACHE_DIR``, else ``$XDG_CACHE_HOME/nnjax``, else ``~/.cache/nnjax``, joined with ``parts``
    (not created)."""
    root = os.environ.get(CACHE_ENV) or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "nnjax"
    )
    return os.path.join(root, *parts)
