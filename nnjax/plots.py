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
