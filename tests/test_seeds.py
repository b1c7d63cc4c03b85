"""``--seeds N``: N seeds trained at once by one ``jax.vmap``-ed step (``nnjax.tasks.fit``).

The oracle is the one-seed run: seed k of ``--seed s --seeds N`` initialises, drops out and shuffles as the
run with ``--seed s + k`` does, on the validation split of ``--seed s``, so each per-seed metric equals that
run's, on the scan path and on the loop path.
"""

import json
import os

import numpy as np
import pytest
from conftest import blob_dataset

from nnjax import losses
from nnjax.config import TrainConfig
from nnjax.data import split_validation
from nnjax.errors import ConfigError
from nnjax.models import DropoutMLP
from nnjax.tasks import fit

MODEL = DropoutMLP(hidden=(16,), num_classes=4, dropout_rate=0.2, batch_norm=True)  # dropout and BatchNorm: both per seed


def _config(tmp_path, name, **overrides):
    fields = dict(epochs=2, batch_size=32, eval_batch_size=64, log_every_steps=3, validation_fraction=0.25,
                  workdir=str(tmp_path / name))
    return TrainConfig(**(fields | overrides))


@pytest.fixture(scope="module")
def data():
    return blob_dataset(n_train=192, n_test=64)


@pytest.mark.parametrize("scan_epoch", [True, False])
def test_each_seed_trains_exactly_as_its_own_one_seed_run(tmp_path, data, scan_epoch):
    seeds = fit(_config(tmp_path, "seeds", seed=5, seeds=2, scan_epoch=scan_epoch), MODEL, data,
                losses.classification, experiment="test", multi_seed=True)
    summary = seeds.summary
    assert summary["seeds"] == [5, 6]
    for k in range(2):
        # The one-seed oracle: seed 5 + k, on seed 5's validation split (the data, not the training randomness).
        train, val = split_validation(data.train, 0.25, 5)
        alone = fit(_config(tmp_path, f"alone{k}", seed=5 + k, validation_fraction=0.0, scan_epoch=scan_epoch),
                    MODEL, _with_train(data, train), losses.classification, experiment="test", multi_seed=True)
        for key in ("test_accuracy", "test_loss"):
            np.testing.assert_allclose(summary[f"{key}_per_seed"][k], alone.summary[key], atol=1e-4)
        train_rows = [r for r in seeds.history if r["kind"] == "train"]
        alone_rows = [r for r in alone.history if r["kind"] == "train"]
        np.testing.assert_allclose([r["train_loss_per_seed"][k] for r in train_rows],
                                   [r["train_loss"] for r in alone_rows], rtol=1e-5)
    per_seed = np.array(summary["test_accuracy_per_seed"])
    assert summary["test_accuracy"] == pytest.approx(per_seed.mean(), abs=1e-4)
    assert summary["test_accuracy_std"] == pytest.approx(per_seed.std(ddof=1), abs=1e-4)
    assert {"val_loss", "val_loss_std", "val_loss_per_seed"} <= set(summary)
    assert os.path.getsize(tmp_path / "seeds" / "learning_curves.png") > 0


def _with_train(data, train):
    """``data`` whose training split is ``train`` (so a run without validation trains on exactly those rows)."""
    from nnjax.data import Dataset

    return Dataset(data.name, data.source, train, data.test, data.num_classes)


def test_a_resumed_multi_seed_run_ends_as_the_uninterrupted_one(tmp_path, data):
    def run(name, epochs):
        return fit(_config(tmp_path, name, seeds=2, epochs=epochs), MODEL, data, losses.classification,
                   experiment="t", multi_seed=True)

    whole = run("whole", 2)
    run("parts", 1)
    resumed = run("parts", 2)
    assert resumed.summary["test_accuracy_per_seed"] == whole.summary["test_accuracy_per_seed"]
    rows = [json.loads(line) for line in open(tmp_path / "parts" / "metrics.jsonl")]
    assert [r["step"] for r in rows if r["kind"] == "train"] == [r["step"] for r in whole.history if r["kind"] == "train"]


def test_seeds_need_one_device_and_a_caller_that_reads_stacked_states(tmp_path, data):
    with pytest.raises(ConfigError, match="--seeds 2 trains the seeds at once on one device"):
        fit(_config(tmp_path, "jit", seeds=2, parallel="jit"), MODEL, data, losses.classification, experiment="t",
            multi_seed=True)
    with pytest.raises(ConfigError, match="--seeds 2: t reads one trained state after training"):
        fit(_config(tmp_path, "plain", seeds=2), MODEL, data, losses.classification, experiment="t")


def test_forecasts_report_every_seeds_rmse_and_the_first_equals_its_one_seed_run(tmp_path):
    """lstm_forecast's sine depends on --seed, so only the first seed has a one-seed twin on the same series."""
    from experiments import lstm_forecast

    flags = dict(epochs=2, points=200, workdir=str(tmp_path / "seeds"))
    seeds = lstm_forecast.main(lstm_forecast.Config(seeds=2, **flags))
    alone = lstm_forecast.main(lstm_forecast.Config(**(flags | {"workdir": str(tmp_path / "alone")})))
    assert len(seeds["test_model_rmse_per_seed"]) == 2 and "test_model_rmse_std" in seeds
    np.testing.assert_allclose(seeds["test_model_rmse_per_seed"][0], alone["test_model_rmse"], atol=2e-5)
    assert seeds["test_naive_rmse"] == alone["test_naive_rmse"] and "test_naive_rmse_per_seed" not in seeds
    assert seeds["beats_naive"] == (seeds["test_model_rmse"] < seeds["test_naive_rmse"])
