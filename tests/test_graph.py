"""Graph models (GAT, EdgeConv, segment softmax), graph data sets and the full-batch node trainer.

Oracles: dense masked softmax / dense-adjacency GAT / loop-over-neighbours EdgeConv in numpy; node
permutations for equivariance; networkx's own karate club attributes.
"""

import json
import os

import jax
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nnjax.data.graphs import karate_club, stochastic_block_model
from nnjax.tasks.node_classification import masked_cross_entropy
from nnjax.models.graph import (
    GAT,
    EdgeConv,
    EdgeConvNet,
    GATLayer,
    Graph,
    add_self_loops,
    segment_softmax,
)

N = 6
# A small directed graph without duplicate edges; node 5 has no incoming edge (before self-loops).
EDGES = np.array([[0, 1], [1, 0], [1, 2], [2, 1], [2, 3], [3, 0], [0, 2], [4, 3], [5, 4], [3, 4]])
SENDERS, RECEIVERS = EDGES[:, 0].astype(np.int32), EDGES[:, 1].astype(np.int32)


def _graph(rng, features=4, self_loops=False):
    senders, receivers = add_self_loops(SENDERS, RECEIVERS, N) if self_loops else (SENDERS, RECEIVERS)
    return Graph(rng.standard_normal((N, features)).astype(np.float32), senders, receivers)


def _permuted(graph, perm, edge_order):
    """The same graph with new node k = old node perm[k], and its edges listed in another order."""
    inv = np.argsort(perm)
    return Graph(graph.nodes_NxF[perm], inv[graph.senders_E][edge_order].astype(np.int32),
                 inv[graph.receivers_E][edge_order].astype(np.int32))


def _dense_softmax(scores_NxN, adjacency_NxN):
    """Row softmax over the entries where adjacency[i, j] (edge j -> i); rows without edges stay 0."""
    masked = np.where(adjacency_NxN, scores_NxN, -np.inf)
    shifted = np.exp(masked - np.where(adjacency_NxN.any(1, keepdims=True), masked.max(1, keepdims=True), 0.0))
    return shifted / np.maximum(shifted.sum(1, keepdims=True), 1e-30)


@settings(max_examples=8, deadline=None)
@given(ids=st.lists(st.integers(0, 4), min_size=10, max_size=10),
       scores=st.lists(st.floats(-30, 30), min_size=10, max_size=10), offset=st.sampled_from([0.0, 1e3]))
def test_segment_softmax_sums_to_one_per_segment(ids, scores, offset):
    ids_E = np.array(ids, np.int32)
    probs_E = np.asarray(jax.jit(segment_softmax, static_argnums=2)(np.array(scores, np.float32) + offset, ids_E, 5))
    assert np.all(np.isfinite(probs_E)) and np.all(probs_E >= 0)
    sums = np.bincount(ids_E, weights=probs_E, minlength=5)
    np.testing.assert_allclose(sums[np.unique(ids_E)], 1.0, rtol=1e-5)


def test_segment_softmax_matches_dense_masked_softmax():
    rng = np.random.default_rng(0)
    scores_ExH = rng.normal(0, 5, (len(SENDERS), 2)).astype(np.float32)
    got_ExH = np.asarray(jax.jit(segment_softmax, static_argnums=2)(scores_ExH, RECEIVERS, N))
    adjacency = np.zeros((N, N), bool)
    adjacency[RECEIVERS, SENDERS] = True
    for h in range(2):
        dense = np.zeros((N, N))
        dense[RECEIVERS, SENDERS] = scores_ExH[:, h]
        want = _dense_softmax(dense, adjacency)
        np.testing.assert_allclose(got_ExH[:, h], want[RECEIVERS, SENDERS], rtol=1e-5, atol=1e-7)


def _normal(rng, *shape):
    return rng.normal(0, 0.5, shape).astype(np.float32)


def _gat_layer_params(rng, fan_in, features, heads, concat):
    """GATLayer parameters drawn from N(0, 0.5^2), non-zero biases included (no init compile)."""
    return {"proj": {"kernel": _normal(rng, fan_in, heads * features)}, "att_dst": _normal(rng, heads, features),
            "att_src": _normal(rng, heads, features), "bias": _normal(rng, heads * features if concat else features)}


def _edgeconv_params(rng, fan_in, features):
    return {"mlp1": {"kernel": _normal(rng, 2 * fan_in, features), "bias": _normal(rng, features)},
            "mlp2": {"kernel": _normal(rng, features, features), "bias": _normal(rng, features)}}


def _dense_gat(params, x_NxF, senders, receivers, heads, concat):
    """GAT layer with a dense adjacency: alpha[h, i, j] = softmax_j(LeakyReLU(a^T [W x_i || W x_j]))."""
    z = (x_NxF @ np.asarray(params["proj"]["kernel"])).reshape(N, heads, -1)
    adjacency = np.zeros((N, N), bool)
    adjacency[receivers, senders] = True
    out = np.zeros_like(z)
    for h in range(heads):
        a = np.concatenate([params["att_dst"][h], params["att_src"][h]])  # a = [a_i ; a_j]
        pair = np.concatenate([np.repeat(z[:, None, h], N, 1), np.repeat(z[None, :, h], N, 0)], -1)  # [i, j, 2C]
        e = pair @ a
        alpha = _dense_softmax(np.where(e > 0, e, 0.2 * e), adjacency)
        out[:, h] = alpha @ z[:, h]
    return (out.reshape(N, -1) if concat else out.mean(1)) + np.asarray(params["bias"])


