"""Accelerator check: the char LM's bfloat16 throughput and MFU, the MNIST CNN's throughput, 1-vs-N-device equivalence.

    pip install -e ".[dev]" && python -m benchmarks.accelerator     # on a GPU or TPU machine: under 5 minutes
    python -m benchmarks.accelerator --smoke                         # the same code on a CPU at tiny sizes: seconds

Three parts, one after another, each through the library's own code paths, on synthetic data:

* ``lm``: ``TransformerLM`` (``benchmarks.char_lm.nnjax_lm``) trained with AdamW by ``Parallel('jit', ...,
  precision='bfloat16')`` over every device (batch sharded, params replicated), ``Plan.chunk`` steps per jitted
  ``lax.scan`` (``Parallel.train_chunk``, as ``nnjax.tasks.fit`` runs them) on random token windows. Its size fills
  the device: the largest of ``LM_PRESETS`` whose estimated training memory (``estimated_bytes``) at a per-device
  batch of at least ``MIN_BATCH`` sequences fits in ``MEMORY_FRACTION`` of the first device's ``bytes_limit``
  (``memory_stats()``, or ``--memory-gb``), with the largest power-of-two batch up to ``MAX_BATCH`` that fits. One
  untimed block compiles and warms up; then blocks are timed until ``--seconds`` have passed (at least two), and the
  median block gives tokens/s and seconds per step; compile seconds are reported apart. Model FLOPs per token are
  ``benchmarks.char_lm.flops_per_token`` (PaLM appendix B: ``6·N + 12·n_layer·d_model·block``), and MFU is achieved
  FLOP/s over the devices' dense bfloat16 peak (``PEAK_BF16_TFLOPS`` by ``device_kind``, or ``--peak-tflops`` per
  device); for an unknown device (a CPU) MFU is ``null`` with the reason.
* ``mnist_cnn``: ``MnistCNN`` through ``nnjax.tasks.fit`` on random 28x28 images, as ``benchmarks.mnist_cnn`` runs
  it (float32, Adam 1e-3, batch 128, one device), so its examples/s lines up with that benchmark's on the same
  machine; ``fit`` excludes compile time from examples/s and reports it as ``compile_s``.
* ``equivalence``: the same few float32 train steps of a small LM (SGD: Adam would magnify the rounding noise of
  gradients that are exactly zero, such as the attention key bias's) under ``Parallel('none')`` on one device and
  ``Parallel('jit')`` over every device, with matmuls at ``'highest'`` precision (no TF32 on a GPU, no single-pass
  bfloat16 on a TPU): the largest differences of the step losses and final params, and whether both are within
  ``EQUIVALENCE_TOLERANCE`` (relative and absolute). With one device there is nothing to compare: ``equivalent`` is
  ``null`` with the reason.

``--smoke`` runs all three at tiny sizes (``SMOKE``) instead of ``FULL``; the test suite runs it on 8 fake CPU
devices. Progress goes to stderr; the last stdout line is one JSON object (also written to ``--out``).
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import logging
import sys
import tempfile
import time
from dataclasses import asdict, dataclass

import jax
import numpy as np
import optax

from benchmarks import char_lm, mnist_cnn
from benchmarks.char_lm import Size
from nnjax import losses
from nnjax.cli import setup_logging
from nnjax.config import TrainConfig
from nnjax.data import Dataset
from nnjax.errors import ConfigError, NnjaxError
from nnjax.models import MnistCNN
from nnjax.tasks import fit
from nnjax.train.parallel import Parallel
from nnjax.train.state import create_train_state

log = logging.getLogger("nnjax.benchmarks.accelerator")

# Dense (no sparsity) bfloat16 peak per device, in TFLOP/s, keyed by ``jax.Device.device_kind``.
PEAK_BF16_TFLOPS = {
    "NVIDIA H100 80GB HBM3": 989.0,
    "NVIDIA H200": 989.0,
    "NVIDIA A100-SXM4-80GB": 312.0,
    "NVIDIA A100-SXM4-40GB": 312.0,
    "TPU v4": 275.0,
    "TPU v5 lite": 197.0,  # v5e
    "TPU v5e": 197.0,
    "TPU v5": 459.0,  # v5p
    "TPU v5p": 459.0,
    "TPU v6 lite": 918.0,  # v6e (Trillium)
    "TPU v6e": 918.0,
}

# GPT shapes from small to large, vocabulary 256 (bytes), context 512; batch_size is filled in per device.
LM_PRESETS = {
    "gpt2-small": Size(vocab_size=256, block_size=512, d_model=768, num_heads=12, num_layers=12, batch_size=1),
    "gpt2-medium": Size(vocab_size=256, block_size=512, d_model=1024, num_heads=16, num_layers=24, batch_size=1),
    "0.8b": Size(vocab_size=256, block_size=512, d_model=2048, num_heads=16, num_layers=16, batch_size=1),
    "1.9b": Size(vocab_size=256, block_size=512, d_model=2560, num_heads=20, num_layers=24, batch_size=1),
}
MEMORY_FRACTION = 0.6  # of the device's bytes_limit that the estimate may fill (it is rough)
MIN_BATCH, MAX_BATCH = 8, 64  # sequences per device
EQUIVALENCE_TOLERANCE = 1e-5  # rtol and atol of the 1-vs-N-device comparison (float32, 'highest' matmuls)


@dataclass(frozen=True)
class Plan:
    """What one run measures: the size and length of each part (``batch_size`` fields are per device)."""

    lm: Size | None  # None: the largest of LM_PRESETS that fits the device (choose_lm_size)
    chunk: int  # LM steps per timed block (one jitted lax.scan)
    seconds: float  # timed seconds of the LM part (at least two blocks are timed)
    equivalence: Size
    equivalence_steps: int
    mnist_examples: int
    mnist_epochs: int


FULL = Plan(lm=None, chunk=10, seconds=60.0, equivalence=Size(), equivalence_steps=3, mnist_examples=25_600,
            mnist_epochs=3)
SMOKE = Plan(
    lm=Size(vocab_size=32, block_size=16, d_model=32, num_heads=2, num_layers=2, batch_size=8), chunk=2, seconds=0.0,
    equivalence=Size(vocab_size=32, block_size=16, d_model=32, num_heads=2, num_layers=1, batch_size=2),
    equivalence_steps=2, mnist_examples=256, mnist_epochs=1,
)


def peak_flops(device_kind: str, override_tflops: float | None) -> tuple[float | None, str | None]:
    """(dense bfloat16 peak FLOP/s of one device, None), from ``override_tflops`` or ``PEAK_BF16_TFLOPS``; (None,
    reason) for a device kind the table does not know."""
    if override_tflops is not None:
        return override_tflops * 1e12, None
    if device_kind in PEAK_BF16_TFLOPS:
        return PEAK_BF16_TFLOPS[device_kind] * 1e12, None
    return None, f"no bfloat16 peak known for device kind {device_kind!r}; pass --peak-tflops"


def mfu(flops_per_token: int, tokens_per_s: float, peak_flops_per_device: float, num_devices: int) -> float:
    """Model FLOPs utilisation: achieved model FLOP/s over the peak of all ``num_devices``."""
    return flops_per_token * tokens_per_s / (peak_flops_per_device * num_devices)


def estimated_bytes(size: Size, num_params: int) -> int:
    """Rough training memory of one device for ``size`` (per-device batch) in bfloat16 mixed precision, AdamW, no remat.

    20 bytes per parameter (float32 params, AdamW's two moments and float32 gradients, bfloat16 copies of params and
    gradients) plus the activations kept for the backward pass: per layer and sequence ``T·(34·d + 10·H·T)`` bytes
    (Korthikanti et al. 2022, 16-bit activations; the attention scores and softmax are float32 here, so about twice
    their ``5·H·T²``), and ``10·T·V`` for the logits and their float32 softmax. XLA:CPU's compiled step of a
    2-layer ``gpt2-small`` keeps ~1.3x this per sequence; ``MEMORY_FRACTION`` leaves room for such a margin.
    """
    t, d, h = size.block_size, size.d_model, size.num_heads
    per_sequence = size.num_layers * t * (34 * d + 10 * h * t) + 10 * t * size.vocab_size
    return 20 * num_params + size.batch_size * per_sequence


@functools.cache
def preset_param_count(size: Size) -> int:
    """``char_lm.nnjax_param_count`` (a trace of the model's init), once per size."""
    return char_lm.nnjax_param_count(size)


def choose_lm_size(bytes_limit: int) -> tuple[str, Size]:
    """(name, size) of the largest ``LM_PRESETS`` entry whose estimate at a per-device batch >= ``MIN_BATCH`` fits in
    ``MEMORY_FRACTION`` of ``bytes_limit``, with the largest power-of-two batch <= ``MAX_BATCH`` that fits.

    ``ConfigError`` when even the smallest preset does not fit.
    """
    budget = MEMORY_FRACTION * bytes_limit
    for name, preset in reversed(LM_PRESETS.items()):
        num_params = preset_param_count(preset)
        batch = MAX_BATCH
        while batch >= MIN_BATCH:
            size = dataclasses.replace(preset, batch_size=batch)
            if estimated_bytes(size, num_params) <= budget:
                return name, size
            batch //= 2
    raise ConfigError(
        f"the smallest LM preset needs more than {MEMORY_FRACTION:.0%} of the device's {bytes_limit / 1e9:.1f} GB at "
        f"batch {MIN_BATCH}: the device is too small for the LM part"
    )


def lm_throughput(size: Size, chunk: int, seconds: float, peak: float | None, peak_reason: str | None) -> dict:
    """Train ``size`` (per-device batch) in bfloat16 over every device; tokens/s, step and compile seconds, MFU."""
    num_devices = jax.device_count()
    batch = size.batch_size * num_devices
    num_windows = 8 * batch
    x, y = char_lm.synthetic_windows(size, num_windows)
    parallel = Parallel("jit", losses.next_token, batch, batch, precision="bfloat16")
    initial = create_train_state(char_lm.nnjax_lm(size), optax.adamw(1e-3, weight_decay=0.1), x[:1],
                                 jax.random.PRNGKey(0))
    num_params = sum(p.size for p in jax.tree.leaves(initial.params))
    state, data = parallel.place_state(initial), parallel.place_data({"x": x, "y": y})
    del initial  # its buffers on the first device, when placing copied them
    log.info("lm: %d parameters, global batch %d x %d tokens, %d devices", num_params, batch, size.block_size,
             num_devices)
    state, metrics = parallel.train_chunk(state, data, char_lm.batch_indices(chunk, batch, num_windows, seed=0))
    jax.block_until_ready(metrics)  # compiled, and one untimed block run
    blocks: list[float] = []
    while len(blocks) < 2 or sum(blocks) < seconds:
        idx_CxB = char_lm.batch_indices(chunk, batch, num_windows, seed=len(blocks) + 1)
        start = time.perf_counter()
        state, metrics = parallel.train_chunk(state, data, idx_CxB)
        jax.block_until_ready(metrics)
        blocks.append(time.perf_counter() - start)
    block_s = float(np.median(blocks))
    tokens_per_s = chunk * batch * size.block_size / block_s
    per_token = char_lm.flops_per_token(num_params, size)
    memory = jax.devices()[0].memory_stats() or {}
    return {
        **asdict(size), "batch_size": batch, "batch_size_per_device": size.batch_size, "num_params": num_params,
        "precision": "bfloat16", "timed_steps": chunk * len(blocks), "step_s": round(block_s / chunk, 6),
        "tokens_per_s": round(tokens_per_s, 1), "compile_s": round(parallel.compile_seconds, 2),
        "flops_per_token": per_token, "tflops_per_s": round(per_token * tokens_per_s / 1e12, 4),
        "estimated_bytes": estimated_bytes(size, num_params),
        "peak_tflops_per_device": None if peak is None else peak / 1e12,
        "mfu": round(mfu(per_token, tokens_per_s, peak, num_devices), 4) if peak else None, "mfu_reason": peak_reason,
        "final_loss": round(float(metrics["loss"][-1]), 4), "peak_bytes_in_use": memory.get("peak_bytes_in_use"),
    }


def mnist_cnn_throughput(examples: int, epochs: int, batch_size: int = 128) -> dict:
    """Train ``MnistCNN`` with ``nnjax.tasks.fit`` (float32, Adam 1e-3, one device) on random images; its examples/s
    (compile time excluded) and compile seconds."""
    x, y = mnist_cnn.synthetic_data(examples)
    data = Dataset("synthetic", "random images", {"x": x, "y": y}, {"x": x[:batch_size], "y": y[:batch_size]},
                   num_classes=10)
    with tempfile.TemporaryDirectory() as workdir:
        config = TrainConfig(
            epochs=epochs, batch_size=batch_size, eval_batch_size=batch_size, workdir=workdir,
            validation_fraction=0.0, checkpoint_every_epochs=0, log_every_steps=10_000,
        )
        summary = fit(config, MnistCNN(), data, losses.classification, experiment="accelerator").summary
    return {"examples": examples, "epochs": epochs, "batch_size": batch_size, "precision": "float32",
            "steps": summary["steps"], "examples_per_s": summary["examples_per_s"], "compile_s": summary["compile_s"]}


def max_abs_diff(a, b) -> float:
    """Largest absolute elementwise difference between two pytrees of the same structure."""
    return max(float(np.max(np.abs(np.asarray(u) - np.asarray(v)))) for u, v in
               zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True))


