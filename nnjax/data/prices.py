"""Daily stock prices and leak-free windowed data sets for next-day return forecasting (seed 002 slides 9-10).

``load_stock`` reads daily prices of one ticker from the ``bokeh_sampledata`` package (Quandl WIKI
prices of AAPL, IBM, MSFT, GOOG and FB up to 2013-03-01; AAPL/IBM/MSFT have 3,270 trading days) or
from a CSV file. ``make_stock_dataset`` turns a close series into technical-indicator windows whose
target is the next day's return, split in time order without leakage.
"""

from __future__ import annotations

import csv
import gzip
import os
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from nnjax.apps import finance
from nnjax.data.packaged import files_dir
from nnjax.data.timeseries import MinMaxScaler, time_split
from nnjax.errors import DataUnavailableError

SYMBOLS = ("AAPL", "IBM", "MSFT", "GOOG", "FB")
FEATURES = ("close", "sma", "rsi", "macd")
SPLITS = ("train", "val", "test")


class Prices(NamedTuple):
    """Daily series of one ticker sorted by date: ``dates_T`` datetime64[D], ``close_T`` and ``volume_T`` float64."""

    dates_T: np.ndarray
    close_T: np.ndarray
    volume_T: np.ndarray


def bokeh_stocks_path() -> str:
    """Path of ``bokeh_sampledata``'s ``stocks.csv.gz`` (``nnjax.data.packaged``: installed, cached or fetched once;
    DataUnavailableError if none can be). Importing the package's ``stocks`` module would parse every ticker;
    only the file is needed."""
    return os.path.join(files_dir("stocks"), "_data", "stocks.csv.gz")


def _column(name: str) -> str:
    """Header names normalised: 'Adj Close' -> 'adj_close'."""
    return name.strip().lower().replace(" ", "_")


def load_stock(symbol: str = "AAPL", path: str | None = None, adjusted: bool = True) -> Prices:
    """Daily prices of ``symbol`` sorted by date, from ``path`` or else from ``bokeh_sampledata``.

    The file is a CSV (gzip when it ends in ``.gz``) with a header holding at least ``date`` and
    ``close`` (case and spaces ignored: 'Adj Close' is ``adj_close``), optionally ``volume``
    (NaN when absent), ``adj_close`` and ``ticker``. With a ``ticker`` column only the rows of
    ``symbol`` are read. ``adjusted=True`` uses ``adj_close`` when present: the raw closes of the
    sample data are unadjusted, so AAPL's 2:1 splits of 2000 and 2005 would read as -50% days.
    """
    path = path or bokeh_stocks_path()
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8", newline="") as f:
        reader = csv.reader(f)
        header = [_column(name) for name in next(reader, [])]
        missing = {"date", "close"} - set(header)
        if missing:
            raise ValueError(f"{path} needs columns date and close, its header is {header}")
        col = {name: i for i, name in enumerate(header)}
        price_col = col["adj_close"] if adjusted and "adj_close" in col else col["close"]
        rows = [r for r in reader if r and ("ticker" not in col or r[col["ticker"]] == symbol)]
    if not rows:
        raise ValueError(f"no rows for symbol {symbol!r} in {path}")
    dates_T = np.array([r[col["date"]] for r in rows], dtype="datetime64[D]")
    close_T = np.array([float(r[price_col]) for r in rows])
    volume_T = np.array([float(r[col["volume"]]) if "volume" in col else np.nan for r in rows])
    order = np.argsort(dates_T, kind="stable")
    return Prices(dates_T[order], close_T[order], volume_T[order])


class StockDataset(NamedTuple):
    """Windows of scaled features and next-day returns, split in time order.

    ``splits[name]`` = {'x': float32 [N, window, F], 'y': float32 [N, 1]} for 'train', 'val', 'test'.
    Window i of a split ends at decision day ``days[name][i]`` (an index into the close series) and
    its target is the return from that day to the next, ``next_return[name][i]`` (float64 [N]).
    ``prices[name]`` (float64 [N + 1]) are the closes at the N decision days followed by the last
    target day: ``finance.backtest(prices, positions)`` with positions [N + 1] (the last ignored)
    earns exactly ``positions[i] * next_return[i]``. ``scaler`` was fitted on the training days only.
    """

    splits: dict[str, dict[str, np.ndarray]]
    next_return: dict[str, np.ndarray]
    prices: dict[str, np.ndarray]
    days: dict[str, np.ndarray]
    scaler: MinMaxScaler
    features: tuple[str, ...]


def feature_matrix(close_T: np.ndarray) -> np.ndarray:
    """``finance.technical_features`` (close, SMA-20, RSI-14, MACD line) stacked as float64 [T, 4]; NaN in warm-up rows."""
    columns = finance.technical_features(close_T)
    return np.stack([columns[name] for name in FEATURES], axis=1)


def make_stock_dataset(
    close_T: Sequence[float] | np.ndarray, window: int = 60, split: Sequence[float] = (0.7, 0.15, 0.15)
) -> StockDataset:
    """Leak-free windows of technical features -> next-day return, in three time-ordered splits.

    1. Features [T, 4] from ``feature_matrix``; the leading warm-up days with a NaN feature are dropped.
    2. The remaining days are cut into train/val/test by ``split`` (``timeseries.time_split``).
    3. A min-max scaler is fitted on the training days' features only and applied to all days.
    4. Each split holds every window lying wholly inside it: inputs are the features of days
       t - window + 1 .. t and the target is the return ``close[t+1] / close[t] - 1``, where the
       target day t + 1 lies inside the split too. No window crosses a split boundary, so the last
       ``window`` days of each split are never a target (each split needs more than ``window`` days).

    Every indicator at day t depends only on prices up to t, so prices after the training part
    change neither the training split nor the scaler.
    """
    close_T = np.asarray(close_T, np.float64)
    if close_T.ndim != 1 or not np.isfinite(close_T).all() or (close_T <= 0).any():
        raise ValueError(f"close_T must be a 1-D series of finite positive prices, got shape {close_T.shape}")
    if not isinstance(window, (int, np.integer)) or window < 1:
        raise ValueError(f"window must be a positive int, got {window!r}")
    features_TxF = feature_matrix(close_T)
    valid_T = np.isfinite(features_TxF).all(axis=1)
    start = int(np.argmax(valid_T)) if valid_T.any() else len(close_T)
    parts = time_split(np.arange(start, len(close_T)), split)
    if len(parts) != len(SPLITS) or min(len(p) for p in parts) <= window:
        raise ValueError(
            f"split {tuple(split)} of the {len(close_T) - start} days after the indicator warm-up must give "
            f"3 parts of more than window={window} days each, got sizes {[len(p) for p in parts]}"
        )
    scaler = MinMaxScaler.fit(features_TxF[parts[0]])
    scaled_TxF = scaler.transform(features_TxF).astype(np.float32)
    next_return_T = np.append(close_T[1:] / close_T[:-1] - 1.0, np.nan)  # return from day t to t + 1
    splits, next_return, prices, days = {}, {}, {}, {}
    for name, part in zip(SPLITS, parts):
        days_N = np.arange(part[0] + window - 1, part[-1])  # window inside the part, target day <= part[-1]
        offsets_W = np.arange(1 - window, 1)
        splits[name] = {
            "x": scaled_TxF[days_N[:, None] + offsets_W],
            "y": next_return_T[days_N, None].astype(np.float32),
        }
        next_return[name] = next_return_T[days_N]
        prices[name] = close_T[days_N[0] : days_N[-1] + 2]
        days[name] = days_N
    return StockDataset(splits, next_return, prices, days, scaler, FEATURES)
