"""Trainer options: --steps, --grad-accum-steps, --precision and asynchronous prefetch.

Oracles: the K=1 step on the whole batch (accumulation), the float32 step (bfloat16), the plain
iterator (prefetch) and an uninterrupted run (resume with --steps).
"""

import dataclasses
import functools
import itertools
import shutil
import threading

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from conftest import blob_dataset
from hypothesis import given, settings
from hypothesis import strategies as st

from nnjax import cli, losses
from nnjax.config import TrainConfig
from nnjax.data import epoch_batch_indices, prefetch
from nnjax.errors import ConfigError
from nnjax.models import MLP
from nnjax.tasks import fit
from nnjax.train import Parallel, create_train_state, make_eval_step, make_train_step
from nnjax.train.steps import cast_floating

B = 32


def _assert_float32_updates(updates, params=None):
    """optax.stateless hook: fails at trace time unless every gradient leaf is float32."""
    assert {leaf.dtype for leaf in jax.tree.leaves(updates)} == {jnp.dtype(jnp.float32)}, updates
    return updates


# Shared by the tests so that equal steps on equal shapes compile once (the static TrainState fields
# ``tx`` and ``apply_fn`` are part of the jit cache key). Every gradient must arrive in float32.
TX = optax.chain(optax.stateless(_assert_float32_updates), optax.adam(1e-2))
MODEL = MLP(features=(16, 4))
STEP = jax.jit(make_train_step(losses.classification))
STEP_BF16 = jax.jit(make_train_step(losses.classification, precision="bfloat16"))


class DropoutMLP(nn.Module):
    """Flatten -> Dense(16) -> dropout 0.5 -> Dense(4) logits."""

    @nn.compact
    def __call__(self, x, train=False):
        h = nn.relu(nn.Dense(16)(x.reshape(x.shape[0], -1)))
        return nn.Dense(4)(nn.Dropout(0.5, deterministic=not train)(h))


class TokenMLP(nn.Module):
    """Integer token ids [B, T] -> embedding mean -> 4 logits (``nn.Embed`` rejects float ids)."""

    @nn.compact
    def __call__(self, ids, train=False):
        return nn.Dense(4)(nn.Embed(16, 8)(ids).mean(axis=1))


@functools.cache
def _state(model=MODEL):
    """(host initial state of ``model`` with ``TX``, the first training batch [B, ...], the blob data set)."""
    data = blob_dataset()
    batch = {k: v[:B] for k, v in data.train.items()}
    return jax.device_get(create_train_state(model, TX, batch["x"], jax.random.PRNGKey(0))), batch, data


# Gradient accumulation.

def test_accumulated_step_equals_whole_batch_step():
    state, batch, _ = _state()
    whole, whole_metrics = STEP(state, batch)
    accumulated, metrics = jax.jit(make_train_step(losses.classification, grad_accum_steps=4))(state, batch)
    chex.assert_trees_all_close(accumulated.params, whole.params, atol=1e-5)
    chex.assert_trees_all_close(accumulated.opt_state, whole.opt_state, atol=1e-5)
    chex.assert_trees_all_close(metrics, whole_metrics, atol=1e-5)


def test_accumulation_with_dropout_runs_and_advances():
    """The K=4 step of a dropout model runs (that micro-batch i gets key i of the step key is tested
    on ``accumulate_gradient`` itself, in tests/test_accumulate.py)."""
    state, batch, _ = _state(DropoutMLP())
    new_state, metrics = jax.jit(make_train_step(losses.classification, grad_accum_steps=4))(state, batch)
    assert np.isfinite(metrics["loss"]) and int(new_state.step) == 1
    assert not np.array_equal(new_state.rng, state.rng)
    assert not np.allclose(new_state.params["Dense_0"]["kernel"], state.params["Dense_0"]["kernel"])


@pytest.mark.parametrize("mode", ["jit", "pmap"])
def test_accumulation_data_parallel_matches_single_device(eight_devices, mode):
    del eight_devices
    state, _, data = _state()
    batches = [{k: v[i * B : (i + 1) * B] for k, v in data.train.items()} for i in range(2)]
    parallel = Parallel(mode, losses.classification, B, 64, grad_accum_steps=2)
    single, placed = state, parallel.place_state(state)
    for batch in batches:
        single, expected = STEP(single, batch)
        placed, metrics = parallel.train_step(placed, parallel.place_batch(batch))
        np.testing.assert_allclose(metrics["loss"], expected["loss"], rtol=1e-5, atol=1e-6)
    chex.assert_trees_all_close(parallel.host_state(placed).params, single.params, atol=1e-5)


