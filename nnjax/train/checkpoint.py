"""Orbax checkpoints of a training state: save every N, keep N, resume the newest intact one.

A state is saved as it is given: a host (numpy) copy, or global ``jax.Array``s sharded over the devices of
every process (``--parallel fsdp``), of which each process writes its own shards. Each checkpoint
``directory/<step>`` holds two items: ``state`` (the pytree, orbax's standard format) and ``digest`` (a
checksum of every leaf, ``state_checksums``). A restore reads into the shardings of its target, so a
checkpoint written by one topology (2 processes x 4 devices) resumes on another (1 process, a 4 x 2 mesh).

A checkpoint that cannot be read, or reads back other values than were saved (a truncated file, flipped
bits), is *damaged*: ``restore`` moves it to ``<directory>_damaged/`` with one warning and falls back to the
next older one; the processes of a multi-process run agree on that before any of them moves on. A readable
checkpoint whose arrays have other shapes or dtypes than the model's is a different model's: ``restore``
refuses it with ``ConfigError`` instead.
"""

from __future__ import annotations

import collections
import contextlib
import functools
import logging
import os
import shutil
import sys
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
from etils import epath
from jax.experimental import multihost_utils

from nnjax.distributed import barrier, is_main_process
from nnjax.errors import ConfigError

log = logging.getLogger(__name__)


class NonFiniteStateError(ValueError):
    """A state with NaN or Inf values, which is never checkpointed."""


def state_checksums(state: Any) -> tuple[dict[str, str], bool]:
    """(``{leaf path: checksum}``, whether every floating-point value is finite) for a state of host arrays or of
    global ``jax.Array``s, which are checked where they live, shard by shard, in one compiled function. Paths
    read like ``params/Dense_0/kernel``.

    A leaf's checksum is two sums mod 2**32 over its 32-bit words w_i (each value in JAX's canonical dtype, so a
    Python ``0`` saved for an ``int32`` 0 reads back alike; 16-bit floats widened): sum(a_i * w_i) and
    sum(fmix32(w_i ^ b_i)), with a_i, b_i odd weights hashed from the element's position. Either sum changes when
    any one value changes, and a swap of two values changes them too; the result does not depend on how the
    leaf is sharded.
    """
    leaves = jax.tree_util.tree_flatten_with_path(state)[0]
    paths = [_path_name(path) for path, _ in leaves]
    arrays = [leaf for _, leaf in leaves]
    if any(isinstance(x, jax.Array) and not x.is_fully_addressable for x in arrays):
        sums, finite = _device_checksums(arrays)
    else:
        with np.errstate(over="ignore"):  # uint32 arithmetic wraps by design (0-d arrays warn where arrays do not)
            sums, finite = _leaf_checksums([_canonical(np.asarray(x)) for x in arrays], np)
    sums = np.asarray(jax.device_get(sums), np.uint32).reshape(-1, 2)
    return {path: f"{a:08x}{b:08x}" for path, (a, b) in zip(paths, sums)}, bool(finite)


def _path_name(path: tuple[Any, ...]) -> str:
    """A pytree key path as ``params/Dense_0/kernel``: the same for a ``TrainState`` and the nested dicts and lists
    that a checkpoint read without a target gives back."""
    return "/".join(str(getattr(k, "key", getattr(k, "name", getattr(k, "idx", k)))) for k in path)


def _canonical(x: np.ndarray) -> np.ndarray:
    """``x`` in JAX's canonical dtype (int64 -> int32, float64 -> float32 with 64-bit types off)."""
    return x.astype(jax.dtypes.canonicalize_dtype(x.dtype), copy=False)


def _device_checksums(arrays: list[jax.Array]) -> tuple[jax.Array, jax.Array]:
    """``_leaf_checksums`` of global arrays, computed where their shards live; the results replicated."""
    mesh = next(x.sharding.mesh for x in arrays if isinstance(x, jax.Array) and hasattr(x.sharding, "mesh"))
    replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
    return _compiled_checksums(replicated)(arrays)


