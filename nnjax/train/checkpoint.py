"""Orbax checkpoints of the host copy of a training state: save every N, keep N, resume the newest intact one.

Each checkpoint ``directory/<step>`` holds two items: ``state`` (the pytree, orbax's standard format)
and ``digest`` (the SHA-256 of the state's leaves, their dtypes and shapes). A checkpoint that cannot
be read, or reads back other bytes than were saved (a truncated file, flipped bits), is *damaged*:
``restore`` moves it to ``<directory>_damaged/`` with one warning and falls back to the next older
one. A readable checkpoint whose arrays have other shapes or dtypes than the model's is a different
model's: ``restore`` refuses it with ``ConfigError`` instead.
"""

from __future__ import annotations

import collections
import contextlib
import hashlib
import logging
import os
import shutil
import sys
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp

from nnjax.distributed import barrier, is_main_process
from nnjax.errors import ConfigError

log = logging.getLogger(__name__)


def state_digest(host_state: Any) -> str:
    """SHA-256 (hex) of every leaf of ``host_state`` in tree order: its shape and values, in a canonical dtype
    (int64, float64 or complex128), so a Python ``0`` restored for a saved ``int32`` 0 has the same digest."""
    digest = hashlib.sha256()
    for leaf in jax.tree.leaves(host_state):
        array = np.asarray(leaf)
        with np.errstate(all="ignore"):  # damaged bytes may hold values that do not cast cleanly
            canonical = np.ascontiguousarray(array, _CANONICAL.get(array.dtype.kind, np.float64))
        digest.update(f"{canonical.dtype.str}{array.shape}".encode())
        digest.update(memoryview(canonical).cast("B"))
    return digest.hexdigest()


_CANONICAL = {"b": np.int64, "i": np.int64, "u": np.int64, "c": np.complex128}


class Checkpointer:
    """Saves training states (any pytree of host arrays) under ``directory/<step>`` and restores the newest intact one."""

    def __init__(self, directory: str, keep: int):
        self.directory = os.path.abspath(directory)
        self.damaged_directory = self.directory + "_damaged"
        with _quiet_failed_reads():  # a damaged step's metadata file is reported by restore, not logged here
            self._manager = ocp.CheckpointManager(
                self.directory,
                options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=True),
                item_handlers={"state": ocp.StandardCheckpointHandler(), "digest": ocp.JsonCheckpointHandler()},
            )

    def latest_step(self) -> int | None:
        """Step of the newest complete checkpoint, or None."""
        return self._manager.latest_step()

    def save(self, host_state: Any, step: int) -> None:
        """Save a host (numpy) copy of the state and its digest as ``step``, asynchronously; a later save or
        ``close`` waits for it."""
        self._manager.save(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardSave(host_state), digest=ocp.args.JsonSave({"sha256": state_digest(host_state)})
            ),
        )

    def restore(self, like: Any) -> tuple[int, Any] | None:
        """``(step, host state)`` of the newest intact checkpoint, with the structure, shapes and dtypes of ``like``;
        None when there is none. Damaged checkpoints on the way are moved aside with a warning each."""
        for step in sorted(self._manager.all_steps(), reverse=True):
            try:
                state = self._read(step, like)
            except _Damaged as damage:
                self._set_aside(step, str(damage))
                continue
            log.info("resumed from checkpoint step %d in %s", step, self.directory)
            return step, state
        return None

    def _read(self, step: int, like: Any) -> Any:
        """The checkpoint at ``step``, verified against its digest; ``_Damaged`` or ``ConfigError`` otherwise."""
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, like)
        args = ocp.args.Composite(state=ocp.args.StandardRestore(abstract), digest=ocp.args.JsonRestore())
        try:
            with _quiet_failed_reads():
                restored = self._manager.restore(step, args=args)
        except Exception as err:  # orbax and tensorstore raise many types for unreadable bytes
            self._refuse_other_model(step, like)
            raise _Damaged(f"{type(err).__name__}: {_first_line(err)}") from err
        state = jax.device_get(restored["state"])
        _refuse_difference(step, self.directory, _array_kinds(state), _array_kinds(like))
        recorded = (restored["digest"] or {}).get("sha256")
        if state_digest(state) != recorded:
            raise _Damaged("its arrays do not match the digest saved with them")
        return state

    def _refuse_other_model(self, step: int, like: Any) -> None:
        """``ConfigError`` if the checkpoint's metadata is readable and lists other arrays than ``like`` has."""
        try:
            with _quiet_failed_reads():
                metadata = self._manager.item_metadata(step)["state"]
            tree = getattr(metadata, "tree", metadata)
            saved = _array_kinds(jax.tree.leaves(tree, is_leaf=lambda x: hasattr(x, "shape") and hasattr(x, "dtype")))
        except Exception:  # unreadable metadata: the checkpoint is damaged, not another model's
            return
        _refuse_difference(step, self.directory, saved, _array_kinds(like))

    def _set_aside(self, step: int, why: str) -> None:
        """Move the damaged checkpoint ``step`` into ``damaged_directory`` (kept for inspection) and warn."""
        os.makedirs(self.damaged_directory, exist_ok=True)
        target = os.path.join(self.damaged_directory, str(step))
        suffix = 1
        while os.path.exists(target):
            target, suffix = os.path.join(self.damaged_directory, f"{step}.{suffix}"), suffix + 1
        if is_main_process():  # every process found the damage; one moves it
            shutil.move(os.path.join(self.directory, str(step)), target)
        barrier(f"nnjax-checkpoint-{step}-set-aside")
        self._manager.reload()
        log.warning("checkpoint step %d is damaged (%s); moved it to %s; trying the next older checkpoint, if any", step, why, target)

    def close(self) -> None:
        """Wait for pending saves and release the manager."""
        self._manager.wait_until_finished()
        self._manager.close()


