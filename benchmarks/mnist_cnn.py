"""Training throughput of the seed 003.14 MNIST CNN: nnjax vs PyTorch eager vs Keras ``fit``.

    pip install -e ".[bench]" && python -m benchmarks.mnist_cnn

Each framework trains the same model (Conv 32 3x3 VALID + ReLU -> MaxPool 2x2 -> Dense 128 ReLU ->
Dense 10, Adam 1e-3, batch 128) on the same synthetic 28x28x1 data, in its own subprocess, one after
another (never two timed workloads at once), alternating ``--repeats`` times (the best run is reported, with
all runs' figures). Throughput is examples/s over the epochs after a warm-up epoch (compilation and graph
tracing excluded). The last stdout line is one JSON object with each framework's examples/s and the ratios
nnjax/torch and nnjax/keras.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

import numpy as np

from benchmarks.workers import alternate, launch_worker

FRAMEWORKS = ("nnjax", "torch", "keras")


def synthetic_data(examples: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Random images float32 [N, 28, 28, 1] in [0, 1] and labels int32 [N] (identical for every framework)."""
    rng = np.random.default_rng(seed)
    return rng.random((examples, 28, 28, 1), dtype=np.float32), rng.integers(0, 10, examples).astype(np.int32)


def run_nnjax(x: np.ndarray, y: np.ndarray, batch_size: int, epochs: int) -> float:
    """Train with ``nnjax.tasks.fit`` (the experiments' trainer); its examples/s excludes compile time."""
    from nnjax import losses
    from nnjax.cli import setup_logging
    from nnjax.config import TrainConfig
    from nnjax.data import Dataset
    from nnjax.models import MnistCNN
    from nnjax.tasks import fit

    setup_logging()
    data = Dataset("synthetic", "benchmark data", {"x": x, "y": y}, {"x": x[:1000], "y": y[:1000]}, num_classes=10)
    with tempfile.TemporaryDirectory() as workdir:
        config = TrainConfig(
            epochs=epochs, batch_size=batch_size, workdir=workdir, validation_fraction=0.0,
            checkpoint_every_epochs=0, log_every_steps=10_000,
        )
        summary = fit(config, MnistCNN(), data, losses.classification, experiment="benchmark").summary
    return summary["examples_per_s"]


def run_torch(x: np.ndarray, y: np.ndarray, batch_size: int, epochs: int) -> float:
    """PyTorch eager training loop; the first epoch is warm-up."""
    import torch
    from torch import nn

    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 32, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
        nn.Linear(32 * 13 * 13, 128), nn.ReLU(), nn.Linear(128, 10),
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = nn.CrossEntropyLoss()
    images = torch.from_numpy(x).permute(0, 3, 1, 2).contiguous()
    labels = torch.from_numpy(y).long()
    steps = len(x) // batch_size
    seconds = 0.0
    for epoch in range(epochs + 1):
        order = torch.randperm(len(x))
        start = time.perf_counter()
        for i in range(steps):
            idx = order[i * batch_size : (i + 1) * batch_size]
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(model(images[idx]), labels[idx])
            loss.backward()
            optimizer.step()
        if epoch:
            seconds += time.perf_counter() - start
    return epochs * steps * batch_size / seconds


def run_keras(x: np.ndarray, y: np.ndarray, batch_size: int, epochs: int) -> float:
    """Keras ``model.fit`` (TensorFlow backend); the first epoch is warm-up."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras

    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        keras.Input((28, 28, 1)),
        keras.layers.Conv2D(32, (3, 3), activation="relu"),
        keras.layers.MaxPooling2D((2, 2)),
        keras.layers.Flatten(),
        keras.layers.Dense(128, activation="relu"),
        keras.layers.Dense(10, activation="softmax"),
    ])
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy")

    class EpochTimer(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            times.append(time.perf_counter() - self.start)

    times: list[float] = []
    usable = len(x) // batch_size * batch_size
    model.fit(x[:usable], y[:usable], batch_size=batch_size, epochs=epochs + 1, verbose=0, callbacks=[EpochTimer()])
    return epochs * usable / sum(times[1:])


def parse_args(argv: list[str]) -> argparse.Namespace:
    """Flags; ``--examples``, ``--batch-size``, ``--epochs`` and ``--repeats`` must be >= 1."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--examples", type=int, default=12_800)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=3, help="timed epochs (after one warm-up epoch)")
    parser.add_argument("--repeats", type=int, default=2, help="runs per framework, alternating; the best is reported")
    parser.add_argument("--frameworks", default=",".join(FRAMEWORKS))
    parser.add_argument("--worker", choices=FRAMEWORKS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if min(args.examples, args.batch_size, args.epochs, args.repeats) < 1:
        parser.error("--examples, --batch-size, --epochs and --repeats must be >= 1")
    unknown = set(args.frameworks.split(",")) - set(FRAMEWORKS)
    if unknown:
        parser.error(f"--frameworks must be drawn from {FRAMEWORKS}, got {sorted(unknown)}")
    return args


def summarize(args: argparse.Namespace, runs: dict[str, list[dict | None]]) -> dict:
    """The final JSON object: the setting, each framework's best and all runs' examples/s, nnjax/torch and
    nnjax/keras. ``runs`` maps a framework to its workers (``None``: failed; its best is then ``null``)."""
    result: dict[str, object] = {"benchmark": "mnist_cnn", "batch_size": args.batch_size, "examples": args.examples,
                                 "timed_epochs": args.epochs, "repeats": args.repeats, "cpu_count": os.cpu_count()}
    for framework, workers in runs.items():
        rates = [worker and round(worker["examples_per_s"], 1) for worker in workers]
        result[f"{framework}_runs_examples_per_s"] = rates
        result[f"{framework}_examples_per_s"] = max((rate for rate in rates if rate is not None), default=None)
    for other in ("torch", "keras"):
        if result.get("nnjax_examples_per_s") and result.get(f"{other}_examples_per_s"):
            result[f"nnjax_over_{other}"] = round(result["nnjax_examples_per_s"] / result[f"{other}_examples_per_s"], 2)
    return result


def run_subprocess(framework: str, argv: list[str]) -> dict | None:
    """One framework's worker in a fresh interpreter with the parent's flags; ``None`` if it failed."""
    return launch_worker("benchmarks.mnist_cnn", [*argv, "--worker", framework], framework,
                         lambda w: f"{framework}: {w['examples_per_s']:.0f} examples/s (load average {w['load_avg']:.2f})")


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    if args.worker:
        load_avg = os.getloadavg()[0]
        x, y = synthetic_data(args.examples)
        runner = {"nnjax": run_nnjax, "torch": run_torch, "keras": run_keras}[args.worker]
        print(json.dumps({"examples_per_s": runner(x, y, args.batch_size, args.epochs), "load_avg": load_avg}))
        return
    runs = alternate(args.repeats, args.frameworks.split(","), lambda framework: run_subprocess(framework, argv))
    print(json.dumps(summarize(args, runs)))


if __name__ == "__main__":
    main()
