"""Command-line entry point shared by every experiment.

``run(main, Config)`` parses flags into ``Config``, sets up logging (through ``tqdm.write``, so a log line
never breaks a progress bar), turns on JAX's persistent compilation cache unless ``--no-compile-cache`` or
``NNJAX_COMPILE_CACHE=0`` (``nnjax.cache.default_compilation_cache``; ``=1``: on without the machine check),
runs ``main(config)`` and prints its result dict as the final stdout line (one standard JSON object: NaN and
infinities become ``null``), with ``process_compile_s``: every second the process spent in JAX's tracing,
lowering and compiling (``nnjax.cache.CompileClock``). Known errors (``NnjaxError``) become one line
on stderr and exit code 2. Several processes (``nnjax.distributed``: the settings come from the environment,
as ``python -m nnjax.launch`` sets them) start JAX's distributed runtime first; only the main process logs
below warnings and prints the final line.
"""

from __future__ import annotations

import json
import logging
import math
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

from tqdm import tqdm

from nnjax import distributed
from nnjax.cache import COMPILE_CACHE_ENV, CompileClock, default_compilation_cache, enable_compilation_cache
from nnjax.config import ConfigT, parse_config
from nnjax.errors import NnjaxError


class ProgressBarHandler(logging.Handler):
    """Writes each record to the stderr of the moment through ``tqdm.write``, which clears the progress bars
    first and redraws them after, so a log line never lands in the middle of a bar."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            tqdm.write(self.format(record), file=sys.stderr)
        except Exception:  # noqa: BLE001 - logging's own contract: report, never raise
            self.handleError(record)


def setup_logging(level: int = logging.INFO) -> None:
    """Log ``nnjax`` messages to stderr as ``[nnjax] message``, around any progress bar; quiet noisy libraries."""
    handler = ProgressBarHandler()
    handler.setFormatter(logging.Formatter("[%(name)s] %(message)s"))
    logger = logging.getLogger("nnjax")
    logger.handlers[:] = [handler]
    logger.setLevel(level)
    logger.propagate = False
    for noisy in ("absl", "orbax", "jax._src.xla_bridge"):
        logging.getLogger(noisy).setLevel(logging.ERROR)


def _finite_or_null(value: Any) -> Any:
    """``value`` with every NaN/±inf float replaced by ``None``, so the line is standard JSON."""
    if isinstance(value, dict):
        return {k: _finite_or_null(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite_or_null(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def run(
    main: Callable[[ConfigT], dict[str, Any]],
    config_cls: type[ConfigT],
    argv: Sequence[str] | None = None,
    prog: str | None = None,
) -> int:
    """Parse, run, print the final JSON line; returns the process exit code."""
    setup_logging()
    try:
        distributed.initialize_from_environment()
        if not distributed.is_main_process():
            logging.getLogger("nnjax").setLevel(logging.WARNING)
        config = parse_config(config_cls, argv, prog)
        cache_mode = os.environ.get(COMPILE_CACHE_ENV)
        if config.compile_cache and cache_mode != "0":
            enable_compilation_cache() if cache_mode == "1" else default_compilation_cache()
        with CompileClock() as clock:
            result = main(config)
    except NnjaxError as err:
        sys.stderr.write(f"{prog or 'nnjax'}: error: {err}\n")
        distributed.end_failed_process(2)
        return 2
    except SystemExit as stop:  # argparse's errors (after their message), or sys.exit in main
        if stop.code:
            number = isinstance(stop.code, int)
            distributed.end_failed_process(stop.code if number else 1, "" if number else f"{stop.code}\n")
        raise
    if not distributed.is_main_process():
        return 0
    result = {**result, "process_compile_s": round(clock.seconds, 2)}
    sys.stdout.write(json.dumps(_finite_or_null(result), allow_nan=False) + "\n")
    sys.stdout.flush()
    return 0
