"""``--parallel fsdp`` (``nnjax.train.sharding``) on 8 fake CPU devices: the rules table, where each leaf of the
state lives, bytes per device, the same training as one device, and sharded checkpoints restored on another mesh.

The two-process fsdp run is one of ``tests/test_distributed.py``'s cases.
"""

import chex
import flax.linen as nn
import hypothesis
import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from nnjax import losses
from nnjax.errors import ConfigError
from nnjax.models import MnistCNN
from nnjax.models.transformer import TransformerLM
from nnjax.train import Checkpointer, Parallel, checkpoint, create_train_state, read_checkpoint
from nnjax.train.parallel import global_put
from nnjax.train.sharding import make_mesh, param_logical_axes, param_spec

LM = TransformerLM(vocab_size=17, block_size=8, d_model=16, num_heads=2, num_layers=1)
B = 8


def _lm_batches(n: int) -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(0)
    ids = rng.integers(1, 17, (n, B, 9)).astype(np.int32)
    return [{"x": ids[i, :, :-1], "y": ids[i, :, 1:]} for i in range(n)]


@pytest.fixture(scope="module")
def lm_state():
    x = _lm_batches(1)[0]["x"]
    return jax.device_get(create_train_state(LM, optax.adamw(1e-2), x, jax.random.PRNGKey(0))), x


def test_rules_map_names_to_mesh_axes_and_keep_indivisible_axes_whole(eight_devices):
    mesh = make_mesh(2)  # data 4 x model 2
    assert param_spec((16, 64), ("embed", "mlp"), mesh) == P("data", "model")
    assert param_spec((16, 2, 8), ("embed", "heads", "kv"), mesh) == P("data", "model", None)
    assert param_spec((17, 16), ("vocab", "embed"), mesh) == P(None, "data"), "17 rows do not split over 2"
    assert param_spec((6, 16), ("embed", "mlp"), mesh) == P(None, "model"), "6 does not split over 4"
    # Without names: data on the largest axis it divides; nothing to split: replicated.
    assert param_spec((3, 3, 1, 32), None, mesh) == P(None, None, None, "data")
    assert param_spec((10,), None, mesh) == P()
    assert param_spec((), None, mesh) == P()
    assert param_spec((64, 16), None, make_mesh(8)) == P(), "a data axis of 1 splits nothing"


def test_the_lm_names_its_params_only_when_asked(lm_state):
    _, x = lm_state
    axes = param_logical_axes(LM, x)
    assert axes[("block_0", "mlp_in", "kernel")] == ("embed", "mlp")
    assert axes[("block_0", "attention", "out", "kernel")] == ("heads", "kv", "embed")
    assert axes[("token_embed", "embedding")] == ("vocab", "embed")
    assert ("block_0", "ln_mlp", "scale") not in axes
    plain = LM.init(jax.random.PRNGKey(0), x)["params"]
    assert not any(isinstance(leaf, nn.LogicallyPartitioned)
                   for leaf in jax.tree.leaves(plain, is_leaf=lambda v: isinstance(v, nn.LogicallyPartitioned)))


def test_placed_state_is_sharded_where_the_rules_say(eight_devices, lm_state):
    state, x = lm_state
    parallel = Parallel("fsdp", losses.next_token, B, B, model_parallel=2, param_axes=param_logical_axes(LM, x))
    placed = parallel.place_state(state)
    mlp_in = placed.params["block_0"]["mlp_in"]["kernel"]  # [16, 64]: embed over data 4, mlp over model 2
    assert {shard.data.shape for shard in mlp_in.addressable_shards} == {(4, 32)}
    assert len({(shard.index[0].start, shard.index[1].start) for shard in mlp_in.addressable_shards}) == 8
    mu = placed.opt_state[0].mu["block_0"]["mlp_in"]["kernel"]
    assert mu.sharding == mlp_in.sharding, "Adam's moments live where their parameter does"
    query = placed.params["block_0"]["attention"]["query"]["kernel"]  # [16, 2, 8]
    assert {shard.data.shape for shard in query.addressable_shards} == {(4, 1, 8)}
    assert placed.step.sharding.is_fully_replicated and placed.rng.sharding.is_fully_replicated
    replicated = Parallel("jit", losses.next_token, B, B).state_bytes_per_device(state)
    fsdp8 = Parallel("fsdp", losses.next_token, B, B, param_axes=param_logical_axes(LM, x))
    fsdp8.place_state(state)
    params_bytes = sum(leaf.nbytes for leaf in jax.tree.leaves(state.params))
    assert replicated == 3 * params_bytes + 4, "params, Adam's mu and nu, its int32 step count"
    assert fsdp8.state_bytes_per_device(state) * 4 <= replicated


@pytest.mark.parametrize("model_parallel", [1, 2])
def test_fsdp_steps_train_as_one_device(eight_devices, lm_state, model_parallel):
    state, x = lm_state
    single = Parallel("none", losses.next_token, B, B)
    fsdp = Parallel("fsdp", losses.next_token, B, B, model_parallel=model_parallel,
                    param_axes=param_logical_axes(LM, x))
    s1, s2 = single.place_state(state), fsdp.place_state(state)
    for batch in _lm_batches(3):
        s1, m1 = single.train_step(s1, single.place_batch(batch))
        s2, m2 = fsdp.train_step(s2, fsdp.place_batch(batch))
        np.testing.assert_allclose(m2["loss"], m1["loss"], rtol=1e-5)
    ours, theirs = fsdp.host_state(s2).params, single.host_state(s1).params
    for tree in (ours, theirs):  # a key bias's exact gradient is 0: Adam amplifies rounding noise there
        tree["block_0"]["attention"]["key"].pop("bias")
    chex.assert_trees_all_close(ours, theirs, atol=1e-5)


