"""Where state and batches live, and the compiled steps that run on them.

Four modes share the same pure steps (``nnjax.train.steps``):

- ``none``: one device, ``jax.jit``.
- ``jit``: every device in a 1-D ``Mesh`` with axis ``'data'``; batches are sharded along it with
  ``NamedSharding(mesh, P('data'))`` and the state is replicated; XLA inserts the gradient all-reduce.
- ``pmap``: the classic ``jax.pmap`` step with ``lax.pmean`` over axis ``'batch'``; the state is
  replicated with ``flax.jax_utils.replicate`` and batches are reshaped to [devices, B/devices, ...].
- ``fsdp``: a 2-D ``Mesh`` ('data', 'model'); parameters and optimizer state are sharded (FSDP over
  ``data``, tensor-parallel over ``model`` where the model names its axes: ``nnjax.train.sharding``), batches
  are split over ``data``; XLA inserts the all-gathers and reduce-scatters.

Both data-parallel modes span the devices of every process of a multi-process run (``nnjax.distributed``):
every process holds the same host state and data and places them with ``place_*``, which under ``jit`` and
``fsdp`` builds global arrays of which each process materialises only its own devices' shards, and under ``pmap``
hands each process's devices their rows of the global batch.

Each step is compiled ahead of time once per input shape, so compile time is measured, not guessed.
``grad_accum_steps`` and ``precision`` are passed to the pure steps unchanged in every mode; under
pmap each device splits its own [B/devices] share into the micro-batches.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np
from flax import jax_utils
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from nnjax.config import PARALLEL_MODES, PRECISIONS
from nnjax.errors import ConfigError
from nnjax.train import sharding
from nnjax.train.compiled import Compiled
from nnjax.train.state import TrainState
from nnjax.train.steps import (
    Augment,
    Batch,
    EvalStep,
    Metrics,
    Objective,
    TrainStep,
    make_eval_step,
    make_train_chunk,
    make_train_step,
)


class Parallel:
    """Placement plus compiled train/eval steps for one parallelism ``mode``.

    ``augment(key, batch) -> batch``, if given, transforms every training batch inside the step;
    ``grad_accum_steps`` and ``precision`` are the memory options of ``make_train_step``. Under ``fsdp``,
    ``model_parallel`` is the size of the mesh's ``model`` axis and ``param_axes`` the model's logical axis names
    (``nnjax.train.sharding.param_logical_axes``; parameters without names are sharded by shape).

    With ``seeds`` S > 1 (``none`` mode only) the steps are ``jax.vmap``-ed over S independent states: every
    state leaf and every train batch has a leading [S] axis (each seed its own rows), eval batches are shared,
    and metrics come back [S] per step (``train_chunk``: [C, S]; its ``idx`` [C, S, B]).

    ``checkpoint_state(state)`` is what a checkpoint of a placed state saves (its host copy; under ``fsdp`` the
    sharded state itself, each process writing its shards) and ``restore_target(host_state)`` what it is
    restored into (the host state; under ``fsdp`` shape/dtype structs with the shardings ``place_state`` gives).
    """

    def __init__(
        self,
        mode: str,
        objective: Objective,
        batch_size: int,
        eval_batch_size: int,
        augment: Augment | None = None,
        grad_accum_steps: int = 1,
        precision: str = "float32",
        model_parallel: int = 1,
        param_axes: dict[sharding.KeyPath, tuple[str | None, ...]] | None = None,
        seeds: int = 1,
    ):
        if mode not in PARALLEL_MODES:
            raise ConfigError(f"--parallel must be one of {', '.join(PARALLEL_MODES)}, got {mode!r}")
        if precision not in PRECISIONS:
            raise ConfigError(f"--precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
        if model_parallel != 1 and mode != "fsdp":
            raise ConfigError(f"--model-parallel {model_parallel} needs --parallel fsdp (got --parallel {mode})")
        if seeds > 1 and mode != "none":
            raise ConfigError(f"--seeds {seeds} trains the seeds at once on one device (--parallel none), "
                              f"not with --parallel {mode}")
        self.mode = mode
        self.num_devices = 1 if mode == "none" else jax.device_count()
        self._mesh = sharding.make_mesh(model_parallel) if mode == "fsdp" else None
        replicas = self._mesh.shape["data"] if mode == "fsdp" else self.num_devices
        what = f"{replicas} data-parallel replicas" if mode == "fsdp" else f"{replicas} devices"
        for flag, size in (("--batch-size", batch_size), ("--eval-batch-size", eval_batch_size)):
            if size % replicas:
                raise ConfigError(
                    f"{flag} {size} is not divisible by the {what} of --parallel {mode}; use a multiple of {replicas}"
                )
        _check_micro_batches(mode, batch_size, self.num_devices, grad_accum_steps)
        self.compiled = Compiled(ahead_of_time=not (mode == "pmap" and jax.process_count() > 1))
        step = make_train_step(objective, "batch" if mode == "pmap" else None, augment, grad_accum_steps, precision)
        eval_step = make_eval_step(objective, "batch" if mode == "pmap" else None, precision)
        self.seeds = seeds
        if seeds > 1:  # every leaf of the state and of each train batch gets a leading seed axis [S]
            step, eval_step = jax.vmap(step), jax.vmap(eval_step, in_axes=(0, None))
        self.state_shardings: Any = None  # a tree of shardings once a state is placed (fsdp), else None
        self.checkpoint_state = lambda state: self.host_state(state)  # what a checkpoint of a placed state saves
        self.restore_target = lambda host_state: host_state  # what a checkpoint is restored into
        if mode == "none":
            self._init_single(step, eval_step)
        elif mode == "jit":
            self._init_mesh(step, eval_step)
        elif mode == "pmap":
            self._init_pmap(step, eval_step)
        else:
            self._init_fsdp(step, eval_step, param_axes or {})

    @property
    def supports_scan(self) -> bool:
        """Whether whole chunks of steps can run in one ``lax.scan`` over device-resident data."""
        return self.mode != "pmap"

    def _init_single(self, step: TrainStep, eval_step: EvalStep) -> None:
        self._train_step = jax.jit(step, donate_argnums=0)
        self._train_chunk = jax.jit(make_train_chunk(step), donate_argnums=0)
        self._eval_step = jax.jit(eval_step)
        self.place_state = jax.device_put
        self.place_batch = jax.device_put
        self.place_data = jax.device_put
        self.host_state = jax.device_get
        self._host_metrics = lambda m: m

    def _init_mesh(self, step: TrainStep, eval_step: EvalStep) -> None:
        mesh = Mesh(np.array(jax.devices()), ("data",))
        replicated = NamedSharding(mesh, P())
        sharded = NamedSharding(mesh, P("data"))
        self._jit_steps(step, eval_step, replicated, sharded, replicated)
        put = global_put if jax.process_count() > 1 else jax.device_put
        self.place_state = lambda state: put(state, replicated)
        self.place_batch = lambda batch: put(batch, sharded)
        self.place_data = lambda data: put(data, replicated)
        self.host_state = jax.device_get
        self._host_metrics = lambda m: m
        self._batch_sharding = sharded

    def _jit_steps(
        self, step: TrainStep, eval_step: EvalStep, state: Any, batch: NamedSharding, replicated: NamedSharding
    ) -> None:
        """The train step, the scanned chunk and the eval step, jitted for a state laid out as ``state`` (one
        sharding, or a tree of them) and batches as ``batch``; metrics and the chunk's data replicated."""
        constrain = lambda b: jax.lax.with_sharding_constraint(b, batch)  # noqa: E731
        self._train_step = jax.jit(step, in_shardings=(state, batch), out_shardings=(state, replicated), donate_argnums=0)
        self._train_chunk = jax.jit(
            make_train_chunk(step, constrain),
            in_shardings=(state, replicated, replicated, replicated),
            out_shardings=(state, replicated),
            donate_argnums=0,
        )
        self._eval_step = jax.jit(eval_step, in_shardings=(state, batch), out_shardings=replicated)

    def _init_fsdp(self, step: TrainStep, eval_step: EvalStep, param_axes: dict) -> None:
        """Shardings of the state depend on its shapes, so the steps are jitted when the first state is placed."""
        mesh = self._mesh
        replicated, batch_sharded = NamedSharding(mesh, P()), NamedSharding(mesh, P("data"))
        put = global_put if jax.process_count() > 1 else jax.device_put

        def shardings(state: TrainState) -> Any:
            if self.state_shardings is None:
                self.state_shardings = sharding.state_shardings(state, mesh, param_axes)
                self._jit_steps(step, eval_step, self.state_shardings, batch_sharded, replicated)
            return self.state_shardings

        def restore_target(host_state: TrainState) -> Any:
            return jax.tree.map(
                lambda x, s: jax.ShapeDtypeStruct(np.shape(x), jax.dtypes.canonicalize_dtype(np.result_type(x)), sharding=s),
                host_state, shardings(host_state),
            )

        self._train_step = self._train_chunk = self._eval_step = None
        self.place_state = lambda state: put(state, shardings(state))
        self.checkpoint_state = lambda state: state  # each process writes its own shards
        self.restore_target = restore_target
        self.place_batch = lambda batch: put(batch, batch_sharded)
        self.place_data = lambda data: put(data, replicated)
        self.host_state = jax.device_get if jax.process_count() == 1 else _gather
        self._host_metrics = lambda m: m
        self._batch_sharding = batch_sharded

    def state_bytes_per_device(self, state: TrainState) -> int:
        """Bytes of parameters plus optimizer state that one device holds for ``state`` (host or placed) in this
        mode: all of them unless ``fsdp`` shards them."""
        tree = (state.params, state.opt_state)
        if self.state_shardings is None:
            return sum(int(np.prod(np.shape(x))) * np.dtype(x.dtype).itemsize for x in jax.tree.leaves(tree))
        return sharding.bytes_per_device(tree, (self.state_shardings.params, self.state_shardings.opt_state))

    def _init_pmap(self, step: TrainStep, eval_step: EvalStep) -> None:
        self._train_step = jax.pmap(step, axis_name="batch", donate_argnums=0)
        self._train_chunk = None
        self._eval_step = jax.pmap(eval_step, axis_name="batch")
        devices, local = self.num_devices, jax.local_device_count()
        first = jax.process_index() * local  # this process's devices are rows first.. of the [devices, ...] batch
        self.place_state = jax_utils.replicate
        self.place_batch = lambda batch: {
            k: v.reshape(devices, -1, *v.shape[1:])[first : first + local] for k, v in batch.items()
        }
        self.host_state = lambda state: jax.device_get(jax_utils.unreplicate(state))
        self._host_metrics = lambda m: jax.tree.map(lambda x: x[0], m)

    def local_rows(self, batch_size: int) -> slice:
        """The rows of a global batch of ``batch_size`` that this process's devices hold (all of them in one
        process): a process that reads only these rows from disk feeds ``place_local_batch`` with them."""
        if self.mode == "none" or jax.process_count() == 1:
            return slice(0, batch_size)
        if self.mode == "pmap":  # this process's devices are rows first.. of the [devices, ...] batch, as place_batch
            local = jax.local_device_count()
            per_device = batch_size // self.num_devices
            return slice(jax.process_index() * local * per_device, (jax.process_index() + 1) * local * per_device)
        starts_stops = {
            (index[0].start or 0, batch_size if index[0].stop is None else index[0].stop)
            for index in self._batch_sharding.addressable_devices_indices_map((batch_size,)).values()
        }
        start, stop = min(a for a, _ in starts_stops), max(b for _, b in starts_stops)
        if sum(b - a for a, b in starts_stops) != stop - start:
            raise ValueError(f"the rows of process {jax.process_index()} in a batch of {batch_size} are not contiguous")
        return slice(start, stop)

    def place_local_batch(self, batch: Batch, batch_size: int) -> Batch:
        """``place_batch`` for a process that holds only its ``local_rows(batch_size)`` of a global batch."""
        if self.mode == "none" or jax.process_count() == 1:
            return self.place_batch(batch)
        if self.mode == "pmap":
            return {k: v.reshape(jax.local_device_count(), -1, *v.shape[1:]) for k, v in batch.items()}
        return {
            k: jax.make_array_from_process_local_data(self._batch_sharding, np.asarray(v), (batch_size, *v.shape[1:]))
            for k, v in batch.items()
        }

    @property
    def compile_seconds(self) -> float:
        """Seconds spent compiling this mode's steps so far."""
        return self.compiled.seconds

    def train_step(self, state: TrainState, batch: Batch) -> tuple[TrainState, Metrics]:
        """One update on a placed batch; metrics are batch means (on device)."""
        state, metrics = self.compiled("train_step", self._train_step, state, batch)
        return state, self._host_metrics(metrics)

    def train_chunk(
        self, state: TrainState, data: Batch, idx_CxB: np.ndarray, num_steps: int | None = None
    ) -> tuple[TrainState, Metrics]:
        """Updates on rows ``idx_CxB[:num_steps]`` (default: all C) in one scan over placed ``data``; metrics
        [C], zero after ``num_steps`` (with seeds: ``idx`` [C, S, B], metrics [C, S])."""
        num_steps = np.int32(len(idx_CxB) if num_steps is None else num_steps)
        return self.compiled("train_chunk", self._train_chunk, state, data, idx_CxB, num_steps)

    def eval_step(self, state: TrainState, batch: Batch) -> Metrics:
        """Mask-weighted metric sums of one placed batch."""
        return self._host_metrics(self.compiled("eval_step", self._eval_step, state, batch))

    def lower(self, name: str, *args: Any) -> jax.stages.Lowered:
        """The lowered ``train_step``, ``train_chunk`` or ``eval_step`` for placed ``args``, to inspect
        what XLA runs (``.compile().as_text()``, ``.cost_analysis()``) without running it."""
        fn = {"train_step": self._train_step, "train_chunk": self._train_chunk, "eval_step": self._eval_step}[name]
        if fn is None:
            raise ValueError(f"--parallel {self.mode} has no {name}")
        return fn.lower(*args)


