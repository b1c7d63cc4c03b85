"""Orbax checkpoints of the host copy of a training state: save every N, keep N, resume the latest."""

from __future__ import annotations

import logging
import os
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp

from nnjax.errors import ConfigError

log = logging.getLogger(__name__)


class Checkpointer:
    """Saves training states (any pytree of host arrays) under ``directory/<step>`` and restores the latest one."""

    def __init__(self, directory: str, keep: int):
        self.directory = os.path.abspath(directory)
        self._manager = ocp.CheckpointManager(
            self.directory, options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=True)
        )

    def latest_step(self) -> int | None:
        """Step of the newest complete checkpoint, or None."""
        return self._manager.latest_step()

    def save(self, host_state: Any, step: int) -> None:
        """Save a host (numpy) copy of the state as ``step``, asynchronously; a later save or ``close`` waits for it."""
        self._manager.save(step, args=ocp.args.StandardSave(host_state))

    def restore(self, like: Any) -> Any:
        """The latest checkpoint, with the structure, shapes and dtypes of ``like`` (host arrays)."""
        step = self.latest_step()
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, like)
        try:
            restored = self._manager.restore(step, args=ocp.args.StandardRestore(abstract))
        except (ValueError, KeyError, TypeError) as err:
            raise ConfigError(
                f"the checkpoint at step {step} in {self.directory} does not fit this model and data "
                f"({type(err).__name__}: {str(err).splitlines()[0][:200]}); use a new --workdir"
            ) from err
        mismatched = [
            jax.tree_util.keystr(path)
            for (path, got), want in zip(jax.tree_util.tree_leaves_with_path(restored), jax.tree.leaves(like))
            if np.shape(got) != np.shape(want)
        ]
        if mismatched:
            raise ConfigError(
                f"the checkpoint at step {step} in {self.directory} has other shapes for {', '.join(mismatched[:3])}; "
                "use a new --workdir"
            )
        log.info("resumed from checkpoint step %d in %s", step, self.directory)
        return jax.device_get(restored)

    def close(self) -> None:
        """Wait for pending saves and release the manager."""
        self._manager.wait_until_finished()
        self._manager.close()
