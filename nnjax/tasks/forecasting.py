"""One-step forecasting of a univariate series, shared by the forecasting experiments (seeds 001·14, 000·10).

``run_forecast(config, model, experiment, label)`` is the whole experiment for any flax model
mapping windows [B, W, 1] to forecasts [B, 1] (``model.apply(variables, x, train=...)``):

1. ``load_series`` gives the series (the noisy sine, or sunspots/CO2 from statsmodels); it is split
   in time order 70/15/15 (``FRACTIONS``) into train/validation/test parts and a min-max scaler is
   fitted on the training part only. Each sliding window is assigned to the part holding its target.
2. With ``difference`` the model sees and forecasts one-step changes instead of levels
   (``timeseries.difference_windows``, in units of the training changes' standard deviation).
3. The model trains through ``nnjax.tasks.fit`` with an MSE objective and Adam (``config.optimizer``)
   whose learning rate decays to 0 along a cosine over the run.
4. Validation and test forecasts are mapped back to the series' units and compared (RMSE) with the
   naive last-value forecast on the same windows and, for the sine, with the noise floor (the RMSE
   of the noiseless sine); ``forecast.png`` plots the test part.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import numpy as np
import optax

from nnjax import losses, metrics, plots
from nnjax.config import TrainConfig, option
from nnjax.data import Dataset, num_examples, predict_batched
from nnjax.data.timeseries import (
    SERIES,
    MinMaxScaler,
    Series,
    difference_windows,
    load_series,
    noisy_sine,
    split_windows,
    time_split,
    undifference,
)
from nnjax.errors import ConfigError
from nnjax.optim import make_optimizer
from nnjax.tasks.supervised import fit, planned_steps
from nnjax.train.runner import rounded, seed_states, seed_statistics, stack_seeds

FRACTIONS = (0.7, 0.15, 0.15)
WINDOWS = {"sine": 10, "sunspots": 22, "co2": 24}  # --window 0: the seed's 10; two sunspot / seasonal cycles
EPOCHS = {"sine": 20, "sunspots": 200, "co2": 100}  # --epochs 0: 420 / 1,200 / 1,000 Adam steps at batch 32

Split = dict[str, np.ndarray]


@dataclasses.dataclass(frozen=True)
class ForecastConfig(TrainConfig):
    """Flags shared by the forecasting experiments; a subclass adds its model's flags.

    ``window`` and ``epochs`` of 0 mean the series' defaults, ``WINDOWS`` and ``EPOCHS`` (the
    short real series give few batches per epoch, so they run longer).
    ``points``/``noise`` apply to the sine only. ``validation_fraction`` stays 0: ``fit`` would draw
    a *random* validation subset from overlapping training windows; the time-ordered validation
    part is evaluated instead.
    """

    series: str = option(
        "sine", "sine (the seed's noisy sine), sunspots (yearly 1700-2008) or co2 (monthly Mauna Loa 1958-2001)",
        choices=SERIES,
    )
    epochs: int = option(
        0, f"passes over the training windows; 0: the series' default ({', '.join(f'{k} {v}' for k, v in EPOCHS.items())})",
        minimum=0,
    )
    batch_size: int = 32
    learning_rate: float = option(5e-3, "Adam's initial learning rate, decayed to 0 along a cosine over the run")
    data: str = option("series", "only series: --series picks the data")
    validation_fraction: float = option(
        0.0, "keep 0: a random validation split leaks overlapping windows; the time-ordered validation part is "
        "evaluated instead"
    )
    checkpoint_every_epochs: int = option(0, "epochs between checkpoints; 0: only the final state (training takes seconds)",
                                          minimum=0)
    points: int = option(1000, "--series sine: values generated")
    noise: float = option(0.1, "--series sine: standard deviation of the added Gaussian noise")
    window: int = option(
        0, f"input steps per forecast; 0: the series' default ({', '.join(f'{k} {v}' for k, v in WINDOWS.items())})",
        minimum=0,
    )
    difference: bool = option(False, "see and forecast one-step changes instead of levels (for trending series such as co2)")

    def resumable_fields(self) -> set[str]:
        """``TrainConfig``'s, without the run's length (the cosine schedule depends on it)."""
        return super().resumable_fields() - {"epochs", "steps"}

    def resolved(self) -> ForecastConfig:
        """This config with ``window``/``epochs`` of 0 replaced by the series' defaults."""
        return dataclasses.replace(
            self, window=self.window or WINDOWS[self.series], epochs=self.epochs or EPOCHS[self.series]
        )

    def validate(self) -> None:
        """``TrainConfig``'s checks on the resolved config, then the series flags."""
        if self.series not in SERIES:
            raise ConfigError(f"--series must be one of {', '.join(SERIES)}, got {self.series!r}")
        resolved = self.resolved()
        super(ForecastConfig, resolved).validate()
        if self.data != "series":
            raise ConfigError(f"--data is not used here (choose --series {{{','.join(SERIES)}}}), got {self.data!r}")
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


class ForecastWindows(NamedTuple):
    """The series cut into windows: ``levels`` (min-max scaled values) and ``inputs`` (what the model sees).

    ``levels`` and ``inputs`` hold one ``{'x': [N_k, W, 1], 'y': [N_k, 1]}`` per part (train, val,
    test). ``inputs`` equals ``levels``, or, with ``difference``, holds their one-step changes
    divided by ``change_scale`` (``x`` then has ``W - 1`` steps).
    """

    series: Series
    scaler: MinMaxScaler
    levels: tuple[Split, Split, Split]
    inputs: tuple[Split, Split, Split]
    difference: bool
    change_scale: float


