"""Seed 001 slide 14: an LSTM forecasts the next value of a noisy sine from a window of 10 values.

    python -m experiments.sine_forecast

The series (``sin(0.1 t) + N(0, 0.1²)``, 1,000 points) is split in time order 70/15/15 into
train/validation/test parts; a min-max scaler is fitted on the training part only. Each window is
assigned to the part holding its target. The model trains through ``nnjax.train.fit`` with an MSE
objective. ``--validation-fraction`` defaults to 0: ``fit`` would carve a *random* validation subset
out of the training windows, which leaks neighbouring (overlapping) windows; the time-ordered
validation part is evaluated here instead. Reports RMSE in the series' units against the naive
last-value forecast on the same windows, and the noise floor (RMSE of the noiseless sine);
``test_loss`` from ``fit`` is the MSE in scaled units.
"""

from __future__ import annotations

import dataclasses
import os
import sys

import jax
import numpy as np
import optax

from nnjax import cli, losses, plots
from nnjax.config import TrainConfig, check_positive
from nnjax.data import Dataset, num_examples, split_validation
from nnjax.data.timeseries import MinMaxScaler, noisy_sine, split_windows, time_split
from nnjax.errors import ConfigError
from nnjax.models import LSTMForecaster
from nnjax.optim import make_optimizer
from nnjax.train import fit

FRACTIONS = (0.7, 0.15, 0.15)


@dataclasses.dataclass(frozen=True)
class Config(TrainConfig):
    """LSTM(50) + Dense(1) on windows of 10 of a noisy sine (1,000 points, noise 0.1).

    Adam 5e-3 cosine-decayed to 0 over the run, batch 32, 20 epochs.
    """

    epochs: int = 20
    batch_size: int = 32
    learning_rate: float = 5e-3
    data: str = "sine"
    validation_fraction: float = 0.0
    checkpoint_every_epochs: int = 0  # training takes well under a second: only the final state is saved
    points: int = 1000
    noise: float = 0.1
    window: int = 10
    hidden: int = 50

    def validate(self) -> None:
        super().validate()
        if self.data != "sine":
            raise ConfigError(f"--data must be 'sine' (the synthetic noisy sine), got {self.data!r}")
        check_positive(self, "points", "window", "hidden")
        if self.noise < 0:
            raise ConfigError(f"--noise must be >= 0, got {self.noise}")
        if self.points * FRACTIONS[2] < 2 or self.points * FRACTIONS[0] < self.window + self.batch_size:
            raise ConfigError(
                f"--points {self.points} is too few for --window {self.window} and --batch-size {self.batch_size}"
            )


def rmse(predictions_N: np.ndarray, targets_N: np.ndarray) -> float:
    """Root mean squared error of two same-shaped arrays."""
    return float(np.sqrt(np.mean(np.square(np.asarray(predictions_N) - np.asarray(targets_N)))))


def main(config: Config) -> dict:
    series_T = noisy_sine(config.points, config.noise, config.seed)
    scaler = MinMaxScaler.fit(time_split(series_T, FRACTIONS)[0])
    train, val, test = split_windows(scaler.transform(series_T), config.window, FRACTIONS)
    data = Dataset("sine", "nnjax.data.timeseries.noisy_sine (synthetic)", train, test, num_classes=0)
    model = LSTMForecaster(hidden=config.hidden)
    fit_train = train  # the windows fit trains on, to size the schedule to the steps fit will take
    if config.validation_fraction:
        fit_train = split_validation(train, config.validation_fraction, config.seed)[0]
    steps = config.epochs * (num_examples(fit_train) // config.batch_size)
    tx = make_optimizer(config.optimizer, optax.cosine_decay_schedule(config.learning_rate, steps))
    result = fit(config, model, data, losses.regression, experiment="sine_forecast", tx=tx)

    predict = jax.jit(lambda x: model.apply({"params": result.state.params}, x))
    report = {}
    for name, split in (("val", val), ("test", test)):
        actual = scaler.inverse_transform(split["y"][:, 0])
        forecast = scaler.inverse_transform(np.asarray(predict(split["x"]))[:, 0])
        naive = scaler.inverse_transform(split["x"][:, -1, 0])
        report[name] = (actual, forecast, naive)

    actual, forecast, naive = report["test"]
    t_test = np.arange(len(series_T) - len(actual), len(series_T))
    t_context = np.arange(max(0, t_test[0] - 100), t_test[0])
    workdir = result.summary["workdir"]
    plots.forecast(
        t_test, actual, {"LSTM": forecast, "naive (last value)": naive}, os.path.join(workdir, "forecast.png"),
        title="sine_forecast: one-step forecasts on the test part", context=(t_context, series_T[t_context]),
    )
    clean_T = noisy_sine(config.points, 0.0, config.seed)
    metrics = {
        f"{name}_{kind}_rmse": round(rmse(pred, act), 5)
        for name, (act, model_pred, naive_pred) in report.items()
        for kind, pred in (("model", model_pred), ("naive", naive_pred))
    }
    return {
        **result.summary,
        **metrics,
        "beats_naive": metrics["test_model_rmse"] < metrics["test_naive_rmse"],
        "test_noise_floor_rmse": round(rmse(clean_T[t_test], actual), 5),
        "test_windows": len(actual),
        "plots": ["forecast.png", "learning_curves.png"],
        "workdir": workdir,
    }


if __name__ == "__main__":
    sys.exit(cli.run(main, Config, prog="sine_forecast"))
