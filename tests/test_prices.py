"""Stock prices loader, leak-free windowed data set, StockForecaster and the stock_forecast experiment."""

from __future__ import annotations

import gzip
import importlib.util
import json
import os

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from experiments import stock_forecast
from nnjax import cli
from nnjax.apps import finance
from nnjax.data import prices
from nnjax.errors import DataUnavailableError
from nnjax.models.forecast import StockForecaster


def price_path(days: int, seed: int = 0) -> np.ndarray:
    """A geometric random walk starting at 100 (daily log-returns N(0.0003, 0.02²))."""
    log_returns = np.random.default_rng(seed).normal(3e-4, 0.02, days)
    return 100.0 * np.exp(np.cumsum(log_returns))


def write_csv(path: str, close_T: np.ndarray, ticker: str | None = None, shuffle: bool = False) -> np.ndarray:
    """Write ``close_T`` on consecutive calendar days as a bokeh-style CSV; returns the dates."""
    dates_T = np.datetime64("2001-01-01") + np.arange(len(close_T))
    order = np.random.default_rng(1).permutation(len(close_T)) if shuffle else np.arange(len(close_T))
    header = (["Ticker"] if ticker else []) + ["Date", "Close", "Volume", "Adj Close"]
    lines = [",".join(header)]
    for t in order:
        row = ([ticker] if ticker else []) + [str(dates_T[t]), repr(float(2 * close_T[t])), str(1000 + t), repr(float(close_T[t]))]
        lines.append(",".join(row))
    text = "\n".join(lines) + "\n"
    if path.endswith(".gz"):
        with gzip.open(path, "wt") as f:
            f.write(text)
    else:
        with open(path, "w") as f:
            f.write(text)
    return dates_T


# --- load_stock ---------------------------------------------------------------------------------------


def test_load_stock_sorts_by_date_filters_the_ticker_and_prefers_adjusted_close(tmp_path):
    close_T = price_path(30)
    path = str(tmp_path / "stocks.csv.gz")
    dates_T = write_csv(path, close_T, ticker="AAA", shuffle=True)
    with gzip.open(path, "at") as f:  # another ticker's rows are ignored
        f.write("BBB,2001-01-05,1.0,5,1.0\n")
    loaded = prices.load_stock("AAA", path)
    np.testing.assert_array_equal(loaded.dates_T, dates_T)
    np.testing.assert_array_equal(loaded.close_T, close_T)
    np.testing.assert_array_equal(loaded.volume_T, 1000.0 + np.arange(30))
    np.testing.assert_array_equal(prices.load_stock("AAA", path, adjusted=False).close_T, 2 * close_T)
    with pytest.raises(ValueError, match="no rows for symbol 'CCC'"):
        prices.load_stock("CCC", path)


def test_load_stock_without_the_data_says_how_to_fetch_it(monkeypatch):
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "bokeh_sampledata" else real_find_spec(name, *a)
    )
    with pytest.raises(DataUnavailableError, match="nnjax data fetch stocks"):
        prices.load_stock("AAPL")


# --- make_stock_dataset -------------------------------------------------------------------------------

WINDOW = 15


@pytest.fixture(scope="module")
def close_T():
    return price_path(400)


@pytest.fixture(scope="module")
def stocks(close_T):
    return prices.make_stock_dataset(close_T, window=WINDOW)


def test_shapes_dtypes_and_split_sizes(stocks):
    warm_up = 19  # SMA-20 is the last feature to be defined
    parts = np.array_split(np.arange(400 - warm_up), [round(0.7 * 381), round(0.85 * 381)])
    for name, part in zip(prices.SPLITS, parts):
        split = stocks.splits[name]
        n = len(part) - WINDOW  # windows wholly inside the part whose target day is inside it too
        chex.assert_shape(split["x"], (n, WINDOW, 4))
        chex.assert_shape(split["y"], (n, 1))
        assert split["x"].dtype == np.float32 and split["y"].dtype == np.float32
        chex.assert_shape(stocks.prices[name], (n + 1,))
        assert np.isfinite(split["x"]).all() and np.isfinite(split["y"]).all()


def test_splits_are_in_time_order_and_no_window_crosses_a_boundary(stocks):
    previous_end = -1
    for name in prices.SPLITS:
        days_N = stocks.days[name]
        np.testing.assert_array_equal(np.diff(days_N), 1)
        first_input, last_target = days_N[0] - WINDOW + 1, days_N[-1] + 1
        assert first_input > previous_end, f"{name} reaches back into the previous split"
        previous_end = last_target
    assert previous_end == 399