def _gather(state: Any) -> Any:
    """Host (numpy) copy of a state sharded across processes: every process receives every array whole."""
    return multihost_utils.process_allgather(state, tiled=True)


def global_put(tree: Any, sharding: NamedSharding | Any) -> Any:
    """Host arrays, the same in every process, as global ``jax.Array``s of ``sharding`` (one for every leaf, or a
    tree of them): each process materialises only the shards of its own devices (``jax.device_put`` would compare
    the values across processes first)."""
    def put(x: Any, leaf_sharding: NamedSharding) -> jax.Array:
        if isinstance(x, jax.Array) and x.sharding == leaf_sharding:  # placed already (a restored checkpoint)
            return x
        x = np.asarray(x)
        return jax.make_array_from_callback(x.shape, leaf_sharding, lambda index: x[index])

    if isinstance(sharding, jax.sharding.Sharding):
        return jax.tree.map(lambda x: put(x, sharding), tree)
    return jax.tree.map(put, tree, sharding)


def _check_micro_batches(mode: str, batch_size: int, num_devices: int, grad_accum_steps: int) -> None:
    """``ConfigError`` unless the batch each step splits (per device under pmap) has K equal micro-batches."""
    if grad_accum_steps < 1:
        raise ConfigError(f"--grad-accum-steps must be >= 1, got {grad_accum_steps}")
    if mode == "pmap" and (batch_size // num_devices) % grad_accum_steps:
        raise ConfigError(
            f"the per-device batch {batch_size // num_devices} (--batch-size {batch_size} over {num_devices} devices "
            f"of --parallel pmap) is not divisible by --grad-accum-steps {grad_accum_steps}; "
            f"use a --batch-size that is a multiple of {num_devices * grad_accum_steps}"
        )
    if batch_size % grad_accum_steps:
        raise ConfigError(
            f"--batch-size {batch_size} is not divisible by --grad-accum-steps {grad_accum_steps}; "
            f"use a multiple of {grad_accum_steps}"
        )
