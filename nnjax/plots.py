"""Matplotlib figures written as PNG files.

Figures are built with ``matplotlib.figure.Figure`` (no pyplot), so saving a plot never changes the
backend of an interactive session or notebook.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def learning_curves(rows: Sequence[dict[str, Any]], path: str, title: str = "") -> str:
    """Plot per-epoch train/validation loss and accuracy from metric rows; returns ``path``.

    Reads rows with ``kind == 'epoch'`` and their ``train_*``/``val_*`` fields.
    """
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    epochs = [row for row in rows if row["kind"] == "epoch"]
    metrics = sorted({key.split("_", 1)[1] for row in epochs for key in row if key.startswith(("train_", "val_"))})
    fig = Figure(figsize=(5 * len(metrics), 4))
    axes = fig.subplots(1, len(metrics), squeeze=False)
    for ax, metric in zip(axes[0], metrics):
        for split, style in (("train", "o-"), ("val", "s--")):
            points = [(row["epoch"], row[f"{split}_{metric}"]) for row in epochs if f"{split}_{metric}" in row]
            if points:
                ax.plot(*zip(*points), style, label=split)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch")
        ax.set_ylabel(metric)
        ax.set_title(metric)
        ax.grid(True, alpha=0.3)
        ax.legend()
    if title:
        fig.suptitle(title)
    return save_figure(fig, path)


def save_figure(fig: Any, path: str) -> str:
    """Lay out ``fig`` and write it to ``path`` as a 100-dpi PNG; returns ``path``."""
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return path


def loss_curve(loss_T: Sequence[float], path: str, title: str = "", ylabel: str = "loss", log_scale: bool = True) -> str:
    """Plot a per-step loss curve (log y-axis by default); returns ``path``."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 4))
    ax = fig.subplots()
    ax.plot(range(len(loss_T)), loss_T)
    if log_scale:
        ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel(ylabel)
    ax.grid(True, alpha=0.3)
    if title:
        ax.set_title(title)
    return save_figure(fig, path)


def convolution_panels(
    image_HxW: Any, kernel_KHxKW: Any, outputs: dict[str, Any], path: str, title: str = ""
) -> str:
    """Input image, the kernel (values written in its cells) and one panel per output map; returns ``path``.

    Output maps are shown in grey between their 1st and 99th percentiles, so a few strong edges do
    not wash out the rest.
    """
    import numpy as np
    from matplotlib.figure import Figure

    kernel = np.asarray(kernel_KHxKW)
    fig = Figure(figsize=(4.5 * (2 + len(outputs)), 4.5))
    axes = fig.subplots(1, 2 + len(outputs), squeeze=False)[0]
    axes[0].imshow(np.asarray(image_HxW), cmap="gray")
    axes[0].set_title(f"input {np.shape(image_HxW)[0]}x{np.shape(image_HxW)[1]}")
    axes[1].imshow(kernel, cmap="gray")
    for (i, j), value in np.ndenumerate(kernel):
        axes[1].text(j, i, f"{value:g}", ha="center", va="center", color="tab:red", fontsize=12)
    axes[1].set_title(f"kernel {kernel.shape[0]}x{kernel.shape[1]}")
    for ax, (name, values) in zip(axes[2:], outputs.items()):
        values = np.asarray(values)
        low, high = np.percentile(values, [1, 99])
        ax.imshow(values, cmap="gray", vmin=low, vmax=high)
        ax.set_title(f"{name} {values.shape[0]}x{values.shape[1]}")
    for ax in axes:
        ax.axis("off")
    if title:
        fig.suptitle(title)
    return save_figure(fig, path)


