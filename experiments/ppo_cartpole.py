"""Seed 000 slide 8: PPO (shared-trunk actor-critic, clipped objective) solving CartPole-v1.

The seed's PyTorch ``PPOAgent`` only defines the network and the loss; here it trains on a pure-JAX
CartPole (``nnjax.envs.cartpole``): rollouts of vmapped environments, GAE and epochs of minibatch
updates all inside jitted calls of ``--log-every-updates`` updates each (``nnjax.tasks.ppo``), on the
runner, so rows reach ``metrics.jsonl``, TensorBoard and the progress bar while it trains, a killed run
resumes from its newest checkpoint to the same result, and ``--seeds N`` trains N seeds at once with
``jax.vmap``. The run also writes ``episode_returns.png`` (episode return against environment steps,
one line per seed) and each seed's final parameters ``params_seed<k>.msgpack``; the final JSON line
has each seed's final return, the environment steps at which its return first reached
``--target-return``, the compile time and the training time.

    python -m experiments.ppo_cartpole
    python -m experiments.ppo_cartpole --seeds 4 --total-timesteps 500000
"""

from __future__ import annotations

import dataclasses
import sys

from nnjax import cli
from nnjax.tasks import ppo


@dataclasses.dataclass(frozen=True)
class Config(ppo.PPOConfig):
    """PPO on CartPole-v1: 256-256 ReLU trunk (--activation tanh: PureJaxRL's), 8 envs x 128 steps, 4 epochs x 4 minibatches, lr 1e-3 annealed, 2e5 steps."""


def main(config: Config) -> dict:
    return ppo.train_ppo(config, "ppo_cartpole").summary


if __name__ == "__main__":
    sys.exit(cli.run(main, Config, prog="python -m experiments.ppo_cartpole"))
