"""Node-classification graphs as numpy arrays: Zachary's karate club and a stochastic block model.

Both are semi-supervised: a few labelled nodes (``train_mask``) and the rest held out for evaluation
(``test_mask``). Edges are directed pairs (senders, receivers) listing every undirected edge in both
directions, without self-loops (models that want them add them).
"""

from __future__ import annotations

import dataclasses

import networkx as nx
import numpy as np

KARATE_CLUBS = ("Mr. Hi", "Officer")


@dataclasses.dataclass(frozen=True)
class NodeClassification:
    """A graph with node labels and train/test node masks.

    nodes_NxF float32 [N, F]; senders_E, receivers_E int32 [E]; labels_N int32 [N];
    train_mask_N, test_mask_N bool [N] (disjoint).
    """

    name: str
    nodes_NxF: np.ndarray
    senders_E: np.ndarray
    receivers_E: np.ndarray
    labels_N: np.ndarray
    train_mask_N: np.ndarray
    test_mask_N: np.ndarray
    class_names: tuple[str, ...]

    @property
    def num_nodes(self) -> int:
        return self.nodes_NxF.shape[0]

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def to_networkx(self) -> nx.Graph:
        """The undirected networkx graph (all nodes, each edge once) for drawing."""
        graph = nx.Graph()
        graph.add_nodes_from(range(self.num_nodes))
        graph.add_edges_from(zip(self.senders_E.tolist(), self.receivers_E.tolist()))
        return graph


def _both_directions(edges_Mx2: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(senders, receivers) int32 [2M] listing each undirected edge (u, v) as u -> v and v -> u."""
    edges_Mx2 = np.asarray(edges_Mx2, dtype=np.int32).reshape(-1, 2)
    return (np.concatenate([edges_Mx2[:, 0], edges_Mx2[:, 1]]),
            np.concatenate([edges_Mx2[:, 1], edges_Mx2[:, 0]]))


def karate_club() -> NodeClassification:
    """Zachary's karate club (``networkx.karate_club_graph``): 34 members, 78 friendships (156
    directed edges), labels from the 'club' attribute ('Mr. Hi' 0, 'Officer' 1), one-hot identity
    features [34, 34]. One labelled node per club: node 0 (Mr. Hi) and node 33 (the officer);
    the other 32 are the test set.
    """
    graph = nx.karate_club_graph()
    n = graph.number_of_nodes()
    labels_N = np.array([KARATE_CLUBS.index(graph.nodes[i]["club"]) for i in range(n)], np.int32)
    senders_E, receivers_E = _both_directions(np.array(graph.edges()))
    train_mask_N = np.zeros(n, bool)
    train_mask_N[[0, n - 1]] = True
    return NodeClassification(
        name="karate", nodes_NxF=np.eye(n, dtype=np.float32), senders_E=senders_E, receivers_E=receivers_E,
        labels_N=labels_N, train_mask_N=train_mask_N, test_mask_N=~train_mask_N, class_names=KARATE_CLUBS,
    )


def stochastic_block_model(
    num_blocks: int = 4,
    block_size: int = 25,
    p_in: float = 0.3,
    p_out: float = 0.02,
    labels_per_block: int = 2,
    feature_dim: int = 16,
    feature_signal: float = 0.5,
    seed: int = 0,
) -> NodeClassification:
    """A planted-partition graph: ``num_blocks`` blocks of ``block_size`` nodes, each pair of nodes
    linked with probability ``p_in`` within a block and ``p_out`` across blocks.

    The label is the block. Features [N, feature_dim] are noisy: ``feature_signal`` times a random
    unit-variance block centre plus N(0, 1) noise, so features alone classify poorly at the default
    signal and the edges carry most of the information. ``labels_per_block`` randomly chosen nodes
    per block are labelled; the rest form the test set. Deterministic given ``seed``.
    """
    if num_blocks < 2 or block_size < 1 or feature_dim < 1:
        raise ValueError(f"need num_blocks >= 2, block_size >= 1, feature_dim >= 1; got {num_blocks}, {block_size}, {feature_dim}")
    if not 1 <= labels_per_block < block_size:
        raise ValueError(f"labels_per_block must be in [1, {block_size}), got {labels_per_block}")
    for name, p in (("p_in", p_in), ("p_out", p_out)):
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"{name} must be a probability in [0, 1], got {p}")
    rng = np.random.default_rng(seed)
    n = num_blocks * block_size
    labels_N = np.repeat(np.arange(num_blocks, dtype=np.int32), block_size)
    probs_NxN = np.where(labels_N[:, None] == labels_N[None, :], p_in, p_out)
    upper_NxN = np.triu(rng.random((n, n)) < probs_NxN, k=1)
    senders_E, receivers_E = _both_directions(np.argwhere(upper_NxN))
    centres_KxF = rng.standard_normal((num_blocks, feature_dim))
    nodes_NxF = (feature_signal * centres_KxF[labels_N] + rng.standard_normal((n, feature_dim))).astype(np.float32)
    train_mask_N = np.zeros(n, bool)
    for block in range(num_blocks):
        members = np.flatnonzero(labels_N == block)
        train_mask_N[rng.choice(members, labels_per_block, replace=False)] = True
    return NodeClassification(
        name="sbm", nodes_NxF=nodes_NxF, senders_E=senders_E, receivers_E=receivers_E, labels_N=labels_N,
        train_mask_N=train_mask_N, test_mask_N=~train_mask_N,
        class_names=tuple(f"block {b}" for b in range(num_blocks)),
    )
