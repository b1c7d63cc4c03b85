"""Proximal Policy Optimization (Schulman et al. 2017) on the pure-JAX CartPole, PureJaxRL style.

The seed's ``PPOAgent`` (shared 256-256 ReLU trunk, softmax policy head, value head, clipped objective
0.2, value loss 0.5, entropy bonus 0.01) becomes ``nnjax.models.ActorCritic``. One update is
``make_update(config)``; the whole training run is one jitted function ``train(key)`` made by
``make_train(config)``:

    lax.scan over updates
        lax.scan over num_steps       rollout of num_envs vmapped environments (auto-reset)
        reverse lax.scan              generalised advantage estimation (GAE)
        lax.scan over update_epochs
            lax.scan over minibatches clipped-surrogate + value + entropy loss, one Adam step

so ``jax.vmap(make_train(config))(keys)`` trains several seeds at once. Truncated episodes (500
steps) bootstrap from the value of the observation they ended in; terminated ones do not.

``train_ppo(config, experiment)`` runs the same updates on the runner (``nnjax.train.runner``): the
``PPO`` task runs ``log_every_updates`` updates of all ``seeds`` per jitted call (a ``lax.scan`` under
``vmap``), so rows reach metrics.jsonl, TensorBoard and the progress bar while it trains, and the whole
runner state (parameters, optimizer, environments, keys) is checkpointed between calls: a killed run
resumes to the same final parameters and returns as one that was never stopped.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from nnjax import plots
from nnjax.config import ResumableConfig, check_fraction, check_positive, option
from nnjax.envs import cartpole
from nnjax.errors import ConfigError
from nnjax.models.actor_critic import ActorCritic
from nnjax.models.weights import save_params
from nnjax.train.runner import RunResult, Schedule, Task, rounded, run, seed_statistics

ACTIVATIONS = ("tanh", "relu")


@dataclasses.dataclass(frozen=True)
class PPOConfig(ResumableConfig):
    """PPO hyper-parameters; ``total_timesteps`` env steps in ``num_envs * num_steps`` per update.

    The defaults solve CartPole-v1 (return 500) in about 1e5 environment steps on every seed tried; at the
    default 2e5 steps all 8 seeds of ``split(PRNGKey(0), 8)`` end at return 500 (at 1.5e5, two of them did not).
    """

    num_envs: int = option(8, "environments stepped in parallel (vmap)")
    num_steps: int = option(128, "steps per environment per rollout")
    total_timesteps: int = option(200_000, "environment steps of the run, in whole updates of --num-envs x --num-steps")
    learning_rate: float = option(1e-3, "Adam learning rate")
    anneal_lr: bool = option(True, "decay the learning rate linearly to 0 over the run")
    gamma: float = option(0.99, "discount factor, in [0, 1]")
    gae_lambda: float = option(0.95, "GAE lambda, in [0, 1]")
    clip_eps: float = option(0.2, "clipping range of the probability ratio, in [0, 1)")
    clip_value: bool = option(True, "clip the value update to +-clip_eps around the rollout's value too")
    vf_coef: float = option(0.5, "weight of the value loss")
    ent_coef: float = option(0.01, "weight of the entropy bonus")
    max_grad_norm: float = option(0.5, "global gradient-norm clip")
    update_epochs: int = option(4, "passes over each rollout")
    num_minibatches: int = option(4, "minibatches per pass (dividing --num-envs x --num-steps)")
    hidden: tuple[int, ...] = option((256, 256), "widths of the shared actor-critic trunk")
    activation: str = option("relu", "trunk activation (relu: the seed's; tanh: PureJaxRL's)", choices=ACTIVATIONS)
    seeds: int = option(1, "independent seeds trained at once (vmap), from --seed's key")
    target_return: float = option(475.0, "episode return whose first reach, in env steps, the summary reports per seed")
    log_every_updates: int = option(1, "updates per jitted call, one metrics row each")
    checkpoint_every_updates: int = option(50, "updates between checkpoints; 0: only at the end", minimum=0)
    keep_checkpoints: int = option(2, "newest checkpoints kept in --workdir")

    def resumable_fields(self) -> set[str]:
        """More env steps unless ``anneal_lr`` (the learning rate then depends on the run's length), another
        return target, other log and checkpoint intervals."""
        length = set() if self.anneal_lr else {"total_timesteps"}
        return super().resumable_fields() | length | {
            "target_return", "log_every_updates", "checkpoint_every_updates", "keep_checkpoints"}

    @property
    def batch_size(self) -> int:
        """Transitions collected per update."""
        return self.num_envs * self.num_steps

    @property
    def num_updates(self) -> int:
        """Whole updates that fit in ``total_timesteps``."""
        return self.total_timesteps // self.batch_size

    def validate(self) -> None:
        check_positive(self, "learning_rate", "max_grad_norm", "target_return")
        check_fraction(self, "clip_eps")
        for name in ("gamma", "gae_lambda"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ConfigError(f"--{name.replace('_', '-')} must be in [0, 1], got {getattr(self, name)}")
        for name in ("vf_coef", "ent_coef"):
            if getattr(self, name) < 0:
                raise ConfigError(f"--{name.replace('_', '-')} must be >= 0, got {getattr(self, name)}")
        if self.num_updates < 1:
            raise ConfigError(
                f"--total-timesteps {self.total_timesteps} is less than one update of "
                f"--num-envs x --num-steps = {self.batch_size} transitions"
            )
        if self.batch_size % self.num_minibatches:
            raise ConfigError(
                f"--num-envs x --num-steps = {self.batch_size} is not divisible by --num-minibatches {self.num_minibatches}"
            )
        super().validate()


def gae(
    reward_TxN: jax.Array, value_TxN: jax.Array, next_value_TxN: jax.Array,
    terminated_TxN: jax.Array, done_TxN: jax.Array, gamma: float, gae_lambda: float,
) -> tuple[jax.Array, jax.Array]:
    """Generalised advantage estimates and value targets [T, N] by a reverse ``lax.scan`` over time.

    ``delta_t = r_t + gamma * V(s'_t) * (1 - terminated_t) - V(s_t)`` where ``next_value_t = V(s'_t)``
    is the value of the observation step t led to (before any auto-reset), and
    ``A_t = delta_t + gamma * lambda * (1 - done_t) * A_{t+1}``: the trace stops at every episode end,
    a truncated one still bootstraps from its last observation. Returns (advantage, advantage + value).
    """

    def backward(adv_N, inputs):
        reward, value, next_value, terminated, done = inputs
        delta = reward + gamma * next_value * (1.0 - terminated) - value
        adv_N = delta + gamma * gae_lambda * (1.0 - done) * adv_N
        return adv_N, adv_N

    inputs = (reward_TxN, value_TxN, next_value_TxN, terminated_TxN.astype(jnp.float32), done_TxN.astype(jnp.float32))
    _, adv_TxN = jax.lax.scan(backward, jnp.zeros_like(value_TxN[0]), inputs, reverse=True)
    return adv_TxN, adv_TxN + value_TxN


def clipped_surrogate(ratio_B: jax.Array, adv_B: jax.Array, clip_eps: float) -> jax.Array:
    """PPO's policy loss: ``-mean(min(ratio * A, clip(ratio, 1 - eps, 1 + eps) * A))``."""
    return -jnp.mean(jnp.minimum(ratio_B * adv_B, jnp.clip(ratio_B, 1.0 - clip_eps, 1.0 + clip_eps) * adv_B))


def ppo_loss(
    params: Any, apply_fn: Callable, batch: dict[str, jax.Array], config: PPOConfig
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Total loss ``policy + vf_coef * value - ent_coef * entropy`` on one minibatch, and its parts.

    ``batch`` holds obs [B, D], action [B], log_prob [B] and value [B] from the rollout, advantage
    [B] (normalised here per minibatch) and target [B] (the GAE return).
    """
    logits_BxA, value_B = apply_fn({"params": params}, batch["obs"])
    log_p_BxA = jax.nn.log_softmax(logits_BxA)
    log_prob_B = jnp.take_along_axis(log_p_BxA, batch["action"][:, None], axis=-1)[:, 0]
    entropy = -jnp.mean(jnp.sum(jnp.exp(log_p_BxA) * log_p_BxA, axis=-1))
    adv_B = (batch["advantage"] - batch["advantage"].mean()) / (batch["advantage"].std() + 1e-8)
    ratio_B = jnp.exp(log_prob_B - batch["log_prob"])
    policy_loss = clipped_surrogate(ratio_B, adv_B, config.clip_eps)
    value_err_B = jnp.square(value_B - batch["target"])
    if config.clip_value:
        value_clipped_B = batch["value"] + jnp.clip(value_B - batch["value"], -config.clip_eps, config.clip_eps)
        value_err_B = jnp.maximum(value_err_B, jnp.square(value_clipped_B - batch["target"]))
    value_loss = 0.5 * jnp.mean(value_err_B)
    total = policy_loss + config.vf_coef * value_loss - config.ent_coef * entropy
    clip_fraction = jnp.mean(jnp.abs(ratio_B - 1.0) > config.clip_eps)
    return total, {"policy_loss": policy_loss, "value_loss": value_loss, "entropy": entropy, "clip_fraction": clip_fraction}


def make_network(config: PPOConfig) -> ActorCritic:
    """The actor-critic the config describes, for CartPole's two actions."""
    return ActorCritic(cartpole.NUM_ACTIONS, config.hidden, config.activation)


def make_optimizer(config: PPOConfig) -> optax.GradientTransformation:
    """Adam (eps 1e-5) after global-norm clipping, the learning rate decayed linearly to 0 per minibatch step if annealed."""
    steps = config.num_updates * config.update_epochs * config.num_minibatches
    lr = optax.linear_schedule(config.learning_rate, 0.0, steps) if config.anneal_lr else config.learning_rate
    return optax.chain(optax.clip_by_global_norm(config.max_grad_norm), optax.adam(lr, eps=1e-5))


Runner = tuple[Any, Any, jax.Array, Any, jax.Array]  # (params, opt_state, obs [N, D], env state, key)


def init_runner(config: PPOConfig, key: jax.Array) -> Runner:
    """The state of one seed before its first update: fresh parameters and Adam state, ``num_envs``
    reset environments and the key the updates split from."""
    init_key, env_key, run_key = jax.random.split(key, 3)
    params = make_network(config).init(init_key, jnp.zeros((1, cartpole.OBS_DIM)))["params"]
    obs_NxD, env_state = jax.vmap(cartpole.log_reset)(jax.random.split(env_key, config.num_envs))
    return params, make_optimizer(config).init(params), obs_NxD, env_state, run_key


def make_update(
    config: PPOConfig, on_update: Callable[[np.ndarray], None] | None = None
) -> Callable[[Runner, jax.Array], tuple[Runner, dict[str, jax.Array]]]:
    """``update(runner, update_index) -> (runner, metrics)``: one PPO update of one seed.

    A rollout of ``num_steps`` steps in ``num_envs`` environments, GAE, then ``update_epochs`` epochs of
    ``num_minibatches`` Adam steps. ``metrics``: ``episode_return`` (mean over the envs of each env's last
    completed episode's return, 0 before any episode ended), ``completed_episodes`` (episodes that ended
    during the rollout) and the loss parts averaged over the minibatches. ``on_update(update_index)`` is
    called on the host after the update (``jax.debug.callback``; under ``vmap`` once for all seeds).
    """
    config.validate()
    network = make_network(config)
    optimizer = make_optimizer(config)
    minibatch_size = config.batch_size // config.num_minibatches
    env_step = jax.vmap(cartpole.log_step)

    def rollout_step(carry, key):
        params, obs_NxD, env_state = carry
        act_key, step_key = jax.random.split(key)
        logits_NxA, value_N = network.apply({"params": params}, obs_NxD)
        action_N = jax.random.categorical(act_key, logits_NxA)
        log_prob_N = jnp.take_along_axis(jax.nn.log_softmax(logits_NxA), action_N[:, None], axis=-1)[:, 0]
        next_obs_NxD, env_state, reward_N, done_N, info = env_step(
            jax.random.split(step_key, config.num_envs), env_state, action_N
        )
        transition = {
            "obs": obs_NxD, "action": action_N, "log_prob": log_prob_N, "value": value_N, "reward": reward_N,
            "done": done_N, "terminated": info["terminated"], "final_obs": info["final_obs"],
            "returned_episode": info["returned_episode"],
        }
        return (params, next_obs_NxD, env_state), transition

    def minibatch_step(opt_carry, batch):
        params, opt_state = opt_carry
        grads, parts = jax.grad(ppo_loss, has_aux=True)(params, network.apply, batch, config)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state), parts

    def epoch_step(carry, key):
        params, opt_state, batch_flat = carry
        perm = jax.random.permutation(key, config.batch_size)
        minibatches = jax.tree.map(
            lambda x: x[perm].reshape(config.num_minibatches, minibatch_size, *x.shape[1:]), batch_flat
        )
        (params, opt_state), parts = jax.lax.scan(minibatch_step, (params, opt_state), minibatches)
        return (params, opt_state, batch_flat), parts

    def update_step(runner, update_index):
        params, opt_state, obs_NxD, env_state, key = runner
        key, rollout_key, epoch_key = jax.random.split(key, 3)
        (_, obs_NxD, env_state), traj = jax.lax.scan(
            rollout_step, (params, obs_NxD, env_state), jax.random.split(rollout_key, config.num_steps)
        )
        _, last_value_N = network.apply({"params": params}, obs_NxD)
        _, final_value_TxN = network.apply({"params": params}, traj["final_obs"])
        next_value_TxN = jnp.concatenate([traj["value"][1:], last_value_N[None]])
        next_value_TxN = jnp.where(traj["done"], final_value_TxN, next_value_TxN)
        adv_TxN, target_TxN = gae(
            traj["reward"], traj["value"], next_value_TxN, traj["terminated"], traj["done"],
            config.gamma, config.gae_lambda,
        )
        batch = {k: traj[k] for k in ("obs", "action", "log_prob", "value")} | {"advantage": adv_TxN, "target": target_TxN}
        batch_flat = jax.tree.map(lambda x: x.reshape(config.batch_size, *x.shape[2:]), batch)
        (params, opt_state, _), parts = jax.lax.scan(
            epoch_step, (params, opt_state, batch_flat), jax.random.split(epoch_key, config.update_epochs)
        )
        metrics = jax.tree.map(jnp.mean, parts) | {
            "episode_return": env_state.returned_episode_return.mean(),
            "completed_episodes": traj["returned_episode"].sum(),
        }
        if on_update is not None:
            jax.debug.callback(on_update, update_index)
        return (params, opt_state, obs_NxD, env_state, key), metrics

    return update_step


def make_train(
    config: PPOConfig, on_update: Callable[[np.ndarray], None] | None = None
) -> Callable[[jax.Array], dict[str, Any]]:
    """``train(key) -> {'params', 'metrics'}``: the whole PPO run as one jittable function of a PRNG key.

    ``metrics`` holds ``make_update``'s metrics per update ([num_updates]) and ``env_steps``, the
    environment steps after each update. ``on_update`` is ``make_update``'s progress callback.
    """
    update_step = make_update(config, on_update)

    def train(key: jax.Array) -> dict[str, Any]:
        updates_U = jnp.arange(config.num_updates)
        runner, metrics = jax.lax.scan(update_step, init_runner(config, key), updates_U)
        return {"params": runner[0], "metrics": metrics | {"env_steps": (updates_U + 1) * config.batch_size}}

    return train


def steps_to_target(return_U: np.ndarray, env_steps_U: np.ndarray, target: float) -> int | None:
    """Environment steps at the first update whose mean episode return reaches ``target`` (None if never)."""
    hits = np.flatnonzero(return_U >= target)
    return int(env_steps_U[hits[0]]) if hits.size else None


class PPO(Task):
    """PPO on CartPole for ``config.seeds`` seeds at once: the state is ``init_runner``'s, stacked over
    seeds; a chunk of updates is one jitted ``vmap`` over seeds of a ``lax.scan`` over updates."""

    throughput_key = "env_steps_per_s"

    def __init__(self, config: PPOConfig):
        super().__init__()
        self.config = config
        self.examples_per_step = config.batch_size * config.seeds
        update_step = make_update(config)

        def chunk(runner_S: Runner, updates_C: jax.Array) -> tuple[Runner, dict[str, jax.Array]]:
            runner_S, metrics_SxC = jax.vmap(lambda r: jax.lax.scan(update_step, r, updates_C))(runner_S)
            return runner_S, jax.tree.map(lambda m: m.T, metrics_SxC)

        self._chunk = jax.jit(chunk, donate_argnums=0)

    def init_state(self) -> Runner:
        keys = jax.random.split(jax.random.PRNGKey(self.config.seed), self.config.seeds)
        return jax.device_get(jax.jit(jax.vmap(lambda key: init_runner(self.config, key)))(keys))

    def train_chunk(self, state: Runner, start: int, stop: int) -> tuple[Runner, dict[str, jax.Array]]:
        return self.compiled("ppo_updates", self._chunk, state, jnp.arange(start, stop))

    def row_fields(self, step: int) -> dict[str, Any]:
        return {"env_steps": step * self.config.batch_size}

    def finish(self, state: Runner, rows: list[dict[str, Any]], workdir: str) -> dict[str, Any]:
        """Saves each seed's parameters (``params_seed<k>.msgpack``) and ``episode_returns.png``; reports the final
        return (with several seeds its mean, ``final_return_std`` and ``final_return_per_seed``, the keys every
        ``--seeds`` run uses) and each seed's env steps to ``target_return`` (``steps_to_target_per_seed``)."""
        train = [row for row in rows if row["kind"] == "train"]
        env_steps_U = np.array([row["env_steps"] for row in train])
        return_SxU = np.array([row["train_episode_return_per_seed"] for row in train]).T
        for seed in range(self.config.seeds):
            save_params(os.path.join(workdir, f"params_seed{seed}.msgpack"), jax.tree.map(lambda x, k=seed: x[k], state[0]))
        plots.episode_returns(
            env_steps_U, return_SxU, self.config.target_return, os.path.join(workdir, "episode_returns.png"),
            f"PPO on CartPole-v1 ({self.config.num_envs} envs x {self.config.num_steps} steps, "
            f"lr {self.config.learning_rate:g})",
        )
        return {
            **{k: rounded(v) for k, v in seed_statistics("", {"final_return": return_SxU[:, -1]}).items()},
            "steps_to_target_per_seed": [steps_to_target(r, env_steps_U, self.config.target_return) for r in return_SxU],
            "target_return": self.config.target_return,
            "env_steps": int(env_steps_U[-1]),
            "seeds": self.config.seeds,
        }


def train_ppo(config: PPOConfig, experiment: str) -> RunResult:
    """Train PPO as ``config`` says on the runner; resume from the run directory's newest checkpoint.

    Writes config.json, metrics.jsonl (every ``log_every_updates`` updates a 'train' row: the means over
    those updates and seeds, ``train_<metric>_per_seed``, ``env_steps``), TensorBoard, checkpoints every
    ``checkpoint_every_updates``, ``learning_curves.png`` and what ``PPO.finish`` writes.
    """
    config.validate()
    schedule = Schedule(
        total_steps=config.num_updates, log_every=config.log_every_updates,
        checkpoint_every=config.checkpoint_every_updates, keep_checkpoints=config.keep_checkpoints, unit="update",
    )
    return run(PPO(config), schedule, config, experiment, title=f"{experiment}: PPO on CartPole-v1")
