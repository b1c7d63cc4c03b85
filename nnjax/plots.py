"""Matplotlib figures written as PNG files.

Figures are built with ``matplotlib.figure.Figure`` (no pyplot), so saving a plot never changes the
backend of an interactive session or notebook.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


def learning_curves(rows: Sequence[dict[str, Any]], path: str, title: str = "") -> str:
    """Plot train/validation/test loss and accuracy against the training step from metric rows; returns ``path``.

    Training curves come from the logged chunk rows (``kind == 'train'``: means over each chunk of
    steps, drawn at the chunk's last step), validation points from the epoch rows (``val_*``) and
    the final evaluation from the ``'test'`` row, so a run of a fraction of an epoch still shows
    its curve. The top axis marks epochs when the run spans more than one. Rows of several seeds
    (``<metric>_per_seed``) draw the mean with a band (test: an error bar) of one standard deviation over seeds.
    """
    from matplotlib.figure import Figure

    series = {
        "train": [row for row in rows if row["kind"] == "train"],
        "val": [row for row in rows if row["kind"] == "epoch"],
        "test": [row for row in rows if row["kind"] == "test"],
    }
    metrics = sorted(
        {key.split("_", 1)[1] for split, split_rows in series.items() for row in split_rows for key in row
         if key.startswith(f"{split}_") and not key.endswith(("_std", "_per_seed"))}
    )
    fig = Figure(figsize=(5 * len(metrics), 4))
    axes = fig.subplots(1, len(metrics), squeeze=False)
    epoch_ends = [row["step"] for row in series["val"]]
    for ax, metric in zip(axes[0], metrics):
        for split, style in (("train", "-"), ("val", "s--"), ("test", "*")):
            points = [(row["step"], row[f"{split}_{metric}"]) for row in series[split] if f"{split}_{metric}" in row]
            if points:
                line = ax.plot(*zip(*points), style, label=split, markersize=10 if split == "test" else 5)[0]
                per_seed = [(row["step"], np.std(row[f"{split}_{metric}_per_seed"], ddof=1))
                            for row in series[split] if len(row.get(f"{split}_{metric}_per_seed", ())) > 1]
                if per_seed and split != "test":  # several seeds: their mean with a band of +- one std
                    steps, std = np.array(per_seed).T
                    mean = np.array([value for step, value in points if step in set(steps)])
                    ax.fill_between(steps, mean - std, mean + std, color=line.get_color(), alpha=0.2, linewidth=0)
                elif per_seed:
                    ax.errorbar(*zip(*points), yerr=[std for _, std in per_seed], fmt="none", color=line.get_color())
        for step in epoch_ends[:-1] if len(epoch_ends) > 1 else []:
            ax.axvline(step, color="0.85", linewidth=0.8, zorder=0)
        ax.set_xlabel("step" + (" (grey lines: epoch ends)" if len(epoch_ends) > 1 else ""))
        ax.set_ylabel(metric)
        ax.set_title(metric)
        ax.grid(True, alpha=0.3)
        ax.legend()
    if title:
        fig.suptitle(title)
    return save_figure(fig, path)


def save_figure(fig: Any, path: str) -> str:
    """Lay out ``fig`` and write it to ``path`` as a 100-dpi PNG cropped to its artists (no clipped labels); returns ``path``."""
    fig.tight_layout()
    fig.savefig(path, dpi=100, bbox_inches="tight")
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
        hidden = ["hidden"] if len(sizes) == 3 else [f"hidden {i}" for i in range(1, len(sizes) - 1)]
        labels = ["input", *hidden, "output"]
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

    inches_per_unit = 0.55
    fig = Figure(figsize=(inches_per_unit * ((len(sizes) - 1) * dx + 3.0), inches_per_unit * (2 * half_height + 3.6)))
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


def activation_curves(z_N: Any, curves: dict[str, tuple[Any, Any]], path: str) -> str:
    """Two panels over ``z_N``: each activation (left) and its derivative (right); returns ``path``.

    ``curves`` maps a name to ``(f(z_N), f'(z_N))``.
    """
    from matplotlib.figure import Figure

    fig = Figure(figsize=(12, 4.5))
    ax_f, ax_df = fig.subplots(1, 2)
    for name, (values, derivative) in curves.items():
        ax_f.plot(z_N, values, label=name)
        ax_df.plot(z_N, derivative, label=name)
    for ax, title in ((ax_f, "Activation f(z)"), (ax_df, "Derivative f'(z)")):
        ax.set_title(title)
        ax.set_xlabel("z")
        ax.grid(True, alpha=0.3)
        ax.legend()
    return save_figure(fig, path)


def chain_rule_curves(
    x_N: Any, values_N: Any, chain_derivative_N: Any, autodiff_N: Any, name: str, path: str
) -> str:
    """A composition ``name`` (left) and its derivative as a product of local derivatives vs ``jax.grad`` (right)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 4.5))
    ax_f, ax_df = fig.subplots(1, 2)
    ax_f.plot(x_N, values_N)
    ax_f.set_title(f"F(x) = {name}")
    ax_df.plot(x_N, autodiff_N, label="jax.grad(F)", linewidth=3, alpha=0.5)
    ax_df.plot(x_N[::4], chain_derivative_N[::4], "k.", label="product of local derivatives")
    ax_df.set_title("F'(x)")
    ax_df.legend()
    for ax in (ax_f, ax_df):
        ax.set_xlabel("x")
        ax.grid(True, alpha=0.3)
    return save_figure(fig, path)