def within_tolerance(a, b) -> bool:
    """Whether arrays ``a`` and ``b`` agree within ``EQUIVALENCE_TOLERANCE``, relative and absolute."""
    return bool(np.allclose(a, b, rtol=EQUIVALENCE_TOLERANCE, atol=EQUIVALENCE_TOLERANCE))


def equivalence(size: Size, steps: int) -> dict:
    """The same float32 SGD steps of the LM under ``Parallel('none')`` and ``Parallel('jit')`` over every device:
    largest differences of the step losses and final params, and whether they are within the tolerance."""
    num_devices = jax.device_count()
    if num_devices == 1:
        return {"num_devices": 1, "equivalent": None,
                "reason": f"one {jax.default_backend()} device: no second device to compare with"}
    batch = size.batch_size * num_devices
    x, y = char_lm.synthetic_windows(size, 4 * batch)
    idx_SxB = char_lm.batch_indices(steps, batch, 4 * batch)
    runs = {}
    with jax.default_matmul_precision("highest"):
        host_state = jax.device_get(create_train_state(char_lm.nnjax_lm(size), optax.sgd(0.1), x[:1],
                                                       jax.random.PRNGKey(0)))
        for mode in ("none", "jit"):
            parallel = Parallel(mode, losses.next_token, batch, batch)
            state, step_losses = parallel.place_state(host_state), []
            for idx_B in idx_SxB:
                state, metrics = parallel.train_step(state, parallel.place_batch({"x": x[idx_B], "y": y[idx_B]}))
                step_losses.append(float(metrics["loss"]))
            runs[mode] = (np.array(step_losses), parallel.host_state(state).params)
    (losses_1, params_1), (losses_n, params_n) = runs["none"], runs["jit"]
    equivalent = within_tolerance(losses_n, losses_1) and all(
        jax.tree.leaves(jax.tree.map(within_tolerance, params_n, params_1)))
    return {
        "num_devices": num_devices, "steps": steps, "batch_size": batch, "d_model": size.d_model,
        "num_layers": size.num_layers, "losses": [round(v, 6) for v in losses_1.tolist()],
        "max_abs_loss_diff": max_abs_diff(losses_n, losses_1), "max_abs_param_diff": max_abs_diff(params_n, params_1),
        "rtol": EQUIVALENCE_TOLERANCE, "atol": EQUIVALENCE_TOLERANCE, "matmul_precision": "highest",
        "equivalent": equivalent,
    }


