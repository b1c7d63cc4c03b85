"""MLPs regularised with the from-scratch layers of ``nnjax.scratch``, as flax modules for the trainer.

- ``ScratchBatchNorm`` / ``ScratchDropout``: flax wrappers of ``scratch.normalization.batch_norm``
  (statistics in the ``batch_stats`` collection) and ``scratch.normalization.dropout`` (RNG stream
  ``'dropout'``).
- ``DropoutMLP``: seed 004 slides 8-9 (Dense -> [BatchNorm] -> ReLU -> [Dropout] -> Dense).
- ``ResMLP``: a residual MLP whose branches use stochastic depth (``scratch.regularization.drop_path``)
  with drop rates increasing linearly with depth (seed 002 slide 8).
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from nnjax.scratch import normalization, regularization


class ScratchBatchNorm(nn.Module):
    """``scratch.normalization.batch_norm`` over the last axis; params ``gamma``/``beta``,
    running ``mean``/``var`` in ``batch_stats`` (updated in train mode, never during init)."""

    momentum: float = 0.9
    epsilon: float = 1e-5

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        """[B, ..., D] -> [B, ..., D]."""
        num_features = x.shape[-1]
        gamma = self.param("gamma", nn.initializers.ones, (num_features,))
        beta = self.param("beta", nn.initializers.zeros, (num_features,))
        mean = self.variable("batch_stats", "mean", jnp.zeros, (num_features,), jnp.float32)
        var = self.variable("batch_stats", "var", jnp.ones, (num_features,), jnp.float32)
        y, new_state = normalization.batch_norm(
            {"gamma": gamma, "beta": beta},
            {"mean": mean.value, "var": var.value},
            x,
            train=train,
            momentum=self.momentum,
            eps=self.epsilon,
        )
        if train and not self.is_initializing():
            mean.value, var.value = new_state["mean"], new_state["var"]
        return y


class ScratchDropout(nn.Module):
    """``scratch.normalization.dropout`` with its key from the ``'dropout'`` RNG stream."""

    rate: float

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        """Inverted dropout in train mode, identity otherwise; shape preserved."""
        key = self.make_rng("dropout") if train and self.rate > 0 else None
        return normalization.dropout(key, x, self.rate, train)


class DropoutMLP(nn.Module):
    """Flatten, then ``Dense -> [BatchNorm] -> ReLU -> [Dropout]`` per hidden width, then Dense logits.

    Seed 004 slide 9 is ``DropoutMLP(hidden=(50,), dropout_rate=0.5)`` (slide 8 adds batch norm
    after the hidden Dense layer). Batch norm and dropout are the scratch implementations.
    """

    hidden: Sequence[int] = (50,)
    num_classes: int = 10
    dropout_rate: float = 0.5
    batch_norm: bool = False
    bn_momentum: float = 0.9
    bn_epsilon: float = 1e-5

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        """[B, ...] -> logits [B, num_classes]."""
        x = x.reshape(x.shape[0], -1)
        for i, width in enumerate(self.hidden):
            x = nn.Dense(width, use_bias=not self.batch_norm, name=f"dense{i}")(x)
            if self.batch_norm:
                x = ScratchBatchNorm(self.bn_momentum, self.bn_epsilon, name=f"bn{i}")(x, train)
            x = nn.relu(x)
            x = ScratchDropout(self.dropout_rate, name=f"dropout{i}")(x, train)
        return nn.Dense(self.num_classes, name="head")(x)


def drop_path_rates(drop_path_rate: float, depth: int) -> tuple[float, ...]:
    """Per-block drop rates ``drop_path_rate * l / depth`` for blocks l = 1..depth (linear decay
    of the survival probability, Huang et al. 2016: the last block drops with ``drop_path_rate``)."""
    normalization.check_rate(drop_path_rate, "drop_path_rate")
    if depth < 1:
        raise ValueError(f"depth must be >= 1 residual blocks, got {depth}")
    return tuple(drop_path_rate * (block + 1) / depth for block in range(depth))


class ResidualBlock(nn.Module):
    """``h + drop_path(Dense(ReLU(Dense(LayerNorm(h)))))``: a pre-norm MLP branch with stochastic depth."""

    hidden: int
    drop_path_rate: float = 0.0
    dropout_rate: float = 0.0

    @nn.compact
    def __call__(self, h_BxD: jax.Array, train: bool = False) -> jax.Array:
        """[B, D] -> [B, D]."""
        branch = nn.Dense(self.hidden, name="fc1")(nn.LayerNorm(name="norm")(h_BxD))
        branch = ScratchDropout(self.dropout_rate, name="dropout")(nn.relu(branch), train)
        branch = nn.Dense(h_BxD.shape[-1], name="fc2")(branch)
        if train and self.drop_path_rate > 0:
            branch = regularization.drop_path(self.make_rng("dropout"), branch, self.drop_path_rate, train=True)
        return h_BxD + branch


class ResMLP(nn.Module):
    """Flatten -> Dense(width) -> ``depth`` residual blocks -> LayerNorm -> Dense logits.

    Block ``l`` (1-based) drops its branch with probability ``drop_path_rate * l / depth``.
    """

    num_classes: int = 10
    width: int = 64
    depth: int = 4
    hidden: int = 128
    drop_path_rate: float = 0.1
    dropout_rate: float = 0.0

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        """[B, ...] -> logits [B, num_classes]."""
        h = nn.Dense(self.width, name="embed")(x.reshape(x.shape[0], -1))
        for block, rate in enumerate(drop_path_rates(self.drop_path_rate, self.depth)):
            h = ResidualBlock(self.hidden, rate, self.dropout_rate, name=f"block{block}")(h, train)
        return nn.Dense(self.num_classes, name="head")(nn.LayerNorm(name="norm")(h))
