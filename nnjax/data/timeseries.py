"""Univariate time series for forecasting (seed 001·14): series, windows, splits, scalers.

``load_series`` gives the synthetic noisy sine or one of two real series whose CSV files ship with
statsmodels (yearly sunspot numbers, monthly Mauna Loa CO2; ``nnjax.data.packaged`` fetches the two files
once, statsmodels is never installed or imported). Everything is NumPy on the host. Scalers are
frozen dataclasses: ``fit`` (a classmethod) learns their statistics from the training part only;
``transform``/``inverse_transform`` are pure.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime
import os
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from nnjax.data.packaged import files_dir

SERIES = ("sine", "sunspots", "co2")


def noisy_sine(
    n: int = 1000, noise: float = 0.1, seed: int = 0, frequency: float = 0.1, duration: float = 100.0
) -> np.ndarray:
    """Seed 001·14's series ``sin(frequency · t) + N(0, noise²)`` at ``n`` points ``t = linspace(0, duration)``.

    Returns float32 [n]; the noise comes from ``np.random.default_rng(seed)``.
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if noise < 0:
        raise ValueError(f"noise must be >= 0, got {noise}")
    t_T = np.linspace(0.0, duration, n)
    series = np.sin(frequency * t_T) + np.random.default_rng(seed).normal(0.0, noise, n)
    return series.astype(np.float32)


class Series(NamedTuple):
    """A univariate series in time order: ``values_T`` float32 [T], ``time_T`` float64 [T] and where it came from.

    ``time_T`` is the sine's ``t`` or, for the real series, the (decimal) calendar year of each value.
    """

    name: str
    values_T: np.ndarray
    time_T: np.ndarray
    source: str


def load_series(name: str, points: int = 1000, noise: float = 0.1, seed: int = 0) -> Series:
    """The series ``name`` (one of ``SERIES``); ``points``, ``noise`` and ``seed`` apply to ``'sine'`` only.

    - ``'sine'``: ``noisy_sine(points, noise, seed)``, ``t = linspace(0, 100, points)``.
    - ``'sunspots'``: yearly sunspot numbers 1700-2008 (309 values, no gaps), ``statsmodels.datasets.sunspots``.
    - ``'co2'``: Mauna Loa atmospheric CO2 in ppm, ``statsmodels.datasets.co2``. The source is weekly
      (1958-03-29 to 2001-12-29, 2,284 weeks, 59 missing); it is resampled to calendar-month means of
      the weeks present (526 months, 1958-03 to 2001-12) and the 5 months with no data at all
      (1958-06, 1958-10, 1964-02 to 1964-04) are filled by linear interpolation in time.

    The real series are statsmodels' CSV files (``nnjax.data.packaged``: installed, cached or fetched once);
    ``DataUnavailableError`` says how to get them when they cannot be had.
    """
    if name == "sine":
        values_T = noisy_sine(points, noise, seed)
        return Series(name, values_T, np.linspace(0.0, 100.0, points), "nnjax.data.timeseries.noisy_sine (synthetic)")
    if name not in SERIES:
        raise ValueError(f"name must be one of {', '.join(SERIES)}, got {name!r}")
    rows = _csv_rows(os.path.join(files_dir("statsmodels_series"), "datasets", name, f"{name}.csv"))
    if name == "sunspots":
        return Series(
            name,
            np.array([float(row["SUNACTIVITY"]) for row in rows], np.float32),
            np.array([float(row["YEAR"]) for row in rows], np.float64),
            "statsmodels.datasets.sunspots (yearly sunspot numbers, 1700-2008)",
        )
    days = [datetime.date(int(r["date"][:4]), int(r["date"][4:6]), int(r["date"][6:])) for r in rows]
    values = np.array([float(r["co2"]) if r["co2"] else np.nan for r in rows])
    months, monthly = monthly_means(np.array(days, "datetime64[D]"), values)
    years = months.astype("datetime64[Y]").astype(int) + 1970
    month_index = months.astype(int) % 12
    return Series(
        name,
        monthly.astype(np.float32),
        (years + month_index / 12.0).astype(np.float64),
        "statsmodels.datasets.co2 (Mauna Loa CO2 ppm; weekly -> monthly means, empty months interpolated)",
    )


