"""Time series (loading, windows, splits, scalers); the regression objective; lstm_forecast end to end."""

import importlib.util
import json
import os

import jax.numpy as jnp
import numpy as np
import pytest
import sklearn.preprocessing
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from experiments import lstm_forecast
from nnjax import cli, losses
from nnjax.data import packaged
from nnjax.data.timeseries import (
    MinMaxScaler,
    StandardScaler,
    difference_windows,
    load_series,
    monthly_means,
    noisy_sine,
    sliding_windows,
    split_windows,
    time_split,
    undifference,
)
from nnjax.errors import DataUnavailableError
from nnjax.tasks.forecasting import EPOCHS, WINDOWS



@settings(deadline=None, max_examples=25)
@given(length=st.integers(2, 40), window=st.integers(1, 10), horizon=st.integers(1, 4))
def test_sliding_windows_match_loop(length, window, horizon):
    series = np.random.default_rng(length).normal(size=length).astype(np.float32)
    if length - window - horizon + 1 < 1:
        with pytest.raises(ValueError, match="too short"):
            sliding_windows(series, window, horizon)
        return
    x, y = sliding_windows(series, window, horizon)
    want_x = [series[i : i + window] for i in range(length - window - horizon + 1)]
    want_y = [series[i + window + horizon - 1] for i in range(length - window - horizon + 1)]
    assert x.shape == (len(want_x), window, 1) and y.shape == (len(want_y), 1)
    assert x.dtype == y.dtype == np.float32
    np.testing.assert_array_equal(x[:, :, 0], np.array(want_x))
    np.testing.assert_array_equal(y[:, 0], np.array(want_y))


@settings(deadline=None, max_examples=25)
@given(length=st.integers(1, 200), cut=st.lists(st.integers(0, 10), min_size=3, max_size=3).filter(any))
def test_time_split_keeps_order_and_is_disjoint(length, cut):
    fractions = np.array(cut) / np.sum(cut)
    series = np.arange(length)
    parts = time_split(series, fractions)
    assert len(parts) == 3
    np.testing.assert_array_equal(np.concatenate(parts), series)  # in order, disjoint, complete
    for part, fraction in zip(parts, fractions):
        assert abs(len(part) - fraction * length) <= 1


def test_time_split_rejects_bad_fractions():
    for fractions in [(0.5, 0.2), (0.7, -0.1, 0.4), ()]:
        with pytest.raises(ValueError, match="fractions"):
            time_split(np.arange(10), fractions)


def test_split_windows_assigns_by_target():
    series = np.arange(100, dtype=np.float32)  # value == time index
    window = 7
    parts = split_windows(series, window, (0.7, 0.15, 0.15))
    x_all, y_all = sliding_windows(series, window)
    np.testing.assert_array_equal(np.concatenate([p["y"] for p in parts]), y_all)
    np.testing.assert_array_equal(np.concatenate([p["x"] for p in parts]), x_all)
    for part, (lo, hi) in zip(parts, [(0, 70), (70, 85), (85, 100)]):
        assert part["y"].min() >= lo and part["y"].max() < hi
        assert (part["x"][:, :, 0] < part["y"]).all()  # inputs strictly precede their target
    assert len(parts[2]["y"]) == 15


@pytest.mark.parametrize(
    "scaler_cls, oracle_cls",
    [(MinMaxScaler, sklearn.preprocessing.MinMaxScaler), (StandardScaler, sklearn.preprocessing.StandardScaler)],
)
def test_scalers_fit_on_train_only(scaler_cls, oracle_cls):
    series = noisy_sine(200, 0.1, seed=1)
    train, val, test = time_split(series)
    scaler = scaler_cls.fit(train)
    oracle = oracle_cls().fit(train[:, None].astype(np.float64))
    np.testing.assert_allclose(scaler.transform(series), oracle.transform(series[:, None])[:, 0], rtol=1e-5, atol=1e-6)
    shifted = series.copy()
    shifted[len(train) :] += 100.0  # val/test values must not move the fit
    refit = scaler_cls.fit(time_split(shifted)[0])
    for field in ("lo", "hi") if scaler_cls is MinMaxScaler else ("mean", "std"):
        np.testing.assert_array_equal(getattr(refit, field), getattr(scaler, field))
    np.testing.assert_allclose(scaler.inverse_transform(scaler.transform(series)), series, atol=1e-6)
    per_feature = scaler_cls.fit(np.stack([train, 3 * train + 1], axis=1))
    z = per_feature.transform(np.stack([series, 3 * series + 1], axis=1))
    np.testing.assert_allclose(z[:, 0], z[:, 1], atol=1e-5)


def test_scaler_constant_series_is_finite():
    for scaler_cls in (MinMaxScaler, StandardScaler):
        scaler = scaler_cls.fit(np.full(5, 2.0))
        assert np.isfinite(scaler.transform(np.array([1.0, 2.0, 3.0]))).all()


