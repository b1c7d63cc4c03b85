"""The training state shared by every trainer."""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import optax
from flax.training import train_state


class TrainState(train_state.TrainState):
    """Params, optimizer state and step (from flax) plus BatchNorm statistics and the PRNG key.

    ``rng`` is a raw uint32 key; each train step splits it once into the next key and a step key.
    """

    batch_stats: Any
    rng: jax.Array


def model_variables(params: Any, batch_stats: Any) -> dict[str, Any]:
    """The variables dict ``model.apply`` expects."""
    return {"params": params, "batch_stats": batch_stats} if batch_stats else {"params": params}


def create_train_state(
    model: nn.Module, tx: optax.GradientTransformation, sample_x: jax.Array, key: jax.Array
) -> TrainState:
    """Initialise ``model`` on ``sample_x`` ([B, ...]) and wrap it with optimizer ``tx``."""
    init_key, rng = jax.random.split(key)
    variables = jax.jit(lambda k, x: model.init(k, x, train=False))(init_key, sample_x)
    return TrainState.create(
        apply_fn=model.apply,
        params=variables["params"],
        tx=tx,
        batch_stats=variables.get("batch_stats", {}),
        rng=rng,
    )
