"""Seed 000 slide 10: an LSTM + self-attention "time-series transformer" forecasts the next value of a series.

    python -m experiments.timeseries_transformer                          # sunspots (statsmodels' CSV, fetched on first use)
    python -m experiments.timeseries_transformer --series co2 --difference
    python -m experiments.timeseries_transformer --series sine            # the synthetic noisy sine

The model is ``nnjax.models.forecast.TimeSeriesTransformer`` (stacked LSTMs -> multi-head
self-attention -> Add & LayerNorm -> GELU feed-forward -> Add & LayerNorm -> Dense per step) read
at the window's last step (``TimeSeriesForecaster``). It trains and is evaluated exactly as
``experiments.lstm_forecast`` (``nnjax.tasks.forecasting.run_forecast``): the same windows (``WINDOWS``:
22 years for sunspots, 24 months for CO2, 10 for the sine), the time-ordered 70/15/15 split, the
min-max scaler fitted on the training part, ``--difference``, and RMSE in the series' units
against the naive last-value forecast, so the two JSON lines compare directly. The seed's example
is hidden 256, 2 layers, 8 heads; the defaults here are smaller (hidden 64, 1 layer, 4 heads) for
series of a few hundred values: they had the lowest *validation* RMSE on sunspots among 1-2 layers,
learning rate 5e-3 or 2e-3 and dropout 0 or 0.1 (seed 0). The forecast is the last step's output,
which attends to every step of the window with or without a causal mask, so this experiment has no
``--causal`` flag.
"""

from __future__ import annotations

import dataclasses
import sys

from nnjax import cli
from nnjax.config import check_divisible, check_fraction, option
from nnjax.tasks.forecasting import ForecastConfig, run_forecast
from nnjax.models.forecast import TimeSeriesForecaster, TimeSeriesTransformer


@dataclasses.dataclass(frozen=True)
class Config(ForecastConfig):
    """LSTM(64) -> 4-head self-attention -> FFN(256) -> Dense(1) on windows of the series' default length.

    Adam 5e-3 cosine-decayed to 0 over the run, batch 32, the series' default epochs; sunspots by default.
    """

    series: str = "sunspots"
    hidden: int = option(64, "LSTM units and attention width (divisible by --heads)")
    layers: int = option(1, "self-attention + feed-forward blocks")
    heads: int = option(4, "attention heads")
    dropout: float = option(0.0, "dropout rate in the attention blocks, in [0, 1)")

    def validate(self) -> None:
        """The shared forecasting checks, then the model's flags."""
        super().validate()
        check_divisible(self, "hidden", "heads")
        check_fraction(self, "dropout")


def main(config: Config) -> dict:
    transformer = TimeSeriesTransformer(config.hidden, config.layers, config.heads, dropout=config.dropout)
    model = TimeSeriesForecaster(transformer)
    return run_forecast(config, model, "timeseries_transformer", "LSTM + attention")


if __name__ == "__main__":
    sys.exit(cli.run(main, Config, prog="timeseries_transformer"))
