"""Training throughput of the character-level GPT (``TransformerLM``): nnjax vs PyTorch eager.

    pip install -e ".[bench]" && python -m benchmarks.char_lm

Both frameworks train the same decoder-only GPT (defaults: nanoGPT's README CPU configuration,
4 layers, 4 heads, width 128, block 64, batch 12, no dropout, vocabulary 65 as shakespeare_char)
with AdamW (lr 1e-3, weight decay 0.1 on every parameter) on the same random token windows, each
in its own subprocess, one after another (never two timed workloads at once). nnjax uses the
library's training step (``make_train_step`` inside ``make_train_chunk``: ``--chunk`` steps per
jitted ``lax.scan`` over device-resident data, as ``nnjax.tasks.fit`` runs them); PyTorch is the
nanoGPT model written below (fused q/k/v projection, ``scaled_dot_product_attention``), eager.

Throughput is training tokens/s (batch × block per step). Each worker runs ``--warmup`` untimed
steps (compilation included) and ``--steps`` timed steps in blocks of ``--chunk`` steps, and
reports the median block; the frameworks alternate ``--repeats`` times and each one's best run is
reported, with the 1-minute load average when it started (on a shared machine, other work slows
both, PyTorch's OpenMP threads much more than XLA's). Model FLOPs per token follow PaLM appendix B,
``6·N + 12·n_layer·d_model·block``, with N = every parameter except the position embedding
(nanoGPT's ``get_num_params()``: the tied token embedding counts, as it is the output matmul).
MFU = achieved FLOP/s ÷ ``--peak-tflops`` is reported only for a framework that ran on a GPU
(``null`` on CPU, where achieved GFLOP/s is still given). The last stdout line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import asdict, dataclass, fields

import numpy as np

from benchmarks.workers import alternate, launch_worker

FRAMEWORKS = ("nnjax", "torch")
H100_BF16_DENSE_TFLOPS = 989.0  # H100/H200 SXM bf16 dense tensor-core peak (no sparsity)


@dataclass(frozen=True)
class Size:
    """The GPT's shape and the training batch (defaults: nanoGPT's CPU configuration)."""

    vocab_size: int = 65
    block_size: int = 64
    d_model: int = 128
    num_heads: int = 4
    num_layers: int = 4
    batch_size: int = 12


def synthetic_windows(size: Size, num_windows: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Random token windows int32 [W, block] and their next-token targets int32 [W, block] (shifted by one)."""
    rng = np.random.default_rng(seed)
    tokens = rng.integers(0, size.vocab_size, num_windows * size.block_size + 1).astype(np.int32)
    starts = rng.integers(0, len(tokens) - size.block_size, num_windows)
    rows = starts[:, None] + np.arange(size.block_size)
    return tokens[rows], tokens[rows + 1]


def batch_indices(num_steps: int, batch_size: int, num_windows: int, seed: int = 1) -> np.ndarray:
    """Window indices int32 [steps, batch] of every step's batch (identical for every framework)."""
    return np.random.default_rng(seed).integers(0, num_windows, (num_steps, batch_size)).astype(np.int32)


def flops_per_token(num_params: int, size: Size) -> int:
    """PaLM appendix B training FLOPs per token: ``6·N + 12·n_layer·d_model·block``.

    ``num_params`` counts every parameter; N leaves out the position embedding (block × d_model),
    which is a lookup, not a matmul (nanoGPT's ``get_num_params()``; the tied token embedding stays
    in N because it is also the output projection).
    """
    n = num_params - size.block_size * size.d_model
    return 6 * n + 12 * size.num_layers * size.d_model * size.block_size


def nnjax_lm(size: Size):
    """The nnjax ``TransformerLM`` of this size (d_ff = 4·d_model, no dropout)."""
    from nnjax.models.transformer import TransformerLM

    return TransformerLM(size.vocab_size, size.block_size, size.d_model, size.num_heads, size.num_layers)


def lm_loss(logits_BxTxV, batch: dict) -> dict:
    """Trainer objective: ``{'loss': [B]}``, each sequence's mean next-token cross-entropy.

    ``logits_BxTxV`` float [B, T, V]; ``batch['y']`` int [B, T] holds each position's target token.
    """
    import optax

    return {"loss": optax.softmax_cross_entropy_with_integer_labels(logits_BxTxV, batch["y"]).mean(axis=-1)}