def test_noisy_sine():
    np.testing.assert_allclose(noisy_sine(50, 0.0), np.sin(0.1 * np.linspace(0, 100, 50)), atol=1e-6)
    np.testing.assert_array_equal(noisy_sine(50, 0.1, seed=3), noisy_sine(50, 0.1, seed=3))
    assert not np.array_equal(noisy_sine(50, 0.1, seed=3), noisy_sine(50, 0.1, seed=4))
    residual = noisy_sine(20000, 0.1, seed=0) - noisy_sine(20000, 0.0)
    assert abs(residual.std() - 0.1) < 0.005
    with pytest.raises(ValueError, match="noise"):
        noisy_sine(10, -1.0)


def test_regression_objective():
    predictions = jnp.array([[1.0, 2.0], [0.0, -1.0], [3.0, 3.0]])
    targets = jnp.array([[1.5, 2.0], [1.0, 1.0], [3.0, 3.0]])
    loss = losses.regression(predictions, {"x": None, "y": targets})["loss"]
    np.testing.assert_allclose(loss, losses.mse(predictions, targets, reduction="none").mean(axis=1))
    np.testing.assert_allclose(loss, [0.125, 2.5, 0.0])
    with pytest.raises(ValueError, match="same shape"):
        losses.regression(predictions, {"y": targets[:, :1]})