def _csv_rows(path: str) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def monthly_means(days_T: np.ndarray, values_T: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(months datetime64[M] [M], float64 [M]): the mean of the non-NaN values in every calendar month from the
    first day's month to the last's; a month without any is interpolated linearly in time between its
    neighbours' month starts (pandas' ``resample('MS').mean().interpolate(method='time')``)."""
    month_T = days_T.astype("datetime64[M]")
    months = np.arange(month_T.min(), month_T.max() + 1)
    index_T = (month_T - months[0]).astype(int)
    present = ~np.isnan(values_T)
    sums = np.bincount(index_T[present], values_T[present], minlength=len(months))
    counts = np.bincount(index_T[present], minlength=len(months))
    means = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
    starts = months.astype("datetime64[D]").astype(np.float64)
    known = counts > 0
    means[~known] = np.interp(starts[~known], starts[known], means[known])
    return months, means


def sliding_windows(series_T: np.ndarray, window: int, horizon: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Inputs ``x[i] = series[i : i + window]`` and targets ``y[i] = series[i + window + horizon - 1]``.

    ``horizon = 1`` predicts the value right after the window (the seed's ``prepare_sequences``).
    Returns float32 ``x`` [N, window, 1] and ``y`` [N, 1] with ``N = T - window - horizon + 1``.
    """
    series_T = np.asarray(series_T, np.float32)
    if series_T.ndim != 1:
        raise ValueError(f"series must have shape [T], got {series_T.shape}")
    if window < 1 or horizon < 1:
        raise ValueError(f"window and horizon must be >= 1, got window={window}, horizon={horizon}")
    n = series_T.shape[0] - window - horizon + 1
    if n < 1:
        raise ValueError(
            f"series of length {series_T.shape[0]} is too short for window={window} and horizon={horizon}"
        )
    x_NxW = np.lib.stride_tricks.sliding_window_view(series_T, window)[:n]
    y_N = series_T[window + horizon - 1 :]
    return np.ascontiguousarray(x_NxW[:, :, None]), y_N[:, None].copy()


def time_split(series: np.ndarray, fractions: Sequence[float] = (0.7, 0.15, 0.15)) -> tuple[np.ndarray, ...]:
    """Consecutive, disjoint parts of ``series`` (along axis 0) in time order, sized by ``fractions``.

    Part sizes are ``round`` of the cumulative fractions times the length, so they add up to it
    exactly; the last part takes what is left. ``fractions`` must be >= 0 and sum to 1.
    """
    fractions = np.asarray(fractions, np.float64)
    if fractions.ndim != 1 or fractions.size < 1 or (fractions < 0).any() or not np.isclose(fractions.sum(), 1.0):
        raise ValueError(f"fractions must be >= 0 and sum to 1, got {tuple(fractions.tolist())}")
    n = len(series)
    bounds = np.round(np.cumsum(fractions)[:-1] * n).astype(int)
    return tuple(np.split(series, bounds))


def split_windows(
    series_T: np.ndarray, window: int, fractions: Sequence[float] = (0.7, 0.15, 0.15), horizon: int = 1
) -> tuple[dict[str, np.ndarray], ...]:
    """``sliding_windows`` of the whole series, each assigned to the ``time_split`` part holding its target.

    Returns one ``{'x': [N_k, window, 1], 'y': [N_k, 1]}`` per part, in time order. A window whose
    target lies in a later part may reach back into earlier parts for its inputs (those values are
    known when the forecast is made), so every target after the first ``window + horizon - 1`` steps
    is forecast once; no target, and so no label, of a later part appears in an earlier part.
    """
    x_NxWx1, y_Nx1 = sliding_windows(series_T, window, horizon)
    target_N = np.arange(window + horizon - 1, len(series_T))
    bounds = np.cumsum([len(part) for part in time_split(series_T, fractions)])[:-1]
    part_N = np.searchsorted(bounds, target_N, side="right")
    return tuple({"x": x_NxWx1[part_N == k], "y": y_Nx1[part_N == k]} for k in range(len(bounds) + 1))