def test_a_model_without_names_is_sharded_by_shape(eight_devices):
    x = np.zeros((B, 8, 8, 1), np.float32)
    state = jax.device_get(create_train_state(MnistCNN(num_classes=4), optax.adam(1e-3), x, jax.random.PRNGKey(0)))
    parallel = Parallel("fsdp", losses.classification, B, B)
    placed = parallel.place_state(state)
    kernels = [leaf for leaf in jax.tree.leaves(placed.params) if leaf.ndim >= 2]  # conv, hidden and logits
    assert len(kernels) == 3 and all(not leaf.sharding.is_fully_replicated for leaf in kernels)
    assert parallel.state_bytes_per_device(state) < Parallel("jit", losses.classification, B, B).state_bytes_per_device(state)


def test_model_parallel_needs_fsdp_and_a_divisor_of_the_devices(eight_devices):
    with pytest.raises(ConfigError, match="--model-parallel 2 needs --parallel fsdp"):
        Parallel("jit", losses.classification, B, B, model_parallel=2)
    with pytest.raises(ConfigError, match="--model-parallel 3 does not divide the 8 devices"):
        Parallel("fsdp", losses.classification, B, B, model_parallel=3)
    with pytest.raises(ConfigError, match="--batch-size 6 is not divisible by the 4 data-parallel replicas"):
        Parallel("fsdp", losses.classification, 6, 8, model_parallel=2)


def test_a_sharded_checkpoint_is_restored_into_another_meshs_shardings(eight_devices, lm_state, tmp_path):
    """Saved from a 4 x 2 mesh as sharded arrays, restored through ``restore_target`` of a 2 x 4 mesh: every leaf
    arrives with that mesh's sharding and the saved values."""
    state, x = lm_state
    axes = param_logical_axes(LM, x)
    saving = Parallel("fsdp", losses.next_token, B, B, model_parallel=2, param_axes=axes)
    checkpoints = Checkpointer(str(tmp_path / "checkpoints"), 2)
    checkpoints.save(saving.checkpoint_state(saving.place_state(state)), 1)
    checkpoints.close()
    restoring = Parallel("fsdp", losses.next_token, B, B, model_parallel=4, param_axes=axes)
    target = restoring.restore_target(state)
    step, restored = Checkpointer(str(tmp_path / "checkpoints"), 2).restore(target)
    assert step == 1
    for leaf, wanted in zip(jax.tree.leaves(restored), jax.tree.leaves(target)):
        assert leaf.sharding == wanted.sharding
    mlp_in = restored.params["block_0"]["mlp_in"]["kernel"]  # [16, 64]: embed over data 2, mlp over model 4
    assert {shard.data.shape for shard in mlp_in.addressable_shards} == {(8, 16)}
    kept = global_put(restored, restoring.state_shardings)  # placed already: kept, as no process has them whole
    assert all(a is b for a, b in zip(jax.tree.leaves(kept), jax.tree.leaves(restored)))
    chex.assert_trees_all_equal(jax.device_get(restored), state)
    chex.assert_trees_all_equal(read_checkpoint(str(tmp_path / "checkpoints"))[1]["params"], state.params)


@pytest.mark.parametrize("dtype", [np.float32, jnp.bfloat16, np.int32, np.uint32, np.int8, np.bool_])
def test_checksums_of_sharded_arrays_are_those_of_their_host_copy(eight_devices, dtype):
    rng = np.random.default_rng(0)
    host = {"m": (rng.normal(size=(8, 6)) * 50).astype(dtype), "s": np.asarray(3, dtype), "v": rng.normal(size=5)}
    host["v"] = host["v"].astype(dtype)
    mesh = make_mesh(2)
    specs = {"m": P("data", "model"), "s": P(), "v": P()}
    placed = {k: jax.device_put(v, NamedSharding(mesh, specs[k])) for k, v in host.items()}
    on_device, finite = checkpoint._device_checksums(jax.tree.leaves(placed))
    sums = np.asarray(on_device).reshape(-1, 2)
    assert [f"{a:08x}{b:08x}" for a, b in sums] == list(checkpoint.state_checksums(host)[0].values())
    assert bool(finite)


@hypothesis.settings(max_examples=50, deadline=None)
@hypothesis.given(st.integers(0, 11), st.integers(0, 11), st.integers(0, 31))
def test_any_changed_value_or_swap_changes_a_checksum(i, j, bit):
    words = np.random.default_rng(1).integers(0, 2**32, 12, dtype=np.uint32)
    original = checkpoint.state_checksums({"w": words.view(np.float32)})[0]
    flipped = words.copy()
    flipped[i] ^= np.uint32(1 << bit)
    assert checkpoint.state_checksums({"w": flipped.view(np.float32)})[0] != original
    if words[i] != words[j]:
        swapped = words.copy()
        swapped[[i, j]] = words[[j, i]]
        assert checkpoint.state_checksums({"w": swapped.view(np.float32)})[0] != original
