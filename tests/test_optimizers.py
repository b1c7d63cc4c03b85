"""Scratch optimizers against optax built-ins over 100 steps of random gradients on a random pytree;
the gradient-descent and optimizer-paths demos against the seed loop and optax."""

import json

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from conftest import run_experiment
from hypothesis import given, settings
from hypothesis import strategies as st

from nnjax.optim import step_lr
from nnjax.scratch import optimizers

STEPS = 100
SHAPES = {"w": (3, 4), "b": (4,), "layer": {"kernel": (2, 3, 2), "scale": ()}}

lrs = st.floats(1e-3, 0.3)
betas = st.floats(0.0, 0.99)


def _problem(seed: int, dtype=np.float32):
    """A params pytree of several shapes and a sequence of STEPS gradient pytrees for it."""
    rng = np.random.default_rng(seed)
    is_shape = lambda s: isinstance(s, tuple)  # noqa: E731
    params = jax.tree.map(lambda s: rng.standard_normal(s).astype(dtype), SHAPES, is_leaf=is_shape)
    grads = jax.tree.map(lambda s: rng.standard_normal((STEPS, *s)).astype(dtype), SHAPES, is_leaf=is_shape)
    return params, grads


def _run(tx, params, grads_T):
    """Params after applying ``tx`` to each gradient of the sequence (one jitted scan)."""

    def step(carry, grads):
        params, state = carry
        updates, state = tx.update(grads, state, params)
        return (optax.apply_updates(params, updates), state), None

    (params, _), _ = jax.jit(lambda p, g: jax.lax.scan(step, (p, tx.init(p)), g))(params, grads_T)
    return params


def _assert_same_path(ours, oracle, seed):
    """Same params after 100 steps, in float64 so that 1e-6 measures the rule, not float32 rounding
    (RMSprop and Adam take steps of about α per coordinate whatever the gradient scale)."""
    with jax.enable_x64(True):
        params, grads = _problem(seed, np.float64)
        chex.assert_trees_all_close(_run(ours, params, grads), _run(oracle, params, grads), atol=1e-6, rtol=1e-6)


@settings(deadline=None, max_examples=3)
@given(lr=lrs, seed=st.integers(0, 2**16))
def test_sgd_matches_optax(lr, seed):
    _assert_same_path(optimizers.sgd(lr), optax.sgd(lr), seed)


@settings(deadline=None, max_examples=3)
@given(lr=lrs, beta=betas, nesterov=st.booleans(), seed=st.integers(0, 2**16))
def test_momentum_and_nesterov_match_optax(lr, beta, nesterov, seed):
    _assert_same_path(optimizers.momentum(lr, beta, nesterov), optax.sgd(lr, momentum=beta, nesterov=nesterov), seed)


@settings(deadline=None, max_examples=3)
@given(lr=lrs, beta=betas, seed=st.integers(0, 2**16))
def test_ema_momentum_matches_optax_ema_and_scaled_heavy_ball(lr, beta, seed):
    """001.4's rule is optax's undebiased EMA then -α; and since v_ema = (1-β) v_heavy_ball, it is
    also optax.sgd at α(1-β) with momentum β."""
    ours = optimizers.ema_momentum(lr, beta)
    _assert_same_path(ours, optax.chain(optax.ema(beta, debias=False), optax.scale(-lr)), seed)
    _assert_same_path(ours, optax.sgd(lr * (1 - beta), momentum=beta), seed)


@settings(deadline=None, max_examples=3)
@given(lr=lrs, decay=st.floats(0.5, 0.999), eps=st.sampled_from([1e-8, 1e-3]), seed=st.integers(0, 2**16))
def test_rmsprop_matches_optax_with_eps_outside_sqrt(lr, decay, eps, seed):
    oracle = optax.rmsprop(lr, decay=decay, eps=eps, eps_in_sqrt=False)
    _assert_same_path(optimizers.rmsprop(lr, decay, eps), oracle, seed)


def test_rmsprop_differs_from_optax_default_eps_placement():
    """optax's default ε sits inside the root; with a large ε the two rules visibly differ."""
    params, grads = _problem(0)
    ours = _run(optimizers.rmsprop(0.1, 0.9, eps=0.1), params, grads)
    theirs = _run(optax.rmsprop(0.1, decay=0.9, eps=0.1), params, grads)
    assert not np.allclose(ours["w"], theirs["w"], atol=1e-3)


@settings(deadline=None, max_examples=3)
@given(lr=lrs, b1=betas, b2=st.floats(0.5, 0.9999), seed=st.integers(0, 2**16))
def test_adam_matches_optax(lr, b1, b2, seed):
    _assert_same_path(optimizers.adam(lr, b1, b2), optax.adam(lr, b1, b2), seed)


