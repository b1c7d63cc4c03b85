"""One epoch of the MNIST CNN streamed from over 2 GB of ArrayRecord files, against the in-memory path.

    python -m benchmarks.streaming                     # 2 GB on disk in a temporary directory
    python -m benchmarks.streaming --dir /big/disk --gb 4
    python -m benchmarks.streaming --smoke             # tiny sizes, seconds: the test's run

1. Writes synthetic 28x28x1 float32 images (10 classes, each a random template plus Gaussian noise) into a
   records directory (``nnjax.data.records``) of at least ``--gb`` GB on disk, sized from the bytes per
   record of a probe shard, in a temporary directory under ``--dir`` that is deleted at the end; refuses
   with one line if the disk has too little free space.
2. Trains ``MnistCNN`` (Adam, ``--batch-size``, no validation hold-out) for one epoch over it with
   ``nnjax.tasks.fit`` on ``load_dataset('records:DIR')``, as ``--data records:DIR`` does, in a subprocess
   that reports its own peak RSS (``ru_maxrss``) and the runner's examples/s (compilation excluded).
3. Trains the same model for one epoch in memory, on the first ``--memory-examples`` rows read into arrays:
   fit's default path (the epoch in one ``lax.scan`` over device-resident data) and its loop path
   (``scan_epoch=False``: one jitted step per prefetched batch, as streaming runs), one subprocess each,
   one after another (never two timed workloads at once on a small machine).

Peak RSS grows while any loop-path run trains (the in-memory one too), by glibc malloc's per-thread arenas
and its rising mmap threshold, not by data kept: ``MALLOC_MMAP_THRESHOLD_=65536`` in the environment keeps a
streaming run flat near 430 MB (measured on 0.3 GB of records: 459 against 675 MB) at ~10 % fewer examples/s.

The last stdout line is one JSON object: ``dataset_gb`` (on disk), ``train_examples``, ``peak_rss_mb`` of the
streaming run against ``rss_goal_mb`` (1024), ``examples_per_s`` of the three runs, ``ratio`` (streaming /
in-memory default path) and ``ratio_loop`` (streaming / in-memory loop path).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence

import numpy as np

IMAGE_SHAPE = (28, 28, 1)
NUM_CLASSES = 10
RSS_GOAL_MB = 1024
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROBE_ROWS = 4096
WORKERS = ("streaming", "in_memory", "in_memory_loop")  # run in this order, one subprocess each


@dataclasses.dataclass(frozen=True)
class Size:
    """What one benchmark run writes and trains."""

    gb: float = 2.0  # at least this many GB (1e9 bytes) of training records on disk
    test_examples: int = 10_000
    memory_examples: int = 65_536  # rows of the in-memory comparison (float32 28x28: 3,136 bytes each)
    batch_size: int = 128


SMOKE = Size(gb=0.004, test_examples=256, memory_examples=512, batch_size=32)


def synthetic_chunks(n: int, seed: int, rows: int = PROBE_ROWS) -> Iterator[dict[str, np.ndarray]]:
    """``n`` examples in chunks of ``rows``: ``x`` float32 [rows, 28, 28, 1] (the class's template, uniform in
    [0, 1], plus N(0, 0.3) noise), ``y`` int32 [rows] uniform over 10 classes. Templates depend on nothing."""
    templates = np.random.default_rng(0).random((NUM_CLASSES, *IMAGE_SHAPE), dtype=np.float32)
    rng = np.random.default_rng(seed)
    for start in range(0, n, rows):
        y = rng.integers(0, NUM_CLASSES, min(rows, n - start)).astype(np.int32)
        noise = rng.standard_normal((len(y), *IMAGE_SHAPE), dtype=np.float32)
        yield {"x": templates[y] + np.float32(0.3) * noise, "y": y}


def bytes_per_record(root: str) -> float:
    """Bytes on disk per training record, from a probe shard of ``PROBE_ROWS`` synthetic rows."""
    from nnjax.data import records

    probe = tempfile.mkdtemp(prefix="probe-", dir=root)
    try:
        chunk = {"train": (PROBE_ROWS, synthetic_chunks(PROBE_ROWS, 1)), "test": (1, synthetic_chunks(1, 2))}
        metadata = records.write_records(probe, chunk, "probe", "probe", NUM_CLASSES, progress=False)
        return sum(s["bytes"] for s in metadata["splits"]["train"]["shards"]) / PROBE_ROWS
    finally:
        shutil.rmtree(probe)


def write_dataset(directory: str, size: Size, per_record: float) -> int:
    """Write the synthetic records directory; returns its training examples (enough for ``size.gb`` on disk)."""
    from nnjax.data import records

    n_train = math.ceil(size.gb * 1e9 / per_record * 1.01)  # 1 % over the probe's estimate
    records.write_records(
        directory,
        {"train": (n_train, synthetic_chunks(n_train, 1)),
         "test": (size.test_examples, synthetic_chunks(size.test_examples, 2))},
        "synthetic", "28x28 class templates plus Gaussian noise (benchmarks.streaming)", NUM_CLASSES,
    )
    return n_train


def run_worker(kind: str, directory: str, size: Size, workdir: str) -> dict:
    """Train one epoch in this process (``kind`` of ``WORKERS``); returns its figures and this process's peak RSS."""
    from nnjax import losses
    from nnjax.config import TrainConfig
    from nnjax.data import load_dataset, take
    from nnjax.models import MnistCNN
    from nnjax.tasks import fit

    data = load_dataset(f"records:{directory}")
    if kind != "streaming":
        rows = np.arange(min(size.memory_examples, len(data.train)))
        data = dataclasses.replace(data, train=take(data.train, rows), test=take(data.test, np.arange(len(data.test))),
                                   fingerprint=None)
    config = TrainConfig(epochs=1, batch_size=size.batch_size, validation_fraction=0.0, scan_epoch=kind == "in_memory",
                         eval_batch_size=min(1000, size.test_examples), workdir=workdir)
    summary = fit(config, MnistCNN(num_classes=data.num_classes), data, losses.classification, "streaming").summary
    return {
        "examples_per_s": summary["examples_per_s"], "train_examples": summary["train_examples"],
        "train_time_s": summary["train_time_s"], "compile_s": summary["compile_s"],
        "test_accuracy": summary["test_accuracy"],
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),  # Linux: KiB
    }