@functools.lru_cache(maxsize=None)
def _compiled_checksums(replicated: jax.sharding.NamedSharding):
    return jax.jit(functools.partial(_leaf_checksums, xp=jnp), out_shardings=replicated)


def _leaf_checksums(arrays: list[Any], xp: Any) -> tuple[Any, Any]:
    """([leaves, 2] uint32 sums, all finite) of canonical-dtype arrays, with ``xp`` numpy or jax.numpy."""
    sums, finite = [], xp.bool_(True)
    for x in arrays:
        x = xp.asarray(x)
        if jnp.issubdtype(x.dtype, jnp.inexact):
            finite = finite & xp.all(xp.isfinite(x))
        words = _words(x, xp)
        position = _positions(x.shape, xp)
        weight_a = _fmix32(position ^ xp.uint32(0x9E3779B9), xp) | xp.uint32(1)
        weight_b = _fmix32(position ^ xp.uint32(0x7F4A7C15), xp) | xp.uint32(1)
        sums.append(xp.stack([
            xp.sum(weight_a * words, dtype=xp.uint32), xp.sum(_fmix32(words ^ weight_b, xp), dtype=xp.uint32),
        ]))
    return (xp.stack(sums) if sums else xp.zeros((0, 2), xp.uint32)), finite


def _words(x: Any, xp: Any) -> Any:
    """The values of ``x`` as uint32 words of its shape: 32-bit types bit for bit, narrower ones widened."""
    floating = jnp.issubdtype(x.dtype, jnp.floating)  # bfloat16 included, unlike np.issubdtype
    if x.dtype.itemsize < 4:  # bool, 8/16-bit ints and floats: exactly representable in int32 / float32
        x = x.astype(xp.float32 if floating else xp.int32)
    if x.dtype.itemsize != 4 or jnp.issubdtype(x.dtype, jnp.complexfloating):
        raise TypeError(f"checkpoint checksums take 8- to 32-bit real arrays, got {x.dtype}")
    if xp is np:
        return x.view(np.uint32)
    return jax.lax.bitcast_convert_type(x, jnp.uint32)


def _positions(shape: tuple[int, ...], xp: Any) -> Any:
    """Each element's row-major position (mod 2**32) as a uint32 array of ``shape``."""
    if xp is np:
        return np.arange(int(np.prod(shape)), dtype=np.uint32).reshape(shape)
    position, stride = jnp.zeros(shape, jnp.uint32), 1
    for axis in reversed(range(len(shape))):
        position = position + jax.lax.broadcasted_iota(jnp.uint32, shape, axis) * jnp.uint32(stride % 2**32)
        stride *= shape[axis]
    return position


def _fmix32(h: Any, xp: Any) -> Any:
    """MurmurHash3's 32-bit finaliser: a bijection of uint32 that mixes every input bit into every output bit."""
    h = h ^ (h >> 16)
    h = h * xp.uint32(0x85EBCA6B)
    h = h ^ (h >> 13)
    h = h * xp.uint32(0xC2B2AE35)
    return h ^ (h >> 16)


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

    def save(self, state: Any, step: int) -> None:
        """Save ``state`` (host arrays, or global ``jax.Array``s of which each process writes its own shards) and
        its checksums as ``step``, asynchronously (a later save or ``close`` waits for it); every process calls it.
        ``NonFiniteStateError`` (nothing written) if a value is NaN or Inf."""
        checksums, finite = state_checksums(state)
        if not finite:
            raise NonFiniteStateError(f"the state to checkpoint at step {step} holds NaN or Inf values")
        self._manager.save(
            step, args=ocp.args.Composite(state=ocp.args.StandardSave(state), digest=ocp.args.JsonSave(checksums))
        )

    def restore(self, like: Any) -> tuple[int, Any] | None:
        """``(step, state)`` of the newest intact checkpoint, with the structure, shapes and dtypes of ``like``; None
        when there is none. ``like`` holds host arrays (the state is restored as numpy) or ``jax.ShapeDtypeStruct``s
        with shardings (restored as global arrays of those shardings, each process reading only its shards).
        Damaged checkpoints on the way are moved aside with a warning each."""
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
        """The checkpoint at ``step``, verified against its checksums; ``_Damaged`` or ``ConfigError`` otherwise."""
        abstract = jax.tree.map(_abstract, like)
        args = ocp.args.Composite(state=ocp.args.StandardRestore(abstract), digest=ocp.args.JsonRestore())
        failure = None
        try:
            with _quiet_failed_reads():
                restored = self._manager.restore(step, args=args)
        except Exception as err:  # orbax and tensorstore raise many types for unreadable bytes
            failure = f"{type(err).__name__}: {_first_line(err)}"
        failure = _first_failure(failure)  # each process reads its own shards: all must agree before going on
        if failure is not None:
            self._refuse_other_model(step, like)
            raise _Damaged(failure)
        state = restored["state"]
        if not _is_sharded(abstract):
            state = jax.device_get(state)
        _refuse_difference(step, self.directory, _array_kinds(state), _array_kinds(like))
        mismatch = _checksum_mismatch(state, restored["digest"] or {})
        if mismatch:
            raise _Damaged(mismatch)
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