@pytest.mark.parametrize("concat", [True, False])
def test_gat_layer_matches_dense_adjacency_oracle(concat):
    rng = np.random.default_rng(1)
    graph = _graph(rng, self_loops=True)
    layer = GATLayer(features=3, heads=2, concat=concat, attention_dropout=0.6)
    params = _gat_layer_params(rng, 4, 3, 2, concat)
    got = np.asarray(jax.jit(layer.apply)({"params": params}, graph))
    want = _dense_gat(params, graph.nodes_NxF, graph.senders_E, graph.receivers_E, 2, concat)
    assert got.shape == (N, 6 if concat else 3)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def _edgeconv_oracle(params, x_NxF, senders, receivers):
    """h_i' = max over edges j -> i of MLP([x_i, x_j - x_i]), by loops; 0 for nodes without edges."""
    def mlp(v):
        hidden = np.maximum(v @ params["mlp1"]["kernel"] + params["mlp1"]["bias"], 0.0)
        return hidden @ params["mlp2"]["kernel"] + params["mlp2"]["bias"]

    out = np.zeros((N, params["mlp2"]["bias"].shape[0]), np.float32)
    for i in range(N):
        messages = [mlp(np.concatenate([x_NxF[i], x_NxF[j] - x_NxF[i]])) for j, r in zip(senders, receivers) if r == i]
        if messages:
            out[i] = np.max(messages, axis=0)
    return out


def test_edgeconv_matches_loop_oracle_and_zeroes_empty_neighbourhoods():
    rng = np.random.default_rng(2)
    graph = _graph(rng)
    params = _edgeconv_params(rng, 4, 5)
    got = np.asarray(jax.jit(EdgeConv(features=5).apply)({"params": params}, graph))
    np.testing.assert_allclose(got, _edgeconv_oracle(params, graph.nodes_NxF, SENDERS, RECEIVERS), rtol=1e-4, atol=1e-5)
    assert 5 not in RECEIVERS and np.all(got[5] == 0.0)


@pytest.fixture(scope="module")
def models():
    """name -> (jitted apply with static ``train``, parameters drawn in numpy) for a small GAT and EdgeConvNet."""
    rng = np.random.default_rng(3)
    gat_params = {"gat1": _gat_layer_params(rng, 4, 4, 2, True), "gat2": _gat_layer_params(rng, 8, 3, 1, False)}
    edgeconv_params = {"edgeconv0": _edgeconv_params(rng, 4, 5), "head": {"kernel": _normal(rng, 5, 3), "bias": _normal(rng, 3)}}
    return {
        "gat": (jax.jit(GAT(num_classes=3, hidden=4, heads=2, dropout=0.6).apply, static_argnames="train"), gat_params),
        "edgeconv": (jax.jit(EdgeConvNet(num_classes=3, hidden=(5,)).apply, static_argnames="train"), edgeconv_params),
    }