def test_per_device_batch_must_split_into_micro_batches(eight_devices):
    with pytest.raises(ConfigError, match="per-device batch 2 .* not divisible by --grad-accum-steps 4"):
        Parallel("pmap", losses.classification, 16, 64, grad_accum_steps=4)
    with pytest.raises(ConfigError, match="--batch-size 30 is not divisible by --grad-accum-steps 4"):
        Parallel("none", losses.classification, 30, 64, grad_accum_steps=4)


# Mixed precision.

def test_bfloat16_step_keeps_float32_params_and_grads():
    state, batch, _ = _state()  # TX asserts float32 gradients while the step is traced
    assert "bf16[" in str(jax.make_jaxpr(STEP_BF16)(state, batch)), "the forward pass must run in bfloat16"
    new_state, metrics = STEP_BF16(state, batch)
    _, reference = STEP(state, batch)
    leaves = jax.tree.leaves((new_state.params, new_state.opt_state))
    assert {leaf.dtype for leaf in leaves if jnp.issubdtype(leaf.dtype, jnp.floating)} == {jnp.dtype(jnp.float32)}
    assert metrics["loss"].dtype == jnp.float32
    np.testing.assert_allclose(metrics["loss"], reference["loss"], rtol=2e-2)
    sums = jax.jit(make_eval_step(losses.classification, precision="bfloat16"))(
        state, dict(batch, mask=np.ones(B, np.float32))
    )
    assert sums["loss"].dtype == jnp.float32
    np.testing.assert_allclose(sums["loss"] / B, reference["loss"], rtol=2e-2)


def test_bfloat16_training_reduces_the_loss():
    state, batch, _ = _state()
    losses_ = []
    for _ in range(15):
        state, metrics = STEP_BF16(state, batch)
        losses_.append(float(metrics["loss"]))
    assert losses_[-1] < 0.5 * losses_[0], losses_


def test_bfloat16_leaves_token_ids_alone():
    ids = np.random.default_rng(0).integers(0, 16, (8, 5)).astype(np.int32)
    state = jax.eval_shape(lambda: create_train_state(TokenMLP(), TX, ids, jax.random.PRNGKey(0)))
    jaxpr = str(jax.make_jaxpr(STEP_BF16)(state, {"x": ids, "y": ids[:, 0] % 4}))  # nn.Embed raises on float ids
    assert "bf16[8,5,8]" in jaxpr, "the embeddings must be looked up in bfloat16"
    cast = cast_floating({"ids": ids, "x": np.ones(3, np.float32)}, jnp.bfloat16)
    assert cast["ids"].dtype == np.int32 and cast["x"].dtype == jnp.bfloat16


# Asynchronous prefetch.

def _prefetch_threads():
    return {t for t in threading.enumerate() if t.name == "nnjax-prefetch"}


@settings(deadline=None, max_examples=15)
@given(n=st.integers(0, 12), size=st.integers(0, 4))
def test_prefetch_keeps_order_and_content(n, size):
    items = [{"x": np.full((2, 3), i, np.float32)} for i in range(n)]
    out = list(prefetch(iter(items), size, place=lambda b: {"x": b["x"] * 2}))
    assert len(out) == n
    for i, batch in enumerate(out):
        np.testing.assert_array_equal(batch["x"], 2 * items[i]["x"])


def test_prefetch_places_on_device_by_default():
    (batch,) = prefetch([{"x": np.arange(4)}])
    assert isinstance(batch["x"], jax.Array)


def test_prefetch_reraises_producer_errors():
    def source():
        yield 1
        yield 2
        raise RuntimeError("disk on fire")

    batches = prefetch(source(), 2, place=lambda b: b)
    assert [next(batches), next(batches)] == [1, 2]
    with pytest.raises(RuntimeError, match="disk on fire"):
        next(batches)
    with pytest.raises(ZeroDivisionError):
        list(prefetch([1, 0], 1, place=lambda b: 1 / b))


