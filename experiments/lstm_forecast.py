"""Seed 001 slide 14: an LSTM forecasts the next value of a series from a window of past values.

    python -m experiments.lstm_forecast                       # noisy sine (synthetic)
    python -m experiments.lstm_forecast --series sunspots     # statsmodels' CSV, fetched on first use
    python -m experiments.lstm_forecast --series co2          # statsmodels' CSV, fetched on first use

``--series`` picks the series (``nnjax.data.timeseries.load_series``): the seed's noisy sine
(``sin(0.1 t) + N(0, 0.1²)``, ``--points`` 1,000 values; ``--points``/``--noise`` apply to it only),
yearly sunspot numbers 1700-2008 (309 values) or monthly Mauna Loa CO2 1958-2001 (526 values).
``--window 0`` (the default) uses the series' window from ``nnjax.tasks.forecasting.WINDOWS``: 10 for
the sine (the seed's), 22 years for sunspots (two ~11-year cycles), 24 months for CO2 (two seasonal
cycles). ``--epochs 0`` (the default) uses ``nnjax.tasks.forecasting.EPOCHS``: the short real series
give few batches per epoch, so they run longer.

The pipeline is ``nnjax.tasks.forecasting.run_forecast``: a time-ordered 70/15/15 split, a min-max scaler
fitted on the training part only, each window assigned to the part holding its target, training
through ``nnjax.tasks.fit`` with an MSE objective. ``--validation-fraction`` defaults to 0: ``fit``
would carve a *random* validation subset out of the training windows, which leaks neighbouring
(overlapping) windows; the time-ordered validation part is evaluated instead.
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
import sys

from nnjax import cli
from nnjax.config import option
from nnjax.tasks.forecasting import ForecastConfig, run_forecast
from nnjax.models import LSTMForecaster


@dataclasses.dataclass(frozen=True)
class Config(ForecastConfig):
    """LSTM(50) + Dense(1) on windows of the series' default length; the sine: 1,000 points, noise 0.1.

    Adam 5e-3 cosine-decayed to 0 over the run, batch 32, the series' default epochs (sine: 20).
    """

    hidden: int = option(50, "LSTM units")


def main(config: Config) -> dict:
    return run_forecast(config, LSTMForecaster(hidden=config.hidden), "lstm_forecast", "LSTM")


if __name__ == "__main__":
    sys.exit(cli.run(main, Config, prog="lstm_forecast"))
