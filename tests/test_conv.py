"""2-D convolution from scratch vs scipy, lax and flax; the edge-detection demo."""

from __future__ import annotations

import json
import os

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from scipy import signal

from nnjax.scratch import conv
from conftest import run_experiment

SCIPY = {True: signal.convolve2d, False: signal.correlate2d}
_jit_conv2d = jax.jit(conv.conv2d, static_argnames=("stride", "padding"))


def _random(shape, seed):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


@settings(deadline=None, max_examples=12)
@given(
    h=st.integers(1, 7),
    w=st.integers(1, 7),
    kh=st.integers(1, 4),
    kw=st.integers(1, 4),
    mode=st.sampled_from(conv.MODES),
    flip_kernel=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_naive_shifted_lax_agree_with_scipy(h, w, kh, kw, mode, flip_kernel, seed):
    assume(mode != "valid" or (kh <= h and kw <= w))
    image, kernel = _random((h, w), seed), _random((kh, kw), seed + 1)
    expected = SCIPY[flip_kernel](image.astype(np.float64), kernel.astype(np.float64), mode=mode)
    for fn in (conv.conv2d_naive, conv.conv2d_shifted, conv.conv2d_lax):
        got = fn(jnp.asarray(image), jnp.asarray(kernel), mode=mode, flip_kernel=flip_kernel)
        chex.assert_shape(got, expected.shape)
        np.testing.assert_allclose(got, expected, atol=1e-5, rtol=1e-5, err_msg=fn.__name__)


@pytest.mark.parametrize("impl", conv.IMPLS)
def test_convolve_and_correlate_name_scipy_semantics(impl):
    image, kernel = _random((6, 5), 0), _random((2, 3), 1)  # even, asymmetric kernel: flip and 'same' matter
    for mode in conv.MODES:
        np.testing.assert_allclose(conv.convolve2d(image, kernel, mode, impl), signal.convolve2d(image, kernel, mode), atol=1e-5)
        np.testing.assert_allclose(conv.correlate2d(image, kernel, mode, impl), signal.correlate2d(image, kernel, mode), atol=1e-5)
    assert not np.allclose(conv.convolve2d(image, kernel, impl=impl), conv.correlate2d(image, kernel, impl=impl))


@settings(deadline=None, max_examples=10)
@given(
    size=st.tuples(st.integers(3, 8), st.integers(3, 8)),
    kernel=st.tuples(st.integers(1, 3), st.integers(1, 3)),
    stride=st.tuples(st.integers(1, 3), st.integers(1, 3)),
    padding=st.sampled_from(["VALID", "SAME", ((1, 0), (2, 1))]),
    channels=st.tuples(st.integers(1, 3), st.integers(1, 4)),
    seed=st.integers(0, 2**16),
)
def test_nhwc_conv2d_matches_lax_and_flax(size, kernel, stride, padding, channels, seed):
    (c, f), (kh, kw) = channels, kernel
    x = _random((2, *size, c), seed)
    w = _random((kh, kw, c, f), seed + 1)
    got = _jit_conv2d(x, w, stride, padding)
    lax_y = jax.lax.conv_general_dilated(
        x, w, stride, padding, dimension_numbers=("NHWC", "HWIO", "NHWC"), precision=jax.lax.Precision.HIGHEST
    )
    flax_y = nn.Conv(f, (kh, kw), strides=stride, padding=padding, use_bias=False, precision="highest").apply(
        {"params": {"kernel": w}}, x
    )
    chex.assert_trees_all_close(got, lax_y, atol=1e-4, rtol=1e-4)
    chex.assert_trees_all_close(got, flax_y, atol=1e-4, rtol=1e-4)


def test_nhwc_int_stride_eager():
    x, w = _random((1, 9, 9, 2), 0), _random((3, 3, 2, 3), 1)
    got = conv.conv2d(x, w, stride=2, padding="SAME")
    chex.assert_shape(got, (1, 5, 5, 3))
    expected = jax.lax.conv_general_dilated(x, w, (2, 2), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))
    chex.assert_trees_all_close(got, expected, atol=1e-4)


@pytest.mark.parametrize(
    "image_shape, kernel_shape, mode, match",
    [
        ((3, 3), (4, 2), "valid", "no larger than the image"),
        ((3, 3, 1), (2, 2), "valid", "image_HxW must be a 2-D"),
        ((3, 3), (2,), "valid", "kernel_KHxKW must be a 2-D"),
        ((3, 3), (2, 2), "circular", "mode must be one of"),
    ],
)
@pytest.mark.parametrize("fn", [conv.conv2d_naive, conv.conv2d_shifted, conv.conv2d_lax])
def test_2d_errors(fn, image_shape, kernel_shape, mode, match):
    with pytest.raises(ValueError, match=match):
        fn(jnp.ones(image_shape), jnp.ones(kernel_shape), mode=mode)


