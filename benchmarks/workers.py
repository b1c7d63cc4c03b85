"""What every framework-against-framework benchmark shares: each timed run is a worker process.

A benchmark's driver launches its own module again with ``--worker FRAMEWORK`` in a fresh interpreter (so no
framework's threads, caches or imports disturb another's), one worker at a time (never two timed workloads
at once), and alternates the frameworks ``--repeats`` times so that a slow drift in the machine's load hits
all of them alike. A worker prints one JSON object as its last stdout line.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Hashable, Sequence
from typing import TypeVar

Key = TypeVar("Key", bound=Hashable)


def launch_worker(module: str, argv: list[str], label: str, describe: Callable[[dict], str]) -> dict | None:
    """Runs ``python -m module *argv`` and returns its last stdout line parsed as JSON.

    Prints ``describe(worker)`` to stderr on success; on a non-zero exit prints ``label`` and the tail of
    the worker's stderr and returns ``None`` (the driver reports that framework's figure as ``null``).
    """
    done = subprocess.run([sys.executable, "-m", module, *argv], capture_output=True, text=True)
    if done.returncode:
        print(f"{label} failed:\n{done.stderr[-2000:]}", file=sys.stderr)
        return None
    worker = json.loads(done.stdout.strip().splitlines()[-1])
    print(describe(worker), file=sys.stderr)
    return worker


def alternate(repeats: int, keys: Sequence[Key], run: Callable[[Key], dict | None]) -> dict[Key, list[dict | None]]:
    """``run(key)`` for every key in order, ``repeats`` rounds; maps each key to its runs' results in order."""
    runs: dict[Key, list[dict | None]] = {key: [] for key in keys}
    for _ in range(repeats):
        for key in keys:
            runs[key].append(run(key))
    return runs
