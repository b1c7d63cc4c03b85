"""Technical indicators, backtest and trading metrics on hand-made price paths."""

from __future__ import annotations

import math
import statistics

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from matplotlib.image import imread

from nnjax import plots
from nnjax.apps import finance


def _random_walk(seed: int, length: int = 60) -> np.ndarray:
    return 100.0 * np.cumprod(1.0 + np.random.default_rng(seed).normal(0.0, 0.02, length))


def _wilder_rsi_loop(prices, period):
    """Textbook Wilder RSI, one day at a time."""
    out = [math.nan] * len(prices)
    gains = [max(prices[i] - prices[i - 1], 0.0) for i in range(1, len(prices))]
    losses = [max(prices[i - 1] - prices[i], 0.0) for i in range(1, len(prices))]
    avg_gain, avg_loss = sum(gains[:period]) / period, sum(losses[:period]) / period
    for t in range(period, len(prices)):
        if t > period:
            avg_gain = (avg_gain * (period - 1) + gains[t - 1]) / period
            avg_loss = (avg_loss * (period - 1) + losses[t - 1]) / period
        if avg_loss == 0:
            out[t] = 50.0 if avg_gain == 0 else 100.0
        else:
            out[t] = 100.0 - 100.0 / (1.0 + avg_gain / avg_loss)
    return np.array(out)


@pytest.mark.parametrize("window", [1, 5, 20, 30])
def test_sma_of_counting_prices_is_the_window_midpoint(window):
    prices = np.arange(1.0, 31.0)  # price on day t is t + 1
    out = finance.sma(prices, window)
    assert np.isnan(out[: window - 1]).all()
    t = np.arange(window - 1, 30)
    np.testing.assert_allclose(out[window - 1 :], t + 1 - (window - 1) / 2)
    assert np.isnan(finance.sma(prices[:3], 5)).all()


@settings(deadline=None, max_examples=20)
@given(
    st.integers(0, 10_000),
    st.integers(0, 58),
    st.lists(st.floats(1.0, 500.0), min_size=1, max_size=60),
)
def test_features_at_day_t_ignore_later_prices(seed, t, future):
    prices = _random_walk(seed)
    changed = prices.copy()
    tail = np.resize(np.array(future), len(prices) - t - 1)
    changed[t + 1 :] = tail
    features = (
        lambda p: finance.sma(p, 5),
        lambda p: finance.ema(p, 7),
        lambda p: finance.rsi(p, 6),
        finance.returns,
        lambda p: np.stack(finance.macd(p, 3, 8, 4)),
        lambda p: np.stack(list(finance.technical_features(p).values())),
    )
    for feature in features:
        np.testing.assert_array_equal(feature(prices)[..., : t + 1], feature(changed)[..., : t + 1])


def test_rsi_is_100_rising_0_falling_50_flat_and_nan_during_warmup():
    rising = finance.rsi(np.arange(1.0, 31.0), period=14)
    assert np.isnan(rising[:14]).all()
    np.testing.assert_array_equal(rising[14:], 100.0)
    np.testing.assert_array_equal(finance.rsi(np.arange(30.0, 0.0, -1.0), 14)[14:], 0.0)
    np.testing.assert_array_equal(finance.rsi(np.full(20, 7.0), 5)[5:], 50.0)
    assert np.isnan(finance.rsi(np.arange(1.0, 15.0), 14)).all()


@pytest.mark.parametrize("seed, period", [(0, 14), (1, 5), (2, 1)])
def test_rsi_matches_a_loop_of_wilders_formula(seed, period):
    prices = _random_walk(seed)
    prices[20:24] = prices[19]  # a flat stretch
    np.testing.assert_allclose(finance.rsi(prices, period), _wilder_rsi_loop(list(prices), period), rtol=1e-10)