def loss_curves(
    x_N: Any,
    curves: dict[str, Any],
    path: str,
    xlabel: str,
    ylabel: str = "loss",
    title: str = "",
    zoom: tuple[float, float] | None = None,
) -> str:
    """Named curves over a shared x axis (loss comparisons, regularized losses); returns ``path``.

    With ``zoom=(lo, hi)`` a second panel repeats the curves for ``lo <= x <= hi`` only, so that small
    differences (e.g. a penalty near the minimum) are visible.
    """
    from matplotlib.figure import Figure

    x_N = np.asarray(x_N)
    panels = [(np.ones_like(x_N, dtype=bool), title)]
    if zoom is not None:
        panels.append(((x_N >= zoom[0]) & (x_N <= zoom[1]), f"zoom: {zoom[0]:.3g} <= {xlabel} <= {zoom[1]:.3g}"))
    fig = Figure(figsize=(8 * len(panels), 5))
    for ax, (keep, panel_title) in zip(fig.subplots(1, len(panels), squeeze=False)[0], panels):
        for name, values in curves.items():
            ax.plot(x_N[keep], np.asarray(values)[keep], label=name)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        if panel_title:
            ax.set_title(panel_title)
        ax.grid(True, alpha=0.3)
        ax.legend()
    return save_figure(fig, path)


