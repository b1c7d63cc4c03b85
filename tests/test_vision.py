"""SimpleCNN (seed 004·11), CIFAR-10 through tensorflow-datasets, and DynamicNetwork (seed 002·7).

Oracles: the forward passes written out with ``lax.conv_general_dilated``, ``flax.linen.max_pool``
and plain matmuls / BatchNorm formulas; ``jax.grad`` for which parameters a stage set touches;
``tfds.testing.mock_data`` for CIFAR-10 (no network, no prepared data).
"""

from __future__ import annotations

import functools
import json
import os
import time

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from experiments import cifar_cnn, dynamic_network
from nnjax import cli
from nnjax.data import load_dataset
from nnjax.errors import ConfigError, ShapeError
from nnjax.models.cnn import SimpleCNN
from nnjax.models.dynamic import (
    BN_EPSILON,
    DynamicClassifier,
    DynamicNetwork,
    evaluation_sets,
    parse_active_layers,
    validate_active_layers,
)

# --------------------------------------------------------------------------------------------
# SimpleCNN
# --------------------------------------------------------------------------------------------


def random_variables(init, *args, seed=0, **kwargs):
    """Variables shaped like ``init(key, *args, **kwargs)``'s, drawn with numpy: 0.2 * N(0, 1), BatchNorm
    variances U(0.5, 1.5). Tests use these instead of compiling the initializers (seconds of XLA time)."""
    shapes = jax.eval_shape(functools.partial(init, **kwargs), jax.random.PRNGKey(0), *args)
    rng = np.random.default_rng(seed)

    def draw(path, leaf):
        if path[-1].key == "var":
            return rng.uniform(0.5, 1.5, leaf.shape).astype(np.float32)
        return (0.2 * rng.standard_normal(leaf.shape)).astype(np.float32)

    return jax.tree_util.tree_map_with_path(draw, shapes)


def conv_same(x, kernel, bias=None):
    """NHWC/HWIO 'SAME' convolution by XLA's native op (the oracle for the im2col Conv2D)."""
    y = jax.lax.conv_general_dilated(x, kernel, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))
    return y if bias is None else y + bias


def simple_cnn_oracle(params, x):
    """The seed's forward: pool(relu(conv1)) -> pool(relu(conv2)) -> flatten -> fc, with flax's max_pool."""
    for name in ("conv1", "conv2"):
        x = nn.max_pool(jax.nn.relu(conv_same(x, params[name]["kernel"], params[name]["bias"])), (2, 2), (2, 2))
    return x.reshape(x.shape[0], -1) @ params["fc"]["kernel"] + params["fc"]["bias"]


def test_simple_cnn_seed_shapes_param_count_and_oracle():
    model = SimpleCNN()
    x = np.random.default_rng(1).standard_normal((2, 32, 32, 3)).astype(np.float32)
    params = random_variables(model.init, x)["params"]
    assert jax.tree.map(jnp.shape, params) == {
        "conv1": {"kernel": (3, 3, 3, 16), "bias": (16,)},
        "conv2": {"kernel": (3, 3, 16, 32), "bias": (32,)},
        "fc": {"kernel": (32 * 8 * 8, 10), "bias": (10,)},
    }
    assert sum(p.size for p in jax.tree.leaves(params)) == 16 * 3 * 3 * 3 + 16 + 32 * 16 * 9 + 32 + 2048 * 10 + 10
    logits, oracle = jax.jit(lambda p, x: (model.apply({"params": p}, x), simple_cnn_oracle(p, x)))(params, x)
    chex.assert_shape(logits, (2, 10))
    chex.assert_trees_all_close(logits, oracle, atol=1e-4, rtol=1e-4)


def test_simple_cnn_flatten_follows_input_and_rejects_bad_shapes():
    model = SimpleCNN(num_classes=7)
    variables = jax.eval_shape(model.init, jax.random.PRNGKey(0), jnp.zeros((1, 28, 28, 1)))
    assert variables["params"]["fc"]["kernel"].shape == (7 * 7 * 32, 7)
    assert jax.eval_shape(model.apply, variables, jnp.zeros((3, 28, 28, 1))).shape == (3, 7)
    for shape in ((1, 30, 32, 3), (1, 32, 2, 3), (32, 32, 3)):
        with pytest.raises(ShapeError, match=r"multiples of 4"):
            jax.eval_shape(model.init, jax.random.PRNGKey(0), jnp.zeros(shape))


