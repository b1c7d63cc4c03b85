"""Figures: the network diagram draws every edge exactly once; the convolution panels render."""

from __future__ import annotations

import itertools
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from matplotlib.image import imread
from matplotlib.lines import Line2D
from matplotlib.patches import Circle

from experiments import network_diagram
from nnjax import cli, plots
from nnjax.models import MLP
from conftest import run_experiment


def _drawn(fig):
    """(node centres, edge endpoint pairs) found by inspecting the Figure's artists."""
    (ax,) = fig.axes
    nodes = [p.center for p in ax.patches if isinstance(p, Circle)]
    edges = [tuple(zip(*line.get_data())) for line in ax.lines if isinstance(line, Line2D)]
    return nodes, edges


def _shown(sizes, max_nodes):
    return [min(n, max_nodes) for n in sizes]


@pytest.mark.parametrize(
    "sizes, max_nodes",
    [((3, 4, 2), 10), ((784, 128, 64, 10), 10), ((1, 1), 10), ((12, 3, 7), 4), ((5, 5), 5)],
)
def test_network_diagram_draws_each_edge_between_consecutive_layers_once(sizes, max_nodes, tmp_path):
    fig = plots.network_diagram_figure(sizes, max_nodes)
    nodes, edges = _drawn(fig)
    shown = _shown(sizes, max_nodes)
    assert len(nodes) == sum(shown)
    assert len(edges) == sum(a * b for a, b in itertools.pairwise(shown))
    assert plots.diagram_counts(fig) == {"nodes": len(nodes), "edges": len(edges)}

    xs = sorted({x for x, _ in nodes})
    assert len(xs) == len(sizes)
    columns = [[(x, y) for x, y in nodes if x == column_x] for column_x in xs]
    assert [len(c) for c in columns] == shown
    for column in columns:  # vertically centred
        ys = [y for _, y in column]
        assert max(ys) == pytest.approx(-min(ys))
    expected_edges = {
        (tuple(a), tuple(b)) for left, right in itertools.pairwise(columns) for a, b in itertools.product(left, right)
    }
    assert len(set(edges)) == len(edges)
    assert set(edges) == expected_edges

    texts = [t.get_text() for t in fig.axes[0].texts]
    assert [f"n = {n}" for n in sizes] == [t for t in texts if t.startswith("n = ")]
    assert texts.count("\u22ee") == sum(n > max_nodes for n in sizes)

    path = plots.network_diagram(sizes, str(tmp_path / "net.png"), max_nodes, title="net")
    image = imread(path)
    assert image.ndim == 3 and min(image.shape[:2]) > 100


def test_network_diagram_labels_and_errors():
    fig = plots.network_diagram_figure((2, 3), labels=("x", "y"))
    assert {"x", "y"} <= {t.get_text() for t in fig.axes[0].texts}
    with pytest.raises(ValueError, match="layer_sizes"):
        plots.network_diagram_figure((3,))
    with pytest.raises(ValueError, match="layer_sizes"):
        plots.network_diagram_figure((3, 0))
    with pytest.raises(ValueError, match="max_nodes_per_layer"):
        plots.network_diagram_figure((3, 4), max_nodes_per_layer=1)
    with pytest.raises(ValueError, match="labels"):
        plots.network_diagram_figure((3, 4), labels=("a",))


def test_convolution_panels_writes_png(tmp_path):
    image = np.random.default_rng(0).random((12, 10))
    path = plots.convolution_panels(image, np.eye(3), {"out": image[1:-1, 1:-1]}, str(tmp_path / "c.png"))
    assert imread(path).ndim == 3


def _flax_param_count(sizes):
    params = MLP(features=sizes[1:]).init(jax.random.PRNGKey(0), jnp.zeros((1, sizes[0])))
    return sum(leaf.size for leaf in jax.tree_util.tree_leaves(params))


def test_network_diagram_cli(tmp_path):
    result = run_experiment("experiments.network_diagram", "--workdir", str(tmp_path), "--layers", "784,128,64,10")
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout.strip().splitlines()[-1])
    _check_summary(out, [784, 128, 64, 10], tmp_path)


def test_network_diagram_default_is_the_seed_net(tmp_path):
    out = network_diagram.main(network_diagram.Config(workdir=str(tmp_path)))
    _check_summary(out, [3, 4, 2], tmp_path)