@pytest.mark.parametrize("how", ["close", "garbage"])
def test_prefetch_early_stop_ends_the_thread(how):
    before = _prefetch_threads()
    batches = prefetch(itertools.count(), 2, place=lambda b: b)
    assert [next(batches) for _ in range(3)] == [0, 1, 2]
    (thread,) = _prefetch_threads() - before
    if how == "close":
        batches.close()
    else:
        del batches
    thread.join(timeout=5)
    assert not thread.is_alive()


def test_prefetch_size_zero_uses_no_thread():
    before = _prefetch_threads()
    batches = prefetch(iter(range(3)), 0, place=lambda b: b + 1)
    assert next(batches) == 1 and _prefetch_threads() == before
    assert list(batches) == [2, 3]
    with pytest.raises(ValueError, match="prefetch size must be >= 0"):
        prefetch([], -1)


# --steps and fit end to end.

def _config(tmp_path, name, **overrides):
    fields = dict(batch_size=B, learning_rate=3e-3, workdir=str(tmp_path / name), eval_batch_size=64,
                  log_every_steps=4, validation_fraction=0.0)
    return TrainConfig(**(fields | overrides))


def test_steps_stop_mid_epoch_accumulate_and_resume_bit_identically(tmp_path):
    """--steps 12 with 8 steps per epoch and --grad-accum-steps 2 (scan path, chunks of 4 steps):
    exactly 12 K=1 steps on the documented shuffle (oracle), and a run resumed from its step-4
    checkpoint ends bit-identical, with the same metrics.jsonl."""
    data = blob_dataset()  # 256 training examples: 8 steps per epoch
    config = _config(tmp_path, "reference", steps=12, grad_accum_steps=2, checkpoint_every_steps=4,
                     checkpoint_every_epochs=0)
    reference = fit(config, MODEL, data, losses.classification, experiment="test", tx=TX)
    assert int(reference.state.step) == reference.summary["steps"] == 12 and reference.summary["epochs"] == 1.5
    epochs = [row for row in reference.history if row["kind"] == "epoch"]
    assert [(row["epoch"], row["step"]) for row in epochs] == [(1, 8), (2, 12)]
    assert [row["steps"] for row in reference.history if row["kind"] == "train"] == [4, 4, 4]
    saved = sorted(int(p.name) for p in (tmp_path / "reference" / "checkpoints").iterdir() if p.name.isdigit())
    assert saved == [4, 8, 12]

    oracle, _, _ = _state()  # what fit initialises: MODEL with TX on the first B examples, key PRNGKey(seed=0)
    idx_SxB = np.concatenate([epoch_batch_indices(256, B, config.seed, epoch) for epoch in (0, 1)])
    for idx_B in idx_SxB[:12]:
        oracle, _ = STEP(oracle, {k: v[idx_B] for k, v in data.train.items()})
    chex.assert_trees_all_close(reference.state.params, oracle.params, atol=1e-5)

    # A run killed after its step-4 checkpoint: the reference's run directory without what came later.
    shutil.copytree(tmp_path / "reference", tmp_path / "resumed")
    for step in ("8", "12"):
        shutil.rmtree(tmp_path / "resumed" / "checkpoints" / step)
    config = dataclasses.replace(config, workdir=str(tmp_path / "resumed"))
    resumed = fit(config, MODEL, data, losses.classification, experiment="test", tx=TX)
    assert int(resumed.state.step) == 12
    jax.tree.map(np.testing.assert_array_equal, resumed.state.params, reference.state.params)
    assert resumed.history == reference.history


# Config validation through the CLI entry point.

@pytest.mark.parametrize(
    "argv, message",
    [
        (["--batch-size", "30", "--grad-accum-steps", "4"], "--batch-size 30 is not divisible by --grad-accum-steps 4"),
        (["--grad-accum-steps", "0"], "--grad-accum-steps must be >= 1, got 0"),
        (["--steps", "-1"], "--steps must be >= 0"),
        (["--prefetch", "-2"], "--prefetch must be >= 0"),
    ],
)
def test_bad_option_values_are_config_errors(argv, message, capsys):
    assert cli.run(lambda config: {}, TrainConfig, argv, prog="t") == 2
    assert message in capsys.readouterr().err


def test_unknown_precision_is_rejected(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.run(lambda config: {}, TrainConfig, ["--precision", "float16"], prog="t")
    assert exit_info.value.code == 2
    assert "--precision: invalid choice: 'float16'" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="--precision must be one of float32, bfloat16"):
        TrainConfig(precision="float16").validate()
