"""Multi-layer perceptrons."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import flax.linen as nn
import jax

from nnjax.scratch import backprop


class MLP(nn.Module):
    """Flatten, then Dense layers of ``features`` with ``activation`` between them (logits out).

    Seed 002 slide 1 uses ``MLP(features=(128, 64, 10))`` on 784-pixel digits.
    """

    features: Sequence[int] = (128, 64, 10)
    activation: Callable[[jax.Array], jax.Array] = nn.relu

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        """[B, ...] -> logits [B, features[-1]]."""
        del train
        x = x.reshape(x.shape[0], -1)
        for i, width in enumerate(self.features):
            x = nn.Dense(width, name=f"dense{i}")(x)
            if i < len(self.features) - 1:
                x = self.activation(x)
        return x


def mlp_layers(params: dict) -> backprop.Params:
    """An ``MLP``'s params (``dense{i}`` kernel [Din, Dout] and bias [Dout]) as the scratch layer list
    ``[{'w', 'b'}, ...]`` that ``nnjax.scratch.backprop`` runs and ``BackpropMLP`` holds under ``'layers'``;
    works on gradients of the same structure too."""
    missing = [f"dense{i}" for i in range(len(params)) if f"dense{i}" not in params]
    if missing:
        raise ValueError(f"params must be an MLP's dense0..dense{len(params) - 1}, missing {missing}; got {sorted(params)}")
    return [{"w": params[f"dense{i}"]["kernel"], "b": params[f"dense{i}"]["bias"]} for i in range(len(params))]


class BackpropMLP(nn.Module):
    """A fully connected network whose gradients come from hand-written backprop (seeds 000·1–2, 001·1–2).

    Same layout as ``MLP`` (flatten, ``features`` widths, logits out), but the params are the
    scratch pytree of ``nnjax.scratch.backprop`` (one ``'layers'`` entry) and the forward pass is
    ``scratch.backprop.apply``, whose ``custom_vjp`` makes ``jax.grad`` — and so the trainer — run the
    textbook backward recursion instead of autodiff.
    """

    features: Sequence[int] = (64, 10)
    hidden: str = "sigmoid"

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        """[B, ...] -> logits [B, features[-1]]."""
        del train
        x = x.reshape(x.shape[0], -1)
        layers = self.param("layers", lambda key: backprop.init_mlp(key, (x.shape[-1], *self.features)))
        return backprop.apply(layers, x, self.hidden, "linear")
