"""Seed 001 slide 14: an LSTM forecasts the next value of a series from a window of past values.

    python -m experiments.lstm_forecast                       # noisy sine (synthetic)
    python -m experiments.lstm_forecast --series sunspots     # needs statsmodels
    python -m experiments.lstm_forecast --series co2          # needs statsmodels

``--series`` picks the series (``nnjax.data.timeseries.load_series``): the seed's noisy sine
(``sin(0.1 t) + N(0, 0.1²)``, ``--points`` 1,000 values; ``--points``/``--noise`` apply to it only),
yearly sunspot numbers 1700-2008 (309 values) or monthly Mauna Loa CO2 1958-2001 (526 values).
``--window 0`` (the default) uses the series' window from ``WINDOWS``: 10 for the sine (the seed's),
22 years for sunspots (two ~11-year cycles), 24 months for CO2 (two seasonal cycles). ``--epochs 0``
(the default) uses ``EPOCHS``: the short real series give few batches per epoch, so they run longer.

The series is split in time order 70/15/15 into train/validation/test parts; a min-max scaler is
fitted on the training part only. Each window is assigned to the part holding its target. The model
trains through ``nnjax.train.fit`` with an MSE objective. ``--validation-fraction`` defaults to 0:
``fit`` would carve a *random* validation subset out of the training windows, which leaks
neighbouring (overlapping) windows; the time-ordered validation part is evaluated here instead.
``--difference`` makes the model see and forecast one-step changes instead of levels
(``timeseries.difference_windows``, in units of the training changes' standard deviation): a
trending series such as CO2 leaves the training range in the test part, which a level model on
min-max-scaled inputs cannot follow. Reports RMSE in the series' units against the naive last-value
forecast on the same windows (and, for the sine, the noise floor: the RMSE of the noiseless sine);
``test_loss`` from ``fit`` is the MSE in the model's (scaled, or scaled-change) units;
``test_time_range`` is the ``t`` (sine) or year of the first and last test target.
"""

from __future__ import annotations

import dataclasses
import os
import sys

import jax
import numpy as np
import optax

from nnjax import cli, losses, metrics, plots
from nnjax.config import TrainConfig, check_positive
from nnjax.data import Dataset, num_examples, split_validation
from nnjax.data.timeseries import (
    SERIES,
    MinMaxScaler,
    difference_windows,
    load_series,
    noisy_sine,
    split_windows,
    time_split,
    undifference,
)
from nnjax.errors import ConfigError
from nnjax.models import LSTMForecaster
from nnjax.optim import make_optimizer
from nnjax.train import fit

FRACTIONS = (0.7, 0.15, 0.15)
WINDOWS = {"sine": 10, "sunspots": 22, "co2": 24}  # --window 0: the seed's 10; two sunspot / seasonal cycles
EPOCHS = {"sine": 20, "sunspots": 200, "co2": 100}  # --epochs 0: 420 / 1,200 / 1,000 Adam steps


@dataclasses.dataclass(frozen=True)
class Config(TrainConfig):
    """LSTM(50) + Dense(1) on windows of the series' default length; the sine: 1,000 points, noise 0.1.

    Adam 5e-3 cosine-decayed to 0 over the run, batch 32, the series' default epochs (sine: 20).
    """

    series: str = dataclasses.field(default="sine", metadata={"choices": SERIES})
    epochs: int = 0
    batch_size: int = 32
    learning_rate: float = 5e-3
    data: str = "series"
    validation_fraction: float = 0.0
    checkpoint_every_epochs: int = 0  # training takes seconds: only the final state is saved
    points: int = 1000
    noise: float = 0.1
    window: int = 0
    hidden: int = 50
    difference: bool = False

    def resolved(self) -> Config:
        """This config with ``window``/``epochs`` of 0 replaced by the series' defaults (``WINDOWS``/``EPOCHS``)."""
        return dataclasses.replace(
            self, window=self.window or WINDOWS[self.series], epochs=self.epochs or EPOCHS[self.series]
        )

    def validate(self) -> None:
        """``TrainConfig``'s checks on the resolved config, then this experiment's flags."""
        if self.series not in SERIES:
            raise ConfigError(f"--series must be one of {', '.join(SERIES)}, got {self.series!r}")
        for name in ("window", "epochs"):
            if getattr(self, name) < 0:
                raise ConfigError(f"--{name} must be >= 0 (0: the series' default), got {getattr(self, name)}")
        resolved = self.resolved()
        super(Config, resolved).validate()
        if self.data != "series":
            raise ConfigError(f"--data is not used here (choose --series {{{','.join(SERIES)}}}), got {self.data!r}")
        check_positive(self, "points", "hidden")
        if self.noise < 0:
            raise ConfigError(f"--noise must be >= 0, got {self.noise}")
        if self.series == "sine":
            resolved.check_length(self.points)
        if self.difference and resolved.window < 2:
            raise ConfigError(f"--difference needs --window >= 2, got {resolved.window}")

    def check_length(self, length: int) -> None:
        """Raise ``ConfigError`` when a series of ``length`` values is too short for the window and batch size."""
        if length * FRACTIONS[2] < 2 or length * FRACTIONS[0] < self.window + self.batch_size:
            raise ConfigError(
                f"the {self.series} series ({length} values; --points for the sine) is too short for "
                f"--window {self.window} and --batch-size {self.batch_size}"
            )


