"""Transfer learning: optimizer freezing, a frozen ResNet backbone under real train steps, the demo."""

import json
import os

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from sklearn.metrics import accuracy_score

from experiments import transfer_learning
from nnjax import losses
from nnjax.data import Dataset, load_dataset
from nnjax.data.transforms import split_tasks
from nnjax.errors import ConfigError
from nnjax.models.resnet import ResNet
from nnjax.optim import freeze, parameter_counts
from nnjax.tasks import fit
from nnjax.train.state import TrainState, model_variables
from nnjax.train.runner import seed_states
from nnjax.train.steps import make_train_step


def head_only(path):
    return path[0] == "fc"


def test_freeze_zeroes_frozen_updates_and_matches_tx_on_the_rest():
    params = {"backbone": {"w": jnp.ones(3)}, "fc": {"w": jnp.ones(2), "b": jnp.zeros(2)}}
    grads = {"backbone": {"w": jnp.full(3, 0.5)}, "fc": {"w": jnp.array([1.0, -2.0]), "b": jnp.array([0.3, 0.1])}}
    adamw = optax.adamw(0.1, weight_decay=0.5)  # weight decay would move a frozen leaf with zero gradient too
    frozen_tx, plain_tx = freeze(adamw, params, head_only), adamw

    @jax.jit
    def three_steps(params):
        frozen_state, plain_state = frozen_tx.init(params), plain_tx.init(params["fc"])
        frozen_params, plain_params = params, params["fc"]
        for _ in range(3):
            updates, frozen_state = frozen_tx.update(grads, frozen_state, frozen_params)
            frozen_params = optax.apply_updates(frozen_params, updates)
            updates, plain_state = plain_tx.update(grads["fc"], plain_state, plain_params)
            plain_params = optax.apply_updates(plain_params, updates)
        return frozen_params, plain_params

    frozen_params, plain_params = three_steps(params)
    chex.assert_trees_all_equal(frozen_params["backbone"], params["backbone"])
    chex.assert_trees_all_close(frozen_params["fc"], plain_params)
    assert not np.allclose(frozen_params["fc"]["w"], params["fc"]["w"])


def test_parameter_counts_and_nothing_trainable_is_an_error():
    params = {"layer1_0": {"conv1": {"kernel": jnp.zeros((3, 3, 2, 4))}}, "fc": {"kernel": jnp.zeros((4, 5)), "bias": jnp.zeros(5)}}
    assert parameter_counts(params, head_only) == {"trainable": 25, "frozen": 72, "total": 97}
    with pytest.raises(ValueError, match="nothing would train"):
        freeze(optax.sgd(0.1), params, lambda path: path[0] == "head")


def test_frozen_backbone_keeps_params_and_batch_stats_bit_identical():
    model = ResNet(stage_sizes=(1,), widths=(4,), stem="cifar", stem_width=4, num_classes=3, frozen_backbone=True)
    x = jax.random.normal(jax.random.PRNGKey(0), (8, 6, 6, 2))
    y = jnp.arange(8) % 3
    rng = np.random.default_rng(0)
    shapes = jax.eval_shape(model.init, jax.random.PRNGKey(0), x)
    params = jax.tree.map(lambda s: rng.normal(0.0, 0.5, s.shape).astype(np.float32), shapes["params"])
    # Running statistics far from this batch's, so train-mode BatchNorm would visibly move them.
    stats = jax.tree.map(lambda s: rng.uniform(0.5, 1.5, s.shape).astype(np.float32), shapes["batch_stats"])
    tx = freeze(optax.adamw(0.05, weight_decay=0.5), params, head_only)
    state = TrainState.create(apply_fn=model.apply, params=params, tx=tx, batch_stats=stats, rng=jax.random.PRNGKey(1))
    step = jax.jit(make_train_step(losses.classification))
    for _ in range(3):
        state, _ = step(state, {"x": x, "y": y})
    backbone = {k: v for k, v in params.items() if k != "fc"}
    chex.assert_trees_all_equal({k: v for k, v in state.params.items() if k != "fc"}, backbone)
    chex.assert_trees_all_equal(state.batch_stats, stats)
    assert not np.allclose(state.params["fc"]["kernel"], params["fc"]["kernel"])


