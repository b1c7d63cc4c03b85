"""Graph neural networks over edge lists: graph attention (GAT) and EdgeConv (seed 000 slide 11).

A graph is a ``Graph`` (node features [N, F], ``senders`` [E], ``receivers`` [E]): edge e carries a
message from node ``senders[e]`` to node ``receivers[e]``; an undirected graph lists each edge in
both directions. Aggregation uses ``jax.ops.segment_*`` over the receivers, so memory is O(E), never
a dense [N, N] adjacency. Node i's neighbourhood N(i) is the set of senders of its incoming edges;
``add_self_loops`` puts i itself in it (GAT attends to the node's own features through that loop).

- ``GATLayer`` / ``GAT``: Veličković et al. 2018, "Graph Attention Networks" -- two layers, 8 heads
  of 8 features concatenated, ELU, then a single-head (or head-averaged) output layer, dropout 0.6 on
  inputs and on attention coefficients, log-softmax outputs (the seed's ``GraphAttentionNetwork``).
- ``EdgeConv`` / ``EdgeConvNet``: Wang et al. 2019, "Dynamic Graph CNN" --
  h_i' = max_{j in N(i)} MLP([h_i, h_j - h_i]) (the seed's ``EdgeConvolution`` computes only the
  per-edge MLP; the max over neighbours makes it a node update).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np


class Graph(NamedTuple):
    """A graph as arrays (a pytree, so it passes through ``jax.jit``).

    nodes_NxF: node features [N, F]; senders_E, receivers_E: int32 [E] node indices of each
    directed edge (message flows sender -> receiver).
    """

    nodes_NxF: jax.Array
    senders_E: jax.Array
    receivers_E: jax.Array

    @property
    def num_nodes(self) -> int:
        return self.nodes_NxF.shape[0]


def add_self_loops(senders_E: np.ndarray, receivers_E: np.ndarray, num_nodes: int) -> tuple[np.ndarray, np.ndarray]:
    """Host-side (numpy): the edge list without its self-loops, followed by one loop i -> i per node.

    Returns (senders, receivers), int32 [E - loops + num_nodes]; every node then has at least one
    incoming edge, so attention over N(i) is never empty.
    """
    senders_E, receivers_E = np.asarray(senders_E), np.asarray(receivers_E)
    if senders_E.shape != receivers_E.shape or senders_E.ndim != 1:
        raise ValueError(f"senders {senders_E.shape} and receivers {receivers_E.shape} must be one shape [E]")
    if senders_E.size and (min(senders_E.min(), receivers_E.min()) < 0 or max(senders_E.max(), receivers_E.max()) >= num_nodes):
        raise ValueError(f"edge indices must lie in [0, {num_nodes}), got [{min(senders_E.min(), receivers_E.min())}, "
                         f"{max(senders_E.max(), receivers_E.max())}]")
    keep = senders_E != receivers_E
    loops = np.arange(num_nodes)
    return (np.concatenate([senders_E[keep], loops]).astype(np.int32),
            np.concatenate([receivers_E[keep], loops]).astype(np.int32))


def segment_softmax(scores_E: jax.Array, segment_ids_E: jax.Array, num_segments: int) -> jax.Array:
    """Softmax of ``scores`` within each segment: exp(s_e) / sum_{e' : seg(e') = seg(e)} exp(s_e').

    scores_E: [E, ...] (trailing axes, e.g. heads, are independent); segment_ids_E: int [E] in
    [0, num_segments). Returns [E, ...]; each non-empty segment's entries sum to 1. Numerically
    stable: the per-segment maximum is subtracted before exponentiating (it is held constant for the
    gradient, which leaves the softmax and its gradient unchanged).
    """
    max_S = jax.ops.segment_max(scores_E, segment_ids_E, num_segments)
    shifted_E = scores_E - jax.lax.stop_gradient(max_S[segment_ids_E])
    exp_E = jnp.exp(shifted_E)
    sum_S = jax.ops.segment_sum(exp_E, segment_ids_E, num_segments)
    return exp_E / sum_S[segment_ids_E]


class GATLayer(nn.Module):
    """One multi-head graph attention layer.

    For head k: z_i = W_k h_i; e_ij = LeakyReLU_0.2(a_k^T [z_i || z_j]) for each edge j -> i;
    alpha_ij = softmax over j in N(i) of e_ij (``segment_softmax`` over the receivers), dropped out
    with ``attention_dropout`` in training; h_i' = sum_j alpha_ij z_j + b. Heads are concatenated
    ([N, heads * features]) or averaged ([N, features]); ``return_weights=True`` also returns alpha [E, heads]
    (before dropout, in the graph's edge order). PyTorch Geometric's ``GATConv`` computes the same
    (``nnjax.models.torch_import.gat_params_from_torch`` maps its weights). a_k splits into a receiver half and a sender
    half, so a^T [z_i || z_j] = a_dst . z_i + a_src . z_j is computed per node, then gathered per edge.
    """

    features: int
    heads: int = 1
    concat: bool = True
    attention_dropout: float = 0.0
    negative_slope: float = 0.2

    @nn.compact
    def __call__(self, graph: Graph, train: bool = False, return_weights: bool = False) -> Any:
        n = graph.num_nodes
        z_NxHxC = nn.Dense(self.heads * self.features, use_bias=False, name="proj")(graph.nodes_NxF)
        z_NxHxC = z_NxHxC.reshape(n, self.heads, self.features)
        glorot = nn.initializers.glorot_uniform(in_axis=-1, out_axis=-2)
        a_dst_HxC = self.param("att_dst", glorot, (self.heads, self.features))
        a_src_HxC = self.param("att_src", glorot, (self.heads, self.features))
        dst_NxH = jnp.einsum("nhc,hc->nh", z_NxHxC, a_dst_HxC)
        src_NxH = jnp.einsum("nhc,hc->nh", z_NxHxC, a_src_HxC)
        logits_ExH = nn.leaky_relu(dst_NxH[graph.receivers_E] + src_NxH[graph.senders_E], self.negative_slope)
        alpha_ExH = segment_softmax(logits_ExH, graph.receivers_E, n)
        dropped_ExH = nn.Dropout(self.attention_dropout, deterministic=not train)(alpha_ExH)
        messages_ExHxC = dropped_ExH[..., None] * z_NxHxC[graph.senders_E]
        out_NxHxC = jax.ops.segment_sum(messages_ExHxC, graph.receivers_E, n)
        out = out_NxHxC.reshape(n, -1) if self.concat else out_NxHxC.mean(axis=1)
        out = out + self.param("bias", nn.initializers.zeros, out.shape[-1:])
        return (out, alpha_ExH) if return_weights else out


class GAT(nn.Module):
    """The two-layer GAT of the seed / Veličković et al. (Cora setting): log-probabilities [N, classes].

    dropout(x) -> GATLayer(hidden, heads, concat) -> ELU -> dropout -> GATLayer(classes,
    output_heads, averaged) -> log_softmax; ``dropout`` also applies to the attention coefficients.
    """

    num_classes: int
    hidden: int = 8
    heads: int = 8
    output_heads: int = 1
    dropout: float = 0.6

    @nn.compact
    def __call__(self, graph: Graph, train: bool = False) -> jax.Array:
        drop = nn.Dropout(self.dropout, deterministic=not train)
        h = drop(graph.nodes_NxF)
        h = GATLayer(self.hidden, self.heads, True, self.dropout, name="gat1")(graph._replace(nodes_NxF=h), train)
        h = drop(nn.elu(h))
        logits = GATLayer(self.num_classes, self.output_heads, False, self.dropout, name="gat2")(
            graph._replace(nodes_NxF=h), train
        )
        return nn.log_softmax(logits)


class EdgeConv(nn.Module):
    """EdgeConv: h_i' = max_{j in N(i)} MLP([h_i, h_j - h_i]), elementwise max over incoming edges.

    MLP = Dense(features) -> ReLU -> Dense(features) (the seed's ``edge_mlp``). Nodes without incoming
    edges get 0 (``segment_max`` would give -inf). Output [N, features].
    """

    features: int

    @nn.compact
    def __call__(self, graph: Graph, train: bool = False) -> jax.Array:
        h_i = graph.nodes_NxF[graph.receivers_E]
        h_j = graph.nodes_NxF[graph.senders_E]
        edge_ExC = nn.Dense(self.features, name="mlp1")(jnp.concatenate([h_i, h_j - h_i], axis=-1))
        edge_ExC = nn.Dense(self.features, name="mlp2")(nn.relu(edge_ExC))
        max_NxC = jax.ops.segment_max(edge_ExC, graph.receivers_E, graph.num_nodes)
        in_degree_N = jax.ops.segment_sum(jnp.ones_like(graph.receivers_E), graph.receivers_E, graph.num_nodes)
        return jnp.where(in_degree_N[:, None] > 0, max_NxC, 0.0)


class EdgeConvNet(nn.Module):
    """A node classifier of stacked EdgeConvs: [dropout -> EdgeConv(w) -> ReLU] per width in ``hidden``,
    then dropout -> Dense(classes) -> log_softmax. Output [N, classes]."""

    num_classes: int
    hidden: Sequence[int] = (16, 16)
    dropout: float = 0.5

    @nn.compact
    def __call__(self, graph: Graph, train: bool = False) -> jax.Array:
        drop = nn.Dropout(self.dropout, deterministic=not train)
        h = graph.nodes_NxF
        for i, width in enumerate(self.hidden):
            h = nn.relu(EdgeConv(width, name=f"edgeconv{i}")(graph._replace(nodes_NxF=drop(h)), train))
        return nn.log_softmax(nn.Dense(self.num_classes, name="head")(drop(h)))
