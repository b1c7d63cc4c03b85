"""2-D convolution from scratch (seed 003 slide 10), three ways, plus the batched NHWC layer form.

Convolution vs cross-correlation. For an image ``x`` and a kernel ``k`` of size KH x KW,

    cross-correlation  y[i, j] = Σ_{m,n} x[i + m, j + n] · k[m, n]
    true convolution   y[i, j] = Σ_{m,n} x[i + m, j + n] · k[KH-1-m, KW-1-n]   (the kernel flipped)

Deep-learning "conv" layers (``lax.conv_general_dilated``, ``flax.linen.Conv``, PyTorch ``Conv2d``)
compute cross-correlation; ``scipy.signal.convolve2d`` (the seed's oracle) computes true convolution
and ``scipy.signal.correlate2d`` cross-correlation. Every single-image function here takes
``flip_kernel``: False (default) gives cross-correlation, True true convolution. ``convolve2d`` and
``correlate2d`` name the two with scipy's semantics. For a symmetric kernel such as the seed's
Laplacian the two agree.

Modes follow scipy: 'valid' (no padding, output (H-KH+1) x (W-KW+1)), 'full' (every overlap,
(H+KH-1) x (W+KW-1)) and 'same' (H x W, centred in the 'full' output the way scipy centres it).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
from jax import lax

MODES = ("valid", "same", "full")
IMPLS = ("naive", "shifted", "lax")

LAPLACIAN_KERNEL = ((-1.0, -1.0, -1.0), (-1.0, 8.0, -1.0), (-1.0, -1.0, -1.0))
SOBEL_X_KERNEL = ((-1.0, 0.0, 1.0), (-2.0, 0.0, 2.0), (-1.0, 0.0, 1.0))
SOBEL_Y_KERNEL = ((-1.0, -2.0, -1.0), (0.0, 0.0, 0.0), (1.0, 2.0, 1.0))


def _check_2d(image_HxW: jax.Array, kernel_KHxKW: jax.Array, mode: str) -> None:
    """Raise ValueError for wrong ranks, an unknown mode or a kernel larger than the image in 'valid'."""
    if jnp.ndim(image_HxW) != 2:
        raise ValueError(f"image_HxW must be a 2-D array [H, W], got shape {jnp.shape(image_HxW)}")
    if jnp.ndim(kernel_KHxKW) != 2:
        raise ValueError(f"kernel_KHxKW must be a 2-D array [KH, KW], got shape {jnp.shape(kernel_KHxKW)}")
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if min(jnp.shape(kernel_KHxKW)) < 1 or min(jnp.shape(image_HxW)) < 1:
        raise ValueError(f"image and kernel must be non-empty, got {jnp.shape(image_HxW)} and {jnp.shape(kernel_KHxKW)}")
    (h, w), (kh, kw) = jnp.shape(image_HxW), jnp.shape(kernel_KHxKW)
    if mode == "valid" and (kh > h or kw > w):
        raise ValueError(f"mode='valid' needs a kernel no larger than the image, got kernel {(kh, kw)} for image {(h, w)}")


def mode_padding(kernel_size: int, mode: str, flip_kernel: bool) -> tuple[int, int]:
    """(low, high) zero padding of one image axis that turns ``mode`` into a 'valid' sliding window.

    'same' splits KH-1 padded rows as scipy does: cross-correlation puts the extra row of an
    even kernel at the end ((K-1)//2, K//2 — the TensorFlow/flax 'SAME'), true convolution at the
    start (K//2, (K-1)//2).
    """
    if mode == "valid":
        return 0, 0
    if mode == "full":
        return kernel_size - 1, kernel_size - 1
    if mode == "same":
        small, large = (kernel_size - 1) // 2, kernel_size // 2
        return (large, small) if flip_kernel else (small, large)
    raise ValueError(f"mode must be one of {MODES}, got {mode!r}")


def _prepare(image_HxW: jax.Array, kernel_KHxKW: jax.Array, mode: str, flip_kernel: bool) -> tuple[jax.Array, jax.Array]:
    """Validate, pad the image for ``mode`` and flip the kernel if asked: the rest is a 'valid' correlation."""
    _check_2d(image_HxW, kernel_KHxKW, mode)
    image = jnp.asarray(image_HxW)
    kernel = jnp.asarray(kernel_KHxKW, dtype=jnp.result_type(image, kernel_KHxKW))
    kh, kw = kernel.shape
    image = jnp.pad(image, (mode_padding(kh, mode, flip_kernel), mode_padding(kw, mode, flip_kernel)))
    return image, (kernel[::-1, ::-1] if flip_kernel else kernel)


@functools.partial(jax.jit, static_argnames=("mode", "flip_kernel"))
def conv2d_naive(image_HxW: jax.Array, kernel_KHxKW: jax.Array, mode: str = "valid", flip_kernel: bool = False) -> jax.Array:
    """The textbook loop: for every output position (i, j), y[i, j] = Σ_{m,n} x[i+m, j+n] · k[m, n].

    Two nested ``lax.fori_loop``s over output rows and columns, each taking the KH x KW window at
    (i, j) and summing its product with the kernel. One window per step: slow, but the definition.
    [H, W] * [KH, KW] -> output of ``mode``'s shape.
    """
    x, k = _prepare(image_HxW, kernel_KHxKW, mode, flip_kernel)
    kh, kw = k.shape
    out_h, out_w = x.shape[0] - kh + 1, x.shape[1] - kw + 1

    def row(i, y):
        def column(j, y):
            window = lax.dynamic_slice(x, (i, j), (kh, kw))
            return y.at[i, j].set(jnp.sum(window * k))

        return lax.fori_loop(0, out_w, column, y)

    return lax.fori_loop(0, out_h, row, jnp.zeros((out_h, out_w), x.dtype))


@functools.partial(jax.jit, static_argnames=("mode", "flip_kernel"))
def conv2d_shifted(image_HxW: jax.Array, kernel_KHxKW: jax.Array, mode: str = "valid", flip_kernel: bool = False) -> jax.Array:
    """Vectorised: y = Σ_{m,n} k[m, n] · x[m : m+out_h, n : n+out_w], one whole shifted image per kernel tap.

    The same sum as ``conv2d_naive`` with the loops swapped: KH·KW array operations instead of
    out_h·out_w windows. [H, W] * [KH, KW] -> output of ``mode``'s shape.
    """
    x, k = _prepare(image_HxW, kernel_KHxKW, mode, flip_kernel)
    kh, kw = k.shape
    out_h, out_w = x.shape[0] - kh + 1, x.shape[1] - kw + 1
    y = jnp.zeros((out_h, out_w), x.dtype)
    for m in range(kh):
        for n in range(kw):
            y = y + k[m, n] * x[m : m + out_h, n : n + out_w]
    return y


@functools.partial(jax.jit, static_argnames=("mode", "flip_kernel"))
def conv2d_lax(image_HxW: jax.Array, kernel_KHxKW: jax.Array, mode: str = "valid", flip_kernel: bool = False) -> jax.Array:
    """XLA's convolution ``lax.conv_general_dilated`` (a cross-correlation) on a 1-image, 1-channel batch.

    [H, W] * [KH, KW] -> output of ``mode``'s shape.
    """
    x, k = _prepare(image_HxW, kernel_KHxKW, mode, flip_kernel)
    y = lax.conv_general_dilated(
        x[None, None], k[None, None], window_strides=(1, 1), padding="VALID", precision=lax.Precision.HIGHEST
    )
    return y[0, 0]


_IMPL_FNS = {"naive": conv2d_naive, "shifted": conv2d_shifted, "lax": conv2d_lax}


def convolve2d(image_HxW: jax.Array, kernel_KHxKW: jax.Array, mode: str = "valid", impl: str = "shifted") -> jax.Array:
    """True convolution (kernel flipped), the semantics of ``scipy.signal.convolve2d(image, kernel, mode)``."""
    if impl not in IMPLS:
        raise ValueError(f"impl must be one of {IMPLS}, got {impl!r}")
    return _IMPL_FNS[impl](image_HxW, kernel_KHxKW, mode=mode, flip_kernel=True)


def correlate2d(image_HxW: jax.Array, kernel_KHxKW: jax.Array, mode: str = "valid", impl: str = "shifted") -> jax.Array:
    """Cross-correlation (deep-learning "conv"), the semantics of ``scipy.signal.correlate2d(image, kernel, mode)``."""
    if impl not in IMPLS:
        raise ValueError(f"impl must be one of {IMPLS}, got {impl!r}")
    return _IMPL_FNS[impl](image_HxW, kernel_KHxKW, mode=mode, flip_kernel=False)


def same_padding(size: int, kernel_size: int, stride: int) -> tuple[int, int]:
    """(low, high) padding of TensorFlow/flax 'SAME': output size ceil(size / stride), extra row at the end."""
    total = max((-(-size // stride) - 1) * stride + kernel_size - size, 0)
    return total // 2, total - total // 2


def _pairs(value: int | Sequence[int], name: str) -> tuple[int, int]:
    pair = (value, value) if isinstance(value, int) else tuple(value)
    if len(pair) != 2 or min(pair) < 1:
        raise ValueError(f"{name} must be a positive int or a pair of positive ints, got {value!r}")
    return pair


def conv2d(
    x_BxHxWxC: jax.Array,
    w_KHxKWxCxF: jax.Array,
    stride: int | Sequence[int] = 1,
    padding: str | Sequence[tuple[int, int]] = "VALID",
) -> jax.Array:
    """Batched multi-channel cross-correlation, the layer form: [B, H, W, C] * [KH, KW, C, F] -> [B, H', W', F].

    y[b, i, j, f] = Σ_{m,n,c} x[b, i·sh + m, j·sw + n, c] · w[m, n, c, f], computed as a sum over the
    KH·KW kernel taps of a strided shifted slice times the tap's [C, F] matrix. ``padding`` is
    'VALID', 'SAME' (TensorFlow/flax) or explicit ((low_h, high_h), (low_w, high_w)); same values as
    ``lax.conv_general_dilated`` with NHWC/HWIO and ``flax.linen.Conv(use_bias=False)``.
    """
    if jnp.ndim(x_BxHxWxC) != 4:
        raise ValueError(f"x_BxHxWxC must be a 4-D array [B, H, W, C], got shape {jnp.shape(x_BxHxWxC)}")
    if jnp.ndim(w_KHxKWxCxF) != 4:
        raise ValueError(f"w_KHxKWxCxF must be a 4-D array [KH, KW, C, F], got shape {jnp.shape(w_KHxKWxCxF)}")
    _, h, w, c = jnp.shape(x_BxHxWxC)
    kh, kw, kc, _ = jnp.shape(w_KHxKWxCxF)
    if kc != c:
        raise ValueError(f"w_KHxKWxCxF has {kc} input channels but x_BxHxWxC has {c}")
    sh, sw = _pairs(stride, "stride")
    if isinstance(padding, str):
        if padding.upper() not in ("VALID", "SAME"):
            raise ValueError(f"padding must be 'VALID', 'SAME' or ((lo, hi), (lo, hi)), got {padding!r}")
        pads = ((0, 0), (0, 0)) if padding.upper() == "VALID" else (same_padding(h, kh, sh), same_padding(w, kw, sw))
    else:
        pads = tuple(tuple(p) for p in padding)
        if len(pads) != 2 or any(len(p) != 2 or min(p) < 0 for p in pads):
            raise ValueError(f"padding pairs must be ((lo_h, hi_h), (lo_w, hi_w)) of ints >= 0, got {padding!r}")
    x = jnp.pad(x_BxHxWxC, ((0, 0), *pads, (0, 0)))
    ph, pw = x.shape[1], x.shape[2]
    if kh > ph or kw > pw:
        raise ValueError(f"kernel {(kh, kw)} is larger than the padded input {(ph, pw)}")
    out_h, out_w = (ph - kh) // sh + 1, (pw - kw) // sw + 1
    y = 0.0
    for m in range(kh):
        for n in range(kw):
            tap_BxHxWxC = x[:, m : m + (out_h - 1) * sh + 1 : sh, n : n + (out_w - 1) * sw + 1 : sw, :]
            y = y + jnp.einsum("bhwc,cf->bhwf", tap_BxHxWxC, w_KHxKWxCxF[m, n], precision=lax.Precision.HIGHEST)
    return y


def rgb_to_gray(image_HxWx3: jax.Array) -> jax.Array:
    """ITU-R BT.601 luma 0.299 R + 0.587 G + 0.114 B of an RGB image with values in [0, 255] -> [H, W] in [0, 1]."""
    if jnp.ndim(image_HxWx3) != 3 or jnp.shape(image_HxWx3)[-1] != 3:
        raise ValueError(f"image_HxWx3 must be an RGB array [H, W, 3], got shape {jnp.shape(image_HxWx3)}")
    weights = jnp.array([0.299, 0.587, 0.114], jnp.float32)
    return jnp.asarray(image_HxWx3, jnp.float32) @ weights / 255.0


def downsample_mean(image_HxW: jax.Array, factor: int) -> jax.Array:
    """Average ``factor`` x ``factor`` blocks (trailing rows/columns that do not fill a block are dropped)."""
    if factor < 1:
        raise ValueError(f"factor must be >= 1, got {factor}")
    h, w = jnp.shape(image_HxW)
    if factor > min(h, w):
        raise ValueError(f"factor {factor} is larger than the image {(h, w)}")
    x = jnp.asarray(image_HxW)[: h // factor * factor, : w // factor * factor]
    return x.reshape(h // factor, factor, w // factor, factor).mean(axis=(1, 3))


def sobel_magnitude(image_HxW: jax.Array, mode: str = "valid") -> jax.Array:
    """Gradient magnitude sqrt(Gx² + Gy²) from the Sobel x/y kernels (true convolution, like scipy)."""
    gx = convolve2d(image_HxW, jnp.array(SOBEL_X_KERNEL), mode)
    gy = convolve2d(image_HxW, jnp.array(SOBEL_Y_KERNEL), mode)
    return jnp.sqrt(gx**2 + gy**2)