def _dataset(n_train=60, n_test=30, classes=4, seed=0):
    rng = np.random.default_rng(seed)

    def split(n):
        return {"x": rng.random((n, 4, 4, 1), dtype=np.float32), "y": (np.arange(n) % classes).astype(np.int32)}

    return Dataset("toy", "random", split(n_train), split(n_test), classes)


def test_split_tasks_relabels_and_keeps_few_target_labels():
    source, target = split_tasks(_dataset(), split_class=2, target_labels=10, seed=0)
    assert source.num_classes == target.num_classes == 2
    assert set(source.train["y"]) == set(target.test["y"]) == {0, 1}
    assert len(target.train["y"]) == 10 and len(source.train["y"]) == 30
    np.testing.assert_array_equal(target.test["x"], _dataset().test["x"][_dataset().test["y"] >= 2])
    with pytest.raises(ConfigError, match="--target-labels must be <= 30"):
        split_tasks(_dataset(), split_class=2, target_labels=31, seed=0)


@pytest.mark.slow
def test_transfer_learning_experiment_runs_three_phases_of_two_seeds(tmp_path, monkeypatch):
    runs = {}

    def recording_fit(config, model, data, *args, **kwargs):  # the script's own fit, its arguments kept
        result = fit(config, model, data, *args, **kwargs)
        runs[os.path.basename(config.workdir)] = (data, seed_states(result.state, config.seeds))
        return result

    monkeypatch.setattr(transfer_learning, "fit", recording_fit)
    config = transfer_learning.Config(
        data="digits", epochs=1, pretrain_epochs=1, target_labels=80, stage_sizes=(1,), widths=(4,),
        batch_size=32, eval_batch_size=512, validation_fraction=0.0, seeds=2, workdir=str(tmp_path),
    )
    result = transfer_learning.main(config)
    # fc of width 4 -> 5 classes is all that trains; the rest: 3x3 convs 1->4, 4->4, 4->4 and three BNs.
    assert result["trainable_params"] == 4 * 5 + 5
    assert result["frozen_params"] == 9 * 4 + 2 * 9 * 16 + 3 * 2 * 4
    # Oracle: each seed's reported accuracy is sklearn's accuracy of its trained network's arg-max predictions
    # on the test split of its task, digits 0-4 for pretraining and 5-9 (labels shifted to 0-4) for the others.
    digits = load_dataset("digits")
    assert sorted(runs) == ["pretrain", "scratch", "transfer"]
    for phase, (lo, hi) in (("pretrain", (0, 5)), ("transfer", (5, 10)), ("scratch", (5, 10))):
        data, states = runs[phase]
        keep = (digits.test["y"] >= lo) & (digits.test["y"] < hi)
        np.testing.assert_array_equal(data.test["x"], digits.test["x"][keep])
        np.testing.assert_array_equal(data.test["y"], digits.test["y"][keep] - lo)
        key = "source_test_accuracy" if phase == "pretrain" else f"{phase}_test_accuracy"
        for k, state in enumerate(states):
            logits = state.apply_fn(model_variables(state.params, state.batch_stats), data.test["x"], train=False)
            accuracy = accuracy_score(data.test["y"], np.asarray(logits).argmax(-1))
            np.testing.assert_allclose(result[f"{key}_per_seed"][k], accuracy, atol=1e-4, err_msg=f"{phase} {k}")
        assert result[key] == pytest.approx(np.mean(result[f"{key}_per_seed"]), abs=1e-4)
    for k in range(2):  # seed k's transferred backbone is the one seed k pretrained, not retrained
        transfer_state, scratch_state = runs["transfer"][1][k], runs["scratch"][1][k]
        chex.assert_trees_all_equal(
            {name: v for name, v in transfer_state.params.items() if name != "fc"},
            {name: v for name, v in runs["pretrain"][1][k].params.items() if name != "fc"},
        )
        assert not np.allclose(transfer_state.params["conv1"]["kernel"], scratch_state.params["conv1"]["kernel"])
    assert not np.allclose(runs["pretrain"][1][0].params["conv1"]["kernel"], runs["pretrain"][1][1].params["conv1"]["kernel"])
    for phase in ("pretrain", "transfer", "scratch"):
        with open(os.path.join(tmp_path, phase, "metrics.jsonl")) as f:
            assert json.loads(f.readlines()[-1])["kind"] == "test"