def _check_summary(out, sizes, workdir):
    shown = _shown(sizes, 10)
    assert out["layers"] == sizes
    assert out["parameters"] == _flax_param_count(sizes)
    assert out["nodes_drawn"] == sum(shown)
    assert out["edges_drawn"] == sum(a * b for a, b in itertools.pairwise(shown))
    assert out["plots"] == ["network.png"] and imread(os.path.join(workdir, "network.png")).ndim == 3


@pytest.mark.parametrize("flags", [["--layers", "3"], ["--layers", "3,x"], ["--max-nodes", "1"]])
def test_network_diagram_cli_rejects_bad_flags(flags, tmp_path, capsys):
    try:
        code = cli.run(network_diagram.main, network_diagram.Config, ["--workdir", str(tmp_path), *flags])
    except SystemExit as exit:  # argparse's own errors: --layers is parsed into widths there
        code = exit.code
    assert code == 2
    assert flags[0] in capsys.readouterr().err


def test_tile_images_places_each_image_in_row_major_cells():
    x = np.arange(5 * 2 * 3 * 1, dtype=np.float32).reshape(5, 2, 3, 1) + 1.0
    grid = plots.tile_images(x, columns=2, pad=1)
    assert grid.shape == (3 * 3 - 1, 2 * 4 - 1, 1)
    np.testing.assert_array_equal(grid[0:2, 4:7], x[1])  # row 0, column 1
    np.testing.assert_array_equal(grid[6:8, 0:3], x[4])  # row 2, column 0
    assert (grid[6:8, 4:7] == x.min()).all()  # the empty sixth cell
    with pytest.raises(ValueError, match="N, H, W, C"):
        plots.tile_images(x[0])


def test_image_segmentation_and_histogram_plots_write_pngs(tmp_path):
    masks = np.zeros((2, 6, 6), bool)
    masks[:, 2:4, 2:4] = True
    paths = [
        plots.image_grid(np.zeros((3, 4, 4, 3)), str(tmp_path / "grid.png"), "t", value_range=(-1, 1)),
        plots.segmentation_overlay(np.ones((2, 6, 6, 1)), masks, np.roll(masks, 1, axis=2), str(tmp_path / "o.png")),
        plots.histograms({"a": np.arange(10.0)}, str(tmp_path / "h.png"), densities={"pdf": ([0, 9], [0.1, 0.1])}),
    ]
    assert all((tmp_path / p).stat().st_size > 0 for p in paths)
    with pytest.raises(ValueError, match="masks"):
        plots.segmentation_overlay(np.ones((2, 6, 6, 1)), masks[0], masks, str(tmp_path / "bad.png"))


def test_spectrogram_writes_a_9x7_inch_png_and_needs_the_true_track(tmp_path):
    times_F = np.arange(20) / 10
    tracks = {"true": 100 + 50 * times_F, "dominant": 103 + 50 * times_F}
    power_FxK = np.random.default_rng(0).random((20, 33))
    image = imread(plots.spectrogram(power_FxK, tracks, times_F, 3200.0, str(tmp_path / "s.png")))
    assert image.ndim == 3 and abs(image.shape[0] - 700) < 50 and abs(image.shape[1] - 900) < 50  # 100 dpi, tight crop
    assert image[..., :3].std() > 0.1
    with pytest.raises(ValueError, match="'true'"):
        plots.spectrogram(power_FxK, {"dominant": tracks["dominant"]}, times_F, 3200.0, str(tmp_path / "bad.png"))


@pytest.mark.parametrize(
    "probs, inches",
    [
        ({"00": 0.5, "01": 0.0, "10": 0.0, "11": 0.5}, 0.8 * 4 + 2),  # <= 16 outcomes: a bar for each
        ({f"{i:05b}": 1 / 32 for i in range(32)}, 0.8 * 32 + 2),  # > 16, all possible
        ({f"{i:05b}": float(i in (0, 31)) / 2 for i in range(32)}, 4),  # > 16: only the two possible ones
    ],
)
def test_count_histogram_has_one_bar_per_shown_outcome(probs, inches, tmp_path):
    counts = {k: round(1000 * p) for k, p in probs.items() if p > 0}
    image = imread(plots.count_histogram(counts, probs, 1000, str(tmp_path / "h.png"), "Bell"))
    assert image.ndim == 3 and abs(image.shape[1] - 100 * inches) < 60 and abs(image.shape[0] - 400) < 30