# --------------------------------------------------------------------------------------------
# CIFAR-10 through tensorflow-datasets, and the experiment's CLI
# --------------------------------------------------------------------------------------------


def test_cifar10_loads_under_mock(tmp_path):
    tfds = pytest.importorskip("tensorflow_datasets")
    with tfds.testing.mock_data(num_examples=12):
        dataset = load_dataset("cifar10", data_dir=str(tmp_path))
    assert dataset.input_shape == (32, 32, 3) and dataset.num_classes == 10
    for split in (dataset.train, dataset.test):
        chex.assert_shape(split["x"], (12, 32, 32, 3))
        assert split["x"].dtype == np.float32 and split["y"].dtype == np.int32
        assert 0.0 <= split["x"].min() and 0.0 < split["x"].max() <= 1.0
        assert set(np.unique(split["y"])) <= set(range(10))


def test_cifar_cnn_unprepared_exits_2_fast_with_how_to(tmp_path, capsys):
    pytest.importorskip("tensorflow_datasets")
    start = time.perf_counter()
    argv = ["--data-dir", str(tmp_path), "--workdir", str(tmp_path / "run")]
    code = cli.run(cifar_cnn.main, cifar_cnn.Config, argv, prog="cifar_cnn")
    elapsed = time.perf_counter() - start
    assert code == 2 and elapsed < 5.0, (code, elapsed)
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("cifar_cnn: error:"), lines
    for hint in ("cifar10", "--download", "TFDS_DATA_DIR", "--data-dir", "--data digits", "--data mnist5k"):
        assert hint in lines[0], hint


def test_cifar_cnn_cli_trains_on_mock_cifar10(tmp_path, capsys):
    tfds = pytest.importorskip("tensorflow_datasets")
    workdir = tmp_path / "run"
    argv = ["--data-dir", str(tmp_path), "--workdir", str(workdir), "--steps", "2", "--batch-size", "8",
            "--eval-batch-size", "8", "--no-scan-epoch"]
    with tfds.testing.mock_data(num_examples=20):
        assert cli.run(cifar_cnn.main, cifar_cnn.Config, argv) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["data"] == "cifar10" and summary["steps"] == 2 and summary["train_examples"] == 16
    assert 0.0 <= summary["test_accuracy"] <= 1.0 and np.isfinite(summary["test_loss"])
    config = json.loads((workdir / "config.json").read_text())
    assert config["batch_size"] == 8 and config["learning_rate"] == 1e-3 and config["optimizer"] == "adam"
    assert os.path.exists(workdir / "learning_curves.png")


# --------------------------------------------------------------------------------------------
# DynamicNetwork
# --------------------------------------------------------------------------------------------

BASE, DEPTH = 2, 3
WIDTHS = (2, 4, 8)


@pytest.fixture(scope="module")
def dynamic():
    """A tiny DynamicNetwork, random variables (BN statistics and affine included), a batch [2, 4, 4, 1]."""
    model = DynamicNetwork(base_channels=BASE, max_depth=DEPTH)
    x = np.random.default_rng(1).standard_normal((2, 4, 4, 1)).astype(np.float32)
    return model, random_variables(model.init, x), x


def dynamic_oracle(variables, x, active):
    """Inference forward written out: stem; active stages conv -> BN(running stats) -> relu; 1x1 adaptations."""
    p, s = variables["params"], variables["batch_stats"]
    x = conv_same(x, p["stem"]["kernel"], p["stem"]["bias"])
    features = []
    for i in range(DEPTH):
        if i in active:
            bn, stats = p[f"stage{i}"]["bn"], s[f"stage{i}"]["bn"]
            y = conv_same(x, p[f"stage{i}"]["conv"]["kernel"])
            y = (y - stats["mean"]) / jnp.sqrt(stats["var"] + BN_EPSILON) * bn["scale"] + bn["bias"]
            x = jax.nn.relu(y)
            features.append(x)
        if i + 1 < DEPTH:
            x = jnp.einsum("bhwc,cd->bhwd", x, p[f"adapt{i}"]["kernel"][0, 0]) + p[f"adapt{i}"]["bias"]
    return x, features


