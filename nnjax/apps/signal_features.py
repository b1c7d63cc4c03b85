"""Windowed-FFT features of a 1-D signal stream (seed 000 slide 4), as pure jittable JAX functions.

A stream of ``T`` samples is cut into ``F = 1 + (T - N) // hop`` overlapping frames of ``N`` samples
(frame ``f`` covers samples ``f*hop .. f*hop + N - 1``; an incomplete tail is dropped). Each frame is
multiplied by a periodic Hann window and transformed with the real FFT; bin ``k`` (``0 <= k <= N//2``)
sits at ``k * sample_rate / N`` Hz.

Conventions (all frequencies in Hz for the given ``sample_rate``):

* **Window**: the *periodic* Hann window ``w[n] = 0.5 - 0.5 cos(2 pi n / N)`` (``scipy.signal.get_window
  ('hann', N)``, ``fftbins=True``), the DFT-even form for spectral analysis. ``np.hanning`` (used by the
  seed) is the *symmetric* form (``N - 1`` in the denominator) meant for filter design; with the periodic
  window a tone at an exact bin leaks into exactly its two neighbours with magnitudes 1/4, 1/2, 1/4.
* **Power spectrum**: one-sided, ``P_k = c_k |X_k|^2 / N^2`` with ``c_k = 2`` for the bins that stand for
  a positive and a negative frequency (``0 < k < N/2``) and 1 for DC and Nyquist, so by Parseval
  ``sum_k P_k = mean((w * x)^2)``: the energy of the windowed frame per sample.
* **Spectral weights are power (magnitude squared)**, not magnitude (librosa weights by magnitude):
  power is what Parseval's theorem makes an energy, so "85 % of the spectral energy" has a literal
  meaning, and the centroid of a sum of tones is the mean of their frequencies weighted by their
  powers ``A_i^2 / 2``.
* **Spectral centroid**: ``sum_k f_k P_k / sum_k P_k``.
* **Roll-off**: the smallest bin frequency ``f_k`` with ``sum_{j<=k} P_j >= 0.85 sum_j P_j``. For a
  tone at an exact bin the Hann leakage puts 1/6, 2/3, 1/6 of the power in bins ``k-1, k, k+1``, so the
  cumulative share reaches 5/6 < 0.85 at ``k`` and the roll-off is one bin above the tone.
* **Dominant frequency**: the frequency of the largest power bin (DC included; the lowest such bin on
  ties).
* **RMS**: ``sqrt(mean(x^2))`` of the *raw* (unwindowed) frame, so a sine of amplitude ``A`` over a whole
  number of periods has RMS ``A / sqrt(2)`` whatever the window.
* **Silence**: a frame of zeros has centroid, roll-off, dominant frequency and RMS all 0 (no NaN).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Iterator
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

ROLLOFF_FRACTION = 0.85


class SpectralFeatures(NamedTuple):
    """Per-frame features; every field has the frames' leading shape (``[F]`` for a stream of frames)."""

    centroid_hz: jax.Array
    rolloff_hz: jax.Array
    rms: jax.Array
    dominant_hz: jax.Array


def _check_framing(frame_length: int, hop: int) -> None:
    if frame_length < 2:
        raise ValueError(f"frame_length must be >= 2, got {frame_length}")
    if not 1 <= hop <= frame_length:
        raise ValueError(f"hop must be in [1, frame_length={frame_length}], got {hop}")


def num_frames(num_samples: int, frame_length: int, hop: int) -> int:
    """How many whole frames ``frame_signal`` cuts from ``num_samples`` samples (0 if fewer than one frame)."""
    _check_framing(frame_length, hop)
    return 0 if num_samples < frame_length else 1 + (num_samples - frame_length) // hop


