"""An actor-critic network for discrete actions: a shared MLP trunk, a policy head and a value head."""

from __future__ import annotations

import flax.linen as nn
import jax
import numpy as np


class ActorCritic(nn.Module):
    """Shared MLP trunk -> (action logits [..., num_actions], value [...]).

    Orthogonal initialisation (gain sqrt(2) in the trunk, 0.01 for the policy head so the first
    policy is near uniform, 1 for the value head), zero biases. ``activation`` is 'relu' or 'tanh'.
    """

    num_actions: int
    hidden: tuple[int, ...] = (256, 256)
    activation: str = "relu"

    @nn.compact
    def __call__(self, obs_BxD: jax.Array) -> tuple[jax.Array, jax.Array]:
        act = {"tanh": nn.tanh, "relu": nn.relu}[self.activation]
        h = obs_BxD
        for width in self.hidden:
            h = act(nn.Dense(width, kernel_init=nn.initializers.orthogonal(np.sqrt(2)))(h))
        logits_BxA = nn.Dense(self.num_actions, kernel_init=nn.initializers.orthogonal(0.01), name="policy")(h)
        value_B = nn.Dense(1, kernel_init=nn.initializers.orthogonal(1.0), name="value")(h)[..., 0]
        return logits_BxA, value_B