def nnjax_param_count(size: Size) -> int:
    """Every parameter of the nnjax model (shapes only, nothing is computed)."""
    import jax
    import jax.numpy as jnp

    ids = jax.ShapeDtypeStruct((1, size.block_size), jnp.int32)
    shapes = jax.eval_shape(lambda x: nnjax_lm(size).init(jax.random.key(0), x), ids)
    return sum(int(np.prod(leaf.shape)) for leaf in jax.tree.leaves(shapes["params"]))


def run_nnjax(size: Size, x: np.ndarray, y: np.ndarray, idx_NxCxB: np.ndarray, warmup_blocks: int) -> tuple[list[float], str]:
    """Train with nnjax's ``make_train_chunk(make_train_step(...))``: one jitted ``lax.scan`` per block.

    ``idx_NxCxB`` holds N blocks of C steps' batch indices; the first ``warmup_blocks`` (which
    include compilation) are untimed. Returns the wall seconds of each timed block and the backend.
    """
    import jax
    import optax

    from nnjax.train.state import create_train_state
    from nnjax.train.steps import make_train_chunk, make_train_step

    state = create_train_state(nnjax_lm(size), optax.adamw(1e-3, weight_decay=0.1), x[: size.batch_size], jax.random.key(0))
    train_chunk = jax.jit(make_train_chunk(make_train_step(lm_loss)), donate_argnums=0)
    data = jax.device_put({"x": x, "y": y})
    seconds: list[float] = []
    for i, idx_CxB in enumerate(idx_NxCxB):
        start = time.perf_counter()
        state, metrics = train_chunk(state, data, idx_CxB)
        jax.block_until_ready(metrics)
        if i >= warmup_blocks:
            seconds.append(time.perf_counter() - start)
    return seconds, jax.default_backend()