@functools.partial(jax.jit, static_argnames=("frame_length", "hop"))
def frame_signal(x_T: jax.Array, frame_length: int, hop: int) -> jax.Array:
    """Overlapping frames ``[F, frame_length]`` of a 1-D stream ``[T]``; frame ``f`` starts at sample ``f * hop``."""
    count = num_frames(x_T.shape[0], frame_length, hop) if x_T.ndim == 1 else 0
    if count == 0:
        raise ValueError(f"x_T must be 1-D with at least frame_length={frame_length} samples, got shape {x_T.shape}")
    index_FxN = hop * jnp.arange(count)[:, None] + jnp.arange(frame_length)[None, :]
    return x_T[index_FxN]


def hann_window(frame_length: int) -> jax.Array:
    """Periodic (DFT-even) Hann window ``[N]``: ``0.5 - 0.5 cos(2 pi n / N)``."""
    n = jnp.arange(frame_length, dtype=jnp.float32)
    return 0.5 - 0.5 * jnp.cos(2.0 * jnp.pi * n / frame_length)


def rfft_frequencies(frame_length: int, sample_rate: float) -> jax.Array:
    """Centre frequencies ``[N//2 + 1]`` in Hz of the real-FFT bins of an ``N``-sample frame."""
    return jnp.arange(frame_length // 2 + 1, dtype=jnp.float32) * (sample_rate / frame_length)


def magnitude_spectrum(frames_FxN: jax.Array) -> jax.Array:
    """``|rfft(hann * frame)|`` ``[..., N//2 + 1]`` of frames ``[..., N]`` (unnormalised, like ``np.fft.rfft``)."""
    frame_length = frames_FxN.shape[-1]
    return jnp.abs(jnp.fft.rfft(frames_FxN * hann_window(frame_length), axis=-1))


def power_spectrum(frames_FxN: jax.Array) -> jax.Array:
    """One-sided power ``[..., N//2 + 1]`` of Hann-windowed frames; sums to ``mean((hann * frame)^2)`` per frame."""
    frame_length = frames_FxN.shape[-1]
    bins = frame_length // 2 + 1
    k = jnp.arange(bins)
    two_sided = (k > 0) & ~((frame_length % 2 == 0) & (k == bins - 1))
    scale_K = jnp.where(two_sided, 2.0, 1.0) / frame_length**2
    return magnitude_spectrum(frames_FxN) ** 2 * scale_K


def frame_features(
    frame_N: jax.Array, sample_rate: float, rolloff_fraction: float = ROLLOFF_FRACTION
) -> SpectralFeatures:
    """Centroid, roll-off, RMS and dominant frequency (scalars) of one frame ``[N]`` (conventions: module doc)."""
    power_K = power_spectrum(frame_N)
    freqs_K = rfft_frequencies(frame_N.shape[-1], sample_rate)
    cumulative_K = jnp.cumsum(power_K)
    total = cumulative_K[-1]
    centroid = jnp.where(total > 0, jnp.sum(freqs_K * power_K) / jnp.where(total > 0, total, 1.0), 0.0)
    rolloff_bin = jnp.argmax(cumulative_K >= rolloff_fraction * total)
    return SpectralFeatures(
        centroid_hz=centroid,
        rolloff_hz=freqs_K[rolloff_bin],
        rms=jnp.sqrt(jnp.mean(frame_N**2)),
        dominant_hz=freqs_K[jnp.argmax(power_K)],
    )


@jax.jit
def spectral_features(
    frames_FxN: jax.Array, sample_rate: float, rolloff_fraction: float = ROLLOFF_FRACTION
) -> SpectralFeatures:
    """``frame_features`` of every frame ``[F, N]`` (vmapped, jitted): a ``SpectralFeatures`` of ``[F]`` arrays."""
    return jax.vmap(frame_features, in_axes=(0, None, None))(frames_FxN, sample_rate, rolloff_fraction)


@functools.partial(jax.jit, static_argnames=("frame_length", "hop"))
def stream_features(
    x_T: jax.Array, sample_rate: float, frame_length: int, hop: int
) -> tuple[SpectralFeatures, jax.Array]:
    """Frame a stream ``[T]`` and return (``spectral_features`` ``[F]`` each, ``power_spectrum`` ``[F, N//2 + 1]``)."""
    frames_FxN = frame_signal(x_T, frame_length, hop)
    return spectral_features(frames_FxN, sample_rate), power_spectrum(frames_FxN)


def stream_blocks(
    chunks: Iterable[np.ndarray], frame_length: int, hop: int, frames_per_block: int
) -> Iterator[tuple[np.ndarray, int]]:
    """Regroup a stream of arbitrary-size sample chunks into fixed-size blocks of ``frames_per_block`` frames.

    Yields ``(block, valid)``: ``block`` has ``frame_length + (frames_per_block - 1) * hop`` samples (one
    compiled shape), and ``frame_signal(block, frame_length, hop)[:valid]`` are the next ``valid`` frames of
    the stream, in order; blocks start ``frames_per_block * hop`` samples apart. The last block is padded
    with zeros and has ``valid < frames_per_block`` when the stream ends inside it; the frames yielded are
    exactly ``frame_signal`` of the whole stream. Host-side (NumPy): this is the real-time buffer.
    """
    _check_framing(frame_length, hop)
    if frames_per_block < 1:
        raise ValueError(f"frames_per_block must be >= 1, got {frames_per_block}")
    block_size = frame_length + (frames_per_block - 1) * hop
    advance = frames_per_block * hop
    buffer = np.zeros(0, np.float32)
    for chunk in chunks:
        buffer = np.concatenate([buffer, np.asarray(chunk, np.float32).ravel()])
        while buffer.size >= block_size:
            yield buffer[:block_size], frames_per_block
            buffer = buffer[advance:]
    valid = num_frames(buffer.size, frame_length, hop)
    if valid:
        yield np.pad(buffer, (0, block_size - buffer.size)), valid


def chirp_frequency(t_T: np.ndarray, f_start: float, f_end: float, duration_s: float) -> np.ndarray:
    """Instantaneous frequency (Hz) ``[T]`` at times ``t_T`` (s) of a linear sweep from ``f_start`` to ``f_end`` over ``duration_s``."""
    return f_start + (f_end - f_start) * np.asarray(t_T) / duration_s


def chirp_chunks(
    rng: np.random.Generator, sample_rate: float, duration_s: float, f_start: float, f_end: float,
    amplitude: float = 1.0, noise_std: float = 0.0, chunk_size: int = 1600,
) -> Iterator[np.ndarray]:
    """A noisy linear chirp as consecutive float32 chunks of ``chunk_size`` samples (the last one shorter).

    Sample ``i`` at ``t = i / sample_rate`` (``0 <= i < duration_s * sample_rate``) is ``amplitude *
    sin(2 pi (f_start t + (f_end - f_start) t^2 / (2 duration_s)))`` plus ``noise_std`` times one draw of
    ``rng.standard_normal``, drawn in sample order (the stream does not depend on ``chunk_size``); its
    frequency is ``chirp_frequency(t, ...)``. This is ``scipy.signal.chirp(t, f_start, duration_s, f_end,
    phi=-90)`` plus noise.
    """
    if sample_rate <= 0 or duration_s <= 0 or chunk_size < 1:
        raise ValueError(f"sample_rate, duration_s and chunk_size must be positive, got {sample_rate}, {duration_s}, {chunk_size}")
    total = int(duration_s * sample_rate)
    sweep = (f_end - f_start) / duration_s
    for start in range(0, total, chunk_size):
        t = np.arange(start, min(start + chunk_size, total)) / sample_rate
        phase = 2 * np.pi * (f_start * t + 0.5 * sweep * t**2)
        yield (amplitude * np.sin(phase) + noise_std * rng.standard_normal(t.size)).astype(np.float32)
