"""PPO training throughput on CartPole-v1: nnjax (pure-JAX CartPole, jitted) vs a CleanRL-style PyTorch PPO.

    pip install -e ".[bench]" && python -m benchmarks.ppo

Both sides train PPO with the same hyper-parameters, ``nnjax.tasks.ppo.PPOConfig``'s defaults, read from
that one dataclass: 8 environments x 128 steps per update (1,024 env steps), GAE (gamma 0.99, lambda
0.95; a truncated episode bootstraps from the value of its last observation, a terminated one does
not), 4 epochs x 4 minibatches of 256, clipped surrogate 0.2 with per-minibatch advantage
normalisation, clipped value loss (coefficient 0.5), entropy bonus 0.01, global grad-norm clip 0.5,
Adam (eps 1e-5) at 1e-3 decayed linearly to 0 over the run's minibatch steps, and the same network
(``ActorCritic``: shared 256-256 ReLU trunk, 2 policy logits, a value; orthogonal init, gains sqrt(2),
0.01 and 1, zero biases).

- ``nnjax``: what ``python -m experiments.ppo_cartpole --total-timesteps N`` runs, ``train_ppo`` on the
  runner in a temporary run directory (one jitted call per update, metrics rows, checkpoints every 50
  updates); its ``env_steps_per_s`` excludes compilation (``compile_s``), metric writing and checkpoints.
- ``nnjax_jit``: the whole run as one ``jax.jit(make_train(config))`` call (PureJaxRL style), compiled
  ahead of time (``compile_s``), run once untimed, then timed once with another key.
- ``torch``: CleanRL's ``ppo.py`` loop written below, eager PyTorch on a ``gymnasium.vector.SyncVectorEnv``
  of 8 ``CartPole-v1``, in ``AutoresetMode.SAME_STEP`` (gymnasium 1.x's default ``NEXT_STEP`` would
  spend a step per episode on the reset and return its action-less transition; ``SAME_STEP`` returns
  the reset observation at once and the finished one in ``info['final_obs']``, like
  ``nnjax.envs.cartpole``). ``--warmup`` untimed updates first, then ``--updates`` timed ones; the
  annealing spans both. ``--torch-threads`` (default 1) sets its intra-op threads: on this 2-core CPU one
  thread was a little faster than torch's default two at these small matmuls (9.2k against 8.6k-9.0k env
  steps/s) and is less exposed to other work on a shared machine.

Each run times ``--updates`` updates (an nnjax run is that long, its learning-rate schedule too); env
steps/s = updates x 1,024 / seconds. The frameworks run in their own subprocesses, one after another (never two timed workloads at
once), alternating ``--repeats`` times; each figure's best run is reported with all runs' figures and
the 1-minute load average when its worker started. The final return (mean over the 8 envs of each one's
last finished episode) shows both sides learn. The last stdout line is one JSON object.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import tempfile
import time
from typing import Any

import numpy as np

from benchmarks.workers import alternate, launch_worker

FRAMEWORKS = ("nnjax", "torch")
GOAL_NNJAX_OVER_TORCH = 20.0
DIGITS = {"compile_s": 2, "rollout_fraction": 3}  # decimals of a figure in the JSON line (others: 1)


def ppo_config(updates: int, seed: int = 0, **overrides: Any):
    """``PPOConfig``'s defaults (with ``overrides``) for a run of exactly ``updates`` updates from ``seed``."""
    from nnjax.tasks.ppo import PPOConfig

    config = PPOConfig(seed=seed, **overrides)
    return dataclasses.replace(config, total_timesteps=updates * config.batch_size)


def run_nnjax(config) -> dict[str, float]:
    """``train_ppo(config)`` in a temporary run directory: the runner's env steps/s (compilation, metric
    writing and checkpoints excluded), its compile seconds and the final mean episode return."""
    from nnjax.cli import setup_logging
    from nnjax.tasks.ppo import train_ppo

    setup_logging()
    with tempfile.TemporaryDirectory() as workdir:
        summary = train_ppo(dataclasses.replace(config, workdir=workdir), "benchmark_ppo").summary
    return {"env_steps_per_s": summary["env_steps_per_s"], "compile_s": summary["compile_s"],
            "final_return": summary["final_return"]}


