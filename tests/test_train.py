"""Trainer tests: steps against a hand-written optax oracle, scan vs loop, fit end to end,
NaN guard, determinism and data-parallel equivalence on 8 fake CPU devices."""

import json
import re

import chex
import jax
import numpy as np
import optax
import pytest
from conftest import blob_dataset

from nnjax import losses
from nnjax.config import TrainConfig
from nnjax.data import epoch_batch_indices
from nnjax.errors import ConfigError, TrainingDivergedError
from nnjax.models import MLP, MnistCNN
from nnjax.tasks import fit
from nnjax.train import Checkpointer, Parallel, create_train_state, make_eval_step, make_train_chunk, make_train_step

B = 16


def _state(model=None, lr=1e-2, batch=None):
    data = blob_dataset()
    model = model or MLP(features=(32, data.num_classes))
    x = data.train["x"][:B] if batch is None else batch["x"]
    return create_train_state(model, optax.adam(lr), x, jax.random.PRNGKey(0)), data


def _batches(data, n):
    return [{k: v[i * B : (i + 1) * B] for k, v in data.train.items()} for i in range(n)]


class TrainStepTest(chex.TestCase):
    @chex.variants(with_jit=True, without_jit=True)
    def test_step_equals_optax_oracle(self):
        state, data = _state()
        batch = _batches(data, 1)[0]

        def mean_loss(params):
            logits = state.apply_fn({"params": params}, batch["x"])
            return optax.softmax_cross_entropy_with_integer_labels(logits, batch["y"]).mean()

        grads = jax.grad(mean_loss)(state.params)
        updates, _ = optax.adam(1e-2).update(grads, state.opt_state, state.params)
        expected = optax.apply_updates(state.params, updates)

        new_state, metrics = self.variant(make_train_step(losses.classification))(state, batch)
        chex.assert_trees_all_close(new_state.params, expected, atol=1e-6)
        np.testing.assert_allclose(metrics["loss"], mean_loss(state.params), rtol=1e-6)
        assert int(new_state.step) == 1
        assert not np.array_equal(new_state.rng, state.rng), "the PRNG key must advance every step"

    @chex.variants(with_jit=True, without_jit=True)
    def test_eval_step_sums_only_unmasked_rows(self):
        state, data = _state()
        batch = dict(_batches(data, 1)[0], mask=np.array([1.0] * 10 + [0.0] * 6, np.float32))
        sums = self.variant(make_eval_step(losses.classification))(state, batch)
        logits = state.apply_fn({"params": state.params}, batch["x"][:10])
        per_example = optax.softmax_cross_entropy_with_integer_labels(logits, batch["y"][:10])
        np.testing.assert_allclose(sums["loss"], per_example.sum(), rtol=1e-5)
        np.testing.assert_allclose(sums["accuracy"], (logits.argmax(-1) == batch["y"][:10]).sum())
        assert float(sums["count"]) == 10


def test_scan_chunk_equals_sequential_steps():
    state, data = _state(MnistCNN(num_classes=4))
    step = make_train_step(losses.classification)
    idx = np.arange(4 * B, dtype=np.int32).reshape(4, B)
    scanned, metrics = jax.jit(make_train_chunk(step))(state, data.train, idx)
    chex.assert_shape(metrics["loss"], (4,))
    looped = state
    for i in range(4):
        looped, _ = jax.jit(step)(looped, {k: v[idx[i]] for k, v in data.train.items()})
    chex.assert_trees_all_close(scanned.params, looped.params, atol=1e-5)
    # num_steps=3 of a 4-row chunk: the 4th step leaves the state alone and reports zeros.
    partial, metrics = jax.jit(make_train_chunk(step))(state, data.train, idx, np.int32(3))
    looped = state
    for i in range(3):
        looped, _ = jax.jit(step)(looped, {k: v[idx[i]] for k, v in data.train.items()})
    chex.assert_trees_all_close(partial.params, looped.params, atol=1e-5)
    assert int(partial.step) == 3 and float(metrics["loss"][3]) == 0.0 and float(metrics["loss"][2]) > 0


def _config(tmp_path, name="run", **overrides):
    fields = dict(epochs=3, batch_size=32, learning_rate=3e-3, workdir=str(tmp_path / name), eval_batch_size=64,
                  log_every_steps=3)
    return TrainConfig(**(fields | overrides))


