"""CartPole-v1 in pure JAX: the classic cart-pole dynamics (Barto, Sutton & Anderson 1983) as in gym.

Integration is gym's default explicit Euler with ``tau = 0.02``. The episode terminates when
``|x| > 2.4`` or ``|theta| > 12 degrees`` and is truncated after 500 steps; every step (the
terminating one included) earns reward 1. ``step`` resets a finished episode itself
(auto-reset), so a batch of environments can run in ``lax.scan`` under ``vmap`` without Python
control flow. ``log_reset``/``log_step`` wrap the environment with episode-return bookkeeping.

    obs, state = reset(key)
    obs, state, reward, done, info = step(key, state, action)   # action in {0: push left, 1: push right}
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
from flax import struct

GRAVITY = 9.8
MASSCART = 1.0
MASSPOLE = 0.1
TOTAL_MASS = MASSCART + MASSPOLE
LENGTH = 0.5  # half the pole's length
POLEMASS_LENGTH = MASSPOLE * LENGTH
FORCE_MAG = 10.0
TAU = 0.02
X_THRESHOLD = 2.4
THETA_THRESHOLD = 12 * 2 * math.pi / 360
MAX_STEPS = 500
OBS_DIM = 4
NUM_ACTIONS = 2


@struct.dataclass
class CartPoleState:
    """Cart position and velocity, pole angle (radians, 0 upright) and angular velocity, steps taken."""

    x: jax.Array
    x_dot: jax.Array
    theta: jax.Array
    theta_dot: jax.Array
    time: jax.Array


def observation(state: CartPoleState) -> jax.Array:
    """The observation [4] float32: (x, x_dot, theta, theta_dot)."""
    return jnp.stack([state.x, state.x_dot, state.theta, state.theta_dot]).astype(jnp.float32)


def reset(key: jax.Array) -> tuple[jax.Array, CartPoleState]:
    """A new episode: the four state variables uniform in (-0.05, 0.05); returns (obs [4], state)."""
    x, x_dot, theta, theta_dot = jax.random.uniform(key, (4,), minval=-0.05, maxval=0.05)
    state = CartPoleState(x, x_dot, theta, theta_dot, jnp.zeros((), jnp.int32))
    return observation(state), state


def dynamics(state: CartPoleState, action: jax.Array) -> CartPoleState:
    """One explicit Euler step of the cart-pole equations of motion under push ``action`` (0 left, 1 right)."""
    force = jnp.where(action == 1, FORCE_MAG, -FORCE_MAG)
    cos_theta, sin_theta = jnp.cos(state.theta), jnp.sin(state.theta)
    temp = (force + POLEMASS_LENGTH * state.theta_dot**2 * sin_theta) / TOTAL_MASS
    theta_acc = (GRAVITY * sin_theta - cos_theta * temp) / (
        LENGTH * (4.0 / 3.0 - MASSPOLE * cos_theta**2 / TOTAL_MASS)
    )
    x_acc = temp - POLEMASS_LENGTH * theta_acc * cos_theta / TOTAL_MASS
    return CartPoleState(
        x=state.x + TAU * state.x_dot,
        x_dot=state.x_dot + TAU * x_acc,
        theta=state.theta + TAU * state.theta_dot,
        theta_dot=state.theta_dot + TAU * theta_acc,
        time=state.time + 1,
    )


def step(
    key: jax.Array, state: CartPoleState, action: jax.Array
) -> tuple[jax.Array, CartPoleState, jax.Array, jax.Array, dict[str, jax.Array]]:
    """Advance one step and reset a finished episode with ``key``.

    Returns (obs [4], state, reward, done, info). After a done step, ``obs``/``state`` are those of
    the new episode; ``info['final_obs']`` is the observation the finished episode ended in (for
    bootstrapping a truncated episode), ``info['terminated']``/``info['truncated']`` say why it ended.
    """
    moved = dynamics(state, action)
    terminated = (jnp.abs(moved.x) > X_THRESHOLD) | (jnp.abs(moved.theta) > THETA_THRESHOLD)
    truncated = (moved.time >= MAX_STEPS) & ~terminated
    done = terminated | truncated
    reset_obs, reset_state = reset(key)
    next_state = jax.tree.map(lambda new, old: jnp.where(done, new, old), reset_state, moved)
    final_obs = observation(moved)
    obs = jnp.where(done, reset_obs, final_obs)
    info = {"terminated": terminated, "truncated": truncated, "final_obs": final_obs}
    return obs, next_state, jnp.ones((), jnp.float32), done, info


@struct.dataclass
class LogState:
    """An environment state plus the running and the last completed episode's return and length."""

    env_state: CartPoleState
    episode_return: jax.Array
    episode_length: jax.Array
    returned_episode_return: jax.Array
    returned_episode_length: jax.Array


def log_reset(key: jax.Array) -> tuple[jax.Array, LogState]:
    """``reset`` with zeroed episode statistics."""
    obs, env_state = reset(key)
    zero_f, zero_i = jnp.zeros((), jnp.float32), jnp.zeros((), jnp.int32)
    return obs, LogState(env_state, zero_f, zero_i, zero_f, zero_i)


def log_step(
    key: jax.Array, state: LogState, action: jax.Array
) -> tuple[jax.Array, LogState, jax.Array, jax.Array, dict[str, Any]]:
    """``step`` that also tracks episode returns: ``info['returned_episode_return']`` is the return of
    the last episode that ended (0 before the first), ``info['returned_episode']`` whether one ended now."""
    obs, env_state, reward, done, info = step(key, state.env_state, action)
    episode_return = state.episode_return + reward
    episode_length = state.episode_length + 1
    new_state = LogState(
        env_state=env_state,
        episode_return=jnp.where(done, 0.0, episode_return),
        episode_length=jnp.where(done, 0, episode_length),
        returned_episode_return=jnp.where(done, episode_return, state.returned_episode_return),
        returned_episode_length=jnp.where(done, episode_length, state.returned_episode_length),
    )
    info = info | {
        "returned_episode_return": new_state.returned_episode_return,
        "returned_episode_length": new_state.returned_episode_length,
        "returned_episode": done,
    }
    return obs, new_state, reward, done, info
