"""Experiment configuration: frozen dataclasses whose fields double as command-line flags.

Every experiment defines ``Config(TrainConfig)`` (trainer experiments) or ``Config(RunConfig)``
(stand-alone demos) with defaults that reproduce its seed slide;
``parse_config(Config, argv)`` turns each field into a flag (``batch_size`` -> ``--batch-size``,
booleans -> ``--flag/--no-flag``) and validates the result.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import errno
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


def option(default: Any, help: str = "", *, minimum: int | None = None) -> Any:
    """A config field with its flag's ``help`` text and the least value an int field accepts (``minimum``; every
    int field accepts only >= 1 unless it says otherwise)."""
    metadata: dict[str, Any] = {"help": help}
    if minimum is not None:
        metadata["minimum"] = minimum
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
    ``minimum`` (1 unless ``option`` says otherwise), a field with ``choices`` metadata must be one of them.
    ``validate`` adds the checks that relate several fields.
    """

    seed: int = option(0, "root PRNG seed", minimum=0)
    workdir: str | None = None

    def __post_init__(self) -> None:
        cls = type(self)
        for field in dataclasses.fields(self):
            value, flag = getattr(self, field.name), flag_name(field.name)
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

    restart: bool = False  # discard the run in --workdir (checkpoints, metrics, config) and start over

    def resumable_fields(self) -> set[str]:
        """Fields that may differ when a run resumes in its run directory: they change what is logged, kept or
        evaluated, or how long the run goes on, never the steps already trained. All others define the run."""
        return {"workdir", "restart"}


@dataclasses.dataclass(frozen=True)
class TrainConfig(ResumableConfig):
    """Fields every supervised experiment accepts (and the trainer reads)."""

    epochs: int = 5
    steps: int = option(0, "0: train --epochs whole epochs; N > 0: exactly N steps, the last epoch partial",
                        minimum=0)
    batch_size: int = 128
    learning_rate: float = 1e-3
    optimizer: str = dataclasses.field(default="adam", metadata={"choices": OPTIMIZERS})
    data: str = "auto"
    data_dir: str | None = None
    download: bool = False
    parallel: str = dataclasses.field(default="none", metadata={"choices": PARALLEL_MODES})
    model_parallel: int = option(
        1, "--parallel fsdp: devices per tensor-parallel group (the mesh's 'model' axis); the 'data' axis has the rest"
    )
    validation_fraction: float = 0.2
    eval_batch_size: int = 1000
    log_every_steps: int = 50
    checkpoint_every_epochs: int = option(1, "0: no epoch-end checkpoints", minimum=0)
    checkpoint_every_steps: int = option(0, "0: no step-interval checkpoints", minimum=0)
    keep_checkpoints: int = 3
    scan_epoch: bool = True
    grad_accum_steps: int = 1  # each step's gradient is the mean over this many equal micro-batches
    precision: str = dataclasses.field(default="float32", metadata={"choices": PRECISIONS})  # forward/backward dtype
    prefetch: int = option(2, "host batches placed on device ahead of the loop path's steps; 0: no thread", minimum=0)

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


def parse_widths(text: str, flag: str, min_count: int = 1) -> tuple[int, ...]:
    """Comma-separated positive widths, e.g. '128,64' -> (128, 64); ``ConfigError`` naming ``--flag`` otherwise."""
    try:
        widths = tuple(int(w) for w in text.split(",") if w.strip())
    except ValueError:
        widths = ()
    if len(widths) < min_count or min(widths, default=0) < 1:
        example = ",".join(["128", "64", "10"][:max(min_count, 2)])
        raise ConfigError(f"--{flag} must be >= {min_count} comma-separated positive widths like {example}; got {text!r}")
    return widths


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


class _OneLineParser(argparse.ArgumentParser):
    """argparse that reports a bad flag as a single stderr line (exit code 2)."""

    def error(self, message: str) -> typing.NoReturn:
        sys.stderr.write(f"{self.prog}: error: {message} (see --help)\n")
        sys.exit(2)


def build_parser(config_cls: type[RunConfig], prog: str | None = None) -> argparse.ArgumentParser:
    """An argument parser with one flag per field of ``config_cls``."""
    parser = _OneLineParser(prog=prog, description=(config_cls.__doc__ or "").strip())
    hints = typing.get_type_hints(config_cls)
    for field in dataclasses.fields(config_cls):
        flag = f"--{flag_name(field.name)}"
        kind = _scalar_type(hints[field.name])
        meaning = field_metadata(config_cls, field.name, "help")
        if kind is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=field.default, help=meaning)
            continue
        parser.add_argument(
            flag,
            type=kind,
            default=field.default,
            choices=field_metadata(config_cls, field.name, "choices"),
            help=f"{meaning + ' ' if meaning else ''}(default: {field.default})",
        )
    return parser


def parse_config(config_cls: type[ConfigT], argv: Sequence[str] | None = None, prog: str | None = None) -> ConfigT:
    """Parse ``argv`` into a validated ``config_cls`` instance."""
    args = build_parser(config_cls, prog).parse_args(argv)
    config = config_cls(**vars(args))
    config.validate()
    return config
