"""Windowed-FFT features vs numpy/scipy oracles and pure tones with known answers; the streaming demo.

Every feature call uses one compiled shape: a 176-sample block cut into 8 frames of 64 samples, hop 16,
at 6,400 Hz (FFT bins 100 Hz apart), the same block the demo test streams.
"""

import json
import os

import hypothesis.strategies as st
import numpy as np
import pytest
from hypothesis import given, settings
from scipy.signal import get_window

from experiments import signal_features
from nnjax.apps import signal_features as signal

SAMPLE_RATE, N, HOP, FRAMES = 6400.0, 64, 16, 8
BLOCK = N + (FRAMES - 1) * HOP
BIN_HZ = SAMPLE_RATE / N


def features_of(x_T):
    """``stream_features`` of a ``BLOCK``-sample stream, as numpy arrays."""
    assert x_T.shape == (BLOCK,)
    features, power_FxK = signal.stream_features(np.asarray(x_T, np.float32), SAMPLE_RATE, N, HOP)
    return signal.SpectralFeatures(*(np.asarray(a) for a in features)), np.asarray(power_FxK)


def tone(freq_hz, amplitude=1.0, phase=0.3):
    t = np.arange(BLOCK) / SAMPLE_RATE
    return amplitude * np.sin(2 * np.pi * freq_hz * t + phase)


def numpy_features(frames_FxN):
    """Independent float64 reference: scipy's periodic Hann, np.fft.rfft, one-sided power, the documented rules."""
    spectrum_FxK = np.fft.rfft(frames_FxN * get_window("hann", N, fftbins=True), axis=-1)
    power_FxK = np.abs(spectrum_FxK) ** 2 / N**2
    power_FxK[:, 1:-1] *= 2  # N even: bins 1 .. N/2 - 1 stand for +-f
    freqs_K = np.fft.rfftfreq(N, 1 / SAMPLE_RATE)
    total_F = power_FxK.sum(-1)
    cumulative_FxK = np.cumsum(power_FxK, -1)
    return {
        "centroid_hz": (power_FxK * freqs_K).sum(-1) / total_F,
        "rolloff_hz": freqs_K[np.argmax(cumulative_FxK >= 0.85 * total_F[:, None], axis=-1)],
        "rms": np.sqrt(np.mean(frames_FxN**2, -1)),
        "dominant_hz": freqs_K[np.argmax(power_FxK, -1)],
        "power": power_FxK,
    }


def test_hann_is_scipys_periodic_window_not_np_hanning():
    np.testing.assert_allclose(signal.hann_window(N), get_window("hann", N, fftbins=True), atol=5e-7)
    assert not np.allclose(signal.hann_window(N), np.hanning(N), atol=1e-3)


def test_frames_and_features_match_numpy_oracle_on_noise():
    x_T = np.random.default_rng(0).standard_normal(BLOCK).astype(np.float32)
    frames_FxN = np.lib.stride_tricks.sliding_window_view(x_T.astype(np.float64), N)[::HOP]
    assert frames_FxN.shape == (FRAMES, N)
    np.testing.assert_array_equal(signal.frame_signal(x_T, N, HOP), frames_FxN.astype(np.float32))
    features, power_FxK = features_of(x_T)
    expected = numpy_features(frames_FxN)
    np.testing.assert_allclose(power_FxK, expected["power"], rtol=2e-4, atol=1e-9)
    for name in signal.SpectralFeatures._fields:
        np.testing.assert_allclose(getattr(features, name), expected[name], rtol=1e-4, err_msg=name)
    # Parseval: the one-sided power sums to the mean square of the windowed frame.
    np.testing.assert_allclose(power_FxK.sum(-1), np.mean((frames_FxN * get_window("hann", N)) ** 2, -1), rtol=1e-4)


@pytest.mark.parametrize("k", [3, 10, 25])
def test_tone_at_exact_bin(k):
    amplitude = 0.8
    features, _ = features_of(tone(k * BIN_HZ, amplitude))
    np.testing.assert_allclose(features.dominant_hz, k * BIN_HZ)
    np.testing.assert_allclose(features.centroid_hz, k * BIN_HZ, rtol=1e-4)
    # Hann leakage puts 1/6, 2/3, 1/6 of the power in bins k-1, k, k+1: 5/6 < 85 % is reached one bin up.
    np.testing.assert_allclose(features.rolloff_hz, (k + 1) * BIN_HZ)
    np.testing.assert_allclose(features.rms, amplitude / np.sqrt(2), rtol=1e-4)  # raw frame: whole periods


