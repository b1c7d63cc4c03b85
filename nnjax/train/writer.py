"""Metric rows to ``metrics.jsonl`` (one JSON object per line) and TensorBoard."""

from __future__ import annotations

import json
import numbers
import os
import sys
from typing import Any

from nnjax.distributed import barrier, is_main_process


class MetricWriter:
    """Appends rows like ``{'kind': 'epoch', 'step': 250, 'epoch': 2, 'val_loss': 0.1}``.

    ``resume_step`` keeps the rows of an earlier run up to that step (rows a killed run wrote
    after its last checkpoint are dropped, so a resumed log reads as one uninterrupted run);
    ``None`` starts a fresh log. Lines that are not a row (a truncated last line) are skipped and
    counted in ``unreadable_lines``. Numeric fields are mirrored to TensorBoard as ``<kind>/<field>``.
    Only the main process writes (``nnjax.distributed``); the others keep the same rows in memory.
    """

    def __init__(self, workdir: str, resume_step: int | None = None):
        self.path = os.path.join(workdir, "metrics.jsonl")
        self.rows: list[dict[str, Any]] = []
        self.unreadable_lines = 0
        self._writes = is_main_process()
        if resume_step is not None and os.path.exists(self.path):
            with open(self.path) as f:
                for line in f:
                    row = _parse(line)
                    if row is None:
                        self.unreadable_lines += 1
                    elif row["step"] <= resume_step:
                        self.rows.append(row)
        barrier("nnjax-metrics-read")  # every process has read the old rows before the main one rewrites them
        self._tensorboard = None
        if self._writes:
            with open(self.path, "w") as f:
                f.writelines(json.dumps(row) + "\n" for row in self.rows)
            self._tensorboard = _summary_writer_class()(os.path.join(workdir, "tensorboard"))

    def write(self, row: dict[str, Any]) -> None:
        """Append one row (values must be JSON-serialisable Python scalars)."""
        self.rows.append(row)
        if not self._writes:
            return
        with open(self.path, "a") as f:
            f.write(json.dumps(row) + "\n")
        for key, value in row.items():
            if key not in ("step", "epoch") and isinstance(value, numbers.Real) and not isinstance(value, bool):
                self._tensorboard.add_scalar(f"{row['kind']}/{key}", value, row["step"])

    def close(self) -> None:
        if self._tensorboard is not None:
            self._tensorboard.close()


def _parse(line: str) -> dict[str, Any] | None:
    """The row on one line of metrics.jsonl, or None if the line is not one (cut short, edited)."""
    try:
        row = json.loads(line)
    except ValueError:
        return None
    if not isinstance(row, dict) or not isinstance(row.get("step"), int) or "kind" not in row:
        return None
    return row


def _summary_writer_class() -> type:
    """``tensorboardX.SummaryWriter``, imported without importing PyTorch.

    tensorboardX's writer module tries ``import torch`` only to name tensor types in its signatures; where torch
    is installed that import costs ~2.4 s of every run on the 2-core CPU. Unless the process already imported
    torch, ``sys.modules['torch'] = None`` makes that one import fail for the moment tensorboardX loads (it falls
    back to numpy types); a later ``import torch`` works as usual. The scalars written are the same.
    """
    if "torch" in sys.modules:
        from tensorboardX import SummaryWriter

        return SummaryWriter
    sys.modules["torch"] = None  # type: ignore[assignment]
    try:
        from tensorboardX import SummaryWriter
    finally:
        del sys.modules["torch"]
    return SummaryWriter