def descent_path_1d(
    curve_x: Any, curve_y: Any, path_x: Any, path_y: Any, path: str, minimizer: float | None = None, title: str = ""
) -> str:
    """A 1-D function ``curve_y = f(curve_x)`` with the points a descent visited, start and end marked."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 5))
    ax = fig.subplots()
    ax.plot(curve_x, curve_y, "b-", label="f(x)")
    ax.plot(path_x, path_y, "o-", color="tab:red", markersize=4, alpha=0.7, label="gradient descent path")
    ax.plot(path_x[0], path_y[0], "s", color="black", markersize=8, label=f"start x={float(path_x[0]):.3g}")
    ax.plot(path_x[-1], path_y[-1], "*", color="gold", markeredgecolor="black", markersize=14,
            label=f"end x={float(path_x[-1]):.4f}")
    if minimizer is not None:
        ax.axvline(minimizer, color="gray", linestyle=":", label=f"true minimiser x={minimizer:.4f}")
    ax.set_xlabel("x")
    ax.set_ylabel("f(x)")
    ax.grid(True, alpha=0.3)
    ax.legend()
    ax.set_title(title or "Gradient descent")
    return save_figure(fig, path)


def optimizer_paths(
    x_GxG: Any, y_GxG: Any, z_GxG: Any, paths: dict[str, Any], losses: dict[str, Any], path: str, title: str = ""
) -> str:
    """Contours of a 2-D function with each optimizer's path ([T+1, 2]) and its loss per step (log scale)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(14, 6))
    ax_path, ax_loss = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1.1, 1]})
    contours = ax_path.contour(x_GxG, y_GxG, z_GxG, levels=30, cmap="viridis", linewidths=0.7)
    fig.colorbar(contours, ax=ax_path, shrink=0.8)
    for (name, points), color in zip(paths.items(), ("tab:red", "tab:green", "tab:blue", "tab:orange", "tab:purple")):
        points = np.asarray(points)
        ax_path.plot(points[:, 0], points[:, 1], ".-", color=color, markersize=5, label=name)
        ax_path.plot(*points[-1], "*", color=color, markeredgecolor="black", markersize=13)
        ax_loss.semilogy(np.maximum(np.asarray(losses[name]), np.finfo(np.float32).tiny), "-", color=color, label=name)
    start = np.asarray(next(iter(paths.values())))[0]
    ax_path.plot(*start, "s", color="black", markersize=8, label="start")
    ax_path.set_aspect("equal")
    ax_path.set_xlabel("x")
    ax_path.set_ylabel("y")
    ax_path.legend(loc="lower left")
    ax_path.set_title("paths (★ = end)")
    ax_loss.set_xlabel("step")
    ax_loss.set_ylabel("loss")
    ax_loss.grid(True, which="both", alpha=0.3)
    ax_loss.legend()
    ax_loss.set_title("loss per step")
    if title:
        fig.suptitle(title)
    return save_figure(fig, path)


def lr_schedule(epochs_E: Any, lr_E: Any, path: str, marks_every: int = 0, title: str = "") -> str:
    """Learning rate per epoch as a step curve (log scale), optionally marking every ``marks_every`` epochs."""
    from matplotlib.figure import Figure

    epochs_E, lr_E = np.asarray(epochs_E), np.asarray(lr_E)
    fig = Figure(figsize=(8, 4.5))
    ax = fig.subplots()
    ax.step(epochs_E, lr_E, where="post", label="learning rate")
    if marks_every:
        marked = epochs_E[::marks_every]
        ax.plot(marked, lr_E[::marks_every], "o", color="tab:red", label=f"every {marks_every} epochs")
    ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("learning rate")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    ax.set_title(title or "learning-rate schedule")
    return save_figure(fig, path)


