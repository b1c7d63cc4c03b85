"""step_lr against PyTorch's StepLR closed form, optax's staircase exponential decay, and in use."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from conftest import run_experiment
from hypothesis import given, settings
from hypothesis import strategies as st

from nnjax.errors import ConfigError
from nnjax.optim import effective_learning_rates, step_lr


@settings(deadline=None, max_examples=25)
@given(
    lr0=st.floats(1e-4, 1.0),
    step_size=st.integers(1, 50),
    gamma=st.floats(0.05, 0.95),
    epoch=st.integers(0, 500),
)
def test_step_lr_is_the_closed_form(lr0, step_size, gamma, epoch):
    expected = lr0 * gamma ** (epoch // step_size)
    tiny = np.finfo(np.float32).tiny  # float32 flushes values below the normal range to 0
    np.testing.assert_allclose(float(step_lr(lr0, step_size, gamma)(epoch)), expected, rtol=1e-5, atol=tiny)


@settings(deadline=None, max_examples=10)
@given(lr0=st.floats(1e-3, 1.0), step_size=st.integers(1, 40), gamma=st.floats(0.05, 0.95))
def test_step_lr_equals_optax_staircase_exponential_decay(lr0, step_size, gamma):
    epochs = jnp.arange(200)
    oracle = optax.exponential_decay(lr0, transition_steps=step_size, decay_rate=gamma, staircase=True)
    np.testing.assert_allclose(jax.vmap(step_lr(lr0, step_size, gamma))(epochs), jax.vmap(oracle)(epochs), rtol=1e-5)


def test_seed_schedule_values():
    """Seed 004.10: lr 0.1, step 30, gamma 0.1 -> 0.1 for epochs 0-29, 0.01 for 30-59, ..."""
    lr_E = np.asarray(jax.vmap(step_lr(0.1))(jnp.arange(100)))
    np.testing.assert_allclose(lr_E, 0.1 * 0.1 ** (np.arange(100) // 30), rtol=1e-6)
    assert lr_E[29] > lr_E[30] and lr_E[0] == lr_E[29]


def test_step_lr_drives_optax_sgd():
    """optax.sgd(step_lr(...)) takes steps of exactly lr_e · g, with e the number of earlier updates."""
    schedule = step_lr(0.5, step_size=4, gamma=0.5)
    tx = optax.sgd(schedule)
    params = jnp.array([1.0, -2.0])
    grads = jnp.array([3.0, 0.5])
    state = tx.init(params)
    for e in range(12):
        updates, state = tx.update(grads, state, params)
        np.testing.assert_allclose(updates, -0.5 * 0.5 ** (e // 4) * grads, rtol=1e-6)


def test_effective_learning_rates_reads_the_schedule_back():
    lr_T = effective_learning_rates(optax.sgd(step_lr(0.1, 3, 0.5)), 10)
    np.testing.assert_allclose(lr_T, 0.1 * 0.5 ** (np.arange(10) // 3), rtol=1e-6)


def test_effective_learning_rates_of_momentum_grow():
    """Not a schedule but a check the measurement is real: momentum's steps grow to lr/(1-β)."""
    lr_T = effective_learning_rates(optax.sgd(0.1, momentum=0.5), 30)
    np.testing.assert_allclose(lr_T[0], 0.1, rtol=1e-6)
    np.testing.assert_allclose(lr_T[-1], 0.2, rtol=1e-5)


@pytest.mark.parametrize("kwargs, message", [({"step_size": 0}, "step_size"), ({"gamma": 0.0}, "gamma")])
def test_bad_arguments_raise(kwargs, message):
    with pytest.raises(ValueError, match=message):
        step_lr(0.1, **kwargs)


def test_lr_schedule_cli(tmp_path):
    proc = run_experiment(
        "experiments.lr_schedule", "--workdir", str(tmp_path),
        "--epochs", "35", "--step-size", "10", "--gamma", "0.5", "--print-every", "5",
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    expected = {str(e): 0.1 * 0.5 ** (e // 10) for e in range(0, 35, 5)}
    assert out["lr_at_epoch"].keys() == expected.keys()
    np.testing.assert_allclose([out["lr_at_epoch"][e] for e in expected], list(expected.values()), rtol=1e-5)
    assert sorted(out["epochs_at_lr"].values()) == [5, 10, 10, 10]
    assert (tmp_path / "lr_schedule.png").stat().st_size > 0


def test_lr_schedule_config_rejects_bad_step_size():
    from experiments.lr_schedule import Config

    with pytest.raises(ConfigError, match="--step-size"):
        Config(step_size=0).validate()
