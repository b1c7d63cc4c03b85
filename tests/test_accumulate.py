"""Gradient accumulation: k micro-batches of b examples give the update of one batch of k·b."""

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

from nnjax.errors import ConfigError
from nnjax.optim import accumulate
from nnjax.scratch.accumulate import accumulate_gradient, accumulation_gap, max_abs_difference, split_microbatches


def _mlp_problem(seed: int, n: int, d: int = 5, h: int = 7):
    """Params of a one-hidden-layer tanh MLP regressor, a batch of n examples, and its mean loss."""
    rng = np.random.default_rng(seed)
    params = {
        "w1": (rng.standard_normal((d, h)) / np.sqrt(d)).astype(np.float32),
        "b1": rng.standard_normal(h).astype(np.float32),
        "w2": (rng.standard_normal((h, 1)) / np.sqrt(h)).astype(np.float32),
    }
    batch = {"x": rng.standard_normal((n, d)).astype(np.float32), "y": rng.standard_normal(n).astype(np.float32)}

    def loss_fn(params, batch):
        pred_B = (jnp.tanh(batch["x"] @ params["w1"] + params["b1"]) @ params["w2"])[:, 0]
        return jnp.mean((pred_B - batch["y"]) ** 2)

    return params, batch, loss_fn


@settings(deadline=None, max_examples=3)
@given(k=st.integers(1, 5), b=st.integers(1, 6), seed=st.integers(0, 2**16))
def test_scan_accumulation_equals_big_batch_grad(k, b, seed):
    params, batch, loss_fn = _mlp_problem(seed, k * b)
    accumulated = jax.jit(lambda p, bt: accumulate_gradient(jax.value_and_grad(loss_fn), p, bt, k))
    loss, grads = accumulated(params, batch)
    chex.assert_trees_all_close(grads, jax.jit(jax.grad(loss_fn))(params, batch), atol=1e-5)
    np.testing.assert_allclose(loss, loss_fn(params, batch), rtol=1e-5)


def test_accumulation_with_rng_gives_micro_batch_i_key_i():
    """With ``rng``, micro-batch i sees key i of ``split(rng, k)``; every leaf of the loss pytree is averaged."""
    k, b = 3, 2
    params, batch, _ = _mlp_problem(5, k * b)
    rng = jax.random.PRNGKey(7)

    def loss_and_grad(params, micro_batch, key):
        u = jax.random.uniform(key)
        return {"u": u, "u_times_y": u * micro_batch["y"].sum()}, jax.tree.map(lambda p: u * p, params)

    aux, grads = jax.jit(lambda p, bt, r: accumulate_gradient(loss_and_grad, p, bt, k, rng=r))(params, batch, rng)
    u_K = np.asarray(jax.vmap(jax.random.uniform)(jax.random.split(rng, k)))
    assert len(set(u_K.tolist())) == k, "each micro-batch needs its own key"
    np.testing.assert_allclose(aux["u"], u_K.mean(), rtol=1e-6)
    np.testing.assert_allclose(aux["u_times_y"], np.mean(u_K * batch["y"].reshape(k, b).sum(1)), rtol=1e-5)
    chex.assert_trees_all_close(grads, jax.tree.map(lambda p: u_K.mean() * p, params), rtol=1e-5)


@pytest.mark.parametrize("tx", [optax.sgd(0.1, momentum=0.9), optax.adam(1e-2)], ids=["momentum", "adam"])
def test_multisteps_over_micro_batches_equals_big_batch_steps(tx):
    """Two accumulated updates (2·k calls) match two optax steps on the corresponding big batches."""
    k, b = 4, 3
    params, _, loss_fn = _mlp_problem(1, 1)
    batches = [_mlp_problem(seed, k * b)[1] for seed in (2, 3)]
    grad_fn = jax.jit(jax.grad(loss_fn))

    big, big_state = params, tx.init(params)
    for batch in batches:
        updates, big_state = jax.jit(tx.update)(grad_fn(big, batch), big_state, big)
        big = optax.apply_updates(big, updates)

    multi = accumulate(tx, k)
    multi_update = jax.jit(multi.update)
    acc, acc_state = params, multi.init(params)
    for batch in batches:
        for i in range(k):
            micro_batch = jax.tree.map(lambda a: a[i * b : (i + 1) * b], batch)
            updates, acc_state = multi_update(grad_fn(acc, micro_batch), acc_state, acc)
            if i < k - 1:
                chex.assert_trees_all_close(updates, jax.tree.map(jnp.zeros_like, updates))
            acc = optax.apply_updates(acc, updates)
    chex.assert_trees_all_close(acc, big, atol=1e-5)


def test_accumulation_gap_is_small():
    params, batch, loss_fn = _mlp_problem(4, 16)
    gap = accumulation_gap(loss_fn, params, batch, optax.sgd(0.5), 4)
    assert set(gap) == {"multisteps", "scan"} and max(gap.values()) < 1e-5


def test_max_abs_difference():
    assert max_abs_difference({"a": jnp.array([1.0, 2.0]), "b": jnp.zeros(2)}, {"a": jnp.array([1.0, 2.5]), "b": -jnp.ones(2)}) == 1.0


def test_split_microbatches_shapes_and_errors():
    batch = {"x": jnp.zeros((12, 2, 3)), "y": jnp.zeros(12, jnp.int32)}
    micro = split_microbatches(batch, 4)
    chex.assert_shape(micro["x"], (4, 3, 2, 3))
    chex.assert_shape(micro["y"], (4, 3))
    with pytest.raises(ValueError, match="12 examples does not split into 5"):
        split_microbatches(batch, 5)
    with pytest.raises(ValueError, match="leading"):
        split_microbatches({"x": jnp.zeros((12, 2)), "y": jnp.zeros(10)}, 2)
    with pytest.raises(ValueError, match="num_micro"):
        split_microbatches(batch, 0)
    with pytest.raises(ValueError, match="every_k"):
        accumulate(optax.sgd(0.1), 0)


def test_gradient_accumulation_cli(tmp_path):
    proc = run_experiment(
        "experiments.gradient_accumulation", "--workdir", str(tmp_path), "--epochs", "1",
        "--accumulate-steps", "3", "--batch-size", "16", "--hidden", "16", "--validation-fraction", "0",
        "--log-every-steps", "1000",
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["effective_batch_size"] == 48 and out["optimizer_updates"] == out["steps"] // 3
    assert out["max_param_diff_multisteps_vs_big_batch"] < 1e-5 and out["max_param_diff_scan_vs_big_batch"] < 1e-5
    assert 0.0 <= out["test_accuracy"] <= 1.0
    assert (tmp_path / "learning_curves.png").stat().st_size > 0


def test_gradient_accumulation_config_rejects_zero_steps():
    from experiments.gradient_accumulation import Config

    with pytest.raises(ConfigError, match="--accumulate-steps"):
        Config(accumulate_steps=0).validate()