def run_nnjax_jit(config) -> dict[str, float]:
    """``jax.jit(make_train(config))`` compiled ahead of time (``compile_s``), run once untimed with key ``seed``,
    then timed once with key ``seed + 1``: env steps/s of that run and its final mean episode return."""
    import jax

    from nnjax.tasks.ppo import make_train

    warmup_key, timed_key = jax.random.PRNGKey(config.seed), jax.random.PRNGKey(config.seed + 1)
    start = time.perf_counter()
    train = jax.jit(make_train(config)).lower(warmup_key).compile()
    compile_s = time.perf_counter() - start
    jax.block_until_ready(train(warmup_key))
    start = time.perf_counter()
    out = jax.block_until_ready(train(timed_key))
    seconds = time.perf_counter() - start
    return {"env_steps_per_s": config.num_updates * config.batch_size / seconds, "compile_s": compile_s,
            "final_return": float(out["metrics"]["episode_return"][-1])}


def torch_actor_critic(config):
    """nnjax's ``ActorCritic`` as a ``torch.nn.Module``: obs [B, 4] -> (logits [B, 2], value [B]).

    A shared trunk of ``config.hidden`` widths and ``config.activation``, a policy and a value head; orthogonal
    weights (gain sqrt(2) in the trunk, 0.01 policy, 1 value) and zero biases, CleanRL's ``layer_init``.
    """
    import torch
    from torch import nn

    def layer(fan_in: int, fan_out: int, gain: float) -> nn.Linear:
        linear = nn.Linear(fan_in, fan_out)
        nn.init.orthogonal_(linear.weight, gain)
        nn.init.zeros_(linear.bias)
        return linear

    activation = {"relu": nn.ReLU, "tanh": nn.Tanh}[config.activation]
    widths = (4, *config.hidden)

    class ActorCritic(nn.Module):
        def __init__(self):
            super().__init__()
            self.trunk = nn.Sequential(*[
                module for i in range(len(config.hidden)) for module in (layer(widths[i], widths[i + 1], np.sqrt(2)), activation())
            ])
            self.policy = layer(widths[-1], 2, 0.01)
            self.value = layer(widths[-1], 1, 1.0)

        def forward(self, obs_BxD: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            h = self.trunk(obs_BxD)
            return self.policy(h), self.value(h)[:, 0]

    return ActorCritic()


def torch_state_dict(params: dict) -> dict[str, np.ndarray]:
    """nnjax ``ActorCritic`` params (``Dense_<i>``, ``policy``, ``value``) as a ``torch_actor_critic`` state dict:
    each [in, out] kernel transposed to torch's [out, in] weight; trunk layer i is ``trunk.<2 i>``."""
    def linear(name: str, p: dict) -> dict[str, np.ndarray]:
        return {f"{name}.weight": np.asarray(p["kernel"], np.float32).T.copy(), f"{name}.bias": np.asarray(p["bias"], np.float32)}

    trunk = sorted((k for k in params if k.startswith("Dense_")), key=lambda k: int(k.removeprefix("Dense_")))
    state = {}
    for i, name in enumerate(trunk):
        state |= linear(f"trunk.{2 * i}", params[name])
    return state | linear("policy", params["policy"]) | linear("value", params["value"])


def torch_ppo_loss(model, batch: dict, config) -> tuple[Any, dict[str, Any]]:
    """``nnjax.tasks.ppo.ppo_loss`` in PyTorch (CleanRL's loss): ``policy + vf_coef * value - ent_coef * entropy``.

    ``batch`` holds tensors obs [B, D], action [B] (int64), log_prob [B], value [B], advantage [B] (normalised
    here with the population std, as ``jnp.std``; CleanRL's ``Tensor.std`` is the sample std) and target [B].
    """
    import torch
    from torch.distributions import Categorical

    logits_BxA, value_B = model(batch["obs"])
    dist = Categorical(logits=logits_BxA)
    log_prob_B, entropy = dist.log_prob(batch["action"]), dist.entropy().mean()
    advantage = batch["advantage"]
    adv_B = (advantage - advantage.mean()) / (advantage.std(correction=0) + 1e-8)
    ratio_B = torch.exp(log_prob_B - batch["log_prob"])
    clipped_B = torch.clamp(ratio_B, 1.0 - config.clip_eps, 1.0 + config.clip_eps)
    policy_loss = torch.max(-adv_B * ratio_B, -adv_B * clipped_B).mean()
    value_err_B = (value_B - batch["target"]) ** 2
    if config.clip_value:
        value_clipped_B = batch["value"] + torch.clamp(value_B - batch["value"], -config.clip_eps, config.clip_eps)
        value_err_B = torch.max(value_err_B, (value_clipped_B - batch["target"]) ** 2)
    value_loss = 0.5 * value_err_B.mean()
    total = policy_loss + config.vf_coef * value_loss - config.ent_coef * entropy
    return total, {"policy_loss": policy_loss, "value_loss": value_loss, "entropy": entropy}


def torch_gae(reward_TxN, value_TxN, next_value_TxN, terminated_TxN, done_TxN, gamma: float, gae_lambda: float):
    """``nnjax.tasks.ppo.gae`` as CleanRL's reversed loop over time: (advantage [T, N], target [T, N]).

    ``delta_t = r_t + gamma * next_value_t * (1 - terminated_t) - value_t``,
    ``A_t = delta_t + gamma * lambda * (1 - done_t) * A_{t+1}``; float tensors [T, N].
    """
    import torch

    adv_TxN = torch.zeros_like(value_TxN)
    adv_N = torch.zeros_like(value_TxN[0])
    for t in reversed(range(len(reward_TxN))):
        delta_N = reward_TxN[t] + gamma * next_value_TxN[t] * (1.0 - terminated_TxN[t]) - value_TxN[t]
        adv_N = delta_N + gamma * gae_lambda * (1.0 - done_TxN[t]) * adv_N
        adv_TxN[t] = adv_N
    return adv_TxN, adv_TxN + value_TxN


def cartpole_envs(num_envs: int):
    """``gymnasium.vector.SyncVectorEnv`` of ``num_envs`` ``CartPole-v1`` (500-step time limit), resetting a
    finished episode in the same step (its last observation in ``info['final_obs']``)."""
    import gymnasium as gym

    return gym.vector.SyncVectorEnv([lambda: gym.make("CartPole-v1")] * num_envs,
                                    autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)


class EpisodeReturns:
    """Each environment's running return and the return of its last finished episode (0 before one): nnjax's
    ``LogState`` bookkeeping, in numpy over [N] environments."""

    def __init__(self, num_envs: int):
        self.running_N = np.zeros(num_envs)
        self.last_N = np.zeros(num_envs)

    def record(self, reward_N: np.ndarray, done_N: np.ndarray) -> None:
        self.running_N += reward_N
        self.last_N = np.where(done_N, self.running_N, self.last_N)
        self.running_N = np.where(done_N, 0.0, self.running_N)


def torch_rollout(model, envs, obs_NxD, returns: EpisodeReturns, config) -> tuple[dict, Any]:
    """``num_steps`` steps of every environment under the current policy (no gradients), then GAE.

    Returns the flat batch (obs [T*N, D], action, log_prob, value, advantage, target [T*N]) and the
    observation [N, D] the next rollout starts from. A finished episode's value target bootstraps from
    ``V(info['final_obs'])`` unless it terminated.
    """
    import torch
    from torch.distributions import Categorical

    T, N = config.num_steps, config.num_envs
    obs_TxNxD, final_obs_TxNxD = torch.zeros((T, N, obs_NxD.shape[1])), torch.zeros((T, N, obs_NxD.shape[1]))
    action_TxN, log_prob_TxN, value_TxN = torch.zeros((T, N), dtype=torch.long), torch.zeros((T, N)), torch.zeros((T, N))
    reward_TxN, terminated_TxN, done_TxN = torch.zeros((T, N)), torch.zeros((T, N)), torch.zeros((T, N))
    with torch.no_grad():
        for t in range(T):
            obs_TxNxD[t] = obs_NxD
            logits_NxA, value_TxN[t] = model(obs_NxD)
            dist = Categorical(logits=logits_NxA)
            action_TxN[t] = dist.sample()
            log_prob_TxN[t] = dist.log_prob(action_TxN[t])
            next_obs, reward, terminated, truncated, info = envs.step(action_TxN[t].numpy())
            done = terminated | truncated
            final_obs = next_obs.copy()
            if done.any():
                final_obs[done] = np.stack(info["final_obs"][done])
            returns.record(reward, done)
            obs_NxD, final_obs_TxNxD[t] = torch.from_numpy(next_obs), torch.from_numpy(final_obs)
            reward_TxN[t], terminated_TxN[t], done_TxN[t] = map(torch.from_numpy, (reward, terminated, done))
        last_value_N = model(obs_NxD)[1]
        final_value_TxN = model(final_obs_TxNxD.view(T * N, -1))[1].view(T, N)
        next_value_TxN = torch.cat([value_TxN[1:], last_value_N[None]])
        next_value_TxN = torch.where(done_TxN.bool(), final_value_TxN, next_value_TxN)
        adv_TxN, target_TxN = torch_gae(reward_TxN, value_TxN, next_value_TxN, terminated_TxN, done_TxN,
                                        config.gamma, config.gae_lambda)
    batch = {"obs": obs_TxNxD, "action": action_TxN, "log_prob": log_prob_TxN, "value": value_TxN,
             "advantage": adv_TxN, "target": target_TxN}
    return {k: v.reshape(T * N, *v.shape[2:]) for k, v in batch.items()}, obs_NxD


def torch_learn(model, optimizer, batch: dict, config, first_step: int, total_steps: int) -> None:
    """``update_epochs`` passes over the flat ``batch`` in ``num_minibatches`` shuffled minibatches, one clipped
    (global norm ``max_grad_norm``) Adam step each; minibatch step k (counted over the run from ``first_step``)
    uses ``learning_rate * (1 - k / total_steps)`` when annealed, as optax's ``linear_schedule``."""
    import torch

    size = config.batch_size // config.num_minibatches
    step = first_step
    for _ in range(config.update_epochs):
        order = torch.randperm(config.batch_size)
        for i in range(config.num_minibatches):
            if config.anneal_lr:
                optimizer.param_groups[0]["lr"] = config.learning_rate * max(0.0, 1.0 - step / total_steps)
            idx = order[i * size : (i + 1) * size]
            loss, _ = torch_ppo_loss(model, {k: v[idx] for k, v in batch.items()}, config)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), config.max_grad_norm)
            optimizer.step()
            step += 1


