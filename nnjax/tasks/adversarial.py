"""Adversarial training: WGAN-GP and non-saturating GAN losses, one jitted alternating step, and the
``Adversarial`` task that runs it on the runner (``nnjax.train.runner``) for every GAN experiment.

The step does ``n_critic`` critic updates in a ``lax.scan`` and then one generator update, with one
Adam per network (WGAN-GP: lr 1e-4, betas (0.0, 0.9), 5 critic steps, penalty weight 10). Each
network's ``TrainState`` carries its own key, split once per step. Real samples come from
``sample_real(data, key, n)`` inside the step, so image data sets (rows drawn from a device array)
and closed-form targets (a 1-D Gaussian) use the same step and loop.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from flax import struct

from nnjax.config import ResumableConfig, check_positive, option
from nnjax.errors import ConfigError
from nnjax.train.runner import RunResult, Schedule, Task, init_per_seed, rounded, run, seed_statistics, seed_values
from nnjax.train.state import TrainState, create_train_state, model_variables


LOSSES = ("wasserstein", "nonsaturating")
CriticFn = Callable[[jax.Array], jax.Array]
SampleReal = Callable[[Any, jax.Array, int], jax.Array]
Metrics = dict[str, jax.Array]


@dataclasses.dataclass(frozen=True)
class AdversarialConfig(ResumableConfig):
    """The adversarial loop's fields; defaults are WGAN-GP's (Gulrajani et al. 2017, Algorithm 1).

    ``steps`` counts generator updates (each after ``n_critic`` critic updates on fresh batches).
    """

    steps: int = option(2000, "generator updates, each after --n-critic critic updates")
    batch_size: int = option(64, "real and generated samples per update")
    latent_dim: int = option(100, "dimensions of the generator's N(0, I) noise")
    loss: str = option(
        "wasserstein", "wasserstein (the WGAN critic) or nonsaturating (the logistic GAN loss)", choices=LOSSES
    )
    gp_weight: float = option(10.0, "weight of the gradient penalty; 0: none")
    gp_one_sided: bool = option(False, "penalise only gradient norms above 1 (WGAN-LP)")
    n_critic: int = option(5, "critic updates per generator update, each on a fresh batch")
    learning_rate: float = option(1e-4, "the generator's Adam learning rate (and the critic's, see --critic-learning-rate)")
    critic_learning_rate: float = option(
        0.0, "the critic's Adam learning rate; 0: --learning-rate; larger: two time-scale updates (TTUR)"
    )
    adam_b1: float = option(0.0, "Adam beta1 of both networks, in [0, 1)")
    adam_b2: float = option(0.9, "Adam beta2 of both networks, in [0, 1)")
    linear_decay: bool = option(False, "decay both learning rates linearly to 0 over the run (WGAN-GP's reference code)")
    log_every_steps: int = option(50, "generator updates between metric rows")
    checkpoint_every_steps: int = option(500, "generator updates between checkpoints; 0: only at the end", minimum=0)
    keep_checkpoints: int = option(2, "newest checkpoints kept in --workdir")
    seeds: int = option(1, "N > 1: seeds --seed .. --seed+N-1 trained at once in one vmapped step; each loss is "
                           "their mean, with <loss>_std and <loss>_per_seed", minimum=1)

    def resumable_fields(self) -> set[str]:
        """More steps unless ``linear_decay`` (the learning rates then depend on the run's length), other log and
        checkpoint intervals."""
        length = set() if self.linear_decay else {"steps"}
        return super().resumable_fields() | length | {"log_every_steps", "checkpoint_every_steps", "keep_checkpoints"}

    def validate(self) -> None:
        check_positive(self, "learning_rate")
        for name in ("gp_weight", "critic_learning_rate"):
            if getattr(self, name) < 0:
                raise ConfigError(f"--{name.replace('_', '-')} must be >= 0 (0 disables), got {getattr(self, name)}")
        for name in ("adam_b1", "adam_b2"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ConfigError(f"--{name.replace('_', '-')} must be in [0, 1), got {getattr(self, name)}")
        super().validate()


class GANState(struct.PyTreeNode):
    """The generator's and the critic's ``TrainState``; ``step`` counts generator updates."""

    generator: TrainState
    critic: TrainState

    @property
    def step(self) -> jax.Array:
        return self.generator.step


def per_sample_input_grads(critic_fn: CriticFn, x_BxD: jax.Array) -> jax.Array:
    """[B, ...]: the gradient of sample i's score with respect to sample i, for every i.

    ``critic_fn`` maps a batch [B, ...] to scores [B]; each gradient is ``jax.grad`` of the critic on
    one sample (a batch of one), vmapped over the batch, so no sample's gradient mixes with another's
    even if the critic were not per-sample (the ``grad(sum(scores))`` shortcut assumes it is).
    """
    return jax.vmap(jax.grad(lambda x: critic_fn(x[None])[0]))(x_BxD)


def gradient_penalty(
    critic_fn: CriticFn, real_BxD: jax.Array, fake_BxD: jax.Array, key: jax.Array, one_sided: bool = False
) -> jax.Array:
    """WGAN-GP penalty: mean over i of (|grad critic(x_i)|_2 - 1)^2 at x_i = a_i real_i + (1 - a_i) fake_i.

    a_i ~ U[0, 1] per sample (from ``key``); the norm is over all of a sample's dims. ``one_sided``
    penalises only norms above 1, max(0, |g| - 1)^2 (WGAN-LP, Petzka et al. 2018): in 1-D the
    two-sided penalty walls off a critic slope from changing sign (it must pass |g| = 0), and
    the critic gets stuck; the one-sided one does not.
    """
    if real_BxD.shape != fake_BxD.shape:
        raise ValueError(f"gradient_penalty: real {real_BxD.shape} and fake {fake_BxD.shape} must have one shape")
    alpha = jax.random.uniform(key, (real_BxD.shape[0],) + (1,) * (real_BxD.ndim - 1), real_BxD.dtype)
    x_hat = alpha * real_BxD + (1.0 - alpha) * fake_BxD
    grads_BxK = per_sample_input_grads(critic_fn, x_hat).reshape(real_BxD.shape[0], -1)
    norms_B = jnp.sqrt(jnp.sum(grads_BxK**2, axis=1) + 1e-12)  # finite gradient at g = 0
    excess_B = norms_B - 1.0
    return jnp.mean(jnp.maximum(excess_B, 0.0) ** 2 if one_sided else excess_B**2)


def critic_loss(loss: str, real_scores_B: jax.Array, fake_scores_B: jax.Array) -> jax.Array:
    """The critic's loss before the penalty: 'wasserstein' E[D(fake)] - E[D(real)];
    'nonsaturating' the logistic loss -log s(D(real)) - log(1 - s(D(fake)))."""
    if loss == "wasserstein":
        return fake_scores_B.mean() - real_scores_B.mean()
    return jax.nn.softplus(-real_scores_B).mean() + jax.nn.softplus(fake_scores_B).mean()


def generator_loss(loss: str, fake_scores_B: jax.Array) -> jax.Array:
    """The generator's loss: 'wasserstein' -E[D(G(z))]; 'nonsaturating' -log s(D(G(z)))."""
    if loss == "wasserstein":
        return -fake_scores_B.mean()
    return jax.nn.softplus(-fake_scores_B).mean()


def _apply(state: TrainState, params: Any, x: jax.Array, train: bool) -> tuple[jax.Array, Any]:
    """(network output, its batch_stats after the call): BatchNorm batch statistics and written
    spectral-norm vectors when ``train``, the stored ones otherwise."""
    variables = model_variables(params, state.batch_stats)
    if not train:
        return state.apply_fn(variables, x, train=False), state.batch_stats
    out, mutated = state.apply_fn(variables, x, train=True, mutable=["batch_stats"])
    return out, mutated.get("batch_stats", state.batch_stats)


def sample_rows(data_NxD: jax.Array, key: jax.Array, n: int) -> jax.Array:
    """``n`` rows of ``data`` drawn uniformly with replacement: a ``sample_real`` for data sets."""
    return data_NxD[jax.random.randint(key, (n,), 0, data_NxD.shape[0])]


def gaussian_sampler(mean: float, std: float) -> SampleReal:
    """``sample_real(None, key, n)``: n samples [n, 1] of N(mean, std^2), a closed-form target (no data)."""
    return lambda _, key, n: mean + std * jax.random.normal(key, (n, 1))


def make_adversarial_step(
    config: AdversarialConfig, sample_real: SampleReal
) -> Callable[[GANState, Any], tuple[GANState, Metrics]]:
    """``step(state, data) -> (state, metrics)``: ``n_critic`` critic updates, then one generator update.

    Critic update k draws ``batch_size`` real samples, as many fakes from the fixed generator (BatchNorm
    on batch statistics, its running averages untouched) and minimises ``critic_loss`` plus
    ``gp_weight`` times ``gradient_penalty`` (the penalty sees the critic with the same normalised
    weights, without writing its spectral-norm vectors). The generator update then minimises
    ``generator_loss`` through the updated critic and updates its BatchNorm running averages.
    Metrics are the means over the critic updates (critic_loss including the penalty, gp,
    wasserstein = E[D(real)] - E[D(fake)]) and the generator's loss.
    """
    b = config.batch_size

    def critic_update(generator: TrainState, data: Any, critic: TrainState, key: jax.Array):
        real_key, z_key, gp_key = jax.random.split(key, 3)
        real = sample_real(data, real_key, b)
        fake, _ = _apply(generator, generator.params, jax.random.normal(z_key, (b, config.latent_dim)), train=True)
        fake = jax.lax.stop_gradient(fake)

        def loss_fn(params):
            scores_2B, batch_stats = _apply(critic, params, jnp.concatenate([real, fake]), train=True)
            real_scores, fake_scores = scores_2B[:b], scores_2B[b:]
            loss = critic_loss(config.loss, real_scores, fake_scores)
            gp = jnp.zeros(())
            if config.gp_weight:
                score_fn = lambda x: _apply(critic, params, x, train=False)[0]  # noqa: E731
                gp = gradient_penalty(score_fn, real, fake, gp_key, config.gp_one_sided)
            metrics = {"gp": gp, "wasserstein": real_scores.mean() - fake_scores.mean()}
            return loss + config.gp_weight * gp, (batch_stats, metrics)

        (loss, (batch_stats, metrics)), grads = jax.value_and_grad(loss_fn, has_aux=True)(critic.params)
        return critic.apply_gradients(grads=grads, batch_stats=batch_stats), {"critic_loss": loss, **metrics}

    def step(state: GANState, data: Any) -> tuple[GANState, Metrics]:
        critic_rng, critic_key = jax.random.split(state.critic.rng)
        generator_rng, z_key = jax.random.split(state.generator.rng)
        generator = state.generator
        critic, critic_metrics = jax.lax.scan(
            lambda c, k: critic_update(generator, data, c, k), state.critic, jax.random.split(critic_key, config.n_critic)
        )
        z = jax.random.normal(z_key, (b, config.latent_dim))

        def loss_fn(params):
            fake, batch_stats = _apply(generator, params, z, train=True)
            scores, _ = _apply(critic, critic.params, fake, train=False)
            return generator_loss(config.loss, scores), batch_stats

        (g_loss, batch_stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(generator.params)
        generator = generator.apply_gradients(grads=grads, batch_stats=batch_stats, rng=generator_rng)
        metrics = {k: v.mean() for k, v in critic_metrics.items()} | {"generator_loss": g_loss}
        return GANState(generator=generator, critic=critic.replace(rng=critic_rng)), metrics

    return step


def create_gan_state(
    config: AdversarialConfig, generator: nn.Module, critic: nn.Module, sample_shape: tuple[int, ...], key: jax.Array
) -> GANState:
    """Both networks initialised (generator on z [batch, latent_dim], critic on [batch, *sample_shape]),
    each with Adam(lr, adam_b1, adam_b2) (lr: learning_rate for the generator, critic_learning_rate or
    else learning_rate for the critic) and its own key; with ``linear_decay`` each
    learning rate falls linearly to 0 over the network's updates in the run (critic: steps * n_critic)."""

    def adam(learning_rate: float, updates: int) -> optax.GradientTransformation:
        lr = optax.linear_schedule(learning_rate, 0.0, updates) if config.linear_decay else learning_rate
        return optax.adam(lr, b1=config.adam_b1, b2=config.adam_b2)

    g_key, c_key = jax.random.split(key)
    z = jnp.zeros((config.batch_size, config.latent_dim))
    x = jnp.zeros((config.batch_size, *sample_shape))
    return GANState(
        generator=create_train_state(generator, adam(config.learning_rate, config.steps), z, g_key),
        critic=create_train_state(
            critic, adam(config.critic_learning_rate or config.learning_rate, config.steps * config.n_critic), x, c_key
        ),
    )


def generate(generator: TrainState, z_BxL: jax.Array) -> jax.Array:
    """Generator samples for noise ``z`` [B, latent] in inference mode (BatchNorm running averages)."""
    return _apply(generator, generator.params, z_BxL, train=False)[0]


def score(critic: TrainState, x_BxD: jax.Array) -> jax.Array:
    """Critic scores [B] (logits under the non-saturating loss) in inference mode."""
    return _apply(critic, critic.params, x_BxD, train=False)[0]


class Adversarial(Task):
    """The GAN alternation on the runner: one step is ``make_adversarial_step``'s ``n_critic`` critic updates
    and one generator update; a chunk of steps is one jitted ``lax.scan`` (one dispatch per logged row, not per
    step); ``data`` is placed on the device once and passed to every chunk."""

    curves_file = "losses.png"

    def __init__(
        self, config: AdversarialConfig, generator: nn.Module, critic: nn.Module, data: Any,
        sample_real: SampleReal, sample_shape: tuple[int, ...],
    ):
        super().__init__()
        self.config, self.generator, self.critic, self.sample_shape = config, generator, critic, sample_shape
        self.data = jax.device_put(data)
        self.seeds = config.seeds
        step = make_adversarial_step(config, sample_real)
        if self.seeds > 1:
            step = jax.vmap(step, in_axes=(0, None))

        def chunk(state: GANState, data: Any, steps_C: jax.Array) -> tuple[GANState, Metrics]:
            return jax.lax.scan(lambda s, _: step(s, data), state, steps_C)

        self._chunk = jax.jit(chunk, donate_argnums=0)

    def init_state(self) -> GANState:
        return init_per_seed(
            lambda key: create_gan_state(self.config, self.generator, self.critic, self.sample_shape, key),
            self.config.seed, self.seeds,
        )

    def train_chunk(self, state: GANState, start: int, stop: int) -> tuple[GANState, Metrics]:
        return self.compiled("adversarial_steps", self._chunk, state, self.data, jnp.arange(start, stop))

    def finish(self, state: GANState, rows: list[dict[str, Any]], workdir: str) -> dict[str, Any]:
        last = next((row for row in reversed(rows) if row["kind"] == "train"), {})
        means = {k.removeprefix("train_"): last.get(f"{k}_per_seed", v) for k, v in last.items()
                 if k.startswith("train_") and not k.endswith("_per_seed")}
        return {
            **{k: rounded(v) for k, v in seed_statistics("", means).items()},
            **({"seeds": seed_values(self.config.seed, self.seeds)} if self.seeds > 1 else {}),
            "n_critic": self.config.n_critic,
            "loss": self.config.loss,
            "gp_weight": self.config.gp_weight,
        }


def train_adversarial(
    config: AdversarialConfig,
    generator: nn.Module,
    critic: nn.Module,
    data: Any,
    sample_real: SampleReal,
    sample_shape: tuple[int, ...],
    experiment: str,
    **extra: Any,
) -> RunResult:
    """Train ``generator`` against ``critic`` for ``config.steps`` steps; resume from the run directory.

    ``data`` (a pytree of arrays, or None) is what ``sample_real(data, key, n)`` draws real samples
    [n, *sample_shape] from. Writes config.json (plus ``extra``), metrics.jsonl (one 'train' row of step
    means every ``log_every_steps``), checkpoints of both networks (every ``checkpoint_every_steps``) and
    ``losses.png``. With ``config.seeds`` S > 1 the S seeds --seed + k train at once (one vmapped step), the
    summary's losses are means with ``_std`` and ``_per_seed``, and every leaf of ``result.state`` is stacked
    [S, ...] (``nnjax.train.runner.seed_states`` slices it).
    """
    task = Adversarial(config, generator, critic, data, sample_real, sample_shape)
    schedule = Schedule(
        total_steps=config.steps, log_every=config.log_every_steps, checkpoint_every=config.checkpoint_every_steps,
        keep_checkpoints=config.keep_checkpoints,
    )
    return run(task, schedule, config, experiment, title=f"{experiment}: adversarial losses", **extra)
