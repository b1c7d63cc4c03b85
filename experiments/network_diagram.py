"""Seed 003 slide 1: draw a layered fully-connected network (default 3-4-2), each edge exactly once.

    python -m experiments.network_diagram
    python -m experiments.network_diagram --layers 784,128,64,10    # seed 002 slide 1
    python -m experiments.network_diagram --layers 3,5,2            # seed 004 slide 2

The seed's snippet nests the hidden->output loop inside the input->hidden loop, so it draws the
second layer's edges once per input node and joins nodes by index rather than by position; here
every pair of consecutive layers is a full bipartite graph drawn once. Layers wider than
``--max-nodes`` are truncated with an ellipsis and captioned 'n = <width>'.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
import sys

from nnjax import cli, plots
from nnjax.config import RunConfig, option, prepare_workdir
from nnjax.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class Config(RunConfig):
    """The seed's 3-4-2 network (input 3, hidden 4, output 2)."""

    layers: tuple[int, ...] = option((3, 4, 2), "layer widths, input first", min_count=2)
    max_nodes: int = option(10, "nodes drawn per layer; wider layers are cut with an ellipsis (>= 2)")
    title: str = option("Simple Neural Network Architecture", "figure title")

    def validate(self) -> None:
        if self.max_nodes < 2:
            raise ConfigError(f"--max-nodes must be >= 2, got {self.max_nodes}")
        super().validate()


def main(config: Config) -> dict:
    workdir = prepare_workdir(config, "network_diagram")
    sizes = config.layers
    fig = plots.network_diagram_figure(sizes, config.max_nodes, title=config.title)
    plots.save_figure(fig, os.path.join(workdir, "network.png"))
    drawn = plots.diagram_counts(fig)
    return {
        "layers": list(sizes),
        "parameters": sum(n_in * n_out + n_out for n_in, n_out in itertools.pairwise(sizes)),
        "nodes_drawn": drawn["nodes"],
        "edges_drawn": drawn["edges"],
        "plots": ["network.png"],
        "workdir": workdir,
    }


if __name__ == "__main__":
    sys.exit(cli.run(main, Config, prog="network_diagram"))