def difference_windows(split: dict[str, np.ndarray], scale: float = 1.0) -> dict[str, np.ndarray]:
    """Windows of a (trending) series turned into windows of its one-step changes, divided by ``scale``.

    ``split`` is ``{'x': [N, W, 1], 'y': [N, 1]}`` (``split_windows``); returns ``x`` = the ``W - 1``
    changes inside each window [N, W - 1, 1] and ``y`` = the change from the window's last value to
    its target [N, 1]. A forecast ``d`` of the change maps back to ``x[:, -1] + scale · d``
    (``undifference``); ``d = 0`` is the naive last-value forecast. Needs ``W >= 2``.
    """
    x_NxWx1, y_Nx1 = np.asarray(split["x"]), np.asarray(split["y"])
    if x_NxWx1.ndim != 3 or x_NxWx1.shape[1] < 2 or y_Nx1.shape != (x_NxWx1.shape[0], 1):
        raise ValueError(f"split must hold x [N, W >= 2, 1] and y [N, 1], got {x_NxWx1.shape} and {y_Nx1.shape}")
    if not scale > 0:
        raise ValueError(f"scale must be > 0, got {scale}")
    return {"x": np.diff(x_NxWx1, axis=1) / scale, "y": (y_Nx1 - x_NxWx1[:, -1]) / scale}


def undifference(x_NxWx1: np.ndarray, change_N: np.ndarray, scale: float = 1.0) -> np.ndarray:
    """Level forecasts [N] from changes [N] in ``difference_windows``' units: ``x[:, -1, 0] + scale · change``."""
    return np.asarray(x_NxWx1)[:, -1, 0] + scale * np.asarray(change_N)


@dataclasses.dataclass(frozen=True)
class MinMaxScaler:
    """``(x - lo) / (hi - lo)``: the training range maps to [0, 1] (per feature on axis 0)."""

    lo: np.ndarray
    hi: np.ndarray

    @classmethod
    def fit(cls, train: np.ndarray) -> MinMaxScaler:
        """Minimum and maximum of ``train`` over axis 0, ignoring NaN (e.g. indicator warm-up rows)."""
        train = np.asarray(train, np.float64)
        return cls(lo=np.nanmin(train, axis=0), hi=np.nanmax(train, axis=0))

    def _scale(self) -> np.ndarray:
        span = self.hi - self.lo
        return np.where(span > 0, span, 1.0)

    def transform(self, x: np.ndarray) -> np.ndarray:
        """Scaled ``x``, same shape and dtype (float)."""
        x = np.asarray(x)
        return ((x - self.lo) / self._scale()).astype(_float_dtype(x))

    def inverse_transform(self, z: np.ndarray) -> np.ndarray:
        """Back to original units: ``z (hi - lo) + lo``."""
        z = np.asarray(z)
        return (z * self._scale() + self.lo).astype(_float_dtype(z))


@dataclasses.dataclass(frozen=True)
class StandardScaler:
    """``(x - mean) / std`` with the training mean and (population) standard deviation per feature on axis 0."""

    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def fit(cls, train: np.ndarray) -> StandardScaler:
        """Mean and standard deviation of ``train`` over axis 0."""
        train = np.asarray(train, np.float64)
        return cls(mean=train.mean(axis=0), std=train.std(axis=0))

    def _scale(self) -> np.ndarray:
        return np.where(self.std > 0, self.std, 1.0)

    def transform(self, x: np.ndarray) -> np.ndarray:
        """Standardised ``x``, same shape and dtype (float)."""
        x = np.asarray(x)
        return ((x - self.mean) / self._scale()).astype(_float_dtype(x))

    def inverse_transform(self, z: np.ndarray) -> np.ndarray:
        """Back to original units: ``z · std + mean``."""
        z = np.asarray(z)
        return (z * self._scale() + self.mean).astype(_float_dtype(z))


def _float_dtype(x: np.ndarray) -> np.dtype:
    """``x``'s dtype when it is floating, else float32 (scaled values are never integers)."""
    return x.dtype if np.issubdtype(x.dtype, np.floating) else np.dtype(np.float32)