DYNAMIC_SETS = ((0, 1, 2), (0, 2))


def test_dynamic_outputs_match_oracle_and_compile_once_per_set(dynamic):
    model, variables, x = dynamic
    forward = jax.jit(model.apply, static_argnames=("train", "active_layers"))
    oracles = jax.jit(lambda v, x: [dynamic_oracle(v, x, active) for active in DYNAMIC_SETS])(variables, x)
    outputs = {}
    for active, oracle in zip(DYNAMIC_SETS, oracles):
        out, features = forward(variables, x, active_layers=active)
        chex.assert_shape(out, (2, 4, 4, WIDTHS[-1]))
        assert [f.shape for f in features] == [(2, 4, 4, WIDTHS[i]) for i in active]
        chex.assert_trees_all_close((out, features), oracle, atol=1e-4, rtol=1e-4)
        outputs[active] = out
    assert forward._cache_size() == len(DYNAMIC_SETS)
    forward(variables, x, active_layers=(0, 2))
    assert forward._cache_size() == len(DYNAMIC_SETS)  # a set seen before reuses its compilation
    assert not np.allclose(outputs[(0, 1, 2)], outputs[(0, 2)])
    out, features = jax.eval_shape(functools.partial(model.apply, active_layers=()), variables, x)
    assert out.shape == (2, 4, 4, WIDTHS[-1]) and features == []
    # One variables tree for every set: initialising with a subset builds every stage too.
    for active in ((1,), ()):
        subset_vars = jax.eval_shape(functools.partial(model.init, active_layers=active), jax.random.PRNGKey(0), x)
        assert jax.tree.structure(subset_vars) == jax.tree.structure(variables)
        assert jax.tree.map(jnp.shape, subset_vars) == jax.tree.map(jnp.shape, variables)


def test_dynamic_inactive_stage_gets_exactly_zero_gradient_and_keeps_bn_stats():
    model = DynamicClassifier(num_classes=3, base_channels=BASE, max_depth=DEPTH)
    x = np.random.default_rng(2).standard_normal((4, 4, 4, 1)).astype(np.float32)
    y = np.array([0, 1, 2, 1])
    variables = random_variables(model.init, x)

    def loss(params):
        logits, updates = model.apply(
            {"params": params, "batch_stats": variables["batch_stats"]}, x, train=True, active_layers=(0, 2),
            mutable=["batch_stats"],
        )
        return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean(), updates["batch_stats"]

    grads, stats = jax.jit(jax.grad(loss, has_aux=True))(variables["params"])
    backbone = grads["backbone"]
    assert all(np.all(g == 0.0) for g in jax.tree.leaves(backbone["stage1"]))
    for name in ("stem", "stage0", "stage2", "adapt0", "adapt1"):  # adaptations run around the inactive stage
        assert all(np.any(g != 0.0) for g in jax.tree.leaves(backbone[name])), name
    assert jax.tree.structure(grads) == jax.tree.structure(variables["params"])
    old = variables["batch_stats"]["backbone"]
    assert set(stats["backbone"]) == {"stage0", "stage1", "stage2"}
    chex.assert_trees_all_equal(stats["backbone"]["stage1"], old["stage1"])
    for name in ("stage0", "stage2"):
        assert not np.allclose(stats["backbone"][name]["bn"]["mean"], old[name]["bn"]["mean"]), name