def torch_gpt(size: Size):
    """nanoGPT's ``GPT`` as a ``torch.nn.Module`` (ids [B, T] -> logits [B, T, V]), matched to ``TransformerLM``.

    Biases everywhere, no dropout, tanh GELU (flax's ``nn.gelu`` default), LayerNorm epsilon 1e-6
    (flax's; torch's default is 1e-5), output tied to the token embedding. q/k/v are one fused
    [D, 3D] projection as in nanoGPT (the same parameters as nnjax's three [D, H, Dh] kernels).
    """
    import torch
    from torch import nn
    from torch.nn import functional as F

    class CausalSelfAttention(nn.Module):
        def __init__(self):
            super().__init__()
            self.qkv = nn.Linear(size.d_model, 3 * size.d_model)
            self.out = nn.Linear(size.d_model, size.d_model)

        def forward(self, x_BxTxD):
            b, t, d = x_BxTxD.shape
            q, k, v = self.qkv(x_BxTxD).view(b, t, 3, size.num_heads, d // size.num_heads).permute(2, 0, 3, 1, 4)
            h_BxHxTxDh = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            return self.out(h_BxHxTxDh.transpose(1, 2).reshape(b, t, d))

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.ln_attention, self.attention = nn.LayerNorm(size.d_model, eps=1e-6), CausalSelfAttention()
            self.ln_mlp = nn.LayerNorm(size.d_model, eps=1e-6)
            self.mlp = nn.Sequential(
                nn.Linear(size.d_model, 4 * size.d_model), nn.GELU(approximate="tanh"), nn.Linear(4 * size.d_model, size.d_model)
            )

        def forward(self, x):
            x = x + self.attention(self.ln_attention(x))
            return x + self.mlp(self.ln_mlp(x))

    class GPT(nn.Module):
        def __init__(self):
            super().__init__()
            self.token_embed = nn.Embedding(size.vocab_size, size.d_model)
            self.position_embed = nn.Parameter(torch.zeros(size.block_size, size.d_model))
            self.blocks = nn.Sequential(*[Block() for _ in range(size.num_layers)])
            self.ln_final = nn.LayerNorm(size.d_model, eps=1e-6)
            nn.init.normal_(self.token_embed.weight, std=0.02)
            nn.init.normal_(self.position_embed, std=0.02)

        def forward(self, ids_BxT):
            x = self.token_embed(ids_BxT) + self.position_embed[: ids_BxT.shape[1]]
            return self.ln_final(self.blocks(x)) @ self.token_embed.weight.T

    return GPT()


def params_from_torch_gpt(module_or_state_dict, size: Size) -> dict:
    """The weights of ``torch_gpt(size)`` (a module or its state dict) as ``nnjax_lm(size)`` params: the fused
    q/k/v projection maps as ``torch.nn.MultiheadAttention``'s, [out, in] kernels transposed."""
    from nnjax.models.torch_import import attention_params_from_torch, state_dict_arrays

    sd = state_dict_arrays(module_or_state_dict)
    dense = lambda name: {"kernel": sd[f"{name}.weight"].T, "bias": sd[f"{name}.bias"]}  # noqa: E731
    layer_norm = lambda name: {"scale": sd[f"{name}.weight"], "bias": sd[f"{name}.bias"]}  # noqa: E731
    params = {"token_embed": {"embedding": sd["token_embed.weight"]}, "position_embed": sd["position_embed"],
              "ln_final": layer_norm("ln_final")}
    for i in range(size.num_layers):
        block = f"blocks.{i}"
        qkv, out = f"{block}.attention.qkv", f"{block}.attention.out"
        attention = {"in_proj_weight": sd[f"{qkv}.weight"], "in_proj_bias": sd[f"{qkv}.bias"],
                     "out_proj.weight": sd[f"{out}.weight"], "out_proj.bias": sd[f"{out}.bias"]}
        params[f"block_{i}"] = {
            "ln_attention": layer_norm(f"{block}.ln_attention"),
            "attention": attention_params_from_torch(attention, size.num_heads),
            "ln_mlp": layer_norm(f"{block}.ln_mlp"),
            "mlp_in": dense(f"{block}.mlp.0"),
            "mlp_out": dense(f"{block}.mlp.2"),
        }
    return params


def torch_gpt_state_dict(params: dict, size: Size) -> dict[str, np.ndarray]:
    """``nnjax_lm(size)`` params as a ``torch_gpt(size)`` state dict of numpy arrays (the inverse of
    ``params_from_torch_gpt``)."""
    from nnjax.models.torch_import import attention_params_to_torch

    def tensors(name: str, p: dict) -> dict[str, np.ndarray]:
        """A Dense ({'kernel', 'bias'}) or LayerNorm ({'scale', 'bias'}) as torch's weight and bias."""
        weight = np.asarray(p["kernel"], np.float32).T.copy() if "kernel" in p else np.asarray(p["scale"], np.float32)
        return {f"{name}.weight": weight, f"{name}.bias": np.asarray(p["bias"], np.float32)}

    state = {"token_embed.weight": np.asarray(params["token_embed"]["embedding"], np.float32),
             "position_embed": np.asarray(params["position_embed"], np.float32)}
    for i in range(size.num_layers):
        block, prefix = params[f"block_{i}"], f"blocks.{i}"
        attention = attention_params_to_torch(block["attention"])
        state |= tensors(f"{prefix}.ln_attention", block["ln_attention"])
        state |= {f"{prefix}.attention.qkv.weight": attention["in_proj_weight"],
                  f"{prefix}.attention.qkv.bias": attention["in_proj_bias"],
                  f"{prefix}.attention.out.weight": attention["out_proj.weight"],
                  f"{prefix}.attention.out.bias": attention["out_proj.bias"]}
        state |= tensors(f"{prefix}.ln_mlp", block["ln_mlp"])
        state |= tensors(f"{prefix}.mlp.0", block["mlp_in"]) | tensors(f"{prefix}.mlp.2", block["mlp_out"])
    return state | tensors("ln_final", params["ln_final"])


def run_torch(size: Size, x: np.ndarray, y: np.ndarray, idx_NxCxB: np.ndarray, warmup_blocks: int) -> tuple[list[float], str]:
    """PyTorch eager loop (CUDA when available, else CPU), one step at a time, timed per block of C steps.

    The first ``warmup_blocks`` are untimed. Returns the wall seconds of each timed block and the backend.
    """
    import torch
    from torch.nn import functional as F

    device = "cuda" if torch.cuda.is_available() else "cpu"
    sync = torch.cuda.synchronize if device == "cuda" else lambda: None
    if device == "cuda":
        torch.set_float32_matmul_precision("high")  # TF32 matmuls, as XLA's default float32 precision on a GPU
    torch.manual_seed(0)
    model = torch_gpt(size).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.1)
    inputs, targets = torch.from_numpy(x).long().to(device), torch.from_numpy(y).long().to(device)
    seconds: list[float] = []
    for i, idx_CxB in enumerate(torch.from_numpy(idx_NxCxB).long().to(device)):
        sync()
        start = time.perf_counter()
        for idx_B in idx_CxB:
            logits = model(inputs[idx_B])
            loss = F.cross_entropy(logits.view(-1, size.vocab_size), targets[idx_B].view(-1))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        sync()
        if i >= warmup_blocks:
            seconds.append(time.perf_counter() - start)
    return seconds, device


