"""The one training loop of nnjax: every regime is a ``Task`` run by ``run(task, schedule, ...)``.

A regime (supervised ``fit``, the GAN alternation, full-batch graph training, PPO rollouts) says only
how to build its state, how to run the steps ``[start, stop)`` as one chunk, and what to evaluate.
Everything else a run does is written here, once:

- the run directory: locked while the run uses it, its ``config.json``, and a resume refused when the
  directory holds another run (``nnjax.train.rundir``);
- resume: the state restored from the newest intact checkpoint (damaged ones are set aside with a
  warning), the metric rows after it dropped (a warning if earlier rows are lost), and the
  chunks of an uninterrupted run replayed exactly, so a resumed run ends bit-identical to one that was
  never stopped (chunk boundaries depend on the step alone: ``Schedule.chunks``);
- the NaN/Inf guard on every step's metrics and on every state it checkpoints;
- orbax checkpoints at the schedule's steps, ``metrics.jsonl`` and TensorBoard rows, a tqdm bar;
- ``learning_curves.png`` and one result type, ``RunResult``, whose summary is the final JSON line.

Rows: ``{'kind': 'train', 'step', 'steps', **Task.row_fields, 'train_<metric>': mean over the chunk}`` after every chunk
(metrics with a seed axis also get ``train_<metric>_per_seed``), ``'test'`` rows of ``Task.log_metrics``
after every chunk and of ``Task.final_metrics`` at the end, and with epochs an ``'epoch'`` row at every
epoch end (the epoch's step-weighted train means and ``Task.epoch_metrics``).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from collections.abc import Callable, Iterator
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from nnjax import plots
from nnjax.config import SEED_AXIS, ResumableConfig
from nnjax.distributed import is_main_process
from nnjax.errors import TrainingDivergedError, WorkdirError
from nnjax.train.checkpoint import Checkpointer, NonFiniteStateError
from nnjax.train.compiled import Compiled
from nnjax.train.rundir import open_run_directory
from nnjax.train.writer import MetricWriter

log = logging.getLogger(__name__)

Metrics = dict[str, Any]


@dataclasses.dataclass(frozen=True)
class Schedule:
    """When a run logs, checkpoints and ends, as a function of the global step alone.

    A chunk (one ``Task.train_chunk`` call, one 'train' row) ends every ``log_every`` steps (counted
    from the epoch's start when ``steps_per_epoch`` is set), at every epoch end, at every checkpoint
    step and at ``total_steps``. Checkpoints are written every ``checkpoint_every`` steps, at every
    ``checkpoint_every_epochs``-th epoch end and at ``total_steps`` (0 disables either interval);
    the newest ``keep_checkpoints`` are kept.
    """

    total_steps: int
    log_every: int
    checkpoint_every: int = 0
    steps_per_epoch: int = 0
    checkpoint_every_epochs: int = 0
    keep_checkpoints: int = 3
    unit: str = "step"

    def __post_init__(self):
        for name in ("total_steps", "log_every", "keep_checkpoints"):
            if getattr(self, name) < 1:
                raise ValueError(f"Schedule.{name} must be >= 1, got {getattr(self, name)}")

    def epoch_end(self, step: int) -> bool:
        """Whether ``step`` ends an epoch (the last, partial epoch of a ``--steps`` run included)."""
        return bool(self.steps_per_epoch) and (step % self.steps_per_epoch == 0 or step == self.total_steps)

    def epoch(self, step: int) -> int:
        """The 1-based epoch that the step ending at ``step`` belongs to."""
        return -(-step // self.steps_per_epoch)

    def checkpoint_due(self, step: int) -> bool:
        """Whether a checkpoint is written at global step ``step``."""
        every_epochs = self.checkpoint_every_epochs and step % self.steps_per_epoch == 0
        return (
            step == self.total_steps
            or bool(self.checkpoint_every and step % self.checkpoint_every == 0)
            or bool(every_epochs and (step // self.steps_per_epoch) % self.checkpoint_every_epochs == 0)
        )

    def chunks(self, start: int) -> Iterator[tuple[int, int]]:
        """Step ranges ``[a, b)`` from ``start`` to ``total_steps`` that run as one chunk each."""

        def boundary(p: int) -> bool:
            in_epoch = p % self.steps_per_epoch if self.steps_per_epoch else p
            return in_epoch % self.log_every == 0 or self.epoch_end(p) or self.checkpoint_due(p)

        ends = [p for p in range(start + 1, self.total_steps + 1) if boundary(p)]
        yield from zip([start, *ends[:-1]], ends)


class Task:
    """A training regime on the runner. Subclasses implement ``init_state`` and ``train_chunk``.

    The state is any pytree. ``place``/``fetch`` move it to and from the devices (default:
    ``jax.device_put``/``jax.device_get``); a checkpoint holds ``checkpoint_state`` (the host copy by default)
    and is restored into ``restore_target``. ``compiled`` compiles the
    task's jitted functions ahead of time and measures it, so the runner reports compile time apart
    from training time. ``examples_per_step`` (0: none) gives the throughput, reported as
    ``throughput_key``.
    """

    examples_per_step: int = 0
    throughput_key: str = "examples_per_s"
    curves_file: str = "learning_curves.png"

    def __init__(self):
        self.compiled = Compiled()

    def init_state(self) -> Any:
        """The initial host state (the one a fresh run starts from)."""
        raise NotImplementedError

    def place(self, host_state: Any) -> Any:
        return jax.device_put(host_state)

    def fetch(self, state: Any) -> Any:
        return jax.device_get(state)

    def checkpoint_state(self, state: Any) -> Any:
        """What a checkpoint of the placed ``state`` saves: its host copy (``fetch``) by default; a task whose
        state is sharded across processes returns it as it is, and each process writes its own shards."""
        return self.fetch(state)

    def restore_target(self, host_state: Any) -> Any:
        """What a checkpoint is restored into, given the initial host state: that state (restored as host arrays)
        by default; a sharded task returns ``jax.ShapeDtypeStruct``s with the shardings ``place`` would give, and
        ``place`` then takes the restored global arrays as they are."""
        return host_state

    def train_chunk(self, state: Any, start: int, stop: int) -> tuple[Any, Metrics]:
        """Run global steps ``start+1 .. stop``; returns (state, metrics stacked per step: [C] or [C, seeds])."""
        raise NotImplementedError

    def row_fields(self, step: int) -> dict[str, Any]:
        """Fields added to the 'train' row ending at global ``step`` (e.g. PPO's ``env_steps``); none by default."""
        return {}

    def log_metrics(self, state: Any) -> dict[str, float]:
        """Metrics written as a 'test' row after every chunk (e.g. test nodes of a graph); none by default."""
        return {}

    def epoch_metrics(self, state: Any) -> dict[str, float]:
        """Metrics added to every 'epoch' row (e.g. ``val_*``); none by default."""
        return {}

    def final_metrics(self, state: Any) -> dict[str, float]:
        """Metrics written as the final 'test' row (e.g. ``test_*`` on the test split); none by default."""
        return {}

    def finish(self, state: Any, rows: list[dict[str, Any]], workdir: str) -> dict[str, Any]:
        """Write the task's own artifacts into ``workdir``; returns its fields of the summary."""
        return {}


@dataclasses.dataclass
class RunResult:
    """What every regime returns: the final host state, all metric rows and the summary (the final JSON line)."""

    state: Any
    history: list[dict[str, Any]]
    summary: dict[str, Any]


def run(
    task: Task, schedule: Schedule, config: ResumableConfig, experiment: str, title: str = "", **extra: Any
) -> RunResult:
    """Train ``task`` as ``schedule`` says in the run directory of ``config``; resume if it holds a checkpoint.

    The directory is locked for the run and must hold this run or none (``nnjax.train.rundir``);
    ``config.json`` records ``config`` plus ``extra``. The summary holds ``task.finish``'s fields and
    ``final_metrics`` (4 decimals), then ``steps``, ``compile_s``, ``train_time_s``, the throughput and
    ``workdir``.
    """
    with open_run_directory(config, experiment, **extra) as workdir:
        checkpoints = Checkpointer(os.path.join(workdir, "checkpoints"), schedule.keep_checkpoints)
        try:
            return _resume_and_train(task, schedule, workdir, checkpoints, title or experiment)
        finally:
            checkpoints.close()


def _resume_and_train(task: Task, schedule: Schedule, workdir: str, checkpoints: Checkpointer, title: str) -> RunResult:
    """``run`` inside its locked run directory: restore the newest intact checkpoint, train, evaluate, summarise."""
    initial = task.init_state()  # host arrays; a restored checkpoint may instead be placed already (sharded tasks)
    start = None
    restored = checkpoints.restore(task.restore_target(initial))
    if restored is not None:
        start, initial = restored
        if start > schedule.total_steps:
            raise WorkdirError(
                f"{workdir} has trained {start} {schedule.unit}s, more than the {schedule.total_steps} this run asks "
                f"for; ask for at least {start}, or --restart to start over"
            )
    writer = MetricWriter(workdir, resume_step=start)
    try:
        _warn_lost_history(writer, start or 0)
        state, seconds, steps_run = _loop(task, schedule, task.place(initial), start or 0, checkpoints, writer)
        final = task.final_metrics(state)
        if final:
            writer.write({"kind": "test", "step": schedule.total_steps, **final})
        host_state = task.fetch(state)
        if is_main_process():
            plots.learning_curves(writer.rows, os.path.join(workdir, task.curves_file), title=title)
        summary = {
            **task.finish(host_state, writer.rows, workdir),
            **{k: rounded(v) for k, v in final.items()},
            "steps": schedule.total_steps,
            "compile_s": round(task.compiled.seconds, 2),
            "train_time_s": round(seconds, 2),
        }
        if steps_run and task.examples_per_step:
            summary[task.throughput_key] = round(steps_run * task.examples_per_step / max(seconds, 1e-9), 1)
        summary["workdir"] = workdir
    finally:
        writer.close()
    return RunResult(state=host_state, history=writer.rows, summary=summary)


def rounded(value: Any, digits: int = 4) -> Any:
    """``value`` (a number or a list of them, e.g. a metric's per-seed values) rounded to ``digits`` decimals."""
    return [round(v, digits) for v in value] if isinstance(value, list) else round(value, digits)


def seed_statistics(prefix: str, means: dict[str, Any]) -> dict[str, Any]:
    """``prefix + name`` for every metric: the value itself (a number, or the values of one seed), or for per-seed
    values [S > 1] their mean, plus ``<name>_std`` (the sample standard deviation over seeds, ddof 1) and
    ``<name>_per_seed``."""
    out: dict[str, Any] = {}
    for name, value in means.items():
        if np.size(value) == 1:
            out[prefix + name] = float(np.reshape(value, ()))
            continue
        out[prefix + name] = float(np.mean(value))
        out[f"{prefix}{name}_std"] = float(np.std(value, ddof=1))
        out[f"{prefix}{name}_per_seed"] = [float(v) for v in value]
    return out


def init_per_seed(init: Callable[[jax.Array], Any], seed: int, seeds: int) -> Any:
    """``init(PRNGKey(seed))`` on the host; for ``seeds`` S > 1 the states of seeds ``seed .. seed + S - 1``
    stacked along a leading [S] axis, made by one ``jax.vmap`` named ``SEED_AXIS`` (so an ``init`` can read its
    seed's index as ``lax.axis_index(SEED_AXIS)``)."""
    if seeds == 1:
        return jax.device_get(init(jax.random.PRNGKey(seed)))
    keys_S = jnp.stack([jax.random.PRNGKey(s) for s in seed_values(seed, seeds)])
    return jax.device_get(jax.vmap(init, axis_name=SEED_AXIS)(keys_S))


def seed_values(seed: int, seeds: int) -> list[int]:
    """The seeds a ``--seed seed --seeds seeds`` run trains at once: ``seed .. seed + seeds - 1``."""
    return [seed + k for k in range(seeds)]


def stack_seeds(per_seed: list[dict[str, Any]], keys: Any = None) -> dict[str, np.ndarray]:
    """Each key of ``keys`` (default: all of ``per_seed[0]``'s) as the [S] array of its values in the per-seed
    dicts ``per_seed``, ready for ``seed_statistics``."""
    return {key: np.array([values[key] for values in per_seed]) for key in (per_seed[0] if keys is None else keys)}


def seed_states(state: Any, seeds: int) -> list[Any]:
    """The per-seed states of a run's final ``state``: ``[state]`` for one seed, else its S slices of the leading
    [S] axis that ``--seeds`` stacks."""
    return [state] if seeds == 1 else [jax.tree.map(lambda x, k=k: x[k], state) for k in range(seeds)]


def _warn_lost_history(writer: MetricWriter, start: int) -> None:
    """One warning line if the kept 'train' rows do not tile steps ``1..start`` (metrics.jsonl deleted, truncated
    or edited): the learning curves and history then show only what is left."""
    train = sorted((row for row in writer.rows if row["kind"] == "train"), key=lambda row: row["step"])
    ends = [0, *(row["step"] for row in train)]
    tiled = ends[-1] == start and all(row["step"] - row["steps"] == end for row, end in zip(train, ends))
    if not tiled or writer.unreadable_lines:
        covered = sum(row["steps"] for row in train)
        broken = f", {writer.unreadable_lines} unreadable lines skipped" if writer.unreadable_lines else ""
        log.warning(
            "%s holds train rows for %d of the %d steps before the resumed step %d (it was deleted, truncated or "
            "edited%s); the learning curves and history show only those", writer.path, covered, start, start, broken,
        )


def _loop(
    task: Task, schedule: Schedule, state: Any, start: int, checkpoints: Checkpointer, writer: MetricWriter
) -> tuple[Any, float, int]:
    """Every chunk from ``start``: train, guard, write rows, checkpoint. Returns (state, training seconds
    without compilation, steps run)."""
    seconds, steps_run = 0.0, 0
    bar = tqdm(total=schedule.total_steps, initial=min(start, schedule.total_steps), unit=schedule.unit,
               dynamic_ncols=True, mininterval=0.5, disable=not is_main_process())
    for a, b in schedule.chunks(start):
        compile_before = task.compiled.seconds
        tick = time.perf_counter()
        state, metrics = task.train_chunk(state, a, b)
        metrics = jax.device_get(metrics)
        seconds += time.perf_counter() - tick - (task.compiled.seconds - compile_before)
        steps_run += b - a
        _check_finite(metrics, a, checkpoints)
        row = {"kind": "train", "step": b, "steps": b - a}
        if schedule.steps_per_epoch:
            row["epoch"] = schedule.epoch(b)
        row |= task.row_fields(b) | chunk_means(metrics)
        writer.write(row)
        shown = {k.removeprefix("train_"): v for k, v in row.items() if k.startswith("train_") and np.isscalar(v)}
        evaluation = task.log_metrics(state)
        if evaluation:
            writer.write({"kind": "test", "step": b, **evaluation})
            shown |= {k: v for k, v in evaluation.items() if np.isscalar(v)}
        if schedule.epoch_end(b):
            _write_epoch_row(task, state, schedule.epoch(b), b, writer)
        bar.update(b - a)
        postfix = {k: f"{v:.4g}" for k, v in shown.items()}
        if task.examples_per_step:
            postfix[task.throughput_key.removesuffix("_per_s") + "/s"] = f"{steps_run * task.examples_per_step / max(seconds, 1e-9):.0f}"
        bar.set_postfix(postfix)
        if schedule.checkpoint_due(b):
            _save(task, state, checkpoints, b)
    bar.close()
    return state, seconds, steps_run


def chunk_means(metrics: Metrics) -> dict[str, Any]:
    """``train_<name>``: the mean of each metric over a chunk's steps (and seeds); a metric with a seed
    axis ([C, S]) also gives ``train_<name>_per_seed``, the S per-seed means."""
    row = {}
    for name, values in metrics.items():
        values = np.asarray(values, np.float64)
        row[f"train_{name}"] = float(values.mean())
        if values.ndim == 2:
            row[f"train_{name}_per_seed"] = [float(v) for v in values.mean(axis=0)]
    return row


def _write_epoch_row(task: Task, state: Any, epoch: int, step: int, writer: MetricWriter) -> None:
    """The 'epoch' row: the epoch's step-weighted train means plus ``task.epoch_metrics``."""
    chunks = [row for row in writer.rows if row["kind"] == "train" and row.get("epoch") == epoch]
    steps = sum(row["steps"] for row in chunks)
    means = {
        k: sum(row[k] * row["steps"] for row in chunks) / steps
        for k in chunks[0] if k.startswith("train_") and np.isscalar(chunks[0][k])
    }
    row = {"kind": "epoch", "step": step, "epoch": epoch, **means, **task.epoch_metrics(state)}
    writer.write(row)
    shown = {k: round(v, 4) for k, v in row.items() if k.startswith(("train_", "val_")) and np.isscalar(v)}
    log.info("epoch %d: %s", epoch, shown)


def _check_finite(metrics: Metrics, start: int, checkpoints: Checkpointer) -> None:
    """``TrainingDivergedError`` naming the first step (global, 1-based) and metric that is NaN/Inf."""
    first = None
    for name, values in metrics.items():
        values = np.asarray(values)
        if not np.issubdtype(values.dtype, np.inexact):
            continue
        bad_C = ~np.isfinite(values.reshape(values.shape[0], -1)).all(axis=1)
        if bad_C.any() and (first is None or np.argmax(bad_C) < first[0]):
            row = values.reshape(values.shape[0], -1)[np.argmax(bad_C)]
            first = (int(np.argmax(bad_C)), name, row[~np.isfinite(row)][0])
    if first is not None:
        index, name, value = first
        raise TrainingDivergedError(
            f"{name} became {value} at step {start + index + 1}; training stopped. "
            f"Last good checkpoint: step {checkpoints.latest_step()} in {checkpoints.directory}. "
            "Try a lower --learning-rate."
        )


def _save(task: Task, state: Any, checkpoints: Checkpointer, step: int) -> None:
    """Checkpoint ``task.checkpoint_state(state)`` at ``step``, refusing a state with non-finite values."""
    try:
        checkpoints.save(task.checkpoint_state(state), step)
    except NonFiniteStateError as err:
        raise TrainingDivergedError(
            f"the training state became NaN/Inf by step {step}; not checkpointed. "
            f"Last good checkpoint: step {checkpoints.latest_step()} in {checkpoints.directory}."
        ) from err