def run_torch(config, warmup: int, threads: int) -> dict[str, float]:
    """CleanRL-style PPO on ``threads`` intra-op threads: ``warmup`` untimed updates, then ``config.num_updates``
    timed ones (the annealing spans both). Returns env steps/s of the timed updates, the share of their time
    spent in rollouts (env steps, action sampling and GAE) and the final mean episode return."""
    import torch

    torch.set_num_threads(threads)
    torch.manual_seed(config.seed)
    model = torch_actor_critic(config)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.learning_rate, eps=1e-5)
    envs = cartpole_envs(config.num_envs)
    obs_NxD = torch.from_numpy(envs.reset(seed=config.seed)[0])
    returns = EpisodeReturns(config.num_envs)
    updates = warmup + config.num_updates
    steps_per_update = config.update_epochs * config.num_minibatches
    rollout_s = learn_s = 0.0
    for update in range(updates):
        start = time.perf_counter()
        batch, obs_NxD = torch_rollout(model, envs, obs_NxD, returns, config)
        middle = time.perf_counter()
        torch_learn(model, optimizer, batch, config, update * steps_per_update, updates * steps_per_update)
        if update >= warmup:
            rollout_s += middle - start
            learn_s += time.perf_counter() - middle
    envs.close()
    return {"env_steps_per_s": config.num_updates * config.batch_size / (rollout_s + learn_s),
            "rollout_fraction": rollout_s / (rollout_s + learn_s), "final_return": float(returns.last_N.mean())}


