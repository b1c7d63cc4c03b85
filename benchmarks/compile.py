"""Compile time of every experiment on the runner: a first run, and a re-run through the persistent cache.

    python -m benchmarks.compile [--experiments mnist_cnn,ppo_cartpole] [--markdown]

Each experiment runs as a whole ``python -m experiments.NAME`` process with its default flags except a
short run length (``SHORT_RUN``: a few steps; compilation does not depend on how many steps a chunk's
``lax.scan`` runs), one process at a time, twice, each with the compilation cache (on by default; here without
the once-per-machine check, whose verdict the JSON reports as ``machine_check_fault``) in one fresh, empty
cache directory (``NNJAX_CACHE_DIR``) and its own run directory: the first run compiles everything (and writes
the cache), the second is the re-run a user makes later. ``compile_s`` is the runner's own figure from the final
JSON line (every program the run compiles through ``Task.compiled``: training chunks and evaluation steps;
a run of several phases, like transfer_learning's, adds its phases' figures); ``process_compile_s`` is every
second the process spent in JAX's compile path (``nnjax.cli`` adds it: initialisation, sampling and any other
jitted work besides the trainer's). ``wall_s`` is the whole process, imports and data included. Goals
(issue 18): first-run compile ≤ 5 s, re-run ≤ 1 s. The last stdout line is one JSON object; ``--markdown``
also prints the README's table to stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from typing import Any

from nnjax.cache import compilation_cache_fault

# Flags that shorten each runner experiment to a few steps (its other flags stay at their defaults).
SHORT_RUN: dict[str, list[str]] = {
    **{name: ["--steps", "3"] for name in (
        "backprop_digits", "batchnorm_dropout", "char_lm", "dynamic_network", "flow_vae", "gradient_accumulation",
        "lstm_forecast", "mlp_mnist", "mnist_cnn", "regularization", "sentiment_bow", "sentiment_lstm",
        "sentiment_transformer", "stock_forecast", "timeseries_transformer", "unet_segmentation", "gan_1d", "dcgan",
    )},
    "transfer_learning": ["--steps", "3", "--pretrain-epochs", "1"],
    "gat_karate": ["--epochs", "3"],
    "ppo_cartpole": ["--total-timesteps", "3072"],
}
FIRST_RUN_GOAL_S, RERUN_GOAL_S = 5.0, 1.0


def compile_figures(summary: Any) -> list[float]:
    """Every ``compile_s`` in a final JSON line, nested phases included, in order."""
    if isinstance(summary, dict):
        return [x for k, v in summary.items() for x in ([v] if k == "compile_s" else compile_figures(v))]
    if isinstance(summary, list):
        return [x for v in summary for x in compile_figures(v)]
    return []


def run_once(experiment: str, workdir: str, cache_dir: str) -> dict[str, float]:
    """``compile_s``, ``process_compile_s`` and ``wall_s`` of one short ``--compile-cache`` run of ``experiment`` caching in ``cache_dir``."""
    command = [sys.executable, "-m", f"experiments.{experiment}", *SHORT_RUN[experiment], "--compile-cache",
               "--workdir", workdir]
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True,
                          env=os.environ | {"NNJAX_CACHE_DIR": cache_dir, "NNJAX_COMPILE_CACHE": "1"})
    wall = time.perf_counter() - start
    if done.returncode:
        sys.exit(f"{' '.join(command)} failed:\n{done.stderr[-2000:]}")
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    figures = compile_figures({k: v for k, v in summary.items() if k != "process_compile_s"})
    if not figures:
        sys.exit(f"{' '.join(command)}: its final JSON line reports no compile_s")
    return {"compile_s": round(sum(figures), 2), "process_compile_s": summary["process_compile_s"], "wall_s": round(wall, 1)}


def markdown(results: dict[str, dict[str, dict[str, float]]]) -> str:
    """The README's table: one row per experiment, first run and re-run."""
    lines = ["| experiment | first run: trainer compile_s | all compile | process s | re-run (cache): trainer compile_s | "
             "all compile | process s |", "|---|---|---|---|---|---|---|"]
    for name, runs in results.items():
        cells = [f"{run['compile_s']:.2f} | {run['process_compile_s']:.2f} | {run['wall_s']:.1f}"
                 for run in (runs["first"], runs["rerun"])]
        lines.append(f"| {name} | {' | '.join(cells)} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--experiments", default=",".join(SHORT_RUN), help="comma-separated runner experiments")
    parser.add_argument("--markdown", action="store_true", help="also print the README's table to stderr")
    args = parser.parse_args()
    names = args.experiments.split(",")
    unknown = sorted(set(names) - set(SHORT_RUN))
    if unknown:
        parser.error(f"no short-run flags for {', '.join(unknown)}; known: {', '.join(SHORT_RUN)}")
    load = round(os.getloadavg()[0], 2)  # before the first run: other work on the machine slows every figure
    results: dict[str, dict[str, dict[str, float]]] = {}
    with tempfile.TemporaryDirectory() as root:
        fault = compilation_cache_fault(os.path.join(root, "probe", "jax"))  # what the default would decide here
        for name in names:
            cache_dir = os.path.join(root, f"cache_{name}")
            results[name] = {run: run_once(name, os.path.join(root, f"{name}_{run}"), cache_dir) for run in ("first", "rerun")}
            print(f"{name}: {results[name]}", file=sys.stderr)
    first = [runs["first"]["compile_s"] for runs in results.values()]
    rerun = [runs["rerun"]["compile_s"] for runs in results.values()]
    if args.markdown:
        print(markdown(results), file=sys.stderr)
    print(json.dumps({
        "benchmark": "compile", "cpu_count": os.cpu_count(), "load_average_1m": load, "machine_check_fault": fault,
        "experiments": results,
        "max_first_compile_s": max(first), "max_rerun_compile_s": max(rerun),
        "first_over_goal": [n for n, r in results.items() if r["first"]["compile_s"] > FIRST_RUN_GOAL_S],
        "rerun_over_goal": [n for n, r in results.items() if r["rerun"]["compile_s"] > RERUN_GOAL_S],
    }))


if __name__ == "__main__":
    main()
