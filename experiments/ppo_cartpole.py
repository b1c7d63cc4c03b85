"""Seed 000 slide 8: PPO (shared-trunk actor-critic, clipped objective) solving CartPole-v1.

The seed's PyTorch ``PPOAgent`` only defines the network and the loss; here it trains on a pure-JAX
CartPole (``nnjax.rl.cartpole``) with the whole run -- rollouts of vmapped environments, GAE,
epochs of minibatch updates -- in one jitted function (``nnjax.rl.ppo.make_train``), and
``--seeds N`` trains N seeds at once with ``jax.vmap``. A progress bar advances once per update.
The run writes ``metrics.jsonl`` (one row per update: mean episode return over the seeds and per
seed, losses), ``learning_curve.png`` (episode return against environment steps, one line per
seed) and each seed's final parameters ``params_seed<k>.msgpack``; the final JSON line has each
seed's final return, the environment steps at which its return first reached ``--target-return``,
the compile time and the wall time.

    python -m experiments.ppo_cartpole
    python -m experiments.ppo_cartpole --seeds 4 --total-timesteps 300000
"""

from __future__ import annotations

import dataclasses
import os
import sys
import time

import jax
import numpy as np
from tqdm.auto import tqdm

from nnjax import cli, plots
from nnjax.config import check_positive, prepare_workdir
from nnjax.models.weights import save_params
from nnjax.rl import ppo
from nnjax.train.writer import MetricWriter


@dataclasses.dataclass(frozen=True)
class Config(ppo.PPOConfig):
    """PPO on CartPole-v1: 256-256 ReLU trunk (--activation tanh: PureJaxRL's), 8 envs x 128 steps, 4 epochs x 4 minibatches, lr 1e-3 annealed, 5e5 steps."""

    seeds: int = 1
    target_return: float = 475.0

    def validate(self) -> None:
        check_positive(self, "seeds", "target_return")
        super().validate()


def steps_to_target(return_U: np.ndarray, env_steps_U: np.ndarray, target: float) -> int | None:
    """Environment steps at the first update whose mean episode return reaches ``target`` (None if never)."""
    hits = np.flatnonzero(return_U >= target)
    return int(env_steps_U[hits[0]]) if hits.size else None


def learning_curve(env_steps_U: np.ndarray, return_SxU: np.ndarray, target: float, path: str, title: str) -> str:
    """Mean episode return against environment steps, one line per seed, the target dashed."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 4))
    ax = fig.subplots()
    for seed, return_U in enumerate(return_SxU):
        ax.plot(env_steps_U, return_U, label=f"seed {seed}", linewidth=1)
    ax.axhline(target, color="0.3", linestyle="--", linewidth=0.8, label=f"target {target:g}")
    ax.set_xlabel("environment steps")
    ax.set_ylabel("episode return (mean over envs)")
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="small")
    return plots.save_figure(fig, path)


def main(config: Config) -> dict:
    config.validate()
    workdir = prepare_workdir(config, "ppo_cartpole")
    keys = jax.random.split(jax.random.PRNGKey(config.seed), config.seeds)
    bar = tqdm(total=config.num_updates, unit="update", dynamic_ncols=True, mininterval=0.5)
    train = jax.jit(jax.vmap(ppo.make_train(config, on_update=lambda _: bar.update(1))))
    start = time.perf_counter()
    compiled = train.lower(keys).compile()
    compile_s = time.perf_counter() - start
    out = jax.block_until_ready(compiled(keys))
    wall_s = time.perf_counter() - start
    bar.close()

    metrics = jax.device_get(out["metrics"])
    return_SxU = np.asarray(metrics["episode_return"])
    env_steps_U = np.asarray(metrics["env_steps"][0])
    writer = MetricWriter(workdir)
    for u in range(config.num_updates):
        row = {"kind": "train", "step": int(env_steps_U[u]), "update": u + 1}
        row |= {k: float(np.mean(v[:, u])) for k, v in metrics.items() if k != "env_steps"}
        row["episode_return_seeds"] = [float(r) for r in return_SxU[:, u]]
        writer.write(row)
    writer.close()
    params = jax.device_get(out["params"])
    for seed in range(config.seeds):
        save_params(os.path.join(workdir, f"params_seed{seed}.msgpack"), jax.tree.map(lambda x, k=seed: x[k], params))
    learning_curve(
        env_steps_U, return_SxU, config.target_return, os.path.join(workdir, "learning_curve.png"),
        f"PPO on CartPole-v1 ({config.num_envs} envs x {config.num_steps} steps, lr {config.learning_rate:g})",
    )
    return {
        "final_return": [float(r) for r in return_SxU[:, -1]],
        "steps_to_target": [steps_to_target(r, env_steps_U, config.target_return) for r in return_SxU],
        "target_return": config.target_return,
        "env_steps": int(env_steps_U[-1]),
        "seeds": config.seeds,
        "compile_s": round(compile_s, 2),
        "wall_s": round(wall_s, 2),
        "workdir": workdir,
    }


if __name__ == "__main__":
    sys.exit(cli.run(main, Config, prog="python -m experiments.ppo_cartpole"))
