"""Experiment configuration: frozen dataclasses whose fields double as command-line flags.

Every experiment defines a ``Config`` that subclasses one of three families: ``TrainConfig`` (supervised
experiments on ``nnjax.tasks.fit``), ``ResumableConfig`` (other experiments on the runner, whose run directory
resumes) or ``RunConfig`` (stand-alone demos), with defaults that reproduce its seed slide.
``parse_config(Config, argv)`` turns each field into a flag (``batch_size`` -> ``--batch-size``,
booleans -> ``--flag/--no-flag``, ``tuple[int, ...]`` fields -> comma-separated widths such as
``--hidden 128,64``), each with the help text ``option`` gave it, and validates the result.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import errno
import functools
import json
import os
import sys
import tempfile
import types
import typing
from collections.abc import Sequence
from typing import Any, TypeVar

from nnjax.errors import ConfigError, WorkdirError

PARALLEL_MODES = ("none", "jit", "pmap", "fsdp")
OPTIMIZERS = ("adam", "adamw", "sgd", "momentum")
PRECISIONS = ("float32", "bfloat16")
SEED_AXIS = "seed"  # the jax.vmap axis name of --seeds: lax.axis_index(SEED_AXIS) is the seed's index 0..N-1
IMAGE_DATA_HELP = (
    "image data set: mnist, mnist5k (5,000 real MNIST digits, offline), digits (scikit-learn 8x8, offline), "
    "fashion_mnist, cifar10, records:DIR (a records directory, read from disk) or auto (the first of mnist, mnist5k, "
    "digits available offline)"
)
DATA_DIR_HELP = "tensorflow-datasets directory; default: $TFDS_DATA_DIR or ~/tensorflow_datasets"
DOWNLOAD_HELP = "let tensorflow-datasets download and prepare --data first (needs network)"


def option(
    default: Any,
    help: str = "",
    *,
    minimum: int | None = None,
    choices: Sequence[str] | None = None,
    min_count: int | None = None,
) -> Any:
    """A config field with its flag's ``help`` text; ``minimum``: the least value an int field accepts (every int
    field accepts only >= 1 unless it says otherwise); ``choices``: the only values it accepts (``--help`` lists
    them); ``min_count``: the fewest widths a ``tuple[int, ...]`` field accepts (1 unless it says otherwise)."""
    metadata: dict[str, Any] = {"help": help}
    if minimum is not None:
        metadata["minimum"] = minimum
    if choices is not None:
        metadata["choices"] = tuple(choices)
    if min_count is not None:
        metadata["min_count"] = min_count
    return dataclasses.field(default=default, metadata=metadata)


def field_metadata(config_cls: type, name: str, key: str) -> Any:
    """``key`` of field ``name``'s metadata, from the nearest class in ``config_cls``'s MRO that sets it (a subclass
    that only changes a field's default keeps its minimum, choices and help), else None."""
    for klass in config_cls.__mro__:
        field = getattr(klass, "__dataclass_fields__", {}).get(name)
        if field is not None and key in field.metadata:
            return field.metadata[key]
    return None


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """Fields every experiment accepts: the root PRNG seed and the run directory.

    Every field is checked when a config is made (``ConfigError`` naming its flag): an int field must be >= its
    ``minimum`` (1 unless ``option`` says otherwise), a field with ``choices`` metadata must be one of them, a
    ``tuple[int, ...]`` field must hold at least ``min_count`` (1 unless ``option`` says otherwise) ints >= 1.
    ``validate`` adds the checks that relate several fields.
    """

    seed: int = option(0, "root PRNG seed", minimum=0)
    workdir: str | None = option(None, "run directory (config.json, metrics, plots); default: a new runs/<experiment>/<time>")
    compile_cache: bool = option(True, "keep compiled XLA programs in $NNJAX_CACHE_DIR/jax (default ~/.cache/nnjax/jax) "
                                       "so a re-run loads them instead of compiling again, where this machine's XLA "
                                       "loads them cleanly (checked once); --no-compile-cache or NNJAX_COMPILE_CACHE=0: off")

    def __post_init__(self) -> None:
        cls = type(self)
        widths_fields = _widths_fields(cls)
        for field in dataclasses.fields(self):
            value, flag = getattr(self, field.name), flag_name(field.name)
            if field.name in widths_fields:
                least = field_metadata(cls, field.name, "min_count") or 1
                if not valid_widths(value, least):
                    raise ConfigError(f"--{flag} {widths_rule(least)} (in Python: a tuple of ints); got {value!r}")
                continue
            choices = field_metadata(cls, field.name, "choices")
            if choices and value not in choices:
                raise ConfigError(f"--{flag} must be one of {', '.join(choices)}, got {value!r}")
            if type(value) is int:
                least = field_metadata(cls, field.name, "minimum")
                least = 1 if least is None else least
                if value < least:
                    meaning = field_metadata(cls, field.name, "help") if least == 0 else None
                    raise ConfigError(f"--{flag} must be >= {least}{f' ({meaning})' if meaning else ''}, got {value}")

    def validate(self) -> None:
        """Raise ``ConfigError`` naming the first combination of fields that cannot work (each field alone was
        checked when the config was made)."""

    def resolved_workdir(self, experiment: str) -> str:
        """The run directory: ``--workdir`` if given, else a new ``runs/<experiment>/<time>``."""
        if self.workdir:
            return self.workdir
        stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
        return os.path.join("runs", experiment, stamp)


@dataclasses.dataclass(frozen=True)
class ResumableConfig(RunConfig):
    """Fields of every experiment on the runner (``nnjax.train.run``), whose run directory resumes."""

    restart: bool = option(False, "discard the run in --workdir (checkpoints, metrics, config) and start over")

    def resumable_fields(self) -> set[str]:
        """Fields that may differ when a run resumes in its run directory: they change what is logged, kept or
        evaluated, or how long the run goes on, never the steps already trained. All others define the run."""
        return {"workdir", "restart", "compile_cache"}


@dataclasses.dataclass(frozen=True)
class TrainConfig(ResumableConfig):
    """Fields every supervised experiment accepts (and the trainer reads)."""

    epochs: int = option(5, "passes over the training split; unused when --steps > 0")
    steps: int = option(0, "0: train --epochs whole epochs; N > 0: exactly N steps, the last epoch partial",
                        minimum=0)
    batch_size: int = option(128, "training examples per step, over all devices")
    learning_rate: float = option(1e-3, "the optimizer's learning rate")
    optimizer: str = option("adam", "optimizer (momentum: SGD with momentum 0.9)", choices=OPTIMIZERS)
    data: str = option("auto", IMAGE_DATA_HELP)
    data_dir: str | None = option(None, DATA_DIR_HELP)
    download: bool = option(False, DOWNLOAD_HELP)
    parallel: str = option(
        "none",
        "devices: none (one), jit (batch sharded over all, params replicated), pmap (jax.pmap), "
        "fsdp (params sharded too)",
        choices=PARALLEL_MODES,
    )
    model_parallel: int = option(
        1, "--parallel fsdp: devices per tensor-parallel group (the mesh's 'model' axis); the 'data' axis has the rest"
    )
    validation_fraction: float = option(0.2, "fraction of the training split held out for validation; 0: none")
    eval_batch_size: int = option(1000, "examples per evaluation batch (validation and test)")
    log_every_steps: int = option(50, "steps between 'train' metric rows (and progress-bar updates)")
    checkpoint_every_epochs: int = option(1, "epochs between checkpoints; 0: no epoch-end checkpoints", minimum=0)
    checkpoint_every_steps: int = option(0, "steps between checkpoints; 0: no step-interval checkpoints", minimum=0)
    keep_checkpoints: int = option(3, "newest checkpoints kept in --workdir")
    scan_epoch: bool = option(True, "run each chunk of steps in one jitted lax.scan over the training split on device "
                                    "(not under pmap); --no-scan-epoch: one jitted call per batch")
    grad_accum_steps: int = option(1, "micro-batches per step: each step's gradient is their mean")
    precision: str = option("float32", "forward/backward dtype (params and optimizer state stay float32)",
                            choices=PRECISIONS)
    prefetch: int = option(2, "host batches placed on device ahead of the loop path's steps; 0: no thread", minimum=0)
    seeds: int = option(1, "N > 1: seeds --seed .. --seed+N-1 trained at once in one vmapped step (--parallel none); "
                           "each metric is their mean, with <metric>_std and <metric>_per_seed")

    def resumable_fields(self) -> set[str]:
        """More epochs or steps (the default optimizers keep a constant learning rate), other logging, checkpoint
        and evaluation intervals, ``--download`` and ``--prefetch``."""
        return super().resumable_fields() | {
            "epochs", "steps", "log_every_steps", "checkpoint_every_epochs", "checkpoint_every_steps",
            "keep_checkpoints", "eval_batch_size", "prefetch", "download",
        }

    def validate(self) -> None:
        if self.batch_size % self.grad_accum_steps:
            raise ConfigError(
                f"--batch-size {self.batch_size} is not divisible by --grad-accum-steps {self.grad_accum_steps}; "
                f"use a multiple of {self.grad_accum_steps}"
            )
        check_positive(self, "learning_rate")
        check_fraction(self, "validation_fraction")
        super().validate()


def check_positive(config: RunConfig, *names: str) -> None:
    """``ConfigError`` naming the first of ``names`` (float fields; int fields are checked when a config is made)
    whose value is not > 0."""
    for name in names:
        value = getattr(config, name)
        if not value > 0:
            raise ConfigError(f"--{flag_name(name)} must be > 0, got {value}")


def check_fraction(config: RunConfig, *names: str) -> None:
    """``ConfigError`` naming the first of ``names`` whose value is not in [0, 1) (rates, fractions)."""
    for name in names:
        value = getattr(config, name)
        if not 0.0 <= value < 1.0:
            raise ConfigError(f"--{flag_name(name)} must be in [0, 1), got {value}")


def check_divisible(config: RunConfig, name: str, by: str) -> None:
    """``ConfigError`` unless field ``name`` is a multiple of field ``by`` (e.g. width and attention heads)."""
    if getattr(config, name) % getattr(config, by):
        raise ConfigError(
            f"--{flag_name(name)} must be divisible by --{flag_name(by)}, got {getattr(config, name)} and {getattr(config, by)}"
        )


def widths_rule(min_count: int) -> str:
    """What a widths flag must be, e.g. 'must be >= 1 comma-separated positive widths like 128,64'."""
    example = ",".join(["128", "64", "10"][: max(min_count, 2)])
    return f"must be >= {min_count} comma-separated positive widths like {example}"


def valid_widths(widths: Any, min_count: int = 1) -> bool:
    """Whether ``widths`` is a tuple of at least ``min_count`` ints, each >= 1."""
    return (
        isinstance(widths, tuple)
        and len(widths) >= min_count
        and all(type(w) is int and w >= 1 for w in widths)
    )


def parse_widths(text: str, min_count: int = 1) -> tuple[int, ...]:
    """Comma-separated positive widths, e.g. '128,64' -> (128, 64); ``argparse.ArgumentTypeError`` stating
    ``widths_rule`` otherwise (argparse names the flag)."""
    try:
        widths = tuple(int(w) for w in text.split(",") if w.strip())
    except ValueError:
        widths = ()
    if not valid_widths(widths, min_count):
        raise argparse.ArgumentTypeError(f"{widths_rule(min_count)}; got {text!r}")
    return widths


def format_widths(widths: Sequence[int]) -> str:
    """Widths as the command line spells them: (128, 64) -> '128,64'."""
    return ",".join(str(w) for w in widths)


ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\"}


def parse_escapes(text: str, flag: str) -> str:
    """``text`` with the backslash escapes ``\\n``, ``\\t``, ``\\r`` and ``\\\\`` decoded; every other character,
    non-ASCII ones included, stays as typed. ``ConfigError`` naming ``--flag`` for any other escape."""
    out, i = [], 0
    while i < len(text):
        if text[i] != "\\":
            out.append(text[i])
            i += 1
            continue
        code = text[i + 1 : i + 2]
        if code not in ESCAPES:
            shown = "a trailing \\" if not code else f"the unknown escape \\{code}"
            raise ConfigError(f"--{flag} has {shown}; the escapes are \\n, \\t, \\r and \\\\ (a backslash)")
        out.append(ESCAPES[code])
        i += 2
    return "".join(out)


_WORKDIR_PROBLEMS = {
    errno.EEXIST: "it is a file, not a directory",
    errno.ENOTDIR: "a part of its path is a file, not a directory",
    errno.EROFS: "it is on a read-only file system",
    errno.EACCES: "no permission to write there",
    errno.EPERM: "no permission to write there",
    errno.ENOSPC: "no space left on the device",
}


def make_workdir(config: RunConfig, experiment: str) -> str:
    """Create the run directory and check that files can be written in it; ``WorkdirError`` (one line) otherwise."""
    workdir = config.resolved_workdir(experiment)
    try:
        os.makedirs(workdir, exist_ok=True)
        with tempfile.TemporaryFile(dir=workdir):
            pass
    except OSError as err:
        problem = _WORKDIR_PROBLEMS.get(err.errno, os.strerror(err.errno or 0))
        raise WorkdirError(f"--workdir {workdir} cannot be used: {problem}") from err
    return workdir


def run_record(config: RunConfig, experiment: str, **extra: Any) -> dict[str, Any]:
    """What a run's ``config.json`` holds: every config field, the experiment and ``extra``, as JSON types."""
    return json.loads(json.dumps(dataclasses.asdict(config) | {"experiment": experiment, **extra}))


def prepare_workdir(config: RunConfig, experiment: str, **extra: Any) -> str:
    """Create the run directory of a demo and write ``config.json`` (the config plus ``extra``); returns its path.
    (Runs on the runner use ``nnjax.train.rundir``, which also locks the directory and checks a resume.)"""
    workdir = make_workdir(config, experiment)
    with open(os.path.join(workdir, "config.json"), "w") as f:
        json.dump(run_record(config, experiment, **extra), f, indent=2)
    return workdir


ConfigT = TypeVar("ConfigT", bound=RunConfig)


def flag_name(name: str) -> str:
    """The command-line flag of a config field, without its dashes: ``batch_size`` -> ``batch-size``."""
    return name.replace("_", "-")


def _scalar_type(annotation: Any) -> type:
    """The concrete type behind ``int``, ``str | None`` and friends."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return args[0]
    return annotation


@functools.cache
def _widths_fields(config_cls: type) -> frozenset[str]:
    """Names of ``config_cls``'s ``tuple[int, ...]`` fields (layer widths and the like)."""
    hints = typing.get_type_hints(config_cls)
    return frozenset(
        field.name for field in dataclasses.fields(config_cls)
        if typing.get_origin(hints[field.name]) is tuple and typing.get_args(hints[field.name]) == (int, ...)
    )


class _OneLineParser(argparse.ArgumentParser):
    """argparse that reports a bad flag as a single stderr line (exit code 2)."""

    def error(self, message: str) -> typing.NoReturn:
        sys.stderr.write(f"{self.prog}: error: {message} (see --help)\n")
        sys.exit(2)


def build_parser(config_cls: type[RunConfig], prog: str | None = None) -> argparse.ArgumentParser:
    """An argument parser with one flag per field of ``config_cls``, each with the help text, choices and minimum
    count of the nearest class in its MRO that sets them; ``tuple[int, ...]`` fields read comma-separated widths."""
    parser = _OneLineParser(prog=prog, description=(config_cls.__doc__ or "").strip())
    hints = typing.get_type_hints(config_cls)
    widths_fields = _widths_fields(config_cls)
    for field in dataclasses.fields(config_cls):
        flag = f"--{flag_name(field.name)}"
        meaning = (field_metadata(config_cls, field.name, "help") or "").replace("%", "%%")
        if field.name in widths_fields:
            least = field_metadata(config_cls, field.name, "min_count") or 1
            parser.add_argument(
                flag, type=functools.partial(parse_widths, min_count=least), default=field.default, metavar="N,N",
                help=f"{meaning} (default: {format_widths(field.default)})",
            )
            continue
        kind = _scalar_type(hints[field.name])
        if kind is bool:
            shown = flag if field.default else f"--no-{flag_name(field.name)}"
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=field.default,
                                help=f"{meaning} (default: {shown})")
            continue
        shown = "" if field.default is None else f" (default: {str(field.default) or repr('')})".replace("%", "%%")
        parser.add_argument(
            flag,
            type=kind,
            default=field.default,
            choices=field_metadata(config_cls, field.name, "choices"),
            help=meaning + shown,
        )
    return parser


def parse_config(config_cls: type[ConfigT], argv: Sequence[str] | None = None, prog: str | None = None) -> ConfigT:
    """Parse ``argv`` into a validated ``config_cls`` instance."""
    args = build_parser(config_cls, prog).parse_args(argv)
    config = config_cls(**vars(args))
    config.validate()
    return config