def compare_curves(histories: dict[str, Sequence[dict[str, Any]]], metric: str, path: str, title: str = "") -> str:
    """Per-epoch train (solid) and validation (dashed) ``metric`` of several runs' metric rows; returns ``path``."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    fig = Figure(figsize=(6, 4))
    ax = fig.subplots()
    for i, (name, rows) in enumerate(histories.items()):
        epochs = [row for row in rows if row["kind"] == "epoch"]
        for split, style in (("train", "-"), ("val", "--")):
            points = [(row["epoch"], row[f"{split}_{metric}"]) for row in epochs if f"{split}_{metric}" in row]
            if points:
                ax.plot(*zip(*points), style, color=f"C{i}", label=f"{name} ({split})")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel(metric)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="small")
    if title:
        ax.set_title(title)
    return save_figure(fig, path)


def mixed_examples(x_NxHxWxC: Any, y_soft_NxK: Any, path: str, title: str = "", columns: int = 4) -> str:
    """Grid of (mixed) images, each titled with its non-zero label weights ``class:weight``; returns ``path``."""
    from matplotlib.figure import Figure

    x = np.asarray(x_NxHxWxC)
    weights = np.asarray(y_soft_NxK)
    rows = -(-len(x) // columns)
    fig = Figure(figsize=(2.2 * columns, 2.7 * rows))
    axes = fig.subplots(rows, columns, squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i >= len(x):
            continue
        image = x[i, ..., 0] if x.shape[-1] == 1 else x[i]
        ax.imshow(image, cmap="gray" if x.shape[-1] == 1 else None)
        order = np.argsort(-weights[i])
        ax.set_title(" ".join(f"{k}:{weights[i, k]:.2f}" for k in order if weights[i, k] > 1e-6), fontsize=9)
    if title:
        fig.suptitle(title)
    return save_figure(fig, path)


def confusion_matrix_figure(cm_KxK: Any, class_names: Sequence[str] | None = None, normalize: bool = False) -> Any:
    """Figure of a confusion matrix (rows true, columns predicted) with every cell annotated.

    ``normalize=True`` shows each row divided by its true count (recall on the diagonal; empty rows 0).
    """
    from matplotlib.figure import Figure

    counts = np.asarray(cm_KxK, dtype=np.float64)
    if counts.ndim != 2 or counts.shape[0] != counts.shape[1]:
        raise ValueError(f"cm_KxK must be a square [K, K] matrix, got shape {counts.shape}")
    k = counts.shape[0]
    names = [str(i) for i in range(k)] if class_names is None else [str(name) for name in class_names]
    if len(names) != k:
        raise ValueError(f"class_names must name the {k} classes, got {len(names)} names")
    rows = counts.sum(axis=1, keepdims=True)
    values = np.divide(counts, rows, out=np.zeros_like(counts), where=rows > 0) if normalize else counts
    fig = Figure(figsize=(1.0 + 0.6 * k, 0.8 + 0.6 * k) if k > 6 else (5, 4.2))
    ax = fig.subplots()
    image = ax.imshow(values, cmap="Blues", vmin=0)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    threshold = values.max() / 2 if values.size else 0
    for (i, j), value in np.ndenumerate(values):
        text = f"{value:.2f}" if normalize else f"{int(value)}"
        ax.text(j, i, text, ha="center", va="center", color="white" if value > threshold else "black", fontsize=9)
    ax.set_xticks(range(k), names)
    ax.set_yticks(range(k), names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title("confusion matrix (row-normalised)" if normalize else "confusion matrix")
    return fig


def confusion_matrix(cm_KxK: Any, path: str, class_names: Sequence[str] | None = None, normalize: bool = False) -> str:
    """Write ``confusion_matrix_figure(cm_KxK, class_names, normalize)`` to ``path``; returns ``path``."""
    return save_figure(confusion_matrix_figure(cm_KxK, class_names, normalize), path)


def equity_curves(curves: dict[str, Any], path: str, title: str = "") -> str:
    """Equity curves (wealth from 1.0 per trading day), one line per strategy name; returns ``path``."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 4.5))
    ax = fig.subplots()
    for name, equity_T in curves.items():
        ax.plot(np.asarray(equity_T), label=name)
    ax.axhline(1.0, color="gray", linewidth=0.8, linestyle=":")
    ax.set_xlabel("trading day")
    ax.set_ylabel("equity")
    ax.grid(True, alpha=0.3)
    ax.legend()
    ax.set_title(title or "equity curves")
    return save_figure(fig, path)


def forecast(
    t_N: Any, actual_N: Any, forecasts: dict[str, Any], path: str, title: str = "", context: tuple[Any, Any] | None = None
) -> str:
    """Actual series against one or more forecasts over time steps ``t_N``; returns ``path``.

    ``forecasts`` maps a label (e.g. 'LSTM', 'naive') to values [N]; ``context`` = (t, values) of
    earlier series (e.g. the training part) drawn faintly before the forecast region.
    """
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 4))
    ax = fig.subplots()
    if context is not None:
        ax.plot(np.asarray(context[0]), np.asarray(context[1]), color="0.7", lw=1, label="history")
    ax.plot(np.asarray(t_N), np.asarray(actual_N), "k.", ms=3, label="actual")
    for label, values in forecasts.items():
        ax.plot(np.asarray(t_N), np.asarray(values), lw=1.5, label=label)
    ax.set_xlabel("time step")
    ax.set_ylabel("value")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="small")
    if title:
        ax.set_title(title)
    return save_figure(fig, path)


