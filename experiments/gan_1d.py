"""Seed 003 slide 13: a GAN on 1-D samples from N(4, 1.5) -- here both networks train.

The seed fixes the generator (2x + 3) and the discriminator (a sigmoid at 4) and only plots them;
here an MLP generator maps N(0, 1) noise to samples and an MLP critic is trained against it with
the shared adversarial loop (``nnjax.tasks.adversarial``): a Wasserstein critic with the one-sided gradient
penalty (WGAN-LP), a critic learning rate above the generator's and both decayed linearly to 0.
WGAN-GP's two-sided penalty gets the 1-D critic stuck (a slope must pass |D'| = 0, which the
penalty walls off, to change sign) and the generator overshoots and circles N(4, 1.5); the plain
non-saturating loss finds the mean but its near-blind discriminator lets the spread drift. The run
reports the mean and
standard deviation of 10,000 generated samples and writes ``histogram.png`` (real vs generated,
with the N(4, 1.5) density) and ``critic.png`` (the critic's score over x). ``--seeds N`` trains N
GANs at once and reports each figure's mean, ``_std`` and ``_per_seed``; the plots are the first seed's.

    python -m experiments.gan_1d
    python -m experiments.gan_1d --no-gp-one-sided          # WGAN-GP: the critic gets stuck
"""

from __future__ import annotations

import dataclasses
import os
import sys

import jax
import numpy as np
from scipy import stats

from nnjax import cli, plots
from nnjax.config import check_positive, option
from nnjax.models.gan import MLPCritic, MLPGenerator
from nnjax.tasks import adversarial
from nnjax.train.runner import rounded, seed_states, seed_statistics


@dataclasses.dataclass(frozen=True)
class Config(adversarial.AdversarialConfig):
    """MLP generator (noise dim 1, as the seed) vs MLP critic (64, 64) on N(4, 1.5): WGAN-LP, 5 critic steps,
    Adam betas (0, 0.9), lr 3e-4 (critic 1e-3) decayed linearly to 0."""

    steps: int = 3000
    batch_size: int = 256
    latent_dim: int = 1
    learning_rate: float = 3e-4
    critic_learning_rate: float = 1e-3
    gp_one_sided: bool = True
    linear_decay: bool = True
    hidden: tuple[int, ...] = option((64, 64), "hidden-layer widths of the generator and of the critic")
    target_mean: float = option(4.0, "mean of the real N(mean, std) samples")
    target_std: float = option(1.5, "standard deviation of the real samples (> 0)")
    eval_samples: int = option(10_000, "generated samples whose mean and standard deviation are reported")
    checkpoint_every_steps: int = 0
    log_every_steps: int = 250

    def validate(self) -> None:
        check_positive(self, "target_std")
        super().validate()


def main(config: Config) -> dict:
    result = adversarial.train_adversarial(
        config, MLPGenerator(config.hidden), MLPCritic(config.hidden), None,
        adversarial.gaussian_sampler(config.target_mean, config.target_std), (1,), "gan_1d",
    )
    workdir = result.summary["workdir"]
    eval_key, real_key = jax.random.split(jax.random.PRNGKey(config.seed + 1))
    z_NxL = jax.random.normal(eval_key, (config.eval_samples, config.latent_dim))
    states = seed_states(result.state, config.seeds)
    fake_SxN = np.stack([np.asarray(adversarial.generate(state.generator, z_NxL))[:, 0] for state in states])
    fake_N = fake_SxN[0]
    real_N = np.asarray(adversarial.gaussian_sampler(config.target_mean, config.target_std)(None, real_key, config.eval_samples))[:, 0]
    x_X = np.linspace(config.target_mean - 4 * config.target_std, config.target_mean + 4 * config.target_std, 400)
    target = f"N({config.target_mean:g}, {config.target_std:g})"
    plots.histograms(
        {"real": real_N, "generated": fake_N}, os.path.join(workdir, "histogram.png"),
        title=f"1-D GAN ({config.loss}, penalty {config.gp_weight:g}{' one-sided' if config.gp_one_sided else ''}) "
        f"after {result.summary['steps']} steps",
        densities={f"{target} density": (x_X, stats.norm.pdf(x_X, config.target_mean, config.target_std))},
    )
    critic_X = np.asarray(adversarial.score(states[0].critic, x_X[:, None].astype(np.float32)))
    plots.loss_curves(x_X, {"critic score D(x)": critic_X}, os.path.join(workdir, "critic.png"), xlabel="x",
                      ylabel="D(x)", title="critic output over x (real data is " + target + ")")
    mean_S, std_S = fake_SxN.mean(axis=1), fake_SxN.std(axis=1)
    figures = {"generated_mean": mean_S, "generated_std": std_S, "mean_error": np.abs(mean_S - config.target_mean),
               "std_error": np.abs(std_S - config.target_std)}
    return {
        **{k: rounded(v) for k, v in seed_statistics("", figures).items()},
        "eval_samples": config.eval_samples,
        **result.summary,
    }


if __name__ == "__main__":
    sys.exit(cli.run(main, Config, prog="gan_1d"))