def network_diagram_figure(
    layer_sizes: Sequence[int],
    max_nodes_per_layer: int = 10,
    labels: Sequence[str] | None = None,
    title: str = "",
) -> Any:
    """A Figure of a layered fully-connected network (seed 003 slide 1): circles per layer, centred.

    Each edge between a shown node of layer l and a shown node of layer l+1 is drawn exactly once
    (a ``Line2D`` with gid 'edge'; nodes are ``Circle`` patches with gid 'node'). A layer wider than
    ``max_nodes_per_layer`` shows its first ceil(max/2) and last floor(max/2) nodes around a
    vertical ellipsis; every layer is captioned with its name and 'n = <width>'.
    """
    from matplotlib.figure import Figure
    from matplotlib.patches import Circle

    sizes = [int(n) for n in layer_sizes]
    if len(sizes) < 2 or min(sizes) < 1:
        raise ValueError(f"layer_sizes must hold >= 2 positive widths, got {list(layer_sizes)}")
    if max_nodes_per_layer < 2:
        raise ValueError(f"max_nodes_per_layer must be >= 2, got {max_nodes_per_layer}")
    if labels is None:
        labels = ["input", *(f"hidden {i}" for i in range(1, len(sizes) - 1)), "output"]
    if len(labels) != len(sizes):
        raise ValueError(f"labels must name each of the {len(sizes)} layers, got {list(labels)}")

    dx, radius = 3.0, 0.3
    columns = []  # per layer: (y of each shown node, y of the ellipsis or None)
    for n in sizes:
        if n <= max_nodes_per_layer:
            slots = [float(s) for s in range(n)]
            gap = None
        else:
            top = -(-max_nodes_per_layer // 2)
            slots = [float(s) for s in range(top)] + [float(s + 1) for s in range(top, max_nodes_per_layer)]
            gap = float(top)
        centre = (len(slots) - 1 + (gap is not None)) / 2
        columns.append(([centre - s for s in slots], None if gap is None else centre - gap))
    half_height = max(len(ys) + (gap is not None) for ys, gap in columns) / 2

    fig = Figure(figsize=(2.0 + 2.2 * len(sizes), 2.0 + 0.5 * 2 * half_height))
    ax = fig.add_subplot()
    colours = [f"C{i % 10}" for i in range(len(sizes) - 1)]
    for layer, ((ys_in, _), (ys_out, _)) in enumerate(zip(columns, columns[1:])):
        for y_in in ys_in:
            for y_out in ys_out:
                ax.plot([layer * dx, (layer + 1) * dx], [y_in, y_out], "-", color=colours[layer], lw=0.8, alpha=0.6, zorder=1, gid="edge")
    for layer, (ys, gap) in enumerate(columns):
        x = layer * dx
        for y in ys:
            ax.add_patch(Circle((x, y), radius, facecolor="white", edgecolor="black", lw=1.2, zorder=2, gid="node"))
        if gap is not None:
            ax.text(x, gap, "\u22ee", ha="center", va="center", fontsize=18, zorder=3)
        ax.text(x, half_height + 0.4, labels[layer], ha="center", va="bottom", fontsize=11)
        ax.text(x, -half_height - 0.4, f"n = {sizes[layer]}", ha="center", va="top", fontsize=10)
    ax.set_xlim(-1.5, (len(sizes) - 1) * dx + 1.5)
    ax.set_ylim(-half_height - 1.4, half_height + 1.4)
    ax.set_aspect("equal")
    ax.axis("off")
    if title:
        ax.set_title(title)
    return fig


def diagram_counts(fig: Any) -> dict[str, int]:
    """Count the drawn artists of a ``network_diagram_figure``: {'nodes': circles, 'edges': lines}."""
    artists = [artist for ax in fig.axes for artist in (*ax.patches, *ax.lines)]
    return {kind + "s": sum(artist.get_gid() == kind for artist in artists) for kind in ("node", "edge")}


def network_diagram(
    layer_sizes: Sequence[int],
    path: str,
    max_nodes_per_layer: int = 10,
    labels: Sequence[str] | None = None,
    title: str = "",
) -> str:
    """Draw ``network_diagram_figure(layer_sizes, ...)`` to the PNG ``path``; returns ``path``."""
    return save_figure(network_diagram_figure(layer_sizes, max_nodes_per_layer, labels, title), path)