def return_predictions(actual_N: Any, predicted_N: Any, path: str, title: str = "") -> str:
    """Predicted against realised daily returns: both over time (left) and as a scatter (right); returns ``path``."""
    from matplotlib.figure import Figure

    actual_N, predicted_N = np.asarray(actual_N), np.asarray(predicted_N)
    fig = Figure(figsize=(12, 4))
    ax_time, ax_scatter = fig.subplots(1, 2, gridspec_kw={"width_ratios": [2, 1]})
    ax_time.plot(actual_N, color="0.6", lw=0.8, label="actual")
    ax_time.plot(predicted_N, lw=1.2, label="predicted")
    ax_time.axhline(0.0, color="k", lw=0.6)
    ax_time.set_xlabel("trading day")
    ax_time.set_ylabel("next-day return")
    ax_time.legend(fontsize="small")
    ax_scatter.scatter(actual_N, predicted_N, s=6, alpha=0.6)
    ax_scatter.axhline(0.0, color="k", lw=0.6)
    ax_scatter.axvline(0.0, color="k", lw=0.6)
    ax_scatter.set_xlabel("actual return")
    ax_scatter.set_ylabel("predicted return")
    for ax in (ax_time, ax_scatter):
        ax.grid(True, alpha=0.3)
    fig.suptitle(title or "predicted vs actual returns")
    return save_figure(fig, path)


