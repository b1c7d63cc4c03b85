"""MetricWriter: rows in metrics.jsonl, numeric fields in TensorBoard, and no PyTorch import on the way."""

import glob
import json
import struct
import subprocess
import sys

import pytest

from nnjax.train.writer import MetricWriter


def read_scalars(event_file: str) -> list[tuple[str, int, float]]:
    """(tag, step, value) of every scalar in a TensorBoard event file: TFRecord framing (length u64, its crc u32,
    the Event proto, its crc u32) decoded with tensorboardX's own ``Event`` proto."""
    from tensorboardX.proto.event_pb2 import Event

    scalars = []
    with open(event_file, "rb") as f:
        data = f.read()
    offset = 0
    while offset < len(data):
        (length,) = struct.unpack("<Q", data[offset:offset + 8])
        event = Event.FromString(data[offset + 12:offset + 12 + length])
        offset += 12 + length + 4
        scalars += [(v.tag, event.step, v.simple_value) for v in event.summary.value]
    return scalars


def test_rows_reach_metrics_jsonl_and_their_numbers_reach_tensorboard(tmp_path):
    rows = [
        {"kind": "train", "step": 10, "steps": 10, "train_loss": 0.5, "note": "text", "ok": True},
        {"kind": "epoch", "step": 20, "epoch": 1, "val_accuracy": 0.75},
    ]
    writer = MetricWriter(str(tmp_path))
    for row in rows:
        writer.write(row)
    writer.close()
    assert [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()] == rows
    (event_file,) = glob.glob(str(tmp_path / "tensorboard" / "events.out.tfevents.*"))
    assert sorted(read_scalars(event_file)) == [
        ("epoch/val_accuracy", 20, pytest.approx(0.75)),
        ("train/steps", 10, pytest.approx(10.0)),
        ("train/train_loss", 10, pytest.approx(0.5)),
    ]


def test_writing_tensorboard_does_not_import_torch_which_still_imports_afterwards(tmp_path):
    """tensorboardX would import torch (~2.4 s of every run where it is installed) to name tensor types."""
    pytest.importorskip("torch")
    code = (
        "import sys; from nnjax.train.writer import MetricWriter; "
        f"w = MetricWriter({str(tmp_path)!r}); w.write({{'kind': 'train', 'step': 1, 'loss': 1.0}}); w.close(); "
        "assert 'torch' not in sys.modules, 'torch was imported'; import torch; print(torch.ones(2).sum().item())"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "2.0"