def read_checkpoint(directory: str, step: int | None = None) -> tuple[int, Any]:
    """``(step, state)`` of checkpoint ``step`` (default: the newest) in a run's ``checkpoints`` directory, as
    nested dicts and lists of numpy arrays, whatever processes and devices wrote it; verified against its
    checksums (``ValueError`` naming the first leaf that differs)."""
    directory = os.path.abspath(directory)
    steps = sorted(int(name) for name in os.listdir(directory) if name.isdigit())
    if not steps:
        raise FileNotFoundError(f"{directory} holds no checkpoints")
    step = steps[-1] if step is None else step
    checkpointer = ocp.StandardCheckpointer()
    path = os.path.join(directory, str(step), "state")
    metadata = checkpointer.metadata(path)
    tree = getattr(metadata, "item_metadata", metadata)
    is_array = lambda x: hasattr(x, "shape") and hasattr(x, "dtype")  # noqa: E731
    target = jax.tree.map(lambda x: np.zeros(x.shape, x.dtype), getattr(tree, "tree", tree), is_leaf=is_array)
    with _quiet_failed_reads():
        state = checkpointer.restore(path, target)
        recorded = ocp.JsonCheckpointHandler().restore(epath.Path(directory) / str(step) / "digest")
    mismatch = _checksum_mismatch(state, recorded)
    if mismatch:
        raise ValueError(f"checkpoint {step} in {directory}: {mismatch}")
    return step, state


def _checksum_mismatch(state: Any, recorded: dict[str, str]) -> str | None:
    """Why ``state`` is not what was saved with the checksums ``recorded`` (its first differing array), or None."""
    checksums, _ = state_checksums(state)
    wrong = [path for path, checksum in checksums.items() if recorded.get(path) != checksum]
    if not wrong:
        return None
    return f"{len(wrong)} of its {len(checksums)} arrays ({wrong[0]} first) do not match the checksums saved with them"


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


def _abstract(x: Any) -> jax.ShapeDtypeStruct:
    """The restore target of one leaf: a host array's shape and dtype, or a given ``ShapeDtypeStruct`` as it is."""
    return x if isinstance(x, jax.ShapeDtypeStruct) else ocp.utils.to_shape_dtype_struct(x)


def _is_sharded(abstract: Any) -> bool:
    """Whether a restore target names shardings (the state is then restored as global arrays)."""
    return any(getattr(x, "sharding", None) is not None for x in jax.tree.leaves(abstract))


def _first_failure(failure: str | None) -> str | None:
    """The first process's failure (by index) to read a checkpoint, the same in every process; None if all read it."""
    if jax.process_count() == 1:
        return failure
    failed = multihost_utils.process_allgather(np.int32(failure is not None))
    if not failed.any():
        return None
    first = int(np.argmax(failed))
    return failure if failure is not None and first == jax.process_index() else f"process {first} could not read it"


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