def test_lstm_forecast_sine_cli_beats_naive(tmp_path, capsys):
    workdir = str(tmp_path / "run")
    assert cli.run(lstm_forecast.main, lstm_forecast.Config, ["--workdir", workdir]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    series = noisy_sine(1000, 0.1, seed=0)
    targets = series[850:]  # the test part's 150 targets; the naive forecast is the previous value
    naive = np.sqrt(np.mean((series[849:999] - targets) ** 2))
    floor = np.sqrt(np.mean((noisy_sine(1000, 0.0, seed=0)[850:] - targets) ** 2))
    assert out["test_windows"] == 150
    np.testing.assert_allclose(out["test_naive_rmse"], naive, atol=1e-4)
    np.testing.assert_allclose(out["test_noise_floor_rmse"], floor, atol=1e-4)
    assert out["beats_naive"] and out["test_model_rmse"] < naive
    assert out["series"] == "sine" and out["window"] == 10 and out["difference"] is False
    assert out["train_examples"] == 690 and out["steps"] == 20 * (690 // 32)
    for name in out["plots"]:
        assert os.path.getsize(os.path.join(workdir, name)) > 0


def test_lstm_forecast_rejects_bad_flags(capsys):
    assert cli.run(lstm_forecast.main, lstm_forecast.Config, ["--data", "digits"]) == 2
    assert "--data" in capsys.readouterr().err
    assert cli.run(lstm_forecast.main, lstm_forecast.Config, ["--points", "20"]) == 2
    for argv, flag in [
        (["--window", "-1"], "--window"),
        (["--epochs", "-2"], "--epochs"),
        (["--difference", "--window", "1"], "--difference"),
        (["--series", "sunspots", "--window", "300"], "too short"),  # 0.7 * 1000 points would pass for the sine
    ]:
        capsys.readouterr()
        if "sunspots" in argv and packaged.status(packaged.PACKAGES["statsmodels_series"]) == "not fetched":
            continue
        assert cli.run(lstm_forecast.main, lstm_forecast.Config, argv) == 2, argv
        assert flag in capsys.readouterr().err
    with pytest.raises(SystemExit):  # argparse rejects a series outside the choices
        cli.run(lstm_forecast.main, lstm_forecast.Config, ["--series", "lynx"])


def test_lstm_forecast_series_defaults():
    config = lstm_forecast.Config(series="sunspots").resolved()
    assert config.window >= 11 and config.epochs == EPOCHS["sunspots"]
    assert lstm_forecast.Config(series="co2", window=5, epochs=3).resolved().window == 5
    for series in ("sine", "sunspots", "co2"):
        assert lstm_forecast.Config(series=series).resolved().window == WINDOWS[series]


def test_lstm_forecast_difference_cli(tmp_path, capsys):
    workdir = str(tmp_path / "diff")
    argv = ["--workdir", workdir, "--difference", "--points", "400", "--epochs", "2", "--hidden", "8"]
    assert cli.run(lstm_forecast.main, lstm_forecast.Config, argv) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    series = noisy_sine(400, 0.1, seed=0)
    naive = np.sqrt(np.mean((series[339:399] - series[340:]) ** 2))  # the last 15 % = 60 targets
    assert out["difference"] is True and out["test_windows"] == 60
    np.testing.assert_allclose(out["test_naive_rmse"], naive, atol=1e-4)
    assert np.isfinite(out["test_model_rmse"]) and out["test_time_range"][1] == 100.0


def test_load_series_sine():
    series = load_series("sine", points=120, noise=0.2, seed=5)
    assert series.name == "sine"
    np.testing.assert_array_equal(series.values_T, noisy_sine(120, 0.2, seed=5))
    np.testing.assert_allclose(series.time_T, np.linspace(0.0, 100.0, 120))
    with pytest.raises(ValueError, match="name"):
        load_series("lynx")


@pytest.mark.parametrize("name", ["sunspots", "co2"])
def test_load_series_without_its_files_says_how_to_fetch_them(monkeypatch, capsys, name):
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda module, *a: None if module == "statsmodels" else real_find_spec(module, *a)
    )
    with pytest.raises(DataUnavailableError, match="nnjax data fetch statsmodels_series"):
        load_series(name)
    assert cli.run(lstm_forecast.main, lstm_forecast.Config, ["--series", name]) == 2
    assert "nnjax data fetch statsmodels_series" in capsys.readouterr().err


@settings(deadline=None, max_examples=30)
@given(weeks=st.integers(1, 120), start=st.integers(0, 400), gaps=st.lists(st.integers(0, 119), max_size=60))
def test_monthly_means_are_pandas_resample_and_time_interpolation(weeks, start, gaps):
    import pandas as pd

    days = np.datetime64("1990-01-06") + 7 * (start + np.arange(weeks))
    values = np.random.default_rng(weeks).normal(350.0, 5.0, weeks)
    values[[g for g in gaps if g < weeks]] = np.nan
    assume(np.isfinite(values).any())
    months, means = monthly_means(days.astype("datetime64[D]"), values)
    weekly = pd.Series(values, index=pd.DatetimeIndex(days.astype("datetime64[ns]")))
    expected = weekly.resample("MS").mean().interpolate(method="time")
    if np.isnan(expected.to_numpy()).any():  # pandas leaves leading months without data NaN; ours start at data
        expected = expected[expected.first_valid_index():]
        means = means[len(means) - len(expected):]
        months = months[len(months) - len(expected):]
    np.testing.assert_array_equal(months, expected.index.to_numpy().astype("datetime64[M]"))
    np.testing.assert_allclose(means, expected.to_numpy(), rtol=1e-12)


@pytest.mark.skipif(packaged.status(packaged.PACKAGES["statsmodels_series"]) == "not fetched",
                    reason="statsmodels' series are not installed or cached here")
def test_load_series_real():
    sunspots = load_series("sunspots")
    assert sunspots.values_T[:3].tolist() == [5.0, 11.0, 16.0] and len(sunspots.values_T) == 309
    np.testing.assert_array_equal(sunspots.time_T, np.arange(1700, 2009))
    co2 = load_series("co2")
    assert co2.values_T.dtype == np.float32 and np.isfinite(co2.values_T).all() and len(co2.values_T) == 526
    np.testing.assert_allclose(np.diff(co2.time_T), 1 / 12, atol=1e-9)  # one value per month, no gaps


@settings(deadline=None, max_examples=25)
@given(n=st.integers(1, 6), window=st.integers(2, 6), scale=st.floats(0.1, 10.0))
def test_difference_windows_round_trip(n, window, scale):
    rng = np.random.default_rng(n * 10 + window)
    split = {"x": rng.normal(size=(n, window, 1)).astype(np.float32), "y": rng.normal(size=(n, 1)).astype(np.float32)}
    changes = difference_windows(split, scale)
    assert changes["x"].shape == (n, window - 1, 1) and changes["y"].shape == (n, 1)
    for i in range(n):
        want = [(split["x"][i, t + 1, 0] - split["x"][i, t, 0]) / scale for t in range(window - 1)]
        np.testing.assert_allclose(changes["x"][i, :, 0], want, rtol=1e-5, atol=1e-6)
    levels = undifference(split["x"], changes["y"][:, 0], scale)
    np.testing.assert_allclose(levels, split["y"][:, 0], rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(undifference(split["x"], np.zeros(n), scale), split["x"][:, -1, 0])  # naive


def test_difference_windows_rejects_bad_input():
    with pytest.raises(ValueError, match="W >= 2"):
        difference_windows({"x": np.zeros((3, 1, 1)), "y": np.zeros((3, 1))})
    with pytest.raises(ValueError, match="scale"):
        difference_windows({"x": np.zeros((3, 2, 1)), "y": np.zeros((3, 1))}, scale=0.0)


def test_min_max_scaler_ignores_nan_and_maps_the_train_range_to_unit_interval():
    train = np.array([[1.0, 5.0, np.nan], [3.0, 5.0, 2.0], [2.0, 5.0, 4.0]])
    scaler = MinMaxScaler.fit(train)
    np.testing.assert_array_equal(scaler.lo, [1.0, 5.0, 2.0])
    np.testing.assert_array_equal(scaler.hi, [3.0, 5.0, 4.0])
    np.testing.assert_allclose(scaler.transform(train), [[0.0, 0.0, np.nan], [1.0, 0.0, 0.0], [0.5, 0.0, 1.0]])
    np.testing.assert_allclose(scaler.transform(np.array([[5.0, 6.0, 3.0]])), [[2.0, 1.0, 0.5]])
    np.testing.assert_allclose(scaler.inverse_transform(scaler.transform(train)), train)
