"""Mixup, CutMix, drop path, the scratch-layer modules, the trainer's augment hook and both demos."""

import json
import os

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from conftest import blob_dataset, run_experiment
from hypothesis import given, settings
from hypothesis import strategies as st

from nnjax import losses
from nnjax.errors import ConfigError
from nnjax.models import MLP, ResMLP, ScratchBatchNorm
from nnjax.models.resmlp import drop_path_rates
from nnjax.scratch import regularization
from nnjax.train import Parallel, create_train_state, make_train_step


def _distinct_batch(seed, b, h, w, c):
    """Batch whose example i has label i (K = B) and continuous random pixels (no accidental ties)."""
    x = jax.random.uniform(jax.random.PRNGKey(seed), (b, h, w, c), minval=0.1, maxval=1.0)
    return {"x": x, "y": jnp.arange(b, dtype=jnp.int32)}


def _partners(y_soft_BxB):
    """Recover the pairing from soft targets of a ``_distinct_batch``: perm[i] and the weight of label i."""
    y_soft = np.asarray(y_soft_BxB)
    own = np.diag(y_soft).copy()
    others = y_soft - np.diag(own)
    perm = np.where(others.max(1) > 0, others.argmax(1), np.arange(len(own)))
    return perm, own


def _check_soft_targets(y_soft, perm, lam_B):
    b = len(perm)
    eye = np.eye(b, dtype=np.float32)
    np.testing.assert_allclose(y_soft.sum(1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(y_soft, lam_B[:, None] * eye + (1 - lam_B[:, None]) * eye[perm], atol=1e-6)
    assert sorted(perm) == list(range(b)), "examples must be paired by a permutation"


# Three (shape, alpha) cases, each compiled once (~2 s: the Beta sampler), and many keys.
cases = st.sampled_from([((2, 3, 3, 1), 0.4), ((5, 7, 4, 3), 1.0), ((6, 8, 8, 1), 2.0)])
jit_mixup = jax.jit(regularization.mixup, static_argnums=(2, 3))
jit_cutmix = jax.jit(regularization.cutmix, static_argnums=(2, 3))


@settings(deadline=None, max_examples=6)
@given(case=cases, seed=st.integers(0, 2**16))
def test_mixup_mixes_images_and_targets_with_one_lambda(case, seed):
    shape, alpha = case
    batch = _distinct_batch(seed, *shape)
    out = jit_mixup(jax.random.PRNGKey(seed), batch, shape[0], alpha)
    assert out["x"].shape == batch["x"].shape and out["x"].dtype == batch["x"].dtype
    assert out["y_soft"].shape == (shape[0], shape[0]) and out["y_soft"].dtype == jnp.float32
    np.testing.assert_array_equal(out["y"], batch["y"])
    perm, own = _partners(out["y_soft"])
    mixed = perm != np.arange(shape[0])
    lam = own[mixed][0] if mixed.any() else 1.0
    np.testing.assert_allclose(own[mixed], lam, rtol=1e-6)  # one lambda per batch
    _check_soft_targets(np.asarray(out["y_soft"]), perm, np.where(mixed, lam, 1.0))
    x = np.asarray(batch["x"])
    np.testing.assert_allclose(out["x"], lam * x + (1 - lam) * x[perm], rtol=1e-5, atol=1e-6)


@settings(deadline=None, max_examples=6)
@given(case=cases, seed=st.integers(0, 2**16))
def test_cutmix_label_weight_is_the_pasted_pixel_fraction(case, seed):
    shape, alpha = case
    b, h, w, c = shape
    batch = _distinct_batch(seed, *shape)
    out = jit_cutmix(jax.random.PRNGKey(seed), batch, b, alpha)
    assert out["x"].shape == batch["x"].shape and out["x"].dtype == batch["x"].dtype
    np.testing.assert_array_equal(out["y"], batch["y"])
    perm, own = _partners(out["y_soft"])
    x, x_out = np.asarray(batch["x"]), np.asarray(out["x"])
    pasted_BxHxW = (x_out != x).any(-1)
    for i in np.flatnonzero(perm != np.arange(b)):
        assert ((x_out[i] != x[i]).all(-1) == pasted_BxHxW[i]).all(), "whole pixels (all channels) are pasted"
        np.testing.assert_array_equal(x_out[i][pasted_BxHxW[i]], x[perm[i]][pasted_BxHxW[i]])
        np.testing.assert_array_equal(x_out[i][~pasted_BxHxW[i]], x[i][~pasted_BxHxW[i]])
        np.testing.assert_array_equal(pasted_BxHxW[i], pasted_BxHxW[perm != np.arange(b)][0])  # one box
        rows, cols = np.flatnonzero(pasted_BxHxW[i].any(1)), np.flatnonzero(pasted_BxHxW[i].any(0))
        if rows.size:
            assert pasted_BxHxW[i].sum() == rows.size * cols.size
            assert rows[-1] - rows[0] + 1 == rows.size and cols[-1] - cols[0] + 1 == cols.size, "box is a rectangle"
        np.testing.assert_allclose(own[i], 1.0 - pasted_BxHxW[i].mean(), rtol=1e-6)
    _check_soft_targets(np.asarray(out["y_soft"]), perm, own)


def test_cutmix_with_equals_numpy_slicing_oracle():
    batch = _distinct_batch(0, 4, 6, 5, 2)
    box = np.zeros((6, 5), bool)
    box[1:4, 2:5] = True
    perm = np.array([2, 0, 3, 1])
    out = regularization.cutmix_with(batch, jnp.asarray(box), jnp.asarray(perm), num_classes=4)
    expected = np.array(batch["x"])
    expected[:, 1:4, 2:5] = np.asarray(batch["x"])[perm][:, 1:4, 2:5]
    np.testing.assert_array_equal(out["x"], expected)
    lam = 1.0 - 9 / 30
    eye = np.eye(4, dtype=np.float32)
    np.testing.assert_allclose(out["y_soft"], lam * eye + (1 - lam) * eye[perm], rtol=1e-6)


def test_cutmix_box_is_clipped_at_the_border():
    keys = jax.random.split(jax.random.PRNGKey(0), 200)
    boxes = jax.vmap(lambda k: regularization.cutmix_box(k, 8, 8, jnp.float32(0.5)))(keys)
    areas = np.asarray(boxes).sum((1, 2))
    side = int(np.floor(8 * np.sqrt(0.5)))
    assert areas.max() == side * side, "unclipped boxes have floor(H sqrt(1-lam)) x floor(W sqrt(1-lam)) pixels"
    assert areas.min() < side * side, "boxes centred near a border are clipped"


def test_mixup_composes_with_existing_soft_targets():
    batch = _distinct_batch(1, 3, 2, 2, 1)
    soft = jnp.full((3, 3), 1 / 3)
    out = regularization.mixup_with({**batch, "y_soft": soft}, jnp.float32(0.3), jnp.array([1, 2, 0]), 3)
    np.testing.assert_allclose(out["y_soft"], soft, rtol=1e-6)


def test_drop_path_drops_whole_examples_and_keeps_expectation():
    n, rate = 20_000, 0.3
    x = jnp.ones((n, 3, 2))
    y = np.asarray(regularization.drop_path(jax.random.PRNGKey(0), x, rate, train=True))
    per_example = y.reshape(n, -1)
    assert (per_example == per_example[:, :1]).all(), "an example is dropped or kept as a whole"
    assert set(np.unique(per_example)) <= {0.0, np.float32(1 / (1 - rate))}
    dropped = (per_example[:, 0] == 0).mean()
    assert abs(dropped - rate) < 5 * np.sqrt(rate * (1 - rate) / n)
    # y = Bernoulli(1 - rate) / (1 - rate) per example: mean 1, standard error sqrt(rate / (1 - rate) / n).
    assert abs(per_example[:, 0].mean() - 1.0) < 5 * np.sqrt(rate / (1 - rate) / n)
    np.testing.assert_array_equal(regularization.drop_path(jax.random.PRNGKey(0), x, rate, train=False), x)


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: regularization.drop_path(jax.random.PRNGKey(0), jnp.ones((2, 2)), 1.0, True), r"in \[0, 1\)"),
        (lambda: regularization.augmentation("cutout", 10), "method must be one of none, mixup, cutmix"),
        (lambda: regularization.augmentation("mixup", 10, alpha=0.0), "alpha .* must be > 0"),
        (lambda: regularization.cutmix(jax.random.PRNGKey(0), {"x": jnp.ones((2, 4)), "y": jnp.zeros(2, int)}, 2), "NHWC"),
    ],
)
def test_bad_arguments_raise_value_errors(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_augmentation_none_is_no_hook():
    assert regularization.augmentation("none", 10) is None


def test_drop_path_rates_increase_linearly_to_the_last_block():
    np.testing.assert_allclose(drop_path_rates(0.2, 4), [0.05, 0.1, 0.15, 0.2])


def test_resmlp_is_stochastic_only_in_training():
    x = jax.random.normal(jax.random.PRNGKey(0), (16, 4, 4, 1))
    model = ResMLP(num_classes=3, width=8, depth=2, hidden=8, drop_path_rate=0.5)
    no_drop = ResMLP(num_classes=3, width=8, depth=2, hidden=8, drop_path_rate=0.0)

    @jax.jit
    def outputs(variables, x):
        train = lambda key: model.apply(variables, x, train=True, rngs={"dropout": key})  # noqa: E731
        return (
            model.apply(variables, x, train=False),
            train(jax.random.PRNGKey(2)),
            train(jax.random.PRNGKey(3)),
            no_drop.apply(variables, x, train=True),
        )

    eval_out, train_a, train_b, no_drop_train = outputs(model.init(jax.random.PRNGKey(1), x), x)
    chex.assert_shape(eval_out, (16, 3))
    assert not np.allclose(train_a, train_b)
    chex.assert_trees_all_close(no_drop_train, eval_out, atol=1e-6)


@pytest.mark.parametrize("train", [True, False])
def test_scratch_batch_norm_module_equals_flax_batch_norm(train):
    x = 3.0 + 2.0 * jax.random.normal(jax.random.PRNGKey(0), (8, 3, 3, 4))
    ours, theirs = ScratchBatchNorm(), nn.BatchNorm(momentum=0.9, epsilon=1e-5, use_fast_variance=False)
    v_ours = ours.init(jax.random.PRNGKey(1), x, train=False)
    v_theirs = theirs.init(jax.random.PRNGKey(1), x, use_running_average=True)
    stats = {"mean": jnp.arange(4.0), "var": jnp.arange(1.0, 5.0)}
    v_ours = {"params": v_ours["params"], "batch_stats": stats}
    v_theirs = {"params": v_theirs["params"], "batch_stats": stats}
    y, updates = ours.apply(v_ours, x, train=train, mutable=["batch_stats"])
    y_ref, updates_ref = theirs.apply(v_theirs, x, use_running_average=not train, mutable=["batch_stats"])
    chex.assert_trees_all_close((y, updates), (y_ref, updates_ref), atol=1e-5, rtol=1e-5)


# The trainer hook: a deterministic augmentation (relabelling) makes the hooked step checkable
# against the plain step on the relabelled batch, in every parallel mode; evaluation is never augmented.

def _relabel(key, batch):
    del key
    return {**batch, "y": (batch["y"] + 1) % 4}


@pytest.mark.parametrize("mode", ["none", "jit", "pmap"])
def test_augment_hook_transforms_training_batches_only(eight_devices, mode):
    del eight_devices
    data = blob_dataset()
    batch = {k: v[:32] for k, v in data.train.items()}
    state = jax.device_get(
        create_train_state(MLP(features=(16, 4)), optax.adam(1e-2), batch["x"], jax.random.PRNGKey(0))
    )
    expected, expected_metrics = jax.jit(make_train_step(losses.classification))(state, _relabel(None, batch))
    hooked = Parallel(mode, losses.classification, 32, 64, augment=_relabel)
    plain = Parallel(mode, losses.classification, 32, 64)
    new_state, metrics = hooked.train_step(hooked.place_state(state), hooked.place_batch(batch))
    np.testing.assert_allclose(metrics["loss"], expected_metrics["loss"], rtol=1e-5)
    chex.assert_trees_all_close(hooked.host_state(new_state).params, expected.params, atol=1e-5)
    eval_batch = dict({k: v[:64] for k, v in data.test.items()}, mask=np.ones(64, np.float32))
    chex.assert_trees_all_close(
        hooked.eval_step(new_state, hooked.place_batch(eval_batch)),
        plain.eval_step(new_state, plain.place_batch(eval_batch)),
    )


# The demos, as a user runs them.

def _final_json(stdout):
    return json.loads(stdout.strip().splitlines()[-1])


def test_batchnorm_dropout_demo(tmp_path):
    done = run_experiment(
        "experiments.batchnorm_dropout", "--workdir", str(tmp_path), "--epochs", "1", "--hidden", "8",
        "--batch-size", "32", "--variants", "batchnorm_dropout",
    )
    assert done.returncode == 0, done.stderr
    out = _final_json(done.stdout)
    assert out["bn_max_abs_diff_vs_flax"] <= 1e-5 and out["bn_running_stats_max_abs_diff_vs_flax"] <= 1e-5
    assert out["bn_output_mean"] == pytest.approx(0.0, abs=1e-5)
    assert out["bn_output_std"] == pytest.approx(1.0, abs=1e-5)
    assert out["dropout_max_abs_diff_vs_flax"] == 0.0 and out["dropout_eval_max_abs_change"] == 0.0
    assert out["dropout_kept_scale"] == pytest.approx(1 / 0.8, rel=1e-5)
    assert 0.0 <= out["test_accuracy_batchnorm_dropout"] <= 1.0
    assert "test_accuracy_plain" not in out
    assert out["compile_s"] > 0  # summed over the variants: benchmarks/compile.py reads it
    assert os.path.exists(tmp_path / "accuracy_curves.png")
    assert os.path.exists(tmp_path / "batchnorm_dropout" / "metrics.jsonl")


def test_regularization_demo(tmp_path):
    done = run_experiment(
        "experiments.regularization", "--workdir", str(tmp_path), "--epochs", "1", "--depth", "1", "--width", "16",
        "--num-examples", "4", "--method", "cutmix", "--drop-path-rate", "0.2",
    )
    assert done.returncode == 0, done.stderr
    out = _final_json(done.stdout)
    assert (out["method"], out["drop_path_rate"], out["data"]) == ("cutmix", 0.2, "digits")
    assert out["steps"] == out["train_examples"] // 64
    assert 0.0 <= out["test_accuracy"] <= 1.0
    for name in out["plots"]:
        assert os.path.exists(tmp_path / name), name
    assert set(out["plots"]) >= {"mixup_examples.png", "cutmix_examples.png"}


def test_regularization_config_rejects_bad_rates():
    from experiments.regularization import Config

    with pytest.raises(ConfigError, match="--drop-path-rate must be in"):
        Config(drop_path_rate=1.0).validate()