def test_targets_are_the_next_day_returns_and_inputs_end_at_the_decision_day(stocks, close_T):
    features_TxF = np.stack([v for v in finance.technical_features(close_T).values()], axis=1)
    for name, i in (("train", 0), ("train", 57), ("val", 3), ("test", -1)):
        day = stocks.days[name][i]
        actual = close_T[day + 1] / close_T[day] - 1.0
        np.testing.assert_allclose(stocks.splits[name]["y"][i, 0], actual, rtol=1e-6)
        np.testing.assert_allclose(stocks.next_return[name][i], actual, rtol=1e-12)
        unscaled_WxF = stocks.scaler.inverse_transform(stocks.splits[name]["x"][i].astype(np.float64))
        np.testing.assert_allclose(unscaled_WxF, features_TxF[day - WINDOW + 1 : day + 1], rtol=1e-5, atol=1e-5)


def test_scaler_is_fitted_on_the_training_days(stocks):
    x_train = stocks.splits["train"]["x"]
    np.testing.assert_allclose(x_train.min(axis=(0, 1)), 0.0, atol=1e-6)
    np.testing.assert_allclose(x_train.max(axis=(0, 1)), 1.0, atol=1e-6)


def test_backtest_prices_earn_exactly_the_aligned_next_day_returns(stocks):
    for name in prices.SPLITS:
        positions_N = (np.arange(len(stocks.days[name])) % 3 == 0).astype(float)
        earned = finance.backtest(stocks.prices[name], np.append(positions_N, 0.0)).returns_T1
        np.testing.assert_allclose(earned, positions_N * stocks.next_return[name], rtol=1e-12)


@settings(deadline=None, max_examples=10)
@given(seed=st.integers(0, 1000), factor=st.floats(0.2, 5.0))
def test_prices_after_the_training_period_do_not_leak_into_it(close_T, stocks, seed, factor):
    last_train_day = stocks.days["train"][-1] + 1
    perturbed = close_T.copy()
    noise = np.random.default_rng(seed).uniform(0.5, 2.0, len(close_T) - last_train_day - 1)
    perturbed[last_train_day + 1 :] *= factor * noise
    other = prices.make_stock_dataset(perturbed, window=WINDOW)
    chex.assert_trees_all_equal(other.splits["train"], stocks.splits["train"])
    chex.assert_trees_all_equal((other.scaler.lo, other.scaler.hi), (stocks.scaler.lo, stocks.scaler.hi))
    assert not np.array_equal(other.splits["test"]["y"], stocks.splits["test"]["y"])


def test_a_change_inside_the_training_period_does_change_the_training_split(close_T, stocks):
    perturbed = close_T.copy()
    perturbed[stocks.days["train"][-1]] *= 1.5
    other = prices.make_stock_dataset(perturbed, window=WINDOW)
    assert not np.array_equal(other.splits["train"]["y"], stocks.splits["train"]["y"])


@pytest.mark.parametrize(
    "kwargs, message",
    [({"window": 0}, "window must be a positive int"), ({"window": 120}, "more than window=120"),
     ({"split": (0.5, 0.6, 0.1)}, "sum to 1")],
)
def test_bad_arguments_raise_clear_errors(close_T, kwargs, message):
    with pytest.raises(ValueError, match=message):
        prices.make_stock_dataset(close_T, **kwargs)


# --- StockForecaster ----------------------------------------------------------------------------------


def test_forecaster_maps_windows_to_one_value():
    model = StockForecaster(hidden=6, heads=2, attention_features=8, dense=5, dropout=0.5)
    x_BxTxF = jax.random.normal(jax.random.PRNGKey(0), (3, 9, 4))
    variables = jax.jit(model.init)(jax.random.PRNGKey(1), x_BxTxF)
    apply = jax.jit(model.apply, static_argnames="train")
    y_eval = apply(variables, x_BxTxF)
    chex.assert_shape(y_eval, (3, 1))
    chex.assert_tree_all_finite(y_eval)
    chex.assert_trees_all_close(apply(variables, x_BxTxF[:1]), y_eval[:1], atol=1e-6)  # examples independent
    for direction in ("forward", "backward"):  # LSTM(6) on 4 features, 4 gates
        chex.assert_shape(variables["params"][direction]["cell"]["w_ih"], (4, 24))
    y_train = apply(variables, x_BxTxF, train=True, rngs={"dropout": jax.random.PRNGKey(2)})
    assert not jnp.allclose(y_train, y_eval)
    mean_pooled = StockForecaster(hidden=6, heads=2, attention_features=8, dense=5, pooling="mean")
    chex.assert_shape(jax.eval_shape(mean_pooled.apply, variables, x_BxTxF), (3, 1))


