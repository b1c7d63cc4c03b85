"""Supervised minibatch training, ``fit``: the ``Supervised`` task on the runner (``nnjax.train.runner``)."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import numpy as np
import optax

from nnjax.config import TrainConfig
from nnjax.data import (
    Dataset,
    epoch_batch_indices,
    num_examples,
    num_validation,
    padded_batches,
    predict_batched,
    prefetch,
    split_validation,
    take,
)
from nnjax.data.pipeline import Rows
from nnjax.data.records import RecordSplit
from nnjax.errors import ConfigError
from nnjax.optim import make_optimizer
from nnjax.train.parallel import Parallel
from nnjax.train.runner import RunResult, Schedule, Task, init_per_seed, rounded, run, seed_statistics, seed_values
from nnjax.train.sharding import param_logical_axes
from nnjax.train.state import TrainState, create_train_state
from nnjax.train.steps import Augment, Objective

log = logging.getLogger(__name__)

MAX_SCAN_BYTES = 2 << 30  # training splits up to this size are kept on device for the scan fast path


def schedule_of(config: TrainConfig, total_steps: int, steps_per_epoch: int) -> Schedule:
    """The runner's ``Schedule`` for a supervised ``config``: a chunk every ``log_every_steps`` steps of an
    epoch, checkpoints every ``checkpoint_every_steps`` steps and every ``checkpoint_every_epochs`` epochs."""
    return Schedule(
        total_steps=total_steps, log_every=config.log_every_steps, checkpoint_every=config.checkpoint_every_steps,
        steps_per_epoch=steps_per_epoch, checkpoint_every_epochs=config.checkpoint_every_epochs,
        keep_checkpoints=config.keep_checkpoints,
    )


def planned_steps(config: TrainConfig, n_examples: int) -> int:
    """The optimizer steps ``fit`` takes on a training split of ``n_examples`` (before it holds out
    ``--validation-fraction``): ``--steps`` if set, else ``--epochs`` times the whole batches per epoch.
    Size learning-rate schedules with it."""
    n_train = n_examples - num_validation(n_examples, config.validation_fraction)
    return config.steps or config.epochs * (n_train // config.batch_size)


def evaluate(
    parallel: Parallel, state: TrainState, split: dict[str, np.ndarray], batch_size: int, prefetch_size: int = 2
) -> dict[str, float]:
    """Exact means of every objective metric over ``split`` (padded batches [batch_size, ...], masked); with
    ``parallel.seeds`` S > 1, each mean is an array [S], one per seed.

    Up to ``prefetch_size`` batches are placed on the device ahead of the step (0: no thread).
    """
    totals = None
    for batch in prefetch(padded_batches(split, batch_size), prefetch_size, parallel.place_batch):
        sums = parallel.eval_step(state, batch)
        totals = sums if totals is None else jax.tree.map(lambda a, b: a + b, totals, sums)
    totals = jax.device_get(totals)
    count = totals.pop("count")
    if parallel.seeds == 1:
        return {k: float(v / count) for k, v in totals.items()}
    return {k: np.asarray(v / count, np.float64) for k, v in totals.items()}


class Supervised(Task):
    """Minibatch training on a ``Dataset``'s training split (validation held out), as ``fit`` runs it.

    Steps draw batches from the documented shuffle (``epoch_batch_indices(n, batch, seed, epoch)``);
    a chunk runs in one ``lax.scan`` over the device-resident split when it fits (``MAX_SCAN_BYTES``)
    and the parallel mode allows, else as one compiled step per prefetched batch.

    A training split on disk (``RecordSplit``, ``--data records:DIR``) is never placed whole: every process
    reads only its ``Parallel.local_rows`` of each global batch, in the prefetch thread, and places them
    with ``Parallel.place_local_batch``. The input stream has no state of its own: the batch of global step
    s is a function of (data, seed, batch size, s) alone (``batch_indices``), so a run resumed from the
    checkpoint of step s reads exactly the batches an uninterrupted run reads next; ``fit`` records the
    records' fingerprint in the run's identity, so a resume over other records is refused.
    """

    def __init__(
        self, config: TrainConfig, model: nn.Module, train: Rows, val: Rows | None, test: Rows, parallel: Parallel,
        tx: optax.GradientTransformation,
    ):
        super().__init__()
        self.compiled = parallel.compiled
        self.config, self.model, self.tx, self.parallel = config, model, tx, parallel
        self.train, self.val, self.test = train, val, test
        self.n_train = num_examples(train)
        self.steps_per_epoch = self.n_train // config.batch_size
        self.seeds = parallel.seeds
        self.examples_per_step = config.batch_size * self.seeds
        self.streaming = isinstance(train, RecordSplit)
        self.use_scan = (
            not self.streaming and config.scan_epoch and parallel.supports_scan
            and sum(a.nbytes for a in train.values()) <= MAX_SCAN_BYTES
        )
        self._device_train = None
        self._epoch_indices: tuple[int, np.ndarray] | None = None

    def init_state(self) -> TrainState:
        sample_x = take(self.train, np.arange(self.config.batch_size))["x"]
        return init_per_seed(lambda key: create_train_state(self.model, self.tx, sample_x, key), self.config.seed,
                             self.seeds)

    @property
    def seed_values(self) -> list[int]:
        """The seeds trained at once: ``--seed``, ``--seed + 1``, ...; each initialises, drops out and shuffles
        exactly as a one-seed run with that ``--seed`` would (the validation split stays that of ``--seed``)."""
        return seed_values(self.config.seed, self.seeds)

    def place(self, host_state: TrainState) -> TrainState:
        return self.parallel.place_state(host_state)

    def fetch(self, state: TrainState) -> TrainState:
        return self.parallel.host_state(state)

    def checkpoint_state(self, state: TrainState) -> TrainState:
        return self.parallel.checkpoint_state(state)

    def restore_target(self, host_state: TrainState) -> Any:
        return self.parallel.restore_target(host_state)

    def batch_indices(self, start: int, stop: int) -> np.ndarray:
        """Rows [C, B] (with seeds: [C, S, B]) of the training split for global steps ``start+1 .. stop`` (within
        one epoch).

        The stream's position after ``start`` steps is (epoch, step in epoch) = ``divmod(start, steps_per_epoch)``.
        """
        epoch, in_epoch = divmod(start, self.steps_per_epoch)
        if self._epoch_indices is None or self._epoch_indices[0] != epoch:
            per_seed = [epoch_batch_indices(self.n_train, self.config.batch_size, seed, epoch)
                        for seed in self.seed_values]
            self._epoch_indices = (epoch, per_seed[0] if self.seeds == 1 else np.stack(per_seed, axis=1))
        return self._epoch_indices[1][in_epoch : in_epoch + stop - start]

    def train_chunk(self, state: TrainState, start: int, stop: int) -> tuple[TrainState, dict[str, np.ndarray]]:
        idx_CxB = self.batch_indices(start, stop)
        if self.use_scan:
            if self._device_train is None:
                self._device_train = self.parallel.place_data(self.train)
            # Every chunk is padded to the longest one a schedule makes (a log interval, at most an epoch),
            # so one executable serves chunks of every length.
            steps = len(idx_CxB)
            longest = max(steps, min(self.config.log_every_steps, self.steps_per_epoch))
            padded_LxB = np.zeros((longest, *idx_CxB.shape[1:]), idx_CxB.dtype)  # [L, B] or [L, S, B]
            padded_LxB[:steps] = idx_CxB
            state, metrics = self.parallel.train_chunk(state, self._device_train, padded_LxB, steps)
            return state, {k: v[:steps] for k, v in jax.device_get(metrics).items()}
        metrics = []
        if self.streaming:  # this process's rows only, read from disk in the prefetch thread
            rows = self.parallel.local_rows(self.config.batch_size)
            batches = (self._take(idx_B[..., rows]) for idx_B in idx_CxB)
            place = functools.partial(self.parallel.place_local_batch, batch_size=self.config.batch_size)
        else:
            batches = (self._take(idx_B) for idx_B in idx_CxB)
            place = self.parallel.place_batch
        for batch in prefetch(batches, self.config.prefetch, place):
            state, step_metrics = self.parallel.train_step(state, batch)
            metrics.append(step_metrics)
        return state, jax.tree.map(lambda *m: np.stack(m), *jax.device_get(metrics))

    def _take(self, idx: np.ndarray) -> dict[str, np.ndarray]:
        """The training rows ``idx`` ([B], or [S, B] with seeds) as arrays [B, ...] / [S, B, ...]."""
        batch = take(self.train, idx.reshape(-1))
        return {k: v.reshape(*idx.shape, *v.shape[1:]) for k, v in batch.items()}

    def epoch_metrics(self, state: TrainState) -> dict[str, Any]:
        if self.val is None:
            return {}
        return seed_statistics("val_", evaluate(self.parallel, state, self.val, self.config.eval_batch_size,
                                                self.config.prefetch))

    def final_metrics(self, state: TrainState) -> dict[str, Any]:
        return seed_statistics("test_", evaluate(self.parallel, state, self.test, self.config.eval_batch_size,
                                                 self.config.prefetch))

    def finish(self, state: TrainState, rows: list[dict[str, Any]], workdir: str) -> dict[str, Any]:
        last_epoch = next((row for row in reversed(rows) if row["kind"] == "epoch"), {})
        return {
            **{k: rounded(v) for k, v in last_epoch.items() if k.startswith("val_")},
            "train_examples": self.n_train,
            "epochs": _epochs(int(np.max(state.step)), self.steps_per_epoch),
            **({"seeds": self.seed_values} if self.seeds > 1 else {}),
            "parallel": self.config.parallel,
            "param_bytes_per_device": self.parallel.state_bytes_per_device(state),
            "grad_accum_steps": self.config.grad_accum_steps,
            "precision": self.config.precision,
        }


def fit(
    config: TrainConfig,
    model: nn.Module,
    data: Dataset,
    objective: Objective,
    experiment: str,
    tx: optax.GradientTransformation | None = None,
    augment: Augment | None = None,
    multi_seed: bool = False,
) -> RunResult:
    """Train ``model`` on ``data`` to minimise ``objective`` as ``config`` says; resume if possible.

    The ``Supervised`` task on the runner (``nnjax.train.runner.run``): writes ``config.json``,
    ``metrics.jsonl``, TensorBoard events, checkpoints and ``learning_curves.png`` into the run
    directory, and evaluates on the test split at the end.
    ``tx`` overrides the optimizer named by ``config.optimizer``; ``augment(key, batch) -> batch``
    (e.g. ``nnjax.scratch.regularization.augmentation('mixup', K)``) transforms every training batch
    inside the jitted step, never validation or test batches.

    The run trains ``config.steps`` steps if > 0 (its last epoch partial), else ``config.epochs``
    whole epochs; ``config.grad_accum_steps`` and ``config.precision`` configure the train/eval
    steps (``nnjax.train.steps``), and ``config.prefetch`` batches are placed ahead on the loop path.

    ``config.seeds`` S > 1 trains S seeds at once (``Supervised.seed_values``): every metric is reported as the
    mean over seeds with ``<metric>_std`` and ``<metric>_per_seed``, and ``RunResult.state`` is stacked, each
    leaf [S, ...]. A caller that reads the state passes ``multi_seed=True`` once it handles that; otherwise
    ``--seeds`` > 1 is refused, so a trained state is never mistaken for one seed's.
    """
    if config.seeds > 1 and not multi_seed:
        raise ConfigError(f"--seeds {config.seeds}: {experiment} reads one trained state after training and does not "
                          "train several seeds at once yet; run one --seed per process")
    if config.validation_fraction > 0:
        train, val = split_validation(data.train, config.validation_fraction, config.seed)
    else:
        train, val = data.train, None
    n_train = num_examples(train)
    if n_train // config.batch_size == 0:
        raise ConfigError(f"--batch-size {config.batch_size} is larger than the {n_train} training examples")
    parallel = Parallel(
        config.parallel, objective, config.batch_size, config.eval_batch_size, augment,
        config.grad_accum_steps, config.precision, config.model_parallel,
        param_logical_axes(model, take(train, np.arange(1))["x"]) if config.parallel == "fsdp" else None,
        config.seeds,
    )
    task = Supervised(
        config, model, train, val, data.test, parallel, tx or make_optimizer(config.optimizer, config.learning_rate)
    )
    schedule = schedule_of(config, planned_steps(config, num_examples(data.train)), task.steps_per_epoch)
    log.info(
        "training %d steps (%d per epoch, batch %d) on %d examples, %s, parallel=%s%s",
        schedule.total_steps, task.steps_per_epoch, config.batch_size, n_train,
        "epoch chunks in lax.scan on device" if task.use_scan else "one jitted step per batch", config.parallel,
        f", seeds {task.seed_values[0]}..{task.seed_values[-1]} at once (vmap)" if task.seeds > 1 else "",
    )
    identity = {"data_fingerprint": data.fingerprint} if data.fingerprint else {}  # a resume reads the same records
    result = run(task, schedule, config, experiment, title=f"{experiment} on {data.name}", data_source=data.source,
                 **identity)
    result.summary = {"data": data.name, **result.summary}
    return result


def _epochs(steps: int, steps_per_epoch: int) -> int | float:
    """Epochs that ``steps`` steps cover: an int when whole, else rounded to 3 decimals (e.g. 2.5)."""
    whole, rest = divmod(steps, steps_per_epoch)
    return whole if rest == 0 else round(steps / steps_per_epoch, 3)


def predict_probabilities(apply_fn: Callable, params: Any, x_NxT: np.ndarray, batch_size: int = 1000) -> np.ndarray:
    """Positive-class probabilities float32 [N] of a one-logit model in eval mode, ``batch_size`` rows at a time.

    ``apply_fn(variables, x, train=False)`` is e.g. ``RunResult.state.apply_fn``; batches are padded to
    ``batch_size`` rows (``nnjax.data.predict_batched``) so the model compiles once.
    """
    predict = jax.jit(lambda x: jax.nn.sigmoid(apply_fn({"params": params}, x, train=False)[:, 0]))
    return predict_batched(lambda batch, _: predict(batch["x"]), {"x": np.asarray(x_NxT)}, batch_size)
