"""Time-series windows, splits and scalers; the regression objective; the sine_forecast experiment end to end."""

import json
import os

import jax.numpy as jnp
import numpy as np
import pytest
import sklearn.preprocessing
from hypothesis import given, settings
from hypothesis import strategies as st

from experiments import sine_forecast
from nnjax import cli, losses
from nnjax.data.timeseries import (
    MinMaxScaler,
    StandardScaler,
    noisy_sine,
    sliding_windows,
    split_windows,
    time_split,
)


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


def test_sine_forecast_cli_beats_naive(tmp_path, capsys):
    workdir = str(tmp_path / "run")
    assert cli.run(sine_forecast.main, sine_forecast.Config, ["--workdir", workdir]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    series = noisy_sine(1000, 0.1, seed=0)
    targets = series[850:]  # the test part's 150 targets; the naive forecast is the previous value
    naive = np.sqrt(np.mean((series[849:999] - targets) ** 2))
    floor = np.sqrt(np.mean((noisy_sine(1000, 0.0, seed=0)[850:] - targets) ** 2))
    assert out["test_windows"] == 150
    np.testing.assert_allclose(out["test_naive_rmse"], naive, atol=1e-4)
    np.testing.assert_allclose(out["test_noise_floor_rmse"], floor, atol=1e-4)
    assert out["beats_naive"] and out["test_model_rmse"] < naive
    assert out["train_examples"] == 690 and out["steps"] == 20 * (690 // 32)
    for name in out["plots"]:
        assert os.path.getsize(os.path.join(workdir, name)) > 0


def test_sine_forecast_rejects_bad_flags(capsys):
    assert cli.run(sine_forecast.main, sine_forecast.Config, ["--data", "digits"]) == 2
    assert "--data" in capsys.readouterr().err
    assert cli.run(sine_forecast.main, sine_forecast.Config, ["--points", "20"]) == 2