def run_worker(framework: str, args: argparse.Namespace) -> dict:
    """One framework's figures, ``{'load_avg': 1-minute load average at the start, 'figures': {name: figures}}``:
    ``nnjax`` gives ``nnjax`` (the runner) then ``nnjax_jit``, ``torch`` gives ``torch``."""
    load_avg = os.getloadavg()[0]
    config = ppo_config(args.updates, args.seed)
    if framework == "nnjax":
        figures = {"nnjax": run_nnjax(config), "nnjax_jit": run_nnjax_jit(config)}
    else:
        figures = {"torch": run_torch(config, args.warmup, args.torch_threads)}
    return {"load_avg": load_avg, "figures": figures}


def summarize(args: argparse.Namespace, runs: dict[str, list[dict | None]]) -> dict:
    """The final JSON object: the setting, and per figure (``nnjax``, ``nnjax_jit``, ``torch``) its best run's
    env steps/s and other fields, all runs' env steps/s and that worker's load average; then the ratios of
    ``nnjax`` and ``nnjax_jit`` over ``torch``. ``runs`` maps a framework to its workers (``None``: failed)."""
    config = ppo_config(args.updates, args.seed)
    result: dict[str, Any] = {
        "benchmark": "ppo", "env": "CartPole-v1", "num_envs": config.num_envs, "num_steps": config.num_steps,
        "env_steps_per_update": config.batch_size, "update_epochs": config.update_epochs,
        "num_minibatches": config.num_minibatches, "hidden": list(config.hidden), "activation": config.activation,
        "timed_updates": args.updates, "torch_warmup_updates": args.warmup, "torch_threads": args.torch_threads,
        "repeats": args.repeats, "cpu_count": os.cpu_count(),
    }
    per_figure: dict[str, list[tuple[dict, float] | None]] = {}
    for framework, workers in runs.items():
        names = ("nnjax", "nnjax_jit") if framework == "nnjax" else (framework,)
        for name in names:
            per_figure[name] = [worker and (worker["figures"][name], worker["load_avg"]) for worker in workers]
    for name, figure_runs in per_figure.items():
        result[f"{name}_runs_env_steps_per_s"] = [run and round(run[0]["env_steps_per_s"], 1) for run in figure_runs]
        succeeded = [run for run in figure_runs if run is not None]
        if not succeeded:
            result[f"{name}_env_steps_per_s"] = None
            continue
        best, load_avg = max(succeeded, key=lambda run: run[0]["env_steps_per_s"])
        result |= {f"{name}_{key}": round(value, DIGITS.get(key, 1)) for key, value in best.items()}
        result[f"{name}_load_avg"] = round(load_avg, 2)
    torch_rate = result.get("torch_env_steps_per_s")
    for name in ("nnjax", "nnjax_jit"):
        if torch_rate and result.get(f"{name}_env_steps_per_s"):
            result[f"{name}_over_torch"] = round(result[f"{name}_env_steps_per_s"] / torch_rate, 2)
    result["goal_nnjax_over_torch"] = GOAL_NNJAX_OVER_TORCH
    return result


