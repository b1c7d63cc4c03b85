"""``fit``: the one supervised training loop (progress bar, evaluation, checkpoints, NaN guard)."""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from collections.abc import Callable, Iterator
from typing import Any

import flax.linen as nn
import jax
import numpy as np
import optax
from tqdm.auto import tqdm

from nnjax import plots
from nnjax.config import TrainConfig, prepare_workdir
from nnjax.data import (
    Dataset,
    epoch_batch_indices,
    num_examples,
    num_validation,
    padded_batches,
    prefetch,
    split_validation,
    take,
)
from nnjax.errors import ConfigError, TrainingDivergedError
from nnjax.optim import make_optimizer
from nnjax.train.checkpoint import Checkpointer
from nnjax.train.parallel import Parallel
from nnjax.train.state import TrainState, create_train_state
from nnjax.train.steps import Augment, Objective
from nnjax.train.writer import MetricWriter

log = logging.getLogger(__name__)

MAX_SCAN_BYTES = 2 << 30  # training splits up to this size are kept on device for the scan fast path


@dataclasses.dataclass
class FitResult:
    """What ``fit`` returns: the final host state, all metric rows, and a summary for the JSON line."""

    state: TrainState
    history: list[dict[str, Any]]
    summary: dict[str, Any]


def chunk_bounds(
    epoch: int, steps_per_epoch: int, start: int, config: TrainConfig, stop: int | None = None
) -> Iterator[tuple[int, int]]:
    """Step ranges [a, b) within an epoch, from step ``start`` to step ``stop``, that run as one chunk.

    ``stop`` (default: the epoch end, ``steps_per_epoch``) is where a ``--steps`` run ends inside its
    last epoch. Boundaries fall every ``log_every_steps`` steps of the epoch, at ``stop`` and at
    every step-checkpoint, and depend on nothing else, so a run resumed from a checkpoint replays
    exactly the chunks (and therefore bit-identical arithmetic) of an uninterrupted run.
    """
    stop = steps_per_epoch if stop is None else stop
    ends = [
        p
        for p in range(start + 1, stop + 1)
        if p % config.log_every_steps == 0 or p == stop or _step_checkpoint_due(config, epoch * steps_per_epoch + p)
    ]
    yield from zip([start, *ends[:-1]], ends)