def main(config: Config) -> dict:
    config = config.resolved()
    series = load_series(config.series, config.points, config.noise, config.seed)
    series_T = series.values_T
    config.check_length(len(series_T))
    scaler = MinMaxScaler.fit(time_split(series_T, FRACTIONS)[0])
    levels = split_windows(scaler.transform(series_T), config.window, FRACTIONS)  # scaled values
    train, val, test = levels
    change_scale = 1.0
    if config.difference:  # the model sees and forecasts one-step changes, in units of their training std
        change_scale = float(np.std(difference_windows(levels[0])["y"])) or 1.0
        train, val, test = (difference_windows(split, change_scale) for split in levels)
    data = Dataset(config.series, series.source, train, test, num_classes=0)
    model = LSTMForecaster(hidden=config.hidden)
    fit_train = train  # the windows fit trains on, to size the schedule to the steps fit will take
    if config.validation_fraction:
        fit_train = split_validation(train, config.validation_fraction, config.seed)[0]
    steps = config.epochs * (num_examples(fit_train) // config.batch_size)
    tx = make_optimizer(config.optimizer, optax.cosine_decay_schedule(config.learning_rate, steps))
    result = fit(config, model, data, losses.regression, experiment="lstm_forecast", tx=tx)

    predict = jax.jit(lambda x: model.apply({"params": result.state.params}, x))
    report = {}
    for name, split, level in (("val", val, levels[1]), ("test", test, levels[2])):
        output_N = np.asarray(predict(split["x"]))[:, 0]
        forecast = undifference(level["x"], output_N, change_scale) if config.difference else output_N
        actual = scaler.inverse_transform(level["y"][:, 0])
        naive = scaler.inverse_transform(level["x"][:, -1, 0])
        report[name] = (actual, scaler.inverse_transform(forecast), naive)

    actual, forecast, naive = report["test"]
    t_test = np.arange(len(series_T) - len(actual), len(series_T))
    t_context = np.arange(max(0, t_test[0] - 100), t_test[0])
    workdir = result.summary["workdir"]
    plots.forecast(
        t_test, actual, {"LSTM": forecast, "naive (last value)": naive}, os.path.join(workdir, "forecast.png"),
        title=f"lstm_forecast ({config.series}): one-step forecasts on the test part",
        context=(t_context, series_T[t_context]),
    )
    errors = {
        f"{name}_{kind}_rmse": round(float(metrics.rmse(pred, act)), 5)
        for name, (act, model_pred, naive_pred) in report.items()
        for kind, pred in (("model", model_pred), ("naive", naive_pred))
    }
    if config.series == "sine":
        clean_T = noisy_sine(config.points, 0.0, config.seed)
        errors["test_noise_floor_rmse"] = round(float(metrics.rmse(clean_T[t_test], actual)), 5)
    return {
        **result.summary,
        "series": config.series,
        "window": config.window,
        "difference": config.difference,
        "epochs": config.epochs,
        **errors,
        "beats_naive": errors["test_model_rmse"] < errors["test_naive_rmse"],
        "test_windows": len(actual),
        "test_time_range": [round(float(series.time_T[t]), 3) for t in (t_test[0], t_test[-1])],
        "plots": ["forecast.png", "learning_curves.png"],
        "workdir": workdir,
    }


if __name__ == "__main__":
    sys.exit(cli.run(main, Config, prog="lstm_forecast"))