def test_fit_learns_and_writes_run_directory(tmp_path):
    data = blob_dataset()
    result = fit(_config(tmp_path), MnistCNN(num_classes=4), data, losses.classification, experiment="test")
    workdir = tmp_path / "run"
    epochs = [row for row in result.history if row["kind"] == "epoch"]
    assert [row["epoch"] for row in epochs] == [1, 2, 3]
    assert epochs[-1]["train_loss"] < epochs[0]["train_loss"]
    assert result.summary["test_accuracy"] > 0.9, result.summary
    assert result.summary["steps"] == 3 * (205 // 32) == int(result.state.step)
    for name in ("config.json", "metrics.jsonl", "learning_curves.png", "tensorboard"):
        assert (workdir / name).exists(), name
    assert json.loads((workdir / "config.json").read_text())["batch_size"] == 32
    with open(workdir / "metrics.jsonl") as f:
        assert [json.loads(line) for line in f] == result.history
    assert Checkpointer(str(workdir / "checkpoints"), 3).latest_step() == result.summary["steps"]


def test_scan_and_loop_paths_agree(tmp_path):
    data = blob_dataset()
    model = MnistCNN(num_classes=4)
    scanned = fit(_config(tmp_path, "scan"), model, data, losses.classification, experiment="test")
    looped = fit(_config(tmp_path, "loop", scan_epoch=False), model, data, losses.classification, experiment="test")
    chex.assert_trees_all_close(scanned.state.params, looped.state.params, atol=1e-4)
    assert scanned.summary["test_accuracy"] == looped.summary["test_accuracy"]


def test_same_seed_gives_identical_metrics(tmp_path):
    data = blob_dataset()
    for name in ("a", "b"):
        fit(_config(tmp_path, name, epochs=2), MLP(features=(16, 4)), data, losses.classification, experiment="test")
    assert (tmp_path / "a" / "metrics.jsonl").read_text() == (tmp_path / "b" / "metrics.jsonl").read_text()
    fit(_config(tmp_path, "c", epochs=2, seed=1), MLP(features=(16, 4)), data, losses.classification, experiment="t")
    assert (tmp_path / "a" / "metrics.jsonl").read_text() != (tmp_path / "c" / "metrics.jsonl").read_text()


def _checkpoint_steps(workdir):
    directory = workdir / "checkpoints"
    return sorted(int(d.name) for d in directory.iterdir() if d.name.isdigit())


def test_nan_guard_names_the_step_and_keeps_last_good_checkpoint(tmp_path):
    data = blob_dataset()
    config = _config(tmp_path, epochs=3, validation_fraction=0.0, checkpoint_every_steps=2, log_every_steps=3)
    # Chunks of epoch 0 end at steps 2, 3, 4, 6, 8 and checkpoints are written at 2, 4, 6, 8. Poison an
    # example of step 6's batch, taken from the documented shuffle: step 6 is the second step of chunk
    # [4, 6) and a checkpoint step, so steps 2 and 4 are checkpointed, step 5 trains but is not saved.
    nan_step = 6
    poisoned = int(epoch_batch_indices(256, 32, config.seed, 0)[nan_step - 1, 7])
    data.train["x"][poisoned, 0, 0, 0] = np.nan  # its batch's loss (and every later param) becomes NaN
    model = MLP(features=(8, 4))
    with pytest.raises(TrainingDivergedError, match=rf"at step {nan_step};.*Last good checkpoint: step 4 in"):
        fit(config, model, data, losses.classification, experiment="test")
    workdir = tmp_path / "run"
    assert _checkpoint_steps(workdir) == [2, 4]  # nothing at or after the NaN step
    # Oracle: the same run on the same (poisoned) data stopped after step 4, before it meets the NaN.
    stopped = fit(_config(tmp_path, "stopped", epochs=3, validation_fraction=0.0, checkpoint_every_steps=2,
                          log_every_steps=3, steps=4), model, data, losses.classification, experiment="test")
    assert int(stopped.state.step) == 4
    checkpoints = Checkpointer(str(workdir / "checkpoints"), 3)
    try:
        assert checkpoints.latest_step() == 4
        _, restored = checkpoints.restore(jax.tree.map(np.zeros_like, stopped.state))  # structure only
    finally:
        checkpoints.close()
    assert int(restored.step) == 4
    assert all(np.isfinite(leaf).all() for leaf in jax.tree.leaves(restored.params))
    chex.assert_trees_all_equal(restored.params, stopped.state.params)
    chex.assert_trees_all_equal(restored.opt_state, stopped.state.opt_state)
    chex.assert_trees_all_equal(restored.rng, stopped.state.rng)


def test_resume_with_another_model_is_a_config_error(tmp_path):
    data = blob_dataset()
    fit(_config(tmp_path, epochs=1), MLP(features=(8, 4)), data, losses.classification, experiment="test")
    with pytest.raises(ConfigError, match="written by a different model .first difference: this model float.9., the checkpoint float.8."):
        fit(_config(tmp_path, epochs=2), MLP(features=(9, 4)), data, losses.classification, experiment="test")


def test_batch_larger_than_data_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="--batch-size 512 is larger"):
        fit(_config(tmp_path, batch_size=512), MLP(features=(4,)), blob_dataset(), losses.classification, "test")


# Data parallelism on 8 fake CPU devices.