def planned_steps(config: TrainConfig, n_examples: int) -> int:
    """The optimizer steps ``fit`` takes on a training split of ``n_examples`` (before it holds out
    ``--validation-fraction``): ``--steps`` if set, else ``--epochs`` times the whole batches per epoch.
    Size learning-rate schedules with it."""
    n_train = n_examples - num_validation(n_examples, config.validation_fraction)
    return config.steps or config.epochs * (n_train // config.batch_size)


def _all_finite(tree: Any) -> bool:
    return all(np.isfinite(leaf).all() for leaf in jax.tree.leaves(tree) if np.issubdtype(leaf.dtype, np.inexact))


def evaluate(
    parallel: Parallel, state: TrainState, split: dict[str, np.ndarray], batch_size: int, prefetch_size: int = 2
) -> dict[str, float]:
    """Exact means of every objective metric over ``split`` (padded batches [batch_size, ...], masked).

    Up to ``prefetch_size`` batches are placed on the device ahead of the step (0: no thread).
    """
    totals = None
    for batch in prefetch(padded_batches(split, batch_size), prefetch_size, parallel.place_batch):
        sums = parallel.eval_step(state, batch)
        totals = sums if totals is None else jax.tree.map(lambda a, b: a + b, totals, sums)
    totals = jax.device_get(totals)
    count = totals.pop("count")
    return {k: float(v / count) for k, v in totals.items()}


def fit(
    config: TrainConfig,
    model: nn.Module,
    data: Dataset,
    objective: Objective,
    experiment: str,
    tx: optax.GradientTransformation | None = None,
    augment: Augment | None = None,
) -> FitResult:
    """Train ``model`` on ``data`` to minimise ``objective`` as ``config`` says; resume if possible.

    Writes ``config.json``, ``metrics.jsonl``, TensorBoard events, checkpoints and
    ``learning_curves.png`` into the run directory, and evaluates on the test split at the end.
    ``tx`` overrides the optimizer named by ``config.optimizer``; ``augment(key, batch) -> batch``
    (e.g. ``nnjax.scratch.regularization.augmentation('mixup', K)``) transforms every training batch
    inside the jitted step, never validation or test batches.

    The run trains ``config.steps`` steps if > 0 (its last epoch partial), else ``config.epochs``
    whole epochs; ``config.grad_accum_steps`` and ``config.precision`` configure the train/eval
    steps (``nnjax.train.steps``), and ``config.prefetch`` batches are placed ahead on the loop path.
    """
    workdir = prepare_workdir(config, experiment, data_source=data.source)

    if config.validation_fraction > 0:
        train, val = split_validation(data.train, config.validation_fraction, config.seed)
    else:
        train, val = data.train, None
    n_train = num_examples(train)
    steps_per_epoch = n_train // config.batch_size
    if steps_per_epoch == 0:
        raise ConfigError(f"--batch-size {config.batch_size} is larger than the {n_train} training examples")
    total_steps = planned_steps(config, num_examples(data.train))
    parallel = Parallel(
        config.parallel, objective, config.batch_size, config.eval_batch_size, augment,
        config.grad_accum_steps, config.precision,
    )

    tx = tx or make_optimizer(config.optimizer, config.learning_rate)
    state = create_train_state(model, tx, train["x"][: config.batch_size], jax.random.PRNGKey(config.seed))
    state = jax.device_get(state)
    checkpoints = Checkpointer(os.path.join(workdir, "checkpoints"), config.keep_checkpoints)
    resumed = checkpoints.latest_step() is not None
    if resumed:
        state = checkpoints.restore(state)
    writer = MetricWriter(workdir, resume_step=int(state.step) if resumed else None)
    try:
        state, throughput = _train(config, parallel, state, train, val, steps_per_epoch, total_steps, checkpoints, writer)
        test = evaluate(parallel, parallel.place_state(state), data.test, config.eval_batch_size, config.prefetch)
        writer.write({"kind": "test", "step": int(state.step), **{f"test_{k}": v for k, v in test.items()}})
        plots.learning_curves(writer.rows, os.path.join(workdir, "learning_curves.png"), title=f"{experiment} on {data.name}")
    finally:
        checkpoints.close()
        writer.close()

    last_epoch = next((row for row in reversed(writer.rows) if row["kind"] == "epoch"), {})
    summary = {
        **{f"test_{k}": round(v, 4) for k, v in test.items()},
        **{k: round(v, 4) for k, v in last_epoch.items() if k.startswith("val_")},
        "data": data.name,
        "train_examples": n_train,
        "epochs": _epochs(int(state.step), steps_per_epoch),
        "steps": int(state.step),
        "parallel": config.parallel,
        "grad_accum_steps": config.grad_accum_steps,
        "precision": config.precision,
        "compile_s": round(parallel.compile_seconds, 2),
        **throughput,
        "workdir": workdir,
    }
    return FitResult(state=state, history=writer.rows, summary=summary)


def _train(
    config: TrainConfig,
    parallel: Parallel,
    state: TrainState,
    train: dict[str, np.ndarray],
    val: dict[str, np.ndarray] | None,
    steps_per_epoch: int,
    total_steps: int,
    checkpoints: Checkpointer,
    writer: MetricWriter,
) -> tuple[TrainState, dict[str, float]]:
    """The epoch/chunk loop; returns the final host state and throughput figures."""
    step = int(state.step)
    n_train = num_examples(train)
    use_scan = (
        config.scan_epoch and parallel.supports_scan and sum(a.nbytes for a in train.values()) <= MAX_SCAN_BYTES
    )
    device_data = parallel.place_data(train) if use_scan else None
    log.info(
        "training %d steps (%d per epoch, batch %d) on %d examples, %s, parallel=%s",
        total_steps, steps_per_epoch, config.batch_size, n_train,
        "epoch chunks in lax.scan on device" if use_scan else "one jitted step per batch", config.parallel,
    )
    device_state = parallel.place_state(state)
    run_seconds, run_examples = 0.0, 0
    bar = tqdm(total=total_steps, initial=step, unit="step", dynamic_ncols=True, mininterval=0.5)
    num_epochs = -(-total_steps // steps_per_epoch)  # the last one partial when --steps ends mid-epoch
    first_epoch = step // steps_per_epoch if step < total_steps else num_epochs  # a finished run trains nothing
    for epoch in range(first_epoch, num_epochs):
        idx_SxB = epoch_batch_indices(n_train, config.batch_size, config.seed, epoch)
        epoch_stop = min(steps_per_epoch, total_steps - epoch * steps_per_epoch)
        for start, stop in chunk_bounds(epoch, steps_per_epoch, step - epoch * steps_per_epoch, config, epoch_stop):
            compile_before = parallel.compile_seconds
            tick = time.perf_counter()
            if use_scan:
                device_state, metrics = parallel.train_chunk(device_state, device_data, idx_SxB[start:stop])
            else:
                device_state, metrics = _train_steps(parallel, device_state, train, idx_SxB[start:stop], config.prefetch)
            metrics = jax.device_get(metrics)
            run_seconds += time.perf_counter() - tick - (parallel.compile_seconds - compile_before)
            run_examples += (stop - start) * config.batch_size
            _check_finite(metrics["loss"], epoch * steps_per_epoch + start, checkpoints)
            step = epoch * steps_per_epoch + stop
            means = {f"train_{k}": float(np.mean(v)) for k, v in metrics.items()}
            writer.write({"kind": "train", "step": step, "epoch": epoch + 1, "steps": stop - start, **means})
            bar.update(stop - start)
            bar.set_postfix(
                epoch=epoch + 1, **{k.removeprefix("train_"): f"{v:.4f}" for k, v in means.items()},
                ex_per_s=f"{run_examples / max(run_seconds, 1e-9):.0f}",
            )
            if _step_checkpoint_due(config, step) and stop < epoch_stop:  # epoch ends save below, after their row
                _save(parallel, device_state, checkpoints, step)
        row = {"kind": "epoch", "step": step, "epoch": epoch + 1, **_epoch_train_means(writer.rows, epoch + 1)}
        if val is not None:
            val_means = evaluate(parallel, device_state, val, config.eval_batch_size, config.prefetch)
            row |= {f"val_{k}": v for k, v in val_means.items()}
        writer.write(row)
        log.info("epoch %d: %s", epoch + 1, {k: round(v, 4) for k, v in row.items() if k.startswith(("train_", "val_"))})
        epoch_due = config.checkpoint_every_epochs and (epoch + 1) % config.checkpoint_every_epochs == 0
        if epoch_due or _step_checkpoint_due(config, step) or step == total_steps:
            _save(parallel, device_state, checkpoints, step)
    bar.close()
    throughput = {"train_time_s": round(run_seconds, 2)}
    if run_examples:
        throughput["examples_per_s"] = round(run_examples / run_seconds, 1)
    return parallel.host_state(device_state), throughput


def run_steps(
    step_fn: Callable[[Any], tuple[Any, dict[str, jax.Array]]],
    state: Any,
    start: int,
    total: int,
    log_every: int,
    checkpoint_every: int,
    checkpoints: Checkpointer,
    writer: MetricWriter,
    evaluate: Callable[[Any], dict[str, float]] | None = None,
    unit: str = "step",
) -> tuple[Any, float]:
    """The loop of the special training regimes (GANs, full-batch graphs): ``state, metrics = step_fn(state)``
    from step ``start`` to ``total`` under a tqdm bar; returns (final state, training seconds).

    Every ``log_every`` steps (and at ``total``) it writes a 'train' row of the metrics' means over
    those steps (``train_<name>``) after checking them for NaN/Inf, and, with ``evaluate(state) ->
    {name: value}``, a 'test' row of its result. It saves a host copy of the state into
    ``checkpoints`` every ``checkpoint_every`` steps (0: never) and at ``total``. Chunk boundaries
    depend only on the step, so a resumed run logs the rows of an uninterrupted one.
    """
    step = start
    bar = tqdm(total=total, initial=step, unit=unit, dynamic_ncols=True, mininterval=0.5)
    tick = time.perf_counter()
    while step < total:
        chunk = min(log_every - step % log_every, total - step)
        chunk_metrics = []
        for _ in range(chunk):
            state, metrics = step_fn(state)
            chunk_metrics.append(metrics)
        host = jax.device_get(chunk_metrics)
        means = {f"train_{k}": float(np.mean([m[k] for m in host])) for k in host[0]}
        _check_finite_means(means, step, checkpoints)
        step += chunk
        writer.write({"kind": "train", "step": step, "steps": chunk, **means})
        shown = {k.removeprefix("train_"): v for k, v in means.items()}
        if evaluate is not None:
            test = evaluate(state)
            writer.write({"kind": "test", "step": step, **test})
            shown |= test
        bar.update(chunk)
        bar.set_postfix({k: f"{v:.3f}" for k, v in shown.items()})
        if (checkpoint_every and step % checkpoint_every == 0) or step == total:
            checkpoints.save(jax.device_get(state))
    bar.close()
    return state, time.perf_counter() - tick


def _check_finite_means(means: dict[str, float], step: int, checkpoints: Checkpointer) -> None:
    """``TrainingDivergedError`` naming the first logged mean after step ``step`` that is NaN/Inf."""
    bad = [k for k, v in means.items() if not np.isfinite(v)]
    if bad:
        raise TrainingDivergedError(
            f"{bad[0]} became {means[bad[0]]} in the steps after step {step}; training stopped. "
            f"Last good checkpoint: step {checkpoints.latest_step()} in {checkpoints.directory}. "
            "Try a lower --learning-rate."
        )


def _step_checkpoint_due(config: TrainConfig, step: int) -> bool:
    """Whether ``--checkpoint-every-steps`` asks for a checkpoint at global step ``step``."""
    return bool(config.checkpoint_every_steps) and step % config.checkpoint_every_steps == 0


def _train_steps(
    parallel: Parallel, state: TrainState, train: dict[str, np.ndarray], idx_CxB: np.ndarray, prefetch_size: int
) -> tuple[TrainState, dict[str, np.ndarray]]:
    """The loop path: one compiled step per host batch (rows ``idx_CxB[i]``, placed up to
    ``prefetch_size`` batches ahead by a background thread); returns (state, stacked metrics [C])."""
    metrics = []
    batches = (take(train, idx_B) for idx_B in idx_CxB)
    for batch in prefetch(batches, prefetch_size, parallel.place_batch):
        state, step_metrics = parallel.train_step(state, batch)
        metrics.append(step_metrics)
    return state, jax.tree.map(lambda *m: np.stack(m), *jax.device_get(metrics))


def _epochs(steps: int, steps_per_epoch: int) -> int | float:
    """Epochs that ``steps`` steps cover: an int when whole, else rounded to 3 decimals (e.g. 2.5)."""
    whole, rest = divmod(steps, steps_per_epoch)
    return whole if rest == 0 else round(steps / steps_per_epoch, 3)


def _epoch_train_means(rows: list[dict[str, Any]], epoch: int) -> dict[str, float]:
    """Step-weighted means of the ``train_*`` fields of this epoch's chunk rows."""
    chunks = [row for row in rows if row["kind"] == "train" and row["epoch"] == epoch]
    steps = sum(row["steps"] for row in chunks)
    keys = [k for k in chunks[0] if k.startswith("train_")]
    return {k: sum(row[k] * row["steps"] for row in chunks) / steps for k in keys}


def _check_finite(losses_C: np.ndarray, first_step: int, checkpoints: Checkpointer) -> None:
    """Raise ``TrainingDivergedError`` naming the first step (1-based) whose loss is NaN/Inf."""
    bad = np.flatnonzero(~np.isfinite(losses_C))
    if bad.size:
        step = first_step + int(bad[0]) + 1
        raise TrainingDivergedError(
            f"loss became {losses_C[bad[0]]} at step {step}; training stopped. "
            f"Last good checkpoint: step {checkpoints.latest_step()} in {checkpoints.directory}. "
            "Try a lower --learning-rate."
        )


def _save(parallel: Parallel, device_state: TrainState, checkpoints: Checkpointer, step: int) -> None:
    """Checkpoint a host copy of the state, refusing states with non-finite values."""
    host_state = parallel.host_state(device_state)
    if not _all_finite(host_state.params):
        raise TrainingDivergedError(
            f"parameters became NaN/Inf by step {step}; not checkpointed. "
            f"Last good checkpoint: step {checkpoints.latest_step()} in {checkpoints.directory}."
        )
    checkpoints.save(host_state)