def test_stage_drop_trains_random_active_sets():
    # With stochastic stage dropping every training forward equals the static forward of some active
    # set, and different dropout keys pick different sets.
    sets = ((0, 1), (0,), (1,), ())
    model = DynamicNetwork(base_channels=BASE, max_depth=2, stage_drop_rate=0.5)
    x = np.random.default_rng(3).standard_normal((2, 4, 4, 1)).astype(np.float32)
    variables = random_variables(model.init, x)

    @jax.jit
    def static_and_dropped(variables, keys):
        def forward(module, active, **kwargs):
            return module.apply(variables, x, True, active, mutable=["batch_stats"], **kwargs)[0][0]

        static = [forward(model.clone(stage_drop_rate=0.0), active) for active in sets]
        return static, jax.vmap(lambda key: forward(model, None, rngs={"dropout": key}))(keys)

    static, dropped = static_and_dropped(variables, jax.random.split(jax.random.PRNGKey(3), 16))
    seen = set()
    for out in dropped:
        matches = [a for a, ref in zip(sets, static) if np.allclose(out, ref, atol=1e-5)]
        assert len(matches) == 1, matches
        seen.add(matches[0])
    assert len(seen) >= 3, seen


def test_active_layers_validation():
    assert validate_active_layers((0, 2, 4), 5) == (0, 2, 4)
    assert parse_active_layers("0,2,4", 5) == (0, 2, 4) and parse_active_layers("none", 5) == ()
    for bad in ((2, 0), (0, 0), (5,), (-1,), [0, 1], (True,), (0.0,)):
        with pytest.raises(ValueError, match=r"sorted, unique stage indices in \[0, 5\)"):
            validate_active_layers(bad, 5)
    for text in ("0,x", "4,1", "0,5"):
        with pytest.raises(ConfigError, match="--active-layers"):
            parse_active_layers(text, 5)
    model = DynamicNetwork(base_channels=BASE, max_depth=DEPTH)
    with pytest.raises(ValueError, match="active_layers"):
        jax.eval_shape(lambda k: model.init(k, jnp.zeros((1, 4, 4, 1)), active_layers=(3,)), jax.random.PRNGKey(0))


def test_dynamic_network_demo_evaluation_sets_and_flags(capsys):
    default = dynamic_network.Config()
    assert (default.data, default.batch_size, default.learning_rate, default.max_depth) == ("digits", 64, 1e-3, 5)
    assert evaluation_sets(default.max_depth) == [
        (0, 1, 2, 3, 4), (1, 2, 3, 4), (0, 2, 3, 4), (0, 1, 3, 4), (0, 1, 2, 4), (0, 1, 2, 3), (0, 2, 4), (),
    ]
    assert evaluation_sets(5, (0, 2, 4)) == [(0, 1, 2, 3, 4), (0, 2, 4)]
    assert evaluation_sets(5, (0, 1, 2, 3, 4)) == [(0, 1, 2, 3, 4)]
    assert evaluation_sets(1) == [(0,), ()]
    with pytest.raises(ValueError, match="active_layers"):
        evaluation_sets(3, (3,))
    for argv in (["--active-layers", "0,5"], ["--active-layers", "2,1"], ["--stage-drop-rate", "1.0"]):
        assert cli.run(dynamic_network.main, dynamic_network.Config, argv, prog="dynamic_network") == 2, argv
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and ("--active-layers" in err[0] or "--stage-drop-rate" in err[0]), err


def test_dynamic_network_two_seeds_evaluate_every_active_set_per_seed(tmp_path):
    """The oracle is the one-seed run: seed 0 of ``--seeds 2`` scores every active set as that run does."""
    flags = dict(epochs=1, base_channels=2, max_depth=2, batch_size=64, active_layers="0")
    together, alone = (dynamic_network.main(dynamic_network.Config(seeds=s, workdir=str(tmp_path / str(s)), **flags))
                       for s in (2, 1))
    assert [row["active_layers"] for row in together["active_sets"]] == ["0,1", "0"]
    for row, one in zip(together["active_sets"], alone["active_sets"]):
        for key in ("test_accuracy", "test_loss"):
            np.testing.assert_allclose(row[f"{key}_per_seed"][0], one[key], atol=2e-3, err_msg=key)
            assert row[key] == pytest.approx(np.mean(row[f"{key}_per_seed"]), abs=1e-4)
        assert row["forward_flops"] == one["forward_flops"]
