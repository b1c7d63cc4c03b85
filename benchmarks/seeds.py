"""Wall time of ``--seeds N`` (N seeds in one vmapped step) against one seed, per experiment.

    python -m benchmarks.seeds [--seeds 4] [--experiments mnist_cnn,mlp_mnist,regularization]

Each run is a whole ``python -m experiments.NAME`` process with its default flags (compile included, the
machine otherwise idle), one at a time: first with ``--seeds 1``, then with ``--seeds N``. The last stdout
line is one JSON object with both wall times, their ratio per experiment (goal: < 2 for N = 4 on a 2-core
CPU) and each run's test accuracy (mean over seeds) so a faster run is seen to train the same thing.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time


def wall_time(experiment: str, seeds: int, workdir: str) -> tuple[float, dict]:
    """(seconds, final JSON line) of ``python -m experiments.<experiment> --seeds <seeds>``."""
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", f"experiments.{experiment}", "--seeds", str(seeds), "--workdir",
                           workdir], capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode:
        sys.exit(f"{experiment} --seeds {seeds} failed:\n{done.stderr[-2000:]}")
    return seconds, json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=4, help="seeds trained at once in the multi-seed run")
    parser.add_argument("--experiments", default="mnist_cnn,mlp_mnist,regularization",
                        help="comma-separated experiments (supervised ones, on nnjax.tasks.fit)")
    args = parser.parse_args()
    result: dict[str, object] = {"benchmark": "seeds", "seeds": args.seeds, "cpu_count": os.cpu_count()}
    with tempfile.TemporaryDirectory() as root:
        for experiment in args.experiments.split(","):
            one, one_line = wall_time(experiment, 1, os.path.join(root, f"{experiment}_1"))
            many, many_line = wall_time(experiment, args.seeds, os.path.join(root, f"{experiment}_{args.seeds}"))
            result[experiment] = {
                "one_seed_s": round(one, 1), f"{args.seeds}_seeds_s": round(many, 1), "ratio": round(many / one, 2),
                "test_accuracy_one_seed": one_line.get("test_accuracy"),
                f"test_accuracy_{args.seeds}_seeds": many_line.get("test_accuracy"),
                "test_accuracy_std": many_line.get("test_accuracy_std"),
            }
            print(f"{experiment}: {one:.1f} s -> {many:.1f} s ({many / one:.2f}x)", file=sys.stderr)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