def test_kernel_larger_than_image_is_fine_in_full_and_same():
    image, kernel = _random((2, 3), 0), _random((4, 4), 1)
    for mode in ("full", "same"):
        np.testing.assert_allclose(conv.convolve2d(image, kernel, mode), signal.convolve2d(image, kernel, mode), atol=1e-5)


@pytest.mark.parametrize(
    "x_shape, w_shape, kwargs, match",
    [
        ((4, 4, 1), (2, 2, 1, 1), {}, "x_BxHxWxC must be a 4-D"),
        ((1, 4, 4, 1), (2, 2, 1), {}, "w_KHxKWxCxF must be a 4-D"),
        ((1, 4, 4, 2), (2, 2, 3, 1), {}, "3 input channels"),
        ((1, 4, 4, 1), (2, 2, 1, 1), {"stride": 0}, "stride must be"),
        ((1, 4, 4, 1), (2, 2, 1, 1), {"padding": "REFLECT"}, "padding must be"),
        ((1, 4, 4, 1), (2, 2, 1, 1), {"padding": ((1, 1),)}, "padding pairs"),
        ((1, 2, 2, 1), (3, 3, 1, 1), {}, "larger than the padded input"),
    ],
)
def test_nhwc_errors(x_shape, w_shape, kwargs, match):
    with pytest.raises(ValueError, match=match):
        conv.conv2d(jnp.ones(x_shape), jnp.ones(w_shape), **kwargs)


def test_image_helpers_match_independent_oracles():
    from PIL import Image

    rgb = np.random.default_rng(0).integers(0, 256, (9, 10, 3), dtype=np.uint8)
    pil_gray = np.asarray(Image.fromarray(rgb).convert("L"), np.float32) / 255.0  # 8-bit BT.601 luma
    np.testing.assert_allclose(conv.rgb_to_gray(rgb), pil_gray, atol=1.0 / 255)

    image = _random((9, 10), 2)
    pooled = nn.avg_pool(jnp.asarray(image)[None, :, :, None], (3, 3), strides=(3, 3))[0, :, :, 0]
    chex.assert_trees_all_close(conv.downsample_mean(image, 3), pooled, atol=1e-6)

    gx = signal.convolve2d(image, np.array(conv.SOBEL_X_KERNEL), mode="valid")
    gy = signal.convolve2d(image, np.array(conv.SOBEL_Y_KERNEL), mode="valid")
    np.testing.assert_allclose(conv.sobel_magnitude(image), np.hypot(gx, gy), atol=1e-5)


def test_conv_edges_cli(tmp_path):
    result = run_experiment("experiments.conv_edges", "--workdir", str(tmp_path), "--downscale", "4", "--crop", "16", "--repeats", "1")
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout.strip().splitlines()[-1])
    from sklearn.datasets import load_sample_image

    gray = conv.downsample_mean(conv.rgb_to_gray(load_sample_image("china.jpg")), 4)
    edges = signal.convolve2d(np.asarray(gray, np.float64), np.array(conv.LAPLACIAN_KERNEL), mode="valid")
    assert out["image"] == "china.jpg"
    assert out["image_shape"] == list(gray.shape) and out["edge_shape"] == list(edges.shape)
    assert out["kernel"] == [[-1, -1, -1], [-1, 8, -1], [-1, -1, -1]]
    assert out["crop_shape"] == [16, 16]
    assert out["max_abs_diff_vs_scipy"] < 1e-4 and out["max_abs_diff_naive_vs_lax"] < 1e-5
    assert set(out["crop_ms"]) == set(out["image_ms"]) == set(conv.IMPLS)
    assert all(ms > 0 for ms in out["crop_ms"].values())
    np.testing.assert_allclose(out["edge_std"], edges.std(), rtol=1e-4)
    np.testing.assert_allclose(out["edge_mean_abs"], np.abs(edges).mean(), rtol=1e-4)
    assert out["edge_min"] == pytest.approx(edges.min(), abs=1e-5) and out["edge_max"] == pytest.approx(edges.max(), abs=1e-5)
    assert out["sobel_max"] > 0
    for name in out["plots"]:
        assert os.path.exists(tmp_path / name)