def device_memory_bytes(memory_gb: float | None) -> int | None:
    """Bytes one device may allocate: ``--memory-gb`` if given, else the first device's ``bytes_limit`` (None when
    the backend does not report it, as on a CPU)."""
    if memory_gb is not None:
        return int(memory_gb * 1e9)
    return (jax.devices()[0].memory_stats() or {}).get("bytes_limit")


def measure(plan: Plan, peak_tflops: float | None, memory_gb: float | None, smoke: bool) -> dict:
    """Run the three parts of ``plan``; the JSON object. ``ConfigError`` when no LM size can be chosen (no memory
    figure, or too little memory)."""
    start = time.perf_counter()
    device = jax.devices()[0]
    peak, reason = peak_flops(device.device_kind, peak_tflops)
    bytes_limit = device_memory_bytes(memory_gb)
    if plan.lm is None and bytes_limit is None:
        raise ConfigError(
            f"device {device.device_kind!r} reports no memory limit; pass --memory-gb, or --smoke on a CPU"
        )
    preset, lm_size = ("smoke", plan.lm) if plan.lm is not None else choose_lm_size(bytes_limit)
    log.info("lm: preset %s, %s", preset, lm_size)
    lm = {"preset": preset, "bytes_limit": bytes_limit,
          **lm_throughput(lm_size, plan.chunk, plan.seconds, peak, reason)}
    log.info("lm: %.0f tokens/s, mfu %s", lm["tokens_per_s"], lm["mfu"])
    mnist = mnist_cnn_throughput(plan.mnist_examples, plan.mnist_epochs)
    log.info("mnist_cnn: %.0f examples/s", mnist["examples_per_s"])
    check = equivalence(plan.equivalence, plan.equivalence_steps)
    log.info("equivalence: %s", check)
    return {
        "benchmark": "accelerator", "backend": jax.default_backend(), "device_kind": device.device_kind,
        "num_devices": jax.device_count(), "jax_version": jax.__version__, "smoke": smoke, "lm": lm,
        "mnist_cnn": mnist, "equivalence": check, "wall_s": round(time.perf_counter() - start, 2),
    }