def test_two_tones_centroid_is_power_weighted_mean():
    (f1, a1), (f2, a2) = (8 * BIN_HZ, 1.0), (20 * BIN_HZ, 0.5)
    features, _ = features_of(tone(f1, a1) + tone(f2, a2, phase=1.1))
    np.testing.assert_allclose(features.centroid_hz, (a1**2 * f1 + a2**2 * f2) / (a1**2 + a2**2), rtol=1e-4)
    np.testing.assert_allclose(features.dominant_hz, f1)
    # Power shares 0.8 and 0.2; at bin 19 the cumulative share is 0.8 + 0.2/6 = 0.833 < 0.85, at bin 20 0.967.
    np.testing.assert_allclose(features.rolloff_hz, 20 * BIN_HZ)
    np.testing.assert_allclose(features.rms, np.sqrt((a1**2 + a2**2) / 2), rtol=1e-4)


def test_silence_gives_zeros_not_nan():
    features, power_FxK = features_of(np.zeros(BLOCK))
    for name in signal.SpectralFeatures._fields:
        np.testing.assert_array_equal(getattr(features, name), 0.0, err_msg=name)
    assert np.all(power_FxK == 0)


@settings(deadline=None, max_examples=10)
@given(cuts=st.lists(st.integers(1, 400), min_size=1, max_size=12), frames_per_block=st.integers(1, 5))
def test_stream_blocks_reproduce_framing_of_whole_stream(cuts, frames_per_block):
    x_T = np.arange(sum(cuts) + 7, dtype=np.float32)
    chunks = np.split(x_T, np.cumsum(cuts))
    got = [np.lib.stride_tricks.sliding_window_view(block, N)[::HOP][:valid]
           for block, valid in signal.stream_blocks(chunks, N, HOP, frames_per_block)]
    expected_FxN = np.array([x_T[s : s + N] for s in range(0, x_T.size - N + 1, HOP)]).reshape(-1, N)
    assert len(expected_FxN) == signal.num_frames(x_T.size, N, HOP)
    np.testing.assert_array_equal(np.concatenate(got) if got else np.zeros((0, N)), expected_FxN)


def test_bad_framing_raises():
    with pytest.raises(ValueError, match="hop must be in"):
        signal.num_frames(100, N, N + 1)
    with pytest.raises(ValueError, match="at least frame_length=64"):
        signal.frame_signal(np.zeros(10, np.float32), N, HOP)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [("f_end", 3200.0, "--f-end must be in \\[0, 3200\\)"), ("hop", 65, "--hop must be <="), ("noise_std", -1.0, "noise-std")],
)
def test_demo_config_errors_name_the_flag(field, value, message):
    with pytest.raises(ValueError, match=message):
        signal_features.Config(**{"sample_rate": 6400, "frame_length": N, "hop": HOP, field: value}).validate()


def test_signal_features_demo(tmp_path):
    config = signal_features.Config(
        workdir=str(tmp_path), sample_rate=int(SAMPLE_RATE), duration_s=0.5, f_start=300.0, f_end=2500.0,
        noise_std=0.05, frame_length=N, hop=HOP, chunk_size=100, frames_per_block=FRAMES,
    )
    result = signal_features.main(config)
    assert result["frames"] == signal.num_frames(3200, N, HOP) and result["bin_width_hz"] == BIN_HZ
    assert result["dominant_mae_hz"] < BIN_HZ / 2  # a right tracker errs by at most half a bin (+ the sweep in a frame)
    assert result["rms_mean"] == pytest.approx(result["rms_expected"], rel=0.05)
    assert os.path.getsize(tmp_path / "spectrogram.png") > 0
    saved = np.load(tmp_path / "features.npz")
    assert saved["dominant_hz"].shape == (result["frames"],)
    assert json.loads(json.dumps(result)) == result


def test_chirp_chunks_are_scipys_chirp_plus_noise_drawn_in_sample_order():
    from scipy.signal import chirp

    rate, duration, f0, f1 = 6400.0, 0.25, 300.0, 2500.0
    t_T = np.arange(int(rate * duration)) / rate
    for size in (100, 333):
        chunks = list(signal.chirp_chunks(np.random.default_rng(0), rate, duration, f0, f1, 0.7, 0.0, size))
        assert all(c.dtype == np.float32 for c in chunks) and {c.size for c in chunks[:-1]} == {size}
        np.testing.assert_allclose(np.concatenate(chunks), 0.7 * chirp(t_T, f0, duration, f1, phi=-90), atol=2e-6)
    noisy = np.concatenate(list(signal.chirp_chunks(np.random.default_rng(5), rate, duration, f0, f1, 0.7, 0.2, 77)))
    noise = 0.2 * np.random.default_rng(5).standard_normal(t_T.size)
    np.testing.assert_allclose(noisy, 0.7 * chirp(t_T, f0, duration, f1, phi=-90) + noise, atol=2e-6)
    np.testing.assert_allclose(signal.chirp_frequency([0.0, duration / 2, duration], f0, f1, duration), [f0, 1400.0, f1])
    with pytest.raises(ValueError, match="chunk_size"):
        next(signal.chirp_chunks(np.random.default_rng(0), rate, duration, f0, f1, chunk_size=0))