def torch_param_count(size: Size) -> int:
    """Every parameter of the PyTorch model (the tied embedding counted once)."""
    return sum(p.numel() for p in torch_gpt(size).parameters())


RUNNERS = {"nnjax": (run_nnjax, nnjax_param_count), "torch": (run_torch, torch_param_count)}


def run_worker(framework: str, size: Size, steps: int, warmup: int, chunk: int, num_windows: int) -> dict:
    """Train one framework on the shared synthetic data: parameter count, tokens/s, backend, load.

    Steps run in blocks of ``chunk``; tokens/s is ``chunk · batch · block`` over the median timed
    block's seconds (robust to another process briefly taking a core). ``load_avg`` is the 1-minute
    load average when the worker started (above the core count, other work was competing).
    """
    run, count = RUNNERS[framework]
    load_avg = os.getloadavg()[0]
    x, y = synthetic_windows(size, num_windows)
    idx_NxCxB = batch_indices(warmup + steps, size.batch_size, num_windows).reshape(-1, chunk, size.batch_size)
    seconds, backend = run(size, x, y, idx_NxCxB, warmup // chunk)
    tokens_per_block = chunk * size.batch_size * size.block_size
    return {"params": count(size), "tokens_per_s": tokens_per_block / float(np.median(seconds)), "backend": backend,
            "load_avg": load_avg}


def throughput_figures(framework: str, worker: dict, size: Size, peak_tflops: float) -> dict:
    """``<framework>_*`` JSON fields: tokens/s, achieved GFLOP/s, MFU (GPU only, else ``None``), backend, load."""
    flops_per_s = worker["tokens_per_s"] * flops_per_token(worker["params"], size)
    on_gpu = worker["backend"] in ("gpu", "cuda")
    return {
        f"{framework}_tokens_per_s": round(worker["tokens_per_s"], 1),
        f"{framework}_gflops_per_s": round(flops_per_s / 1e9, 2),
        f"{framework}_mfu": round(flops_per_s / (peak_tflops * 1e12), 4) if on_gpu else None,
        f"{framework}_params": worker["params"],
        f"{framework}_backend": worker["backend"],
        f"{framework}_load_avg": round(worker["load_avg"], 2),
    }


def parse_args(argv: list[str]) -> argparse.Namespace:
    """Flags; ``--steps`` and ``--warmup`` must be multiples of ``--chunk``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=500, help="timed steps (a multiple of --chunk)")
    parser.add_argument("--warmup", type=int, default=50, help="untimed steps first (a multiple of --chunk)")
    parser.add_argument("--chunk", type=int, default=50, help="steps per timed block (nnjax: per jitted lax.scan)")
    add_size_flags(parser, Size())
    parser.add_argument("--windows", type=int, default=4096, help="synthetic token windows batches are drawn from")
    parser.add_argument("--peak-tflops", type=float, default=H100_BF16_DENSE_TFLOPS,
                        help="accelerator peak for MFU (default 989: H100/H200 SXM bf16 dense)")
    parser.add_argument("--frameworks", default=",".join(FRAMEWORKS))
    parser.add_argument("--repeats", type=int, default=2, help="runs per framework, alternating; the best is reported")
    parser.add_argument("--worker", choices=FRAMEWORKS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error(f"--repeats must be >= 1, got {args.repeats}")
    if args.chunk < 1 or args.steps < args.chunk or args.steps % args.chunk or args.warmup % args.chunk:
        parser.error(f"--steps ({args.steps}) and --warmup ({args.warmup}) must be multiples of --chunk ({args.chunk}), "
                     "with at least one timed chunk")
    unknown = set(args.frameworks.split(",")) - set(FRAMEWORKS)
    if unknown:
        parser.error(f"--frameworks must be drawn from {FRAMEWORKS}, got {sorted(unknown)}")
    return args


def add_size_flags(parser: argparse.ArgumentParser, defaults: Size) -> None:
    """One flag per ``Size`` field (``--batch-size``, ``--block-size``, ...), defaulting to ``defaults``."""
    for field in fields(Size):
        parser.add_argument(f"--{field.name.replace('_', '-')}", type=int, default=getattr(defaults, field.name))


def size_of(args: argparse.Namespace) -> Size:
    """The model/batch size the flags ask for."""
    return Size(args.vocab_size, args.block_size, args.d_model, args.num_heads, args.num_layers, args.batch_size)


def best_of(runs: list[dict | None]) -> dict | None:
    """The run with the most tokens/s (the least disturbed by other work), ``None`` if none succeeded."""
    succeeded = [run for run in runs if run is not None]
    return max(succeeded, key=lambda run: run["tokens_per_s"]) if succeeded else None


def summarize(size: Size, args: argparse.Namespace, runs: dict[str, list[dict | None]]) -> dict:
    """The final JSON object: configuration, each framework's best run and all its runs' tokens/s, nnjax/torch.

    ``runs`` maps a framework to its workers' results (``None`` for a failed run); a framework
    without a successful run gets ``<framework>_tokens_per_s: null``. Raises ``AssertionError``
    when both frameworks ran and their models differ in parameter count.
    """
    result: dict[str, object] = {
        "benchmark": "char_lm", **asdict(size), "dtype": "float32", "timed_steps": args.steps,
        "warmup_steps": args.warmup, "chunk": args.chunk, "repeats": args.repeats, "cpu_count": os.cpu_count(),
        "peak_tflops": args.peak_tflops,
    }
    best = {framework: best_of(framework_runs) for framework, framework_runs in runs.items()}
    for framework, worker in best.items():
        result[f"{framework}_runs_tokens_per_s"] = [run and round(run["tokens_per_s"], 1) for run in runs[framework]]
        if worker is None:
            result[f"{framework}_tokens_per_s"] = None
            continue
        result["flops_per_token"] = flops_per_token(worker["params"], size)
        result.update(throughput_figures(framework, worker, size, args.peak_tflops))
    if best.get("nnjax") and best.get("torch"):
        nnjax, torch = best["nnjax"], best["torch"]
        assert nnjax["params"] == torch["params"], f"parameter counts differ: nnjax {nnjax['params']}, torch {torch['params']}"
        result["nnjax_over_torch"] = round(nnjax["tokens_per_s"] / torch["tokens_per_s"], 2)
    return result


def run_subprocess(framework: str, argv: list[str]) -> dict | None:
    """One framework's worker in a fresh interpreter with the parent's flags; ``None`` if it failed."""
    return launch_worker("benchmarks.char_lm", [*argv, "--worker", framework], framework,
                         lambda w: f"{framework}: {w['tokens_per_s']:.0f} tokens/s (load average {w['load_avg']:.2f})")


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    size = size_of(args)
    if args.worker:
        print(json.dumps(run_worker(args.worker, size, args.steps, args.warmup, args.chunk, args.windows)))
        return
    frameworks = args.frameworks.split(",")
    runs = alternate(args.repeats, frameworks, lambda framework: run_subprocess(framework, argv))
    print(json.dumps(summarize(size, args, runs)))


if __name__ == "__main__":
    main()