@pytest.mark.parametrize("mode", ["jit", "pmap"])
def test_parallel_steps_match_single_device(eight_devices, mode):
    del eight_devices
    state, data = _state(MnistCNN(num_classes=4))
    batch_size = 32
    batches = [{k: v[i * batch_size : (i + 1) * batch_size] for k, v in data.train.items()} for i in range(3)]
    single = Parallel("none", losses.classification, batch_size, 64)
    parallel = Parallel(mode, losses.classification, batch_size, 64)
    state = jax.device_get(state)  # host copy: each placement gets its own buffers to donate
    s1, s2 = single.place_state(state), parallel.place_state(state)
    for batch in batches:
        s1, m1 = single.train_step(s1, single.place_batch(batch))
        s2, m2 = parallel.train_step(s2, parallel.place_batch(batch))
        np.testing.assert_allclose(m2["loss"], m1["loss"], rtol=1e-5, atol=1e-6)
    chex.assert_trees_all_close(parallel.host_state(s2).params, single.host_state(s1).params, atol=1e-5)
    eval_batch = dict({k: v[:64] for k, v in data.test.items()}, mask=np.ones(64, np.float32))
    chex.assert_trees_all_close(
        parallel.eval_step(s2, parallel.place_batch(eval_batch)), single.eval_step(s1, single.place_batch(eval_batch)),
        rtol=1e-5,
    )


@pytest.mark.parametrize("mode", ["jit", "pmap", "fsdp"])
def test_fit_parallel_matches_single_device(eight_devices, tmp_path, mode):
    del eight_devices
    data = blob_dataset()
    model = MLP(features=(16, 4))
    base = fit(_config(tmp_path, "none"), model, data, losses.classification, experiment="test")
    other = fit(_config(tmp_path, mode, parallel=mode), model, data, losses.classification, experiment="test")
    chex.assert_trees_all_close(other.state.params, base.state.params, atol=1e-5)
    assert other.summary["test_loss"] == pytest.approx(base.summary["test_loss"], abs=1e-5)


@pytest.mark.parametrize("mode", ["jit", "pmap"])
def test_indivisible_batch_is_a_clear_value_error(eight_devices, mode):
    with pytest.raises(ValueError, match="--batch-size 30 is not divisible by the 8 devices"):
        Parallel(mode, losses.classification, 30, 64)


def _entry_parameter_shapes(hlo_text: str) -> list[str]:
    """The shapes of the compiled module's entry parameters, e.g. ``f32[4,8,8,1]``."""
    entry = next(line for line in hlo_text.splitlines() if line.startswith("ENTRY"))
    return re.findall(r"[a-z]\d+\[[\d,]*\]", entry.split("->")[0])


@pytest.mark.parametrize("mode", ["jit", "pmap"])
def test_parallel_step_splits_the_batch_and_all_reduces_gradients(eight_devices, mode):
    state, data = _state(MLP(features=(24, 4)))  # no parameter has a dimension of 32
    parallel = Parallel(mode, losses.classification, 32, 64)
    batch = parallel.place_batch({k: v[:32] for k, v in data.train.items()})
    placed = parallel.place_state(jax.device_get(state))
    hlo = parallel.lower("train_step", placed, batch).compile().as_text()
    # Each device's program sees its 4 of the 32 rows: [4, 8, 8, 1] images and [4] labels, never all 32
    # (pmap's per-device program keeps a leading axis of 1).
    lead = "1," if mode == "pmap" else ""
    shapes = _entry_parameter_shapes(hlo)
    assert f"f32[{lead}4,8,8,1]" in shapes and f"s32[{lead}4]" in shapes, shapes
    assert not {f"f32[{lead}32,8,8,1]", f"s32[{lead}32]"} & set(shapes), shapes
    assert re.search(r"all-reduce(-start)?\(", hlo), "the gradient mean over devices is missing"
    if mode == "jit":
        shards = batch["x"].addressable_shards
        assert {shard.device for shard in shards} == set(eight_devices)
        assert sorted(shard.index[0].start for shard in shards) == list(range(0, 32, 4))
        assert all(shard.data.shape == (4, 8, 8, 1) for shard in shards)


def test_single_device_step_has_no_all_reduce():
    state, data = _state(MLP(features=(24, 4)))
    single = Parallel("none", losses.classification, 32, 64)
    batch = single.place_batch({k: v[:32] for k, v in data.train.items()})
    hlo = single.lower("train_step", single.place_state(jax.device_get(state)), batch).compile().as_text()
    assert "f32[32,8,8,1]" in _entry_parameter_shapes(hlo) and "all-reduce" not in hlo


def test_parallel_jit_scan_shards_each_step_and_all_reduces(eight_devices):
    state, data = _state()
    parallel = Parallel("jit", losses.classification, 32, 64)
    idx = np.arange(64, dtype=np.int32).reshape(2, 32)
    placed = parallel.place_state(jax.device_get(state))
    hlo = parallel.lower("train_chunk", placed, parallel.place_data(data.train), idx, np.int32(2)).compile().as_text()
    assert re.search(r"all-reduce(-start)?\(", hlo), "the scanned step's gradient mean over devices is missing"
    assert "f32[4,8,8,1]" in hlo, "each device's step should gather only its 4 rows of the batch"
