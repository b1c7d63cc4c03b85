"""Seed 003 slide 10: edge detection by 2-D convolution with the Laplacian kernel, on a real photo.

    python -m experiments.conv_edges
    python -m experiments.conv_edges --downscale 2 --no-sobel

The image is scikit-learn's sample photo ``china.jpg`` (427x640, ships with scikit-learn; decoding
needs pillow) in grayscale floats in [0, 1]. The edge map is the from-scratch convolution
(``nnjax.scratch.conv``), checked against ``scipy.signal.convolve2d`` on the whole image and the
textbook loop against ``lax.conv_general_dilated`` on a crop (the loop is slow, so it is timed there).
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
from scipy import signal

from nnjax import cli, plots
from nnjax.config import RunConfig, option, prepare_workdir
from nnjax.errors import ConfigError
from nnjax.scratch import conv

log = logging.getLogger("nnjax.experiments.conv_edges")

IMAGES = ("china.jpg", "flower.jpg", "digits")


@dataclasses.dataclass(frozen=True)
class Config(RunConfig):
    """Laplacian [[-1,-1,-1],[-1,8,-1],[-1,-1,-1]] 'valid' convolution of china.jpg in grayscale."""

    image: str = option(
        "china.jpg", "scikit-learn's sample photo, or digits (a 64x64 tile of 8x8 digits); a photo that cannot load "
        "falls back to the next", choices=IMAGES,
    )
    downscale: int = option(1, "average-pool the image by this factor first; 1: full size")
    crop: int = option(64, "side in pixels of the crop on which the textbook loop is checked and timed (>= 3)")
    sobel: bool = option(True, "also draw the Sobel gradient magnitude")
    repeats: int = option(5, "timed calls per implementation (the median is reported)")

    def validate(self) -> None:
        if self.crop < 3:
            raise ConfigError(f"--crop must be >= 3 (the kernel is 3x3), got {self.crop}")
        super().validate()


def load_gray_image(name: str) -> tuple[str, np.ndarray]:
    """(name actually loaded, grayscale float32 [H, W] in [0, 1]); falls back, with a message, if a photo cannot load."""
    from sklearn import datasets

    for photo in IMAGES[IMAGES.index(name):-1]:
        try:
            return photo, np.asarray(conv.rgb_to_gray(datasets.load_sample_image(photo)))
        except (ImportError, OSError) as err:
            log.warning("could not load %s (%s); falling back to the next image", photo, err)
    digits = datasets.load_digits()
    tiles_64x64 = digits.images[:64].reshape(8, 8, 8, 8).transpose(0, 2, 1, 3).reshape(64, 64)
    return "digits", (tiles_64x64 / 16.0).astype(np.float32)


def time_ms(fn, *args, repeats: int) -> float:
    """Median wall time of ``fn(*args)`` in milliseconds, after one compiling call."""
    jax.block_until_ready(fn(*args))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - start)
    return 1e3 * float(np.median(times))


def main(config: Config) -> dict:
    workdir = prepare_workdir(config, "conv_edges")
    name, gray = load_gray_image(config.image)
    image_HxW = conv.downsample_mean(jnp.asarray(gray), config.downscale) if config.downscale > 1 else jnp.asarray(gray)
    kernel = jnp.array(conv.LAPLACIAN_KERNEL)
    edges = conv.convolve2d(image_HxW, kernel, "valid")
    scipy_edges = signal.convolve2d(np.asarray(image_HxW, np.float64), np.asarray(kernel, np.float64), mode="valid")

    size = min(config.crop, *image_HxW.shape)
    crop = image_HxW[:size, :size]
    impls = {impl: functools.partial(conv.convolve2d, mode="valid", impl=impl) for impl in conv.IMPLS}
    naive, lax_crop = impls["naive"](crop, kernel), impls["lax"](crop, kernel)
    crop_ms = {impl: round(time_ms(fn, crop, kernel, repeats=config.repeats), 3) for impl, fn in impls.items()}
    image_ms = {impl: round(time_ms(fn, image_HxW, kernel, repeats=config.repeats), 3) for impl, fn in impls.items()}

    outputs = {"Laplacian edges": edges}
    result = {}
    if config.sobel:
        magnitude = conv.sobel_magnitude(image_HxW)
        outputs["Sobel |gradient|"] = magnitude
        result |= {"sobel_mean": round(float(magnitude.mean()), 6), "sobel_max": round(float(magnitude.max()), 6)}
    plots.convolution_panels(
        image_HxW, kernel, outputs, os.path.join(workdir, "conv_edges.png"), title=f"{name}: convolution with an edge kernel"
    )
    abs_edges = jnp.abs(edges)
    return {
        "image": name,
        "image_shape": list(image_HxW.shape),
        "kernel": np.asarray(kernel).astype(int).tolist(),
        "edge_shape": list(edges.shape),
        "max_abs_diff_vs_scipy": float(np.max(np.abs(np.asarray(edges, np.float64) - scipy_edges))),
        "crop_shape": list(crop.shape),
        "max_abs_diff_naive_vs_lax": float(jnp.max(jnp.abs(naive - lax_crop))),
        "crop_ms": crop_ms,
        "image_ms": image_ms,
        "edge_mean": round(float(edges.mean()), 6),
        "edge_std": round(float(edges.std()), 6),
        "edge_min": round(float(edges.min()), 6),
        "edge_max": round(float(edges.max()), 6),
        "edge_mean_abs": round(float(abs_edges.mean()), 6),
        "edge_fraction_above_0.1": round(float((abs_edges > 0.1).mean()), 6),
        **result,
        "plots": ["conv_edges.png"],
        "workdir": workdir,
    }


if __name__ == "__main__":
    sys.exit(cli.run(main, Config, prog="conv_edges"))