def summarize(size: Size, dataset_bytes: int, n_train: int, write_s: float, workers: dict[str, dict]) -> dict:
    """The final JSON line from the workers' figures."""
    speed = {kind: workers[kind]["examples_per_s"] for kind in WORKERS}
    return {
        "dataset_gb": round(dataset_bytes / 1e9, 3),
        "train_examples": n_train,
        "peak_rss_mb": workers["streaming"]["peak_rss_mb"],
        "rss_goal_mb": RSS_GOAL_MB,
        "rss_goal_met": workers["streaming"]["peak_rss_mb"] < RSS_GOAL_MB,
        "examples_per_s": speed,
        "ratio": round(speed["streaming"] / speed["in_memory"], 3),
        "ratio_loop": round(speed["streaming"] / speed["in_memory_loop"], 3),
        "in_memory_examples": workers["in_memory"]["train_examples"],
        "in_memory_peak_rss_mb": workers["in_memory"]["peak_rss_mb"],
        "test_accuracy": workers["streaming"]["test_accuracy"],
        "write_s": round(write_s, 1),
        "streaming_train_s": workers["streaming"]["train_time_s"],
        "batch_size": size.batch_size,
    }


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.streaming", description=__doc__.split("\n\n")[0])
    parser.add_argument("--gb", type=float, default=Size.gb, help="GB of training records on disk (default 2)")
    parser.add_argument("--memory-examples", type=int, default=Size.memory_examples,
                        help="rows of the in-memory comparison runs")
    parser.add_argument("--batch-size", type=int, default=Size.batch_size)
    parser.add_argument("--dir", default=tempfile.gettempdir(), help="where the temporary records directory goes")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes (seconds), for the test")
    parser.add_argument("--worker", choices=WORKERS, help=argparse.SUPPRESS)
    parser.add_argument("--records", help=argparse.SUPPRESS)
    parser.add_argument("--size", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker:
        size = Size(**json.loads(args.size))
        with tempfile.TemporaryDirectory() as workdir:
            print(json.dumps(run_worker(args.worker, args.records, size, workdir)))
        return 0
    size = SMOKE if args.smoke else Size(args.gb, Size.test_examples, args.memory_examples, args.batch_size)
    needed = size.gb * 1e9 * 1.1 + 2e8
    free = shutil.disk_usage(args.dir).free
    if free < needed:
        sys.stderr.write(f"benchmarks.streaming: needs {needed / 1e9:.1f} GB free in {args.dir}, it has "
                         f"{free / 1e9:.1f} GB; pass --dir on a larger disk or a smaller --gb\n")
        return 2
    root = tempfile.mkdtemp(prefix="nnjax-streaming-", dir=args.dir)
    try:
        directory = os.path.join(root, "records")
        tick = time.perf_counter()
        n_train = write_dataset(directory, size, bytes_per_record(root))
        write_s = time.perf_counter() - tick
        dataset_bytes = sum(os.path.getsize(os.path.join(directory, f)) for f in os.listdir(directory)
                            if f.startswith("train-"))
        workers = {}
        for kind in WORKERS:
            done = subprocess.run(
                [sys.executable, "-m", "benchmarks.streaming", "--worker", kind, "--records", directory,
                 "--size", json.dumps(dataclasses.asdict(size))],
                stdout=subprocess.PIPE, text=True, check=True, cwd=REPO_ROOT,
            )
            workers[kind] = json.loads(done.stdout.strip().splitlines()[-1])
    finally:
        shutil.rmtree(root)
    print(json.dumps(summarize(size, dataset_bytes, n_train, write_s, workers)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