def make_windows(config: ForecastConfig) -> ForecastWindows:
    """Load ``config.series`` (resolved config) and cut it into scaled windows per part; see the module docstring."""
    series = load_series(config.series, config.points, config.noise, config.seed)
    config.check_length(len(series.values_T))
    scaler = MinMaxScaler.fit(time_split(series.values_T, FRACTIONS)[0])
    levels = split_windows(scaler.transform(series.values_T), config.window, FRACTIONS)
    if not config.difference:
        return ForecastWindows(series, scaler, levels, levels, False, 1.0)
    change_scale = float(np.std(difference_windows(levels[0])["y"])) or 1.0
    inputs = tuple(difference_windows(split, change_scale) for split in levels)
    return ForecastWindows(series, scaler, levels, inputs, True, change_scale)


def to_series_units(windows: ForecastWindows, part: int, output_N: np.ndarray) -> tuple[np.ndarray, ...]:
    """(actual, model forecast, naive last-value forecast), each [N] in the series' units, for part ``part``.

    ``output_N`` is the model's output on ``windows.inputs[part]`` (a scaled level, or a change).
    """
    level = windows.levels[part]
    forecast_N = undifference(level["x"], output_N, windows.change_scale) if windows.difference else output_N
    inverse = windows.scaler.inverse_transform
    return inverse(level["y"][:, 0]), inverse(forecast_N), inverse(level["x"][:, -1, 0])


def rmse_errors(report: Mapping[str, tuple[np.ndarray, np.ndarray, np.ndarray]]) -> dict[str, float]:
    """``{part}_model_rmse`` and ``{part}_naive_rmse`` (5 decimals) from ``{part: (actual, model, naive)}``."""
    return {
        f"{name}_{kind}_rmse": round(float(metrics.rmse(pred, act)), 5)
        for name, (act, model_pred, naive_pred) in report.items()
        for kind, pred in (("model", model_pred), ("naive", naive_pred))
    }


def cosine_optimizer(config: ForecastConfig, train: Split) -> optax.GradientTransformation:
    """``config.optimizer`` with its learning rate cosine-decayed to 0 over the steps ``fit`` will take on ``train``.

    That is ``--steps`` when given, else ``--epochs`` times the whole batches per epoch
    (``nnjax.train.planned_steps``).
    """
    steps = planned_steps(config, num_examples(train))
    return make_optimizer(config.optimizer, optax.cosine_decay_schedule(config.learning_rate, steps))


def run_forecast(config: ForecastConfig, model: nn.Module, experiment: str, label: str) -> dict[str, Any]:
    """Train ``model`` ([B, W, 1] -> [B, 1]) on ``config.series`` and report; returns the final JSON dict.

    Writes ``forecast.png`` (``label`` names the model's curve) and what ``fit`` writes into the
    run directory. Keys: ``fit``'s summary (``test_loss`` is the MSE in the model's scaled units),
    ``series``, ``window``, ``difference``, ``epochs``, ``{val,test}_{model,naive}_rmse`` in the
    series' units (plus ``test_noise_floor_rmse`` for the sine), ``beats_naive``,
    ``test_windows``, ``test_time_range`` (time of the first and last test target), ``plots`` and
    ``workdir``. With ``--seeds`` each RMSE is the mean over seeds, with ``_std`` and ``_per_seed``, and
    ``beats_naive`` compares the mean; the plot shows the first seed.
    """
    config = config.resolved()
    windows = make_windows(config)
    train, _, test = windows.inputs
    data = Dataset(config.series, windows.series.source, train, test, num_classes=0)
    result = fit(config, model, data, losses.regression, experiment=experiment, tx=cosine_optimizer(config, train),
                 multi_seed=True)

    predict = jax.jit(lambda params, x: model.apply({"params": params}, x))
    reports = [
        {name: to_series_units(windows, part, predict_batched(lambda b, _, p=state.params: predict(p, b["x"])[:, 0],
                                                              windows.inputs[part], config.eval_batch_size))
         for part, name in ((1, "val"), (2, "test"))}
        for state in seed_states(result.state, config.seeds)
    ]
    per_seed = [rmse_errors(report) for report in reports]
    model_keys = [k for k in per_seed[0] if "_model_" in k]  # the naive forecast is the same for every seed
    errors = {**per_seed[0], **{k: rounded(v, 5) for k, v in seed_statistics(
        "", stack_seeds(per_seed, model_keys)).items()}}
    actual, forecast, naive = reports[0]["test"]  # the plot shows the first seed's forecasts
    series_T = windows.series.values_T
    t_test = np.arange(len(series_T) - len(actual), len(series_T))
    t_context = np.arange(max(0, t_test[0] - 100), t_test[0])
    workdir = result.summary["workdir"]
    shown = label if config.seeds == 1 else f"{label}, seed {config.seed} of {config.seeds}"
    plots.forecast(
        t_test, actual, {shown: forecast, "naive (last value)": naive}, os.path.join(workdir, "forecast.png"),
        title=f"{experiment} ({config.series}): one-step forecasts on the test part",
        context=(t_context, series_T[t_context]),
    )
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
        "test_time_range": [round(float(windows.series.time_T[t]), 3) for t in (t_test[0], t_test[-1])],
        "plots": ["forecast.png", "learning_curves.png"],
        "workdir": workdir,
    }