def test_forecaster_rejects_bad_settings():
    x = jnp.zeros((2, 5, 4))
    with pytest.raises(ValueError, match="pooling must be one of"):
        StockForecaster(hidden=4, heads=2, attention_features=4, pooling="max").init(jax.random.PRNGKey(0), x)
    with pytest.raises(ValueError, match="divisible by heads"):
        StockForecaster(hidden=4, heads=3, attention_features=4).init(jax.random.PRNGKey(0), x)


# --- experiment ---------------------------------------------------------------------------------------


def test_stock_forecast_experiment_on_a_synthetic_csv(tmp_path, capsys):
    close_T = price_path(300, seed=3)
    csv_path = str(tmp_path / "prices.csv")
    dates_T = write_csv(csv_path, close_T)
    argv = [
        "--csv", csv_path, "--symbol", "SYN", "--workdir", str(tmp_path / "run"), "--epochs", "1", "--window", "10",
        "--hidden", "4", "--heads", "2", "--attention-features", "8", "--dense", "4", "--batch-size", "16",
    ]
    assert cli.run(stock_forecast.main, stock_forecast.Config, argv) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    first, last = (np.datetime64(d) for d in result["test_period"].split(".."))
    np.testing.assert_allclose(
        result["buy_hold_final_equity"], close_T[dates_T == last][0] / close_T[dates_T == first][0], rtol=1e-3
    )
    assert result["test_days"] == (last - first).astype(int)
    np.testing.assert_allclose(result["test_rmse"] ** 2, result["test_mse"], rtol=1e-3, atol=1e-9)
    for key in ("test_directional_accuracy", "test_up_day_fraction", "buy_hold_win_rate"):
        assert 0.0 <= result[key] <= 1.0
    np.testing.assert_allclose(result["buy_hold_win_rate"], result["test_up_day_fraction"], atol=1e-4)
    assert result["steps"] == 1 * (result["train_examples"] // 16)
    for name in result["plots"]:
        assert os.path.isfile(os.path.join(result["workdir"], name))
    # --seeds 2: the first seed's figures are this run's; buy-and-hold and the up days do not depend on the seed.
    argv[argv.index("--workdir") + 1] = str(tmp_path / "seeds")
    assert cli.run(stock_forecast.main, stock_forecast.Config, [*argv, "--seeds", "2"]) == 0
    seeds = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    for key in ("test_rmse", "val_mae", "test_directional_accuracy", "model_sharpe", "model_final_equity"):
        np.testing.assert_allclose(seeds[f"{key}_per_seed"][0], result[key], rtol=1e-3, atol=1e-4, err_msg=key)
        assert seeds[key] == pytest.approx(np.mean(seeds[f"{key}_per_seed"]), abs=1e-4)
    for key in ("buy_hold_sharpe", "test_up_day_fraction", "test_days"):
        assert seeds[key] == result[key] and f"{key}_per_seed" not in seeds
    assert seeds["beats_buy_hold_sharpe"] == (seeds["model_sharpe"] > seeds["buy_hold_sharpe"])


def test_stock_forecast_rejects_an_unknown_symbol_and_too_short_a_series(tmp_path, capsys):
    assert cli.run(stock_forecast.main, stock_forecast.Config, ["--symbol", "XYZ"]) == 2
    assert "--symbol must be one of" in capsys.readouterr().err
    csv_path = str(tmp_path / "short.csv")
    write_csv(csv_path, price_path(120))
    argv = ["--csv", csv_path, "--workdir", str(tmp_path / "run")]
    assert cli.run(stock_forecast.main, stock_forecast.Config, argv) == 2
    assert "do not fit --window 60" in capsys.readouterr().err
    argv = ["--csv", str(tmp_path / "missing.csv"), "--workdir", str(tmp_path / "run")]
    assert cli.run(stock_forecast.main, stock_forecast.Config, argv) == 2
    assert "cannot read --symbol" in capsys.readouterr().err