@pytest.mark.parametrize("name", ["gat", "edgeconv"])
def test_models_are_permutation_equivariant(models, name):
    apply, params = models[name]
    rng = np.random.default_rng(4)
    graph = _graph(rng, self_loops=True)
    perm, edge_order = rng.permutation(N), rng.permutation(len(graph.senders_E))
    out = np.asarray(apply({"params": params}, graph))
    out_perm = np.asarray(apply({"params": params}, _permuted(graph, perm, edge_order)))
    assert out.shape == (N, 3)
    np.testing.assert_allclose(np.exp(out).sum(1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(out_perm, out[perm], rtol=1e-4, atol=1e-5)
    assert not np.allclose(out_perm, out)  # the permutation does move rows


def test_dropout_only_in_training(models):
    apply, params = models["gat"]
    graph = _graph(np.random.default_rng(4), self_loops=True)
    eval_out = np.asarray(apply({"params": params}, graph))  # evaluation mode needs no dropout key
    np.testing.assert_array_equal(np.asarray(apply({"params": params}, graph, train=False)), eval_out)
    train_a, train_b = (np.asarray(apply({"params": params}, graph, train=True, rngs={"dropout": jax.random.PRNGKey(k)}))
                        for k in (1, 2))
    assert not np.allclose(train_a, eval_out) and not np.allclose(train_a, train_b)


def test_add_self_loops_replaces_existing_loops():
    senders, receivers = add_self_loops(np.array([0, 1, 2]), np.array([0, 2, 1]), 4)
    assert sorted(zip(senders.tolist(), receivers.tolist())) == [(0, 0), (1, 1), (1, 2), (2, 1), (2, 2), (3, 3)]
    with pytest.raises(ValueError, match=r"\[0, 4\)"):
        add_self_loops(np.array([0]), np.array([4]), 4)


def test_masked_cross_entropy_matches_numpy():
    rng = np.random.default_rng(5)
    logits = rng.standard_normal((N, 3))
    log_probs = logits - np.log(np.exp(logits).sum(1, keepdims=True))
    labels, mask = rng.integers(0, 3, N), np.array([1, 0, 1, 1, 0, 0], bool)
    want = -np.mean(log_probs[mask, labels[mask]])
    np.testing.assert_allclose(float(masked_cross_entropy(log_probs, labels, mask)), want, rtol=1e-5)


def test_karate_club_matches_networkx():
    import networkx as nx

    data = karate_club()
    nxg = nx.karate_club_graph()
    assert data.nodes_NxF.shape == (34, 34) and np.array_equal(data.nodes_NxF, np.eye(34))
    assert data.senders_E.size == 2 * 78 and not np.any(data.senders_E == data.receivers_E)
    assert set(zip(data.senders_E.tolist(), data.receivers_E.tolist())) == {
        e for u, v in nxg.edges() for e in ((u, v), (v, u))}
    assert [data.class_names[c] for c in data.labels_N] == [nxg.nodes[i]["club"] for i in range(34)]
    assert np.flatnonzero(data.train_mask_N).tolist() == [0, 33] and data.labels_N[[0, 33]].tolist() == [0, 1]
    assert data.test_mask_N.sum() == 32 and not np.any(data.train_mask_N & data.test_mask_N)


def test_stochastic_block_model_densities_and_seed():
    data = stochastic_block_model(num_blocks=4, block_size=25, p_in=0.3, p_out=0.02, labels_per_block=2, seed=0)
    again = stochastic_block_model(num_blocks=4, block_size=25, p_in=0.3, p_out=0.02, labels_per_block=2, seed=0)
    assert np.array_equal(data.senders_E, again.senders_E) and np.array_equal(data.nodes_NxF, again.nodes_NxF)
    same = data.labels_N[data.senders_E] == data.labels_N[data.receivers_E]
    within, across = same.sum() / 2, (~same).sum() / 2  # undirected edges
    assert abs(within / (4 * 25 * 24 / 2) - 0.3) < 0.05 and abs(across / (6 * 25 * 25) - 0.02) < 0.01
    assert set(zip(data.senders_E.tolist(), data.receivers_E.tolist())) == set(
        zip(data.receivers_E.tolist(), data.senders_E.tolist()))
    assert np.bincount(data.labels_N[data.train_mask_N]).tolist() == [2, 2, 2, 2]
    with pytest.raises(ValueError, match="labels_per_block"):
        stochastic_block_model(block_size=3, labels_per_block=3)


def test_gat_karate_trains_from_two_labels(tmp_path):
    """The README's GAT at its defaults: 200 full-batch epochs from the 2 labelled members. Untrained (learning
    rate ~0) the network labels 21 of the 32 others right (test accuracy 0.66, test loss 0.69 = chance, train
    accuracy 0.5); trained it gets 30 (0.94; 0.94-0.97 over seeds 0-5) at test loss 0.18 (0.12-0.20)."""
    from experiments.gat_karate import Config, main

    workdir = str(tmp_path / "run")
    result = main(Config(epochs=200, log_every_epochs=100, workdir=workdir))
    assert result["epochs"] == 200 and result["labelled_nodes"] == 2 and result["test_nodes"] == 32
    assert result["train_accuracy"] == 1.0 and result["test_accuracy"] >= 0.9
    assert result["test_loss"] < 0.4  # chance (uniform over the 2 clubs) is ln 2 = 0.69
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        rows = [json.loads(line) for line in f]
    assert [r["step"] for r in rows if r["kind"] == "test"] == [100, 200]
    assert rows[-2]["train_loss"] < 0.69  # below chance (ln 2) after training
    for name in ("graph.png", "learning_curves.png", "config.json"):
        assert os.path.getsize(os.path.join(workdir, name)) > 0


def test_gat_karate_two_seeds_at_once_train_as_their_one_seed_runs(tmp_path):
    """The oracle is the one-seed run: seed k of ``--seeds 2`` (seed 5 + k) trains and scores as ``--seed 5 + k``."""
    from experiments.gat_karate import Config, main

    flags = dict(epochs=20, log_every_epochs=10)
    together = main(Config(seed=5, seeds=2, workdir=str(tmp_path / "seeds"), **flags))
    alone = main(Config(seed=6, workdir=str(tmp_path / "alone"), **flags))
    assert together["seeds"] == [5, 6]
    for key in ("test_accuracy", "test_loss", "train_accuracy", "train_loss"):
        np.testing.assert_allclose(together[f"{key}_per_seed"][1], alone[key], atol=1e-4, err_msg=key)
        assert together[key] == pytest.approx(np.mean(together[f"{key}_per_seed"]), abs=1e-4)
    with open(tmp_path / "seeds" / "metrics.jsonl") as f:
        tests = [row for row in map(json.loads, f) if row["kind"] == "test"]
    assert [len(row["test_accuracy_per_seed"]) for row in tests] == [2, 2]
