"""Seed 000 slide 11: a graph attention network (and EdgeConv) for semi-supervised node classification.

Full-batch training on the labelled nodes only, evaluated on all the others:
- ``--data karate``: Zachary's karate club, one-hot identity features, one labelled member per club
  (node 0, Mr. Hi, and node 33, the officer); the 32 others are the test set.
- ``--data sbm``: a 4-block stochastic block model (25 nodes per block, p_in 0.3, p_out 0.02, noisy
  block-correlated features), 2 labelled nodes per block.

``--model gat`` is the seed's GAT (8 heads x 8 features, ELU, a single-head output layer, dropout 0.6,
log-softmax); ``--model edgeconv`` is a two-layer EdgeConv network (max over MLP([h_i, h_j - h_i])).
Adam lr 5e-3 with L2 weight decay 5e-4, 200 epochs, as in the GAT paper. Writes ``graph.png`` (the
graph coloured by predicted class, misclassified nodes ringed in red, labelled nodes as squares;
the first seed's under ``--seeds N``, which trains N seeds at once and reports means, ``_std`` and ``_per_seed``).

    python -m experiments.gat_karate
    python -m experiments.gat_karate --data sbm --model edgeconv
"""

from __future__ import annotations

import dataclasses
import os
import sys

import numpy as np

from nnjax import cli, plots
from nnjax.config import check_fraction, option
from nnjax.data.graphs import NodeClassification, karate_club, stochastic_block_model
from nnjax.models.graph import GAT, EdgeConvNet
from nnjax.tasks.node_classification import NodeClassificationConfig, predict, to_graph, train_node_classifier
from nnjax.train.runner import seed_states

DATA = ("karate", "sbm")
MODELS = ("gat", "edgeconv")


@dataclasses.dataclass(frozen=True)
class Config(NodeClassificationConfig):
    """GAT (8 heads x 8 hidden, dropout 0.6) on the karate club from 2 labelled nodes; Adam 5e-3, L2 5e-4, 200 epochs."""

    data: str = option(
        "karate", "graph: karate (Zachary's club, one labelled member per club) or sbm (a stochastic block model)",
        choices=DATA,
    )
    model: str = option("gat", "gat (graph attention network) or edgeconv (two EdgeConv layers)", choices=MODELS)
    hidden: int = option(8, "--model gat: features per head of the hidden layer")
    heads: int = option(8, "--model gat: attention heads of the hidden layer (concatenated)")
    output_heads: int = option(1, "--model gat: attention heads of the output layer (averaged)")
    dropout: float = option(0.6, "dropout rate in training (GAT: on features and attention coefficients), in [0, 1)")
    edgeconv_hidden: tuple[int, ...] = option((16, 16), "--model edgeconv: widths of its EdgeConv layers")
    sbm_blocks: int = option(4, "--data sbm: blocks, one class each")
    sbm_block_size: int = option(25, "--data sbm: nodes per block")
    sbm_p_in: float = option(0.3, "--data sbm: edge probability within a block")
    sbm_p_out: float = option(0.02, "--data sbm: edge probability between blocks")
    sbm_labels_per_block: int = option(2, "--data sbm: labelled (training) nodes per block")
    sbm_feature_signal: float = option(
        0.5, "--data sbm: scale of the block centre in the node features (plus N(0, 1) noise)"
    )

    def validate(self) -> None:
        check_fraction(self, "dropout")
        super().validate()


def load(config: Config) -> NodeClassification:
    """The ``--data`` graph (the SBM drawn from ``--seed``)."""
    if config.data == "karate":
        return karate_club()
    return stochastic_block_model(
        config.sbm_blocks, config.sbm_block_size, config.sbm_p_in, config.sbm_p_out, config.sbm_labels_per_block,
        feature_signal=config.sbm_feature_signal, seed=config.seed,
    )


def main(config: Config) -> dict:
    data = load(config)
    if config.model == "gat":
        model = GAT(data.num_classes, config.hidden, config.heads, config.output_heads, config.dropout)
    else:
        model = EdgeConvNet(data.num_classes, config.edgeconv_hidden, config.dropout)
    result = train_node_classifier(config, model, data, "gat_karate", num_nodes=data.num_nodes,
                                   num_edges=int(data.senders_E.size))
    first = seed_states(result.state, config.seeds)[0]
    predicted_N = np.asarray(predict(first, to_graph(data))).argmax(axis=-1)
    summary = result.summary
    plots.graph_predictions(data, predicted_N, os.path.join(summary["workdir"], "graph.png"),
                     f"{config.model} on {data.name}: test accuracy {summary.get('test_accuracy_per_seed', [summary['test_accuracy']])[0]:.3f} "
                     f"from {summary['labelled_nodes']} labels")
    return {"data": data.name, "model": config.model, **summary}


if __name__ == "__main__":
    sys.exit(cli.run(main, Config, prog="gat_karate"))