def parse_args(argv: list[str]) -> argparse.Namespace:
    """Flags; ``--seconds`` defaults to the plan's (60 s, or none with ``--smoke``: two timed blocks)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, for a CPU and the test suite")
    parser.add_argument("--peak-tflops", type=float,
                        help="dense bf16 peak of one device for MFU (default: PEAK_BF16_TFLOPS by device kind)")
    parser.add_argument("--seconds", type=float, help="timed seconds of the LM part (default 60; --smoke: 0)")
    parser.add_argument("--memory-gb", type=float, help="memory of one device that sizes the LM (default: bytes_limit)")
    parser.add_argument("--out", help="also write the JSON object to this file")
    args = parser.parse_args(argv)
    for flag in ("peak_tflops", "memory_gb"):
        if getattr(args, flag) is not None and not getattr(args, flag) > 0:
            parser.error(f"--{flag.replace('_', '-')} must be > 0, got {getattr(args, flag)}")
    if args.seconds is not None and not args.seconds >= 0:
        parser.error(f"--seconds must be >= 0, got {args.seconds}")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    setup_logging()
    plan = SMOKE if args.smoke else FULL
    if args.seconds is not None:
        plan = dataclasses.replace(plan, seconds=args.seconds)
    try:
        result = measure(plan, args.peak_tflops, args.memory_gb, args.smoke)
    except NnjaxError as err:
        sys.stderr.write(f"accelerator: error: {err}\n")
        raise SystemExit(2) from None
    line = json.dumps(result)
    if args.out:
        with open(args.out, "w") as f:
            f.write(line + "\n")
    print(line)


if __name__ == "__main__":
    main()
