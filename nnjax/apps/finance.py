"""Technical indicators, a long/flat backtest and trading metrics (seed 002 slides 9-10).

Everything here is NumPy float64 on 1-D daily series. Indicators are **aligned and leak-free**: a
value at day t is computed from prices at days 0..t only, and the output has the input's length T.
Days at which a window is still incomplete hold NaN (``sma``, ``rsi``, ``returns``); the recursive
averages ``ema`` and ``macd`` are seeded with the first price and are defined from day 0, as
``pandas.Series.ewm(span=..., adjust=False).mean()``. Drop the leading NaN rows (or the first
``warmup`` days) before training.

Shape suffixes: ``_T`` a series of T days (``_T1``: its T - 1 day-to-day steps), ``_N`` N days of
returns or positions (``_N1``: the N + 1 prices they span).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
from scipy.signal import lfilter


def _series(prices_T: Any, name: str = "prices_T", min_length: int = 1) -> np.ndarray:
    x = np.asarray(prices_T, dtype=np.float64)
    if x.ndim != 1 or len(x) < min_length:
        raise ValueError(f"{name} must be a 1-D series of length >= {min_length}, got shape {x.shape}")
    return x


def _check_window(value: Any, name: str) -> int:
    if not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return int(value)


def _exponential_average(x_T: np.ndarray, alpha: float) -> np.ndarray:
    """y[0] = x[0], y[t] = alpha * x[t] + (1 - alpha) * y[t-1] (a first-order IIR filter)."""
    return lfilter([alpha], [1.0, alpha - 1.0], x_T, zi=[(1.0 - alpha) * x_T[0]])[0]


def sma(prices_T: Any, window: int = 20) -> np.ndarray:
    """Simple moving average [T]: mean of prices t-window+1..t; NaN for t < window - 1."""
    x = _series(prices_T)
    window = _check_window(window, "window")
    out = np.full(len(x), np.nan)
    if len(x) >= window:
        cumsum = np.concatenate([[0.0], np.cumsum(x)])
        out[window - 1 :] = (cumsum[window:] - cumsum[:-window]) / window
    return out


def ema(prices_T: Any, span: int) -> np.ndarray:
    """Exponential moving average [T] with alpha = 2 / (span + 1), seeded with the first price.

    Equals ``pandas.Series(prices).ewm(span=span, adjust=False).mean()``; defined from day 0.
    """
    x = _series(prices_T)
    span = _check_window(span, "span")
    return _exponential_average(x, 2.0 / (span + 1.0))


def rsi(prices_T: Any, period: int = 14) -> np.ndarray:
    """Relative Strength Index [T] in [0, 100] with Wilder's smoothing; NaN for t < period.

    With price changes d_t = p_t - p_{t-1}, gains g_t = max(d_t, 0) and losses l_t = max(-d_t, 0):
    the averages at day ``period`` are the simple means of the first ``period`` gains/losses, then
    avg_t = ((period - 1) * avg_{t-1} + g_t) / period (Wilder's recursive average, alpha = 1/period).
    RSI_t = 100 * avg_gain / (avg_gain + avg_loss), i.e. 100 - 100 / (1 + RS): 100 when there are
    no losses, 0 when there are no gains, and 50 (by convention here) when the price did not move.
    """
    x = _series(prices_T)
    period = _check_window(period, "period")
    out = np.full(len(x), np.nan)
    if len(x) <= period:
        return out
    change = np.diff(x)
    averages = []
    for move in (np.maximum(change, 0.0), np.maximum(-change, 0.0)):
        seeded = np.concatenate([[move[:period].mean()], move[period:]])
        averages.append(_exponential_average(seeded, 1.0 / period))
    gain, loss = averages
    total = gain + loss
    out[period:] = np.where(total > 0, 100.0 * gain / np.where(total > 0, total, 1.0), 50.0)
    return out


def macd(prices_T: Any, fast: int = 12, slow: int = 26, signal: int = 9) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(MACD line, signal line, histogram), each [T] and defined from day 0.

    MACD = ema(prices, fast) - ema(prices, slow); signal = ema(MACD, signal); histogram = MACD - signal.
    """
    fast, slow, signal = (_check_window(v, n) for v, n in ((fast, "fast"), (slow, "slow"), (signal, "signal")))
    if fast >= slow:
        raise ValueError(f"fast must be shorter than slow, got fast={fast}, slow={slow}")
    line = ema(prices_T, fast) - ema(prices_T, slow)
    signal_line = ema(line, signal)
    return line, signal_line, line - signal_line


def returns(prices_T: Any) -> np.ndarray:
    """Simple daily returns [T] known at day t: r_t = p_t / p_{t-1} - 1; r_0 = NaN."""
    x = _series(prices_T)
    return np.concatenate([[np.nan], x[1:] / x[:-1] - 1.0])


def technical_features(prices_T: Any, sma_window: int = 20, rsi_period: int = 14) -> dict[str, np.ndarray]:
    """The seed's feature columns, each [T] and leak-free: ``close``, ``sma``, ``rsi``, ``macd`` (line)."""
    x = _series(prices_T)
    return {"close": x, "sma": sma(x, sma_window), "rsi": rsi(x, rsi_period), "macd": macd(x)[0]}


class Backtest(NamedTuple):
    """``returns_T1``: strategy return from day t to t+1 [T-1]; ``equity_T``: wealth from 1.0 [T]."""

    returns_T1: np.ndarray
    equity_T: np.ndarray


def backtest(prices_T: Any, positions_T: Any) -> Backtest:
    """Daily returns and equity of holding ``positions_T[t]`` of the asset from day t to day t+1.

    ``positions_T[t]`` (1 = long, 0 = flat; fractions scale the exposure) must be decided with
    information up to day t; it earns the return p_{t+1} / p_t - 1. The last position has no next
    day and is ignored. No costs. ``equity_T[0] = 1`` and always-long equity equals p_t / p_0.
    """
    prices = _series(prices_T, min_length=2)
    positions = _series(positions_T, "positions_T")
    if positions.shape != prices.shape or not np.isfinite(positions).all():
        raise ValueError(f"positions_T must be finite with the prices' shape {prices.shape}, got {positions.shape}")
    strategy_T1 = positions[:-1] * (prices[1:] / prices[:-1] - 1.0)
    equity_T = np.concatenate([[1.0], np.cumprod(1.0 + strategy_T1)])
    return Backtest(strategy_T1, equity_T)


def sharpe_ratio(daily_returns_N: Any, periods: int = 252, risk_free: float = 0.0) -> float:
    """Annualised Sharpe ratio sqrt(periods) * mean(r - rf) / std(r - rf) (sample std, ddof=1).

    ``risk_free`` is an annual rate, taken as ``risk_free / periods`` per period. Constant returns
    (zero spread) give NaN: the ratio is undefined.
    """
    r = _series(daily_returns_N, "daily_returns_N", min_length=2)
    excess = r - risk_free / periods
    if np.ptp(excess) == 0:
        return float("nan")
    return float(np.sqrt(periods) * excess.mean() / excess.std(ddof=1))


def max_drawdown(equity_T: Any) -> float:
    """Largest fall from a running peak as a positive fraction: max_t 1 - equity_t / max_{s<=t} equity_s."""
    equity = _series(equity_T, "equity_T")
    return float(np.max(1.0 - equity / np.maximum.accumulate(equity)))


def annual_return(equity_T: Any, periods: int = 252) -> float:
    """Compound annual growth rate (equity_T[-1] / equity_T[0]) ** (periods / (T - 1)) - 1.

    ``T - 1`` daily steps separate the first and last value (doubling over 252 steps gives 1.0).
    """
    equity = _series(equity_T, "equity_T", min_length=2)
    return float((equity[-1] / equity[0]) ** (periods / (len(equity) - 1)) - 1.0)


def win_rate(daily_returns_N: Any, in_market_N: Any = None) -> float:
    """Fraction of days in the market whose return is positive; NaN when never in the market.

    ``in_market_N`` (bool) marks days with a position; by default the days with a non-zero return
    (a flat day earns exactly 0, so an in-market day with a return of exactly 0 is then not counted).
    """
    r = _series(daily_returns_N, "daily_returns_N")
    in_market = r != 0 if in_market_N is None else np.asarray(in_market_N, dtype=bool)
    if in_market.shape != r.shape:
        raise ValueError(f"in_market_N must have the returns' shape {r.shape}, got {in_market.shape}")
    if not in_market.any():
        return float("nan")
    return float(np.mean(r[in_market] > 0))


def trading_report(prices_N1: Any, positions_N: Any, periods: int = 252) -> tuple[dict[str, float], np.ndarray]:
    """Backtest of holding ``positions_N[t]`` from day t to t+1 over N + 1 prices ``prices_N1``.

    Returns (``{sharpe, max_drawdown, annual_return, win_rate, final_equity}``, the equity curve
    [N + 1]); the win rate counts the days with a position > 0. Sharpe and win rate are NaN for a
    strategy that is never in the market.
    """
    prices = _series(prices_N1, "prices_N1", min_length=2)
    positions = _series(positions_N, "positions_N")
    if len(prices) != len(positions) + 1:
        raise ValueError(f"prices_N1 must have one more day than positions_N ({len(positions)}), got {len(prices)}")
    result = backtest(prices, np.append(positions, 0.0))
    return {
        "sharpe": sharpe_ratio(result.returns_T1, periods),
        "max_drawdown": max_drawdown(result.equity_T),
        "annual_return": annual_return(result.equity_T, periods),
        "win_rate": win_rate(result.returns_T1, positions > 0),
        "final_equity": float(result.equity_T[-1]),
    }, result.equity_T


def directional_accuracy(pred_returns_N: Any, true_returns_N: Any) -> float:
    """Fraction of days where predicted and realised returns have the same sign (np.sign, 0 its own sign)."""
    pred = _series(pred_returns_N, "pred_returns_N")
    true = _series(true_returns_N, "true_returns_N")
    if pred.shape != true.shape:
        raise ValueError(f"pred_returns_N and true_returns_N must have equal shapes, got {pred.shape} and {true.shape}")
    return float(np.mean(np.sign(pred) == np.sign(true)))


def forecast_errors(pred_returns_N: Any, true_returns_N: Any) -> dict[str, float]:
    """How predicted next-day returns score against the realised ones: ``mse``, ``rmse``, ``mae``,
    ``directional_accuracy`` and ``long_fraction`` (the share of days predicted up, i.e. held long)."""
    pred = _series(pred_returns_N, "pred_returns_N")
    error_N = pred - _series(true_returns_N, "true_returns_N")
    mse = float(np.mean(error_N**2))
    return {
        "mse": mse,
        "rmse": float(np.sqrt(mse)),
        "mae": float(np.mean(np.abs(error_N))),
        "directional_accuracy": directional_accuracy(pred_returns_N, true_returns_N),
        "long_fraction": float(np.mean(pred > 0)),
    }