def parse_args(argv: list[str]) -> argparse.Namespace:
    """Flags; ``--updates``, ``--repeats`` and ``--torch-threads`` must be >= 1, ``--warmup`` >= 0, ``--frameworks`` from ``FRAMEWORKS``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--updates", type=int, default=60, help="timed PPO updates per run (1,024 env steps each)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed PyTorch updates before the timed ones")
    parser.add_argument("--torch-threads", type=int, default=1,
                        help="PyTorch intra-op threads (1: its fastest here, and robust to other load)")
    parser.add_argument("--repeats", type=int, default=2, help="runs per framework, alternating; the best is reported")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--frameworks", default=",".join(FRAMEWORKS))
    parser.add_argument("--worker", choices=FRAMEWORKS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if min(args.updates, args.repeats, args.torch_threads) < 1 or args.warmup < 0:
        parser.error(f"--updates ({args.updates}), --repeats ({args.repeats}) and --torch-threads ({args.torch_threads}) "
                     f"must be >= 1, --warmup ({args.warmup}) >= 0")
    unknown = set(args.frameworks.split(",")) - set(FRAMEWORKS)
    if unknown:
        parser.error(f"--frameworks must be drawn from {FRAMEWORKS}, got {sorted(unknown)}")
    return args


def run_subprocess(framework: str, argv: list[str]) -> dict | None:
    """One framework's worker in a fresh interpreter with the parent's flags; ``None`` if it failed."""
    return launch_worker("benchmarks.ppo", [*argv, "--worker", framework], framework, lambda worker: "\n".join(
        f"{name}: {figures['env_steps_per_s']:.0f} env steps/s (load average {worker['load_avg']:.2f})"
        for name, figures in worker["figures"].items()))


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    if args.worker:
        print(json.dumps(run_worker(args.worker, args)))
        return
    frameworks = args.frameworks.split(",")
    runs = alternate(args.repeats, frameworks, lambda framework: run_subprocess(framework, argv))
    print(json.dumps(summarize(args, runs)))


if __name__ == "__main__":
    main()