def _array_kinds(tree: Any) -> collections.Counter:
    """How many arrays of each (kind, shape) the leaves of ``tree`` hold; the kind is 'int' (bool, signed or
    unsigned, any width), 'complex' or 'float' (any width, bfloat16 included), as a checkpoint may widen scalars."""
    leaves = [x if hasattr(x, "dtype") and hasattr(x, "shape") else np.asarray(x) for x in jax.tree.leaves(tree)]
    kinds = {"b": "int", "i": "int", "u": "int", "c": "complex"}
    return collections.Counter((kinds.get(np.dtype(x.dtype).kind, "float"), tuple(x.shape)) for x in leaves)


def _refuse_difference(step: int, directory: str, saved: collections.Counter, wanted: collections.Counter) -> None:
    """``ConfigError`` naming the first array kind in which a checkpoint and this model's state differ."""
    if saved == wanted:
        return
    extra, missing = sorted((saved - wanted).elements()), sorted((wanted - saved).elements())
    raise ConfigError(
        f"the checkpoint at step {step} in {directory} was written by a different model (first difference: "
        f"this model {_kind(missing)}, the checkpoint {_kind(extra)}); use --restart or a new --workdir"
    )


def _kind(kinds: list[tuple[str, tuple[int, ...]]]) -> str:
    """The first (kind, shape) as ``float[10, 100]``; 'nothing' for none."""
    return f"{kinds[0][0]}{list(kinds[0][1])}" if kinds else "nothing"


class _Damaged(Exception):
    """A checkpoint that cannot be read back as it was saved."""


def _first_line(err: BaseException) -> str:
    return (str(err).splitlines() or [""])[0][:160]


@contextlib.contextmanager
def _quiet_failed_reads():
    """Silence orbax's error logs for a read that may fail, and the 'Event loop is closed' noise its
    tensorstore callbacks print later (as unraisable exceptions) after a failed read."""
    absl = logging.getLogger("absl")
    level = absl.level
    absl.setLevel(logging.CRITICAL)
    if not isinstance(sys.unraisablehook, _DropClosedLoopNoise):
        sys.unraisablehook = _DropClosedLoopNoise(sys.unraisablehook)
    try:
        yield
    finally:
        absl.setLevel(level)


class _DropClosedLoopNoise:
    """An unraisable-exception hook that drops tensorstore's 'Event loop is closed' and passes on the rest."""

    def __init__(self, previous):
        self.previous = previous

    def __call__(self, unraisable) -> None:
        if not (isinstance(unraisable.exc_value, RuntimeError) and "Event loop is closed" in str(unraisable.exc_value)):
            self.previous(unraisable)
