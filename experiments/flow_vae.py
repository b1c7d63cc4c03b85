"""Seed 000 slide 12: a VAE whose Gaussian posterior is refined by K planar normalising flows
(Rezende & Mohamed 2015), trained on binarised MNIST digits by maximising the single-sample ELBO.

    python -m experiments.flow_vae                 # K = 4 planar flows (the seed's setting)
    python -m experiments.flow_vae --flows 0       # the plain VAE baseline
    python -m experiments.flow_vae --binarize dynamic --iwae-samples 0

Reports the test ELBO (nats per image, higher is better; ``test_loss`` = -ELBO) estimated with one
fixed-noise sample per image, and the importance-weighted bound with ``--iwae-samples`` samples
(``test_iwae``, tighter, <= log p(x)). Writes ``samples.png`` (decoder means of z ~ N(0, I), the
prior of zK), ``reconstructions.png`` (test digits, each above its reconstruction) and
``learning_curves.png`` into the run directory.

Binarisation (``--binarize``): ``threshold`` sets pixels > 0.5 to 1 once; ``dynamic`` draws a fresh
Bernoulli(pixel) image for every training batch (inside the train step, from its augmentation key),
while validation and test images are drawn once with a fixed seed. The two give different data
(thresholded digits carry fewer nats), so compare ELBOs only under the same setting.
"""

from __future__ import annotations

import dataclasses
import math
import os
import sys

import jax
import numpy as np

from nnjax import cli, losses, plots
from nnjax.config import TrainConfig, option
from nnjax.data import load_dataset, predict_batched
from nnjax.data.transforms import BINARIZE, binarized, redraw_binary
from nnjax.models.flows import FlowVAE, importance_weighted_bound
from nnjax.tasks import fit
from nnjax.train.runner import rounded, seed_states, seed_statistics


@dataclasses.dataclass(frozen=True)
class Config(TrainConfig):
    """FlowVAE 784 -> 512 -> 2x20, 4 planar flows, 20 -> 512 -> 784 on binarised digits; Adam 1e-3, batch 128."""

    epochs: int = option(60, "passes over the training split (thresholded digits: the validation ELBO peaks near "
                             "epoch 55, then the model overfits)")
    latent_dim: int = option(20, "latent dimensions")
    hidden: int = option(512, "units of the encoder's and the decoder's hidden layer")
    flows: int = option(4, "planar flows on the posterior sample; 0: a plain VAE", minimum=0)
    binarize: str = option(
        "threshold", "threshold: pixels > 0.5 set to 1 once; dynamic: a fresh Bernoulli(pixel) image per training batch",
        choices=BINARIZE,
    )
    iwae_samples: int = option(100, "samples per test image for the importance-weighted bound; 0: skip it", minimum=0)
    iwae_batch_size: int = option(100, "test images per batch of the importance-weighted bound")
    checkpoint_every_epochs: int = 10


def mean_iwae(model: FlowVAE, variables, x_NxHxWxC: np.ndarray, config: Config) -> float:
    """Mean importance-weighted bound (nats per image) over ``x``, ``config.iwae_samples`` samples each."""
    bound = jax.jit(lambda v, x, key: importance_weighted_bound(model, v, x, key, config.iwae_samples))
    keys = jax.random.split(jax.random.PRNGKey(config.seed + 1), math.ceil(len(x_NxHxWxC) / config.iwae_batch_size))
    bound_N = predict_batched(lambda batch, i: bound(variables, batch["x"], keys[i]), {"x": x_NxHxWxC}, config.iwae_batch_size)
    return float(np.mean(bound_N, dtype=np.float64))


def save_figures(model: FlowVAE, variables, x_test: np.ndarray, workdir: str, config: Config) -> None:
    """``samples.png`` (64 decoder means of z ~ N(0, I)) and ``reconstructions.png`` (32 test images spread
    evenly over the split, each row of 8 followed by the decoder means of their fixed-noise reconstructions)."""
    shape = x_test.shape[1:]
    z = jax.random.normal(jax.random.PRNGKey(config.seed + 2), (64, config.latent_dim))
    means = jax.jit(lambda v, z: jax.nn.sigmoid(model.apply(v, z, method=FlowVAE.decode)))(variables, z)
    plots.image_grid(np.asarray(means).reshape(-1, *shape), os.path.join(workdir, "samples.png"),
                     title=f"FlowVAE (K={config.flows}) samples: decoder means of z ~ N(0, I)")
    x = x_test[np.linspace(0, len(x_test) - 1, 32).astype(int)]
    recon = jax.jit(lambda v, x: jax.nn.sigmoid(model.apply(v, x)["logits"]))(variables, x)
    pairs = np.stack([x.reshape(4, 8, *shape), np.asarray(recon).reshape(4, 8, *shape)], axis=1)
    plots.image_grid(pairs.reshape(-1, *shape), os.path.join(workdir, "reconstructions.png"),
                     title="test digits (odd rows) and reconstructions (even rows)")


def main(config: Config) -> dict:
    data = binarized(load_dataset(config.data, config.data_dir, config.download), config.binarize)
    model = FlowVAE(pixels=math.prod(data.input_shape), latent_dim=config.latent_dim, hidden=config.hidden,
                    num_flows=config.flows)
    augment = redraw_binary if config.binarize == "dynamic" else None
    result = fit(config, model, data, losses.flow_vae_elbo, experiment="flow_vae", augment=augment, multi_seed=True)
    variables = [{"params": state.params} for state in seed_states(result.state, config.seeds)]
    workdir = result.summary["workdir"]
    save_figures(model, variables[0], data.test["x"], workdir, config)  # with --seeds: the first seed's
    summary = {"flows": config.flows, "binarize": config.binarize, **result.summary}
    if config.iwae_samples:
        iwae = np.array([mean_iwae(model, v, data.test["x"], config) for v in variables])
        summary |= {k: rounded(v) for k, v in seed_statistics("test_", {"iwae": iwae}).items()}
        summary["iwae_samples"] = config.iwae_samples
    return summary


if __name__ == "__main__":
    sys.exit(cli.run(main, Config, prog="flow_vae"))
