"""Seed 000 slide 4: real-time windowed-FFT features (centroid, 85 % roll-off, RMS, dominant frequency).

    python -m experiments.signal_features
    python -m experiments.signal_features --duration-s 30 --noise-std 0.3 --frame-length 512 --hop 128

A synthetic 16 kHz stream (``nnjax.apps.signal_features.chirp_chunks``) -- a linear chirp from
``--f-start`` to ``--f-end`` Hz of amplitude ``--amplitude`` plus white Gaussian noise of std
``--noise-std`` -- arrives in chunks of ``--chunk-size`` samples. A host buffer (``stream_blocks``)
regroups them into fixed-size blocks of ``--frames-per-block`` overlapping frames, and each block goes
through one jitted function (framing, Hann window, real FFT, the four features; one compiled shape).
The seed's frame (buffer) is 1,024 samples with a Hann window; hop 256. Because the chirp's
instantaneous frequency ``f(t) = f_start + (f_end - f_start) t / duration`` is known, the
dominant-frequency track is scored against it at each frame's centre time (the bin spacing is
``sample_rate / frame_length`` Hz, so a perfect tracker is off by up to half of that). The centroid is
pulled towards the white noise's centroid (``sample_rate / 4``) by the noise's share of the frame
power, so it reads high early in the sweep and low late; the roll-off sits about one bin above the
tone (see ``nnjax.apps.signal_features``). Writes ``spectrogram.png`` (``nnjax.plots.spectrogram``:
power in dB with the true, dominant, centroid and roll-off tracks, and their deviations from the
truth) and ``features.npz``.
"""

from __future__ import annotations

import dataclasses
import math
import os
import sys
import time

import jax
import numpy as np
from tqdm.auto import tqdm

from nnjax import cli, plots
from nnjax.apps import signal_features as signal
from nnjax.config import RunConfig, check_positive, option, prepare_workdir
from nnjax.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class Config(RunConfig):
    """A noisy linear chirp at 16 kHz, streamed in chunks through jitted per-frame spectral features."""

    sample_rate: int = option(16000, "samples per second (Hz)")
    duration_s: float = option(10.0, "length of the stream in seconds")
    f_start: float = option(200.0, "chirp frequency at the start, in Hz (below Nyquist)")
    f_end: float = option(6000.0, "chirp frequency at the end, in Hz (below Nyquist)")
    amplitude: float = option(1.0, "chirp amplitude")
    noise_std: float = option(0.1, "standard deviation of the added white Gaussian noise")
    frame_length: int = option(1024, "samples per FFT frame (Hann window)")
    hop: int = option(256, "samples between frame starts (<= --frame-length)")
    chunk_size: int = option(1600, "samples per arriving chunk of the stream")
    frames_per_block: int = option(16, "frames per jitted block")

    def validate(self) -> None:
        check_positive(self, "duration_s", "amplitude")
        if self.noise_std < 0:
            raise ConfigError(f"--noise-std must be >= 0, got {self.noise_std}")
        if self.hop > self.frame_length:
            raise ConfigError(f"--hop must be <= --frame-length {self.frame_length} (frames overlap or touch), got {self.hop}")
        nyquist = self.sample_rate / 2
        for name in ("f_start", "f_end"):
            if not 0 <= getattr(self, name) < nyquist:
                raise ConfigError(f"--{name.replace('_', '-')} must be in [0, {nyquist:g}) Hz (below Nyquist), got {getattr(self, name)}")
        if self.duration_s * self.sample_rate < self.frame_length:
            raise ConfigError(
                f"--duration-s {self.duration_s} gives fewer samples than one frame (--frame-length {self.frame_length})"
            )
        super().validate()


def main(config: Config) -> dict:
    workdir = prepare_workdir(config, "signal_features")
    rng = np.random.default_rng(config.seed)
    n, hop, sample_rate = config.frame_length, config.hop, float(config.sample_rate)
    block_size = n + (config.frames_per_block - 1) * hop
    jax.block_until_ready(signal.stream_features(np.zeros(block_size, np.float32), sample_rate, n, hop))  # compile

    total_frames = signal.num_frames(int(config.duration_s * config.sample_rate), n, hop)
    outputs = []
    bar = tqdm(total=total_frames, unit="frame", dynamic_ncols=True, mininterval=0.5)
    start = time.perf_counter()
    chunks = signal.chirp_chunks(
        rng, sample_rate, config.duration_s, config.f_start, config.f_end, config.amplitude, config.noise_std, config.chunk_size
    )
    for block, valid in signal.stream_blocks(chunks, n, hop, config.frames_per_block):
        features, power_FxK = jax.device_get(signal.stream_features(block, sample_rate, n, hop))
        outputs.append((signal.SpectralFeatures(*(a[:valid] for a in features)), power_FxK[:valid]))
        bar.update(valid)
    elapsed = time.perf_counter() - start
    bar.close()
    features, power_FxK = jax.tree.map(lambda *parts: np.concatenate(parts), *outputs)

    times_F = (hop * np.arange(len(power_FxK)) + (n - 1) / 2) / sample_rate
    true_F = signal.chirp_frequency(times_F, config.f_start, config.f_end, config.duration_s)
    tracks = {"true": true_F, "dominant": features.dominant_hz, "centroid": features.centroid_hz, "roll-off": features.rolloff_hz}
    plots.spectrogram(power_FxK, tracks, times_F, sample_rate / 2, os.path.join(workdir, "spectrogram.png"))
    np.savez(os.path.join(workdir, "features.npz"), times_s=times_F, true_hz=true_F, **features._asdict())
    frames = len(times_F)
    return {
        "frames": frames,
        "frames_per_s": round(frames / elapsed, 1),
        "real_time_factor": round(frames * hop / sample_rate / elapsed, 1),
        "bin_width_hz": round(sample_rate / n, 4),
        "dominant_mae_hz": round(float(np.mean(np.abs(features.dominant_hz - true_F))), 3),
        "centroid_mae_hz": round(float(np.mean(np.abs(features.centroid_hz - true_F))), 3),
        "rolloff_mean_minus_true_hz": round(float(np.mean(features.rolloff_hz - true_F)), 3),
        "rms_mean": round(float(np.mean(features.rms)), 5),
        "rms_expected": round(math.sqrt(config.amplitude**2 / 2 + config.noise_std**2), 5),
        "plots": ["spectrogram.png"],
        "workdir": workdir,
    }


if __name__ == "__main__":
    sys.exit(cli.run(main, Config, prog="signal_features"))