OPTIMIZER_PAIRS = {
    "sgd": (lambda lr: optimizers.sgd(lr), lambda lr: optax.sgd(lr)),
    "momentum": (lambda lr: optimizers.momentum(lr, 0.9), lambda lr: optax.sgd(lr, momentum=0.9)),
    "nesterov": (
        lambda lr: optimizers.momentum(lr, 0.9, nesterov=True),
        lambda lr: optax.sgd(lr, momentum=0.9, nesterov=True),
    ),
    "ema_momentum": (
        lambda lr: optimizers.ema_momentum(lr, 0.9),
        lambda lr: optax.chain(optax.ema(0.9, debias=False), optax.scale_by_learning_rate(lr)),
    ),
    "rmsprop": (lambda lr: optimizers.rmsprop(lr), lambda lr: optax.rmsprop(lr, decay=0.99, eps_in_sqrt=False)),
    "adam": (lambda lr: optimizers.adam(lr), lambda lr: optax.adam(lr)),
}


@pytest.mark.parametrize("name", sorted(OPTIMIZER_PAIRS))
def test_schedule_learning_rate_matches_optax(name):
    """A schedule is read at the number of earlier updates, as optax's scale_by_learning_rate does."""
    ours, theirs = OPTIMIZER_PAIRS[name]
    schedule = step_lr(0.1, step_size=7, gamma=0.5)
    _assert_same_path(ours(schedule), theirs(schedule), seed=1)


class JitTest(chex.TestCase):
    @chex.variants(with_jit=True, without_jit=True)
    def test_update_jit_and_eager_agree_with_adam(self):
        params, grads = _problem(2)
        tx = optimizers.adam(0.05)
        update = self.variant(tx.update)
        state, oracle_state = tx.init(params), optax.adam(0.05).init(params)
        for t in range(2):
            g = jax.tree.map(lambda a: a[t], grads)
            updates, state = update(g, state, params)
            expected, oracle_state = optax.adam(0.05).update(g, oracle_state, params)
            chex.assert_trees_all_close(updates, expected, atol=1e-6)
            chex.assert_trees_all_equal_structs(updates, params)
        assert int(state.count) == 2


def test_state_is_a_namedtuple_of_param_shaped_moments():
    params, _ = _problem(0)
    state = optimizers.adam(0.1).init(params)
    assert state._fields == ("count", "mu", "nu")
    chex.assert_trees_all_equal_shapes(state.mu, params)
    chex.assert_trees_all_close(state.nu, jax.tree.map(jnp.zeros_like, params))


@pytest.mark.parametrize(
    "build, message",
    [
        (lambda: optimizers.momentum(0.1, beta=1.0), "beta"),
        (lambda: optimizers.ema_momentum(0.1, beta=-0.1), "beta"),
        (lambda: optimizers.rmsprop(0.1, decay=1.5), "decay"),
        (lambda: optimizers.adam(0.1, b2=1.0), "b2"),
    ],
)
def test_bad_hyper_parameters_raise(build, message):
    with pytest.raises(ValueError, match=message):
        build()


def _last_json(proc):
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_gradient_descent_cli_matches_the_seed_loop(tmp_path):
    out = _last_json(run_experiment("experiments.gradient_descent", "--workdir", str(tmp_path), "--steps", "20", "--x0", "2.5"))
    x = 2.5
    for _ in range(20):  # the seed's own NumPy loop (003.5) as the oracle
        x = x - 0.1 * (2 * x + 5 * np.cos(x))
    np.testing.assert_allclose(out["x_min"], x, atol=1e-5)
    np.testing.assert_allclose(out["f_x_min"], x**2 + 5 * np.sin(x), atol=1e-5)
    grid = np.linspace(-5, 5, 100_001)
    np.testing.assert_allclose(out["true_minimizer"], grid[np.argmin(grid**2 + 5 * np.sin(grid))], atol=1e-4)
    assert (tmp_path / "gradient_descent.png").stat().st_size > 0


def test_optimizer_paths_cli_matches_optax(tmp_path):
    out = _last_json(run_experiment("experiments.optimizer_paths", "--workdir", str(tmp_path), "--steps", "7"))
    oracles = {
        "sgd": optax.sgd(0.1),
        "momentum": optax.chain(optax.ema(0.9, debias=False), optax.scale(-0.1)),
        "adam": optax.adam(0.1),
    }
    for name, tx in oracles.items():
        p = jnp.array([3.0, 3.0])
        state = tx.init(p)
        for _ in range(7):
            updates, state = tx.update(2 * p, state, p)
            p = optax.apply_updates(p, updates)
        np.testing.assert_allclose(out["optimizers"][name]["final_point"], p, atol=1e-5)
        np.testing.assert_allclose(out["optimizers"][name]["final_loss"], float(p @ p), rtol=1e-4)
    np.testing.assert_allclose(out["optimizers"]["sgd"]["final_point"], [3 * 0.8**7] * 2, atol=1e-5)
    assert (tmp_path / "optimizer_paths.png").stat().st_size > 0