def test_ema_and_macd_match_pandas():
    pd = pytest.importorskip("pandas")
    prices = _random_walk(3)
    series = pd.Series(prices)
    for span in (1, 5, 12):
        np.testing.assert_allclose(finance.ema(prices, span), series.ewm(span=span, adjust=False).mean(), rtol=1e-12)
    line, signal, histogram = finance.macd(prices)
    want_line = series.ewm(span=12, adjust=False).mean() - series.ewm(span=26, adjust=False).mean()
    want_signal = want_line.ewm(span=9, adjust=False).mean()
    np.testing.assert_allclose(line, want_line, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(signal, want_signal, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(histogram, want_line - want_signal, rtol=1e-10, atol=1e-12)


def test_returns_are_aligned_to_the_day_they_are_known():
    np.testing.assert_allclose(finance.returns([100.0, 110.0, 99.0]), [np.nan, 0.1, -0.1])


def test_technical_features_are_the_seeds_four_columns():
    prices = _random_walk(4)
    features = finance.technical_features(prices)
    assert list(features) == ["close", "sma", "rsi", "macd"]
    np.testing.assert_array_equal(features["sma"], finance.sma(prices, 20))
    assert all(f.shape == prices.shape for f in features.values())


def test_backtest_long_flat_and_alignment():
    prices = np.array([100.0, 110.0, 99.0, 120.0])
    long = finance.backtest(prices, np.ones(4))
    np.testing.assert_allclose(long.equity_T, prices / 100.0)
    np.testing.assert_allclose(long.returns_T1, [0.1, -0.1, 120.0 / 99.0 - 1.0])
    flat = finance.backtest(prices, np.zeros(4))
    np.testing.assert_array_equal(flat.equity_T, 1.0)
    one_day = finance.backtest(prices, [0.0, 1.0, 0.0, 0.0])  # long from day 1 to day 2 only
    np.testing.assert_allclose(one_day.returns_T1, [0.0, -0.1, 0.0])
    np.testing.assert_allclose(one_day.equity_T, [1.0, 1.0, 0.9, 0.9])
    foresight = finance.backtest(prices, [1.0, 0.0, 1.0, 0.0])  # long exactly before each rise
    np.testing.assert_allclose(foresight.equity_T[-1], 1.1 * 120.0 / 99.0)
    with pytest.raises(ValueError, match="positions_T"):
        finance.backtest(prices, np.ones(3))


def test_max_drawdown_is_the_largest_peak_to_trough_fraction():
    assert finance.max_drawdown([100, 120, 90, 130, 65]) == pytest.approx(0.5)
    assert finance.max_drawdown([1.0, 1.5, 2.0]) == 0.0


def test_sharpe_ratio_against_statistics_module_and_constant_returns():
    r = [0.01, -0.01, 0.02, 0.0, 0.005]
    expected = math.sqrt(252) * statistics.mean(r) / statistics.stdev(r)
    assert finance.sharpe_ratio(r) == pytest.approx(expected)
    excess = [x - 0.05 / 252 for x in r]
    want = math.sqrt(252) * statistics.mean(excess) / statistics.stdev(excess)
    assert finance.sharpe_ratio(r, risk_free=0.05) == pytest.approx(want)
    assert math.isnan(finance.sharpe_ratio([0.001] * 10))


def test_annual_return_is_cagr():
    doubling = 2.0 ** (np.arange(253) / 252)  # 252 daily steps
    assert finance.annual_return(doubling) == pytest.approx(1.0)
    assert finance.annual_return([1.0, 2.0], periods=2) == pytest.approx(3.0)


def test_win_rate_counts_days_in_the_market():
    r = [0.01, 0.0, -0.02, 0.03, 0.0]
    assert finance.win_rate(r) == pytest.approx(2 / 3)
    assert finance.win_rate(r, in_market_N=[True, True, True, True, False]) == pytest.approx(2 / 4)
    assert math.isnan(finance.win_rate([0.0, 0.0]))


def test_directional_accuracy_compares_signs():
    assert finance.directional_accuracy([0.1, -0.2, 0.3, 0.0], [0.5, 0.1, 0.2, 0.0]) == pytest.approx(3 / 4)


def test_equity_curves_plot(tmp_path):
    prices = _random_walk(5)
    curves = {"buy and hold": finance.backtest(prices, np.ones(60)).equity_T, "flat": np.ones(60)}
    assert imread(plots.equity_curves(curves, str(tmp_path / "equity.png"))).ndim == 3


def test_trading_report_matches_a_day_by_day_loop():
    prices = list(_random_walk(6, length=41))
    positions = [float(i % 3 != 0) for i in range(40)]  # in the market two days of three
    wealth, equity, daily, wins = 1.0, [1.0], [], []
    for t, held in enumerate(positions):
        step = held * (prices[t + 1] / prices[t] - 1.0)
        wealth *= 1.0 + step
        equity.append(wealth)
        daily.append(step)
        if held > 0:
            wins.append(step > 0)
    drawdown = max(1.0 - e / max(equity[: i + 1]) for i, e in enumerate(equity))
    report, curve = finance.trading_report(np.array(prices), np.array(positions))
    np.testing.assert_allclose(curve, equity, rtol=1e-12)
    assert report == pytest.approx({
        "sharpe": math.sqrt(252) * statistics.mean(daily) / statistics.stdev(daily),
        "max_drawdown": drawdown,
        "annual_return": wealth ** (252 / 40) - 1.0,
        "win_rate": sum(wins) / len(wins),
        "final_equity": wealth,
    }, rel=1e-10)
    flat, _ = finance.trading_report(np.array(prices), np.zeros(40))
    assert math.isnan(flat["sharpe"]) and math.isnan(flat["win_rate"]) and flat["final_equity"] == 1.0
    with pytest.raises(ValueError, match="one more day"):
        finance.trading_report(np.array(prices), np.ones(41))


@settings(max_examples=25, deadline=None)
@given(st.lists(st.tuples(st.floats(-0.1, 0.1), st.floats(-0.1, 0.1)), min_size=1, max_size=40))
def test_forecast_errors_match_scikit_learn(pairs):
    from sklearn.metrics import mean_absolute_error, mean_squared_error

    pred_N, true_N = map(np.array, zip(*pairs))
    errors = finance.forecast_errors(pred_N, true_N)
    assert errors["mse"] == pytest.approx(mean_squared_error(true_N, pred_N), abs=1e-15)
    assert errors["rmse"] == pytest.approx(math.sqrt(mean_squared_error(true_N, pred_N)), abs=1e-12)
    assert errors["mae"] == pytest.approx(mean_absolute_error(true_N, pred_N), abs=1e-15)
    assert errors["directional_accuracy"] == finance.directional_accuracy(pred_N, true_N)
    assert errors["long_fraction"] == np.mean(pred_N > 0)
