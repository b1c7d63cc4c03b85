"""Optimizers written from their update equations, as ``optax.GradientTransformation``s.

Seed 001 slide 4 (momentum as an exponential moving average), 003 slide 9 (SGD, momentum, Adam)
and 004 slide 7 (SGD, Adam, RMSprop). Each optimizer works on any params pytree, keeps its state
in a ``NamedTuple``, is jittable, and takes a learning rate that is a float or an optax schedule
(evaluated at the number of updates already applied: 0 for the first update, as optax does).
Updates are the *changes* to apply (``optax.apply_updates(params, updates)``), so they carry the
minus sign.

Update rules, for a gradient ``g`` at update ``t = 1, 2, ...`` with learning rate ``α_t``:

- ``sgd``:          Δ = -α g
- ``ema_momentum``: v = βv + (1-β)g;   Δ = -α v                  (001.4; v is an average of g)
- ``momentum``:     v = βv + g;        Δ = -α v                  (heavy ball, PyTorch/optax form)
  with ``nesterov=True``:              Δ = -α (g + βv)           (v already updated)
- ``rmsprop``:      s = ρs + (1-ρ)g²;  Δ = -α g / (√s + ε)       (PyTorch's ε placement)
- ``adam``:         m = β₁m + (1-β₁)g; s = β₂s + (1-β₂)g²;
                    Δ = -α m̂ / (√ŝ + ε),  m̂ = m/(1-β₁ᵗ), ŝ = s/(1-β₂ᵗ)

With a constant α, ``ema_momentum(α, β)`` equals ``momentum(α(1-β), β)``: by induction the EMA
velocity is (1-β) times the heavy-ball velocity.

The seed's own versions of momentum and Adam (003.9) re-create their state on every call
(``v=None``, ``t=0`` as default arguments), so they never accumulate; these keep it.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

Params = Any
LearningRate = float | optax.Schedule


class SgdState(NamedTuple):
    """Number of updates applied so far (indexes the learning-rate schedule)."""

    count: jax.Array


class MomentumState(NamedTuple):
    """Update count and the velocity pytree (same structure as the params)."""

    count: jax.Array
    velocity: Params


class RmsPropState(NamedTuple):
    """Update count and the running mean of squared gradients."""

    count: jax.Array
    nu: Params


class AdamState(NamedTuple):
    """Update count and the running means of gradients (``mu``) and squared gradients (``nu``)."""

    count: jax.Array
    mu: Params
    nu: Params


def _rate(learning_rate: LearningRate, count: jax.Array) -> float | jax.Array:
    """The learning rate for the update that follows ``count`` earlier ones."""
    return learning_rate(count) if callable(learning_rate) else learning_rate


def _zeros_like(params: Params) -> Params:
    return jax.tree.map(jnp.zeros_like, params)


def _count() -> jax.Array:
    return jnp.zeros([], jnp.int32)


def _check_unit_interval(name: str, value: float) -> None:
    if not 0.0 <= value < 1.0:
        raise ValueError(f"{name} must be in [0, 1), got {value}")


def sgd(learning_rate: LearningRate) -> optax.GradientTransformation:
    """Plain gradient descent: Δ = -α g."""

    def init(params: Params) -> SgdState:
        del params
        return SgdState(count=_count())

    def update(grads: Params, state: SgdState, params: Params | None = None) -> tuple[Params, SgdState]:
        del params
        lr = _rate(learning_rate, state.count)
        updates = jax.tree.map(lambda g: -lr * g, grads)
        return updates, SgdState(count=state.count + 1)

    return optax.GradientTransformation(init, update)


def ema_momentum(learning_rate: LearningRate, beta: float = 0.9) -> optax.GradientTransformation:
    """Momentum as in seed 001.4: the velocity is an EMA of gradients, v = βv + (1-β)g; Δ = -α v."""
    return momentum(learning_rate, beta, dampening=beta)


def momentum(
    learning_rate: LearningRate, beta: float = 0.9, nesterov: bool = False, dampening: float = 0.0
) -> optax.GradientTransformation:
    """Momentum v = βv + (1 - dampening) g; Δ = -α v, or Nesterov's Δ = -α (g + βv) with ``nesterov=True``.

    ``dampening=0`` is heavy-ball momentum (PyTorch/optax); ``dampening=β`` is the EMA form (``ema_momentum``).
    """
    _check_unit_interval("beta", beta)
    _check_unit_interval("dampening", dampening)
    if nesterov and dampening:
        raise ValueError(f"nesterov momentum needs dampening=0, got dampening={dampening}")

    def init(params: Params) -> MomentumState:
        return MomentumState(count=_count(), velocity=_zeros_like(params))

    def update(grads: Params, state: MomentumState, params: Params | None = None) -> tuple[Params, MomentumState]:
        del params
        lr = _rate(learning_rate, state.count)
        velocity = jax.tree.map(lambda v, g: beta * v + (1.0 - dampening) * g, state.velocity, grads)
        direction = jax.tree.map(lambda v, g: g + beta * v, velocity, grads) if nesterov else velocity
        updates = jax.tree.map(lambda d: -lr * d, direction)
        return updates, MomentumState(count=state.count + 1, velocity=velocity)

    return optax.GradientTransformation(init, update)


def rmsprop(learning_rate: LearningRate, decay: float = 0.99, eps: float = 1e-8) -> optax.GradientTransformation:
    """RMSprop with PyTorch's defaults and ε outside the root: s = ρs + (1-ρ)g²; Δ = -α g / (√s + ε).

    ``optax.rmsprop`` puts ε inside the root by default (``eps_in_sqrt=True``); the same update in
    optax is ``optax.rmsprop(α, decay=ρ, eps=ε, eps_in_sqrt=False)``.
    """
    _check_unit_interval("decay", decay)

    def init(params: Params) -> RmsPropState:
        return RmsPropState(count=_count(), nu=_zeros_like(params))

    def update(grads: Params, state: RmsPropState, params: Params | None = None) -> tuple[Params, RmsPropState]:
        del params
        lr = _rate(learning_rate, state.count)
        nu = jax.tree.map(lambda s, g: decay * s + (1.0 - decay) * g**2, state.nu, grads)
        updates = jax.tree.map(lambda g, s: -lr * (g / (jnp.sqrt(s) + eps)), grads, nu)
        return updates, RmsPropState(count=state.count + 1, nu=nu)

    return optax.GradientTransformation(init, update)


def adam(
    learning_rate: LearningRate, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8
) -> optax.GradientTransformation:
    """Adam with bias-corrected moments: Δ = -α m̂ / (√ŝ + ε)."""
    _check_unit_interval("b1", b1)
    _check_unit_interval("b2", b2)

    def init(params: Params) -> AdamState:
        return AdamState(count=_count(), mu=_zeros_like(params), nu=_zeros_like(params))

    def update(grads: Params, state: AdamState, params: Params | None = None) -> tuple[Params, AdamState]:
        del params
        lr = _rate(learning_rate, state.count)
        t = state.count + 1
        mu = jax.tree.map(lambda m, g: b1 * m + (1.0 - b1) * g, state.mu, grads)
        nu = jax.tree.map(lambda s, g: b2 * s + (1.0 - b2) * g**2, state.nu, grads)
        correction1, correction2 = 1.0 - b1**t, 1.0 - b2**t
        updates = jax.tree.map(
            lambda m, s: -lr * ((m / correction1) / (jnp.sqrt(s / correction2) + eps)), mu, nu
        )
        return updates, AdamState(count=t, mu=mu, nu=nu)

    return optax.GradientTransformation(init, update)