def tile_images(x_NxHxWxC: Any, columns: int = 8, pad: int = 1) -> Any:
    """Tile images [N, H, W, C] into one image [rows*(H+pad)-pad, columns*(W+pad)-pad, C].

    Empty cells and the ``pad``-pixel gutters are the images' minimum value, so the grid
    reads as one picture at any value range.
    """

    x = np.asarray(x_NxHxWxC, dtype=np.float32)
    if x.ndim != 4 or len(x) == 0 or columns < 1:
        raise ValueError(f"tile_images expects a non-empty [N, H, W, C] array and columns >= 1, got {x.shape}, {columns}")
    n, h, w, c = x.shape
    columns = min(columns, n)
    rows = -(-n // columns)
    grid = np.full((rows * (h + pad) - pad, columns * (w + pad) - pad, c), x.min(), np.float32)
    for i in range(n):
        r, k = divmod(i, columns)
        grid[r * (h + pad) : r * (h + pad) + h, k * (w + pad) : k * (w + pad) + w] = x[i]
    return grid


def image_grid(
    x_NxHxWxC: Any, path: str, title: str = "", columns: int = 8, value_range: tuple[float, float] = (0.0, 1.0)
) -> str:
    """One PNG of images [N, H, W, C] (C = 1 grey, 3 RGB) tiled ``columns`` wide; returns ``path``.

    Values are clipped to ``value_range`` (e.g. (-1, 1) for a tanh generator) and shown on it.
    """
    from matplotlib.figure import Figure

    lo, hi = value_range
    grid = (np.clip(tile_images(x_NxHxWxC, columns), lo, hi) - lo) / (hi - lo)
    height, width = grid.shape[:2]
    scale = 8.0 / max(height, width)
    fig = Figure(figsize=(max(width * scale, 2.0), max(height * scale, 2.0) + (0.4 if title else 0.0)))
    ax = fig.subplots()
    ax.imshow(grid[..., 0] if grid.shape[-1] == 1 else grid, cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
    ax.axis("off")
    if title:
        ax.set_title(title)
    return save_figure(fig, path)


def segmentation_overlay(
    images_NxHxWxC: Any, true_masks_NxHxW: Any, pred_masks_NxHxW: Any, path: str, title: str = ""
) -> str:
    """Rows of (image, true mask, predicted mask, overlay) for N examples; returns ``path``.

    The overlay colours true positives green, false positives red and false negatives blue over
    the grey image, so a reader sees at a glance where the prediction is wrong.
    """
    from matplotlib.figure import Figure

    images = np.asarray(images_NxHxWxC, dtype=np.float32)
    true = np.asarray(true_masks_NxHxW) > 0.5
    pred = np.asarray(pred_masks_NxHxW) > 0.5
    if images.ndim != 4 or true.shape != images.shape[:3] or pred.shape != true.shape:
        raise ValueError(
            f"segmentation_overlay expects images [N, H, W, C] and masks [N, H, W], got {images.shape}, "
            f"{true.shape}, {pred.shape}"
        )
    fig = Figure(figsize=(12, 3 * len(images)))
    axes = fig.subplots(len(images), 4, squeeze=False)
    for i, row in enumerate(axes):
        grey = images[i].mean(axis=-1)
        grey = (grey - grey.min()) / max(float(np.ptp(grey)), 1e-8)
        overlay = np.repeat(grey[..., None] * 0.6, 3, axis=-1)
        overlay[true[i] & pred[i]] = (0.1, 0.8, 0.1)
        overlay[~true[i] & pred[i]] = (0.9, 0.1, 0.1)
        overlay[true[i] & ~pred[i]] = (0.1, 0.3, 0.9)
        panels = (
            (grey, "image"), (true[i], "true mask"), (pred[i], "predicted mask"),
            (overlay, "overlay: TP green, FP red, FN blue"),
        )
        for ax, (panel, name) in zip(row, panels):
            ax.imshow(panel, cmap="gray", interpolation="nearest")
            ax.set_title(name, fontsize=9)
            ax.axis("off")
    if title:
        fig.suptitle(title)
    return save_figure(fig, path)


def histograms(samples: dict[str, Any], path: str, title: str = "", bins: int = 50, densities: dict[str, Any] | None = None) -> str:
    """Overlaid density histograms of 1-D samples (name -> values), plus optional curves
    (name -> (x, density)) such as the target's closed-form density; returns ``path``."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 4))
    ax = fig.subplots()
    for name, values in samples.items():
        ax.hist(np.asarray(values).ravel(), bins=bins, density=True, alpha=0.5, label=name)
    for name, (x, density) in (densities or {}).items():
        ax.plot(np.asarray(x), np.asarray(density), "k--", label=name)
    ax.set_ylabel("density")
    ax.grid(True, alpha=0.3)
    ax.legend()
    if title:
        ax.set_title(title)
    return save_figure(fig, path)


def episode_returns(env_steps_U: Any, return_SxU: Any, target: float, path: str, title: str = "") -> str:
    """Mean episode return [S, U] against environment steps [U], one line per seed, the target dashed."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 4))
    ax = fig.subplots()
    for seed, return_U in enumerate(return_SxU):
        ax.plot(env_steps_U, return_U, label=f"seed {seed}", linewidth=1)
    ax.axhline(target, color="0.3", linestyle="--", linewidth=0.8, label=f"target {target:g}")
    ax.set_xlabel("environment steps")
    ax.set_ylabel("episode return (mean over envs)")
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="small")
    return save_figure(fig, path)


def graph_predictions(data: Any, predicted_N: Any, path: str, title: str) -> str:
    """A ``nnjax.data.graphs.NodeClassification`` graph (spring layout, fixed seed) with nodes coloured by
    predicted class [N], misclassified test nodes ringed in red and labelled nodes drawn as squares."""
    import networkx as nx
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    graph = data.to_networkx()
    pos = nx.spring_layout(graph, seed=0)
    fig = Figure(figsize=(7, 6))
    ax = fig.subplots()
    colors = [f"C{c}" for c in predicted_N]
    wrong_N = (predicted_N != data.labels_N) & data.test_mask_N
    nx.draw_networkx_edges(graph, pos, ax=ax, alpha=0.3)
    for mask_N, shape in ((~data.train_mask_N, "o"), (data.train_mask_N, "s")):
        nodes = np.flatnonzero(mask_N).tolist()
        nx.draw_networkx_nodes(graph, pos, nodelist=nodes, node_color=[colors[i] for i in nodes], node_shape=shape,
                               node_size=220, ax=ax, edgecolors=["red" if wrong_N[i] else "black" for i in nodes],
                               linewidths=[3.0 if wrong_N[i] else 0.5 for i in nodes])
    if data.num_nodes <= 50:
        nx.draw_networkx_labels(graph, pos, ax=ax, font_size=7)
    handles = [Line2D([], [], marker="o", linestyle="", color=f"C{c}", label=f"predicted {name}")
               for c, name in enumerate(data.class_names)]
    handles += [Line2D([], [], marker="s", linestyle="", color="0.6", markeredgecolor="black", label="labelled"),
                Line2D([], [], marker="o", linestyle="", color="white", markeredgecolor="red", markeredgewidth=2,
                       label=f"misclassified ({int(wrong_N.sum())})")]
    ax.legend(handles=handles, loc="best", fontsize=8)
    ax.set_title(title)
    ax.axis("off")
    return save_figure(fig, path)


def spectrogram(power_FxK: Any, tracks: dict[str, Any], times_F: Any, nyquist: float, path: str) -> str:
    """Power spectrogram [F frames, K bins from 0 to ``nyquist`` Hz] in dB with frequency tracks (name ->
    Hz per frame [F], ``'true'`` dashed) overlaid, and below it each track minus ``tracks['true']`` with a
    band of +-half a bin; frames sit at ``times_F`` (s). Returns ``path``."""
    from matplotlib.figure import Figure

    if "true" not in tracks:
        raise ValueError(f"tracks must include 'true' (the reference track), got {sorted(tracks)}")
    fig = Figure(figsize=(9, 7))
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=(2, 1))
    power_db = 10 * np.log10(np.asarray(power_FxK).T + 1e-12)
    image = top.imshow(
        power_db, origin="lower", aspect="auto", cmap="magma", vmin=power_db.max() - 80,
        extent=(times_F[0], times_F[-1], 0, nyquist),
    )
    fig.colorbar(image, ax=top, label="power (dB)")
    half_bin = nyquist / (power_db.shape[0] - 1) / 2
    bottom.axhspan(-half_bin, half_bin, color="0.85", label="+-half a bin")
    for i, (name, track_F) in enumerate(tracks.items()):
        top.plot(times_F, track_F, "--" if name == "true" else "-", color=f"C{i}", linewidth=1.0, label=name)
        if name != "true":
            bottom.plot(times_F, np.asarray(track_F) - tracks["true"], color=f"C{i}", linewidth=0.8, label=name)
    top.set_ylabel("frequency (Hz)")
    top.set_title("Hann-windowed FFT of a noisy chirp with per-frame feature tracks")
    top.legend(loc="upper left")
    bottom.set_xlabel("time (s, frame centre)")
    bottom.set_ylabel("track - true (Hz)")
    bottom.grid(True, alpha=0.3)
    bottom.legend(loc="upper left", ncol=4, fontsize="small")
    return save_figure(fig, path)


def count_histogram(counts: dict[str, int], probs: dict[str, float], shots: int, path: str, title: str = "") -> str:
    """Bar chart of measured counts per bitstring (outcome -> count) with the expected count ``shots * p``
    (outcome -> probability) marked; returns ``path``. Every outcome gets a bar when there are at most 16
    (zeros show), else only those seen or possible."""
    from matplotlib.figure import Figure

    labels = sorted(probs) if len(probs) <= 16 else sorted(set(counts) | {k for k, p in probs.items() if p > 1e-9})
    fig = Figure(figsize=(max(4, 0.8 * len(labels) + 2), 4))
    ax = fig.subplots()
    bars = ax.bar(labels, [counts.get(k, 0) for k in labels], color="tab:blue", label="measured")
    ax.bar_label(bars)
    ax.scatter(labels, [shots * probs.get(k, 0.0) for k in labels], color="tab:red", marker="_", s=600, label="expected")
    ax.set_xlabel("outcome |q0 q1 ...>")
    ax.set_ylabel(f"count of {shots} shots")
    ax.set_ylim(0, 1.25 * max(max(counts.values(), default=0), shots * max(probs.values())))
    ax.set_title(title)
    ax.legend(loc="upper center", ncol=2)
    return save_figure(fig, path)
