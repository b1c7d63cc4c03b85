"""Write the PyTorch reference files ``tests/torch_reference/*.npz`` that the tests compare nnjax against.

    pip install torch torchvision && python -m tests.torch_reference.generate   (from the repository root)

Each file holds small inputs, weights under their exact torch ``state_dict`` names in torch layout
(OIHW convolution kernels, [out, in] linear weights, NCHW images), the outputs and, where a case
asks for them, a random cotangent ``cot`` per output and the gradients of ``sum(out * cot)`` with
respect to every input and parameter (``<prefix>.grad.<name>``). Float arrays are float32 (one
float16 image, said so in its ``meta``), index arrays int64, masks bool. Every file also holds
``meta``: a 0-d string of JSON with the torch and torchvision versions and every hyper-parameter
of every case.

The CI loads these files with numpy only; torch is imported inside functions, so that
``seeded_state_dict`` (ResNet-18's weights, drawn by numpy instead of being stored) and
``state_dict_sha256`` can be imported without it. Everything runs on the CPU in float32 with
``torch.use_deterministic_algorithms(True)`` and a fixed ``torch.manual_seed`` per case; the zip
entries carry a fixed timestamp, so a rerun rewrites byte-identical files. The files must stay
well under 2 MB in all (checked when they are written): keep every case small.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import warnings
import zipfile
import zlib
from pathlib import Path

import numpy as np

OUT_DIR = Path(__file__).resolve().parent
MAX_TOTAL_BYTES = 2 * 1024 * 1024
ZIP_DATE_TIME = (1980, 1, 1, 0, 0, 0)  # fixed zip entry timestamp: reruns write identical bytes
SAVED_KINDS = {"float32", "float16", "int64", "bool", "str"}  # numpy dtypes (str: meta and the ResNet key list)

CONV_CASES = {  # name: (F.pad before the convolution as (left, right, top, bottom) or None, nn.Conv2d arguments)
    "a": (None, {"in_channels": 3, "out_channels": 4, "kernel_size": 3, "stride": 2, "padding": 1}),
    "b": (None, {"in_channels": 3, "out_channels": 4, "kernel_size": (3, 2), "stride": (1, 2), "padding": (2, 0)}),
    "c": (None, {"in_channels": 3, "out_channels": 4, "kernel_size": 5, "padding": 0, "bias": False}),
    "d": ((1, 2, 0, 1), {"in_channels": 3, "out_channels": 4, "kernel_size": 3}),
    "e": (None, {"in_channels": 3, "out_channels": 4, "kernel_size": 4, "padding": "same"}),
    "f": (None, {"in_channels": 3, "out_channels": 4, "kernel_size": 3, "stride": 1, "padding": 1, "dilation": 1}),
}

POOL_CASES = {"a": {"kernel_size": 2}, "b": {"kernel_size": 3, "stride": 2, "padding": 1}}  # nn.MaxPool2d arguments

OPTIMIZERS = {  # name: (torch.optim class, its arguments)
    "sgd": ("SGD", {"lr": 0.1}),
    "momentum": ("SGD", {"lr": 0.1, "momentum": 0.9}),
    "nesterov": ("SGD", {"lr": 0.1, "momentum": 0.9, "nesterov": True}),
    "sgd_wd": ("SGD", {"lr": 0.1, "momentum": 0.9, "weight_decay": 0.05}),
    "rmsprop": ("RMSprop", {"lr": 0.01, "alpha": 0.99, "eps": 1e-8}),
    "rmsprop_momentum": ("RMSprop", {"lr": 0.01, "alpha": 0.9, "eps": 1e-8, "momentum": 0.5}),
    "adam": ("Adam", {"lr": 0.05, "betas": (0.9, 0.999), "eps": 1e-8}),
    "adam_l2": ("Adam", {"lr": 0.05, "weight_decay": 0.1}),
    "adamw": ("AdamW", {"lr": 0.05, "weight_decay": 0.1}),
    "steplr": ("SGD", {"lr": 0.1, "momentum": 0.9}),
}
STEPLR = {"step_size": 4, "gamma": 0.5}  # the "steplr" optimizer's scheduler, stepped after every optimizer step
OPTIMIZER_STEPS = 12

GAT_EDGES = [(0, 1), (1, 0), (1, 2), (2, 3), (3, 1), (4, 2), (5, 0), (5, 4), (2, 4), (0, 3)]  # (source, target)
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


# ---------------------------------------------------------------------------------------------
# numpy-only helpers (imported by the tests, which have no torch)
# ---------------------------------------------------------------------------------------------


def seeded_state_dict(shapes: dict[str, tuple[int, ...]], seed: int = 0) -> dict[str, np.ndarray]:
    """Deterministic weights for a torch ``state_dict`` layout, drawn by numpy (ResNet-18's are not stored).

    Each key draws from its own generator ``default_rng([seed, crc32(key)])``, so its value does not
    depend on the other keys. By leaf name (the part after the last '.'): ``num_batches_tracked``
    int64 0; arrays of ndim >= 2 (conv/linear weights) He-normal, ``std = sqrt(2 / prod(shape[1:]))``;
    in a BatchNorm module (one whose ``running_mean`` is in ``shapes``) weight U(0.5, 1.5), bias
    N(0, 0.2), running_mean N(0, 0.2), running_var U(0.5, 1.5); any other 1-d bias N(0, 0.1).
    Float arrays are float32; a key no rule covers raises ``ValueError``.
    """
    return {key: _seeded_array(key, tuple(shape), shapes, seed) for key, shape in shapes.items()}


def _seeded_array(key: str, shape: tuple[int, ...], shapes: dict, seed: int) -> np.ndarray:
    rng = np.random.default_rng([seed, zlib.crc32(key.encode())])
    module, _, leaf = key.rpartition(".")
    batch_norm = f"{module}.running_mean" if module else "running_mean"
    if leaf == "num_batches_tracked":
        return np.array(0, np.int64)
    if len(shape) >= 2:
        return (rng.standard_normal(shape) * math.sqrt(2 / math.prod(shape[1:]))).astype(np.float32)
    if batch_norm in shapes and leaf in ("weight", "running_var"):
        return rng.uniform(0.5, 1.5, shape).astype(np.float32)
    if batch_norm in shapes and leaf in ("bias", "running_mean"):
        return rng.normal(0.0, 0.2, shape).astype(np.float32)
    if leaf == "bias" and len(shape) == 1:
        return rng.normal(0.0, 0.1, shape).astype(np.float32)
    raise ValueError(f"seeded_state_dict has no rule for {key!r} of shape {shape}")


def state_dict_sha256(state_dict: dict[str, np.ndarray]) -> str:
    """Hex sha256 over the raw bytes (float32 / int64, C order) of the arrays in sorted key order."""
    digest = hashlib.sha256()
    for key in sorted(state_dict):
        digest.update(np.ascontiguousarray(state_dict[key]).tobytes())
    return digest.hexdigest()


def write_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """``np.savez_compressed`` the arrays, then rewrite the zip with a fixed entry timestamp."""
    for key, value in arrays.items():
        assert ("str" if value.dtype.kind == "U" else value.dtype.name) in SAVED_KINDS, (key, value.dtype)
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    with zipfile.ZipFile(buffer) as source, zipfile.ZipFile(path, "w") as target:
        for entry in source.infolist():
            stamped = zipfile.ZipInfo(entry.filename, ZIP_DATE_TIME)
            target.writestr(stamped, source.read(entry), compress_type=zipfile.ZIP_DEFLATED)


def summary_line(path: Path, arrays: dict[str, np.ndarray]) -> str:
    """``name: size KB, n arrays`` (and the logits' spread for the ResNet file)."""
    line = f"{path.name}: {path.stat().st_size / 1024:.1f} KB, {len(arrays)} arrays"
    if "resnet.logits" in arrays:
        line += f", logits std {arrays['resnet.logits'].std():.3g}"
    return line


# ---------------------------------------------------------------------------------------------
# torch helpers
# ---------------------------------------------------------------------------------------------


def as_numpy(value) -> np.ndarray:
    """A copy of a tensor (or array) as numpy: float32 floats, int64 integers, bool masks."""
    import torch

    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    value = np.array(value)
    if value.dtype.kind == "f":
        return value.astype(np.float32)
    if value.dtype.kind in "iu":
        return value.astype(np.int64)
    return value.copy()


def prefixed(prefix: str, tensors: dict) -> dict[str, np.ndarray]:
    """``{f"{prefix}.{name}": numpy copy}`` of a dict of tensors."""
    return {f"{prefix}.{name}": as_numpy(value) for name, value in tensors.items()}


def with_meta(arrays: dict[str, np.ndarray], cases: dict) -> dict[str, np.ndarray]:
    """The arrays plus ``meta``: a 0-d string of JSON with the library versions and the cases' hyper-parameters."""
    import torch
    import torchvision

    meta = {"torch": torch.__version__, "torchvision": torchvision.__version__, **cases}
    return {**arrays, "meta": np.array(json.dumps(meta, sort_keys=True))}


def vjp(outputs: dict, inputs: dict) -> tuple[dict, dict]:
    """Draw a randn cotangent per output; return them and the gradients of ``sum(out * cot)`` w.r.t. ``inputs``."""
    import torch

    cotangents = {name: torch.randn_like(out) for name, out in outputs.items()}
    loss = sum((out * cotangents[name]).sum() for name, out in outputs.items())
    gradients = torch.autograd.grad(loss, list(inputs.values()))
    return cotangents, dict(zip(inputs, gradients))


def module_settings(module, names: tuple[str, ...]) -> dict:
    """The named constructor settings of a torch module as JSON-able values (tuples become lists)."""
    settings = {name: getattr(module, name) for name in names}
    return {name: list(value) if isinstance(value, tuple) else value for name, value in settings.items()}


# ---------------------------------------------------------------------------------------------
# recurrent.npz
# ---------------------------------------------------------------------------------------------


def recurrent_case(prefix: str, kind: str, settings: dict, seed: int) -> tuple[dict, dict]:
    """One ``nn.LSTM`` / ``nn.RNN`` layer: a full run with gradients and a packed variable-length run."""
    import torch
    from torch import nn
    from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

    torch.manual_seed(seed)
    rnn = getattr(nn, kind)(**settings)
    is_lstm = kind == "LSTM"
    x = torch.randn(2, 4, 3, requires_grad=True)
    states = {"h0": torch.randn(1, 2, 5, requires_grad=True)}
    if is_lstm:
        states["c0"] = torch.randn(1, 2, 5, requires_grad=True)
    lengths = torch.tensor([4, 2])

    def run(inputs):
        y, final = rnn(inputs, tuple(states.values()) if is_lstm else states["h0"])
        return y, dict(zip(("hn", "cn"), final if is_lstm else (final,)))

    y, finals = run(x)
    cotangents, grads = vjp({"y": y, **finals}, {"x": x, **states, **dict(rnn.named_parameters())})
    packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
    packed_y, packed_finals = run(packed)
    packed_y, _ = pad_packed_sequence(packed_y, batch_first=True, total_length=4)

    assert torch.equal(packed_y[1, 2:], torch.zeros(2, 5)), "padding must be zeros"
    assert torch.allclose(packed_y[0], y[0]), "the full-length sequence is unchanged by packing"
    assert torch.allclose(packed_finals["hn"][0, 1], packed_y[1, 1]), "hn is the last valid step"
    arrays = {
        **prefixed(prefix, {"x": x, **states, "y": y, **finals, "lengths": lengths}),
        **prefixed(f"{prefix}.sd", rnn.state_dict()),
        **prefixed(f"{prefix}.cot", cotangents),
        **prefixed(f"{prefix}.grad", grads),
        **prefixed(f"{prefix}.packed", {"y": packed_y, **packed_finals}),
    }
    meta = {
        "module": f"nn.{kind}",
        **module_settings(rnn, ("input_size", "hidden_size", "num_layers", "bias", "batch_first", "bidirectional")),
        **({} if is_lstm else {"nonlinearity": rnn.nonlinearity}),
        "seed": seed,
        "packed": "pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False), same initial state; "
        "pad_packed_sequence(batch_first=True, total_length=4)",
    }
    return arrays, meta


def recurrent() -> dict[str, np.ndarray]:
    """recurrent.npz: a one-layer LSTM and a tanh RNN (3 -> 5, batch first)."""
    lstm, lstm_meta = recurrent_case("lstm", "LSTM", {"input_size": 3, "hidden_size": 5, "batch_first": True}, seed=0)
    rnn_settings = {"input_size": 3, "hidden_size": 5, "nonlinearity": "tanh", "batch_first": True}
    rnn, rnn_meta = recurrent_case("rnn", "RNN", rnn_settings, seed=1)
    return with_meta({**lstm, **rnn}, {"lstm": lstm_meta, "rnn": rnn_meta})


# ---------------------------------------------------------------------------------------------
# attention.npz
# ---------------------------------------------------------------------------------------------


def multihead_attention(seed: int) -> tuple[dict, dict]:
    """``nn.MultiheadAttention(8, 2)``: key padding, causal, both, cross-attention; gradients of the padded run."""
    import torch
    from torch import nn

    torch.manual_seed(seed)
    mha = nn.MultiheadAttention(8, 2, batch_first=True).eval()
    with torch.no_grad():
        mha.in_proj_bias.copy_(torch.randn(24) * 0.1)
        mha.out_proj.bias.copy_(torch.randn(8) * 0.1)
    x = torch.randn(2, 5, 8, requires_grad=True)
    lengths = torch.tensor([5, 3])
    key_padding_mask = torch.arange(5) >= lengths[:, None]
    causal_mask = torch.triu(torch.ones(5, 5, dtype=torch.bool), 1)
    cross_q, cross_kv = torch.randn(2, 4, 8), torch.randn(2, 6, 8)

    def attend(query, kv, **masks):
        return mha(query, kv, kv, need_weights=True, average_attn_weights=False, **masks)

    runs = {
        "pad": attend(x, x, key_padding_mask=key_padding_mask),
        "causal": attend(x, x, attn_mask=causal_mask),
        "both": attend(x, x, key_padding_mask=key_padding_mask, attn_mask=causal_mask),
        "cross": attend(cross_q, cross_kv),
    }
    for _, weights in runs.values():
        assert torch.allclose(weights.sum(-1), torch.ones(weights.shape[:-1])), "attention rows sum to 1"
    assert torch.equal(runs["pad"][1][1, :, :, 3:], torch.zeros(2, 5, 2)), "padded keys get weight 0"
    assert torch.equal(runs["causal"][1] * causal_mask, torch.zeros(2, 2, 5, 5)), "no weight on future keys"

    cotangents, grads = vjp({"pad": runs["pad"][0]}, {"x": x, **dict(mha.named_parameters())})
    arrays = {
        **prefixed("mha", {"x": x, "key_padding_mask": key_padding_mask, "causal_mask": causal_mask}),
        **prefixed("mha.cross", {"q": cross_q, "kv": cross_kv}),
        **prefixed("mha.sd", mha.state_dict()),
        **prefixed("mha.cot", cotangents),
        **prefixed("mha.grad", grads),
    }
    for case, (out, weights) in runs.items():
        arrays.update(prefixed(f"mha.{case}", {"out": out, "weights": weights}))
    meta = {
        "module": "nn.MultiheadAttention",
        "embed_dim": 8,
        "num_heads": 2,
        "dropout": mha.dropout,
        "bias": True,
        "add_bias_kv": False,
        "add_zero_attn": False,
        "batch_first": True,
        "mode": "eval",
        "need_weights": True,
        "average_attn_weights": False,
        "weights_layout": "[B, heads, Q, K]",
        "lengths": lengths.tolist(),
        "masks": "key_padding_mask and attn_mask: True = not allowed (padding / future key)",
        "self_attention": "query = key = value = mha.x; cross: query = mha.cross.q, key = value = mha.cross.kv",
        "biases": "in_proj_bias and out_proj.bias are randn * 0.1",
        "gradient": "of the pad case's output only (cotangent mha.cot.pad)",
        "seed": seed,
    }
    return arrays, meta


def scaled_dot_product_attention(seed: int) -> tuple[dict, dict]:
    """``F.scaled_dot_product_attention`` with a boolean mask (True = may attend, every row one at least)."""
    import torch
    from torch.nn import functional as F

    torch.manual_seed(seed)
    q, k, v = torch.randn(2, 2, 4, 6), torch.randn(2, 2, 5, 6), torch.randn(2, 2, 5, 3)
    mask = torch.rand(4, 5) < 0.5
    mask[torch.arange(4), torch.randint(0, 5, (4,))] = True
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    meta = {
        "function": "F.scaled_dot_product_attention(q, k, v, attn_mask=mask)",
        "mask": "bool [Q, K], True = may attend",
        "scale": "1 / sqrt(head_dim) (default)",
        "dropout_p": 0.0,
        "is_causal": False,
        "seed": seed,
    }
    return prefixed("sdpa", {"q": q, "k": k, "v": v, "mask": mask, "out": out}), meta


def attention() -> dict[str, np.ndarray]:
    """attention.npz: multi-head attention under every mask, and the functional scaled dot-product attention."""
    mha, mha_meta = multihead_attention(seed=20)
    sdpa, sdpa_meta = scaled_dot_product_attention(seed=21)
    return with_meta({**mha, **sdpa}, {"mha": mha_meta, "sdpa": sdpa_meta})


# ---------------------------------------------------------------------------------------------
# normalization.npz
# ---------------------------------------------------------------------------------------------


def normalization() -> dict[str, np.ndarray]:
    """normalization.npz: ``nn.BatchNorm2d(3)`` in eval mode, then one training step (output, statistics, gradients)."""
    import torch
    from torch import nn

    seed = 30
    torch.manual_seed(seed)
    bn = nn.BatchNorm2d(3, eps=1e-5, momentum=0.1)
    with torch.no_grad():
        bn.weight.uniform_(0.5, 1.5)
        bn.bias.normal_(0.0, 0.2)
        bn.running_mean.normal_(0.0, 0.2)
        bn.running_var.uniform_(0.5, 1.5)
    state = {name: value.clone() for name, value in bn.state_dict().items() if name != "num_batches_tracked"}
    x = (torch.randn(4, 3, 5, 6) * 2 + 1).requires_grad_()
    with torch.no_grad():
        eval_y = bn.eval()(x)
    train_y = bn.train()(x)
    cotangent, grads = vjp({"y": train_y}, {"x": x, **dict(bn.named_parameters())})

    batch_var = x.detach().var(dim=(0, 2, 3), unbiased=True)
    expected_var = 0.9 * state["running_var"] + 0.1 * batch_var
    assert torch.allclose(bn.running_var, expected_var), "running_var uses the unbiased batch variance"
    arrays = {
        **prefixed("bn", {"x": x, "cot": cotangent["y"]}),
        **prefixed("bn.sd", state),
        **prefixed("bn.eval", {"y": eval_y}),
        **prefixed("bn.train", {"y": train_y, "running_mean": bn.running_mean, "running_var": bn.running_var}),
        **prefixed("bn.grad", grads),
    }
    meta = {
        "module": "nn.BatchNorm2d",
        **module_settings(bn, ("num_features", "eps", "momentum", "affine", "track_running_stats")),
        "order": "eval forward with bn.sd, then one train forward on the same x (running statistics updated once)",
        "running_var": "momentum * unbiased batch variance + (1 - momentum) * old running_var",
        "gradient": "of the train-mode output (cotangent bn.cot)",
        "seed": seed,
    }
    return with_meta(arrays, {"bn": meta})


# ---------------------------------------------------------------------------------------------
# conv.npz
# ---------------------------------------------------------------------------------------------


def conv_case(name: str, x, seed: int) -> tuple[dict, dict]:
    """One ``nn.Conv2d`` case of ``CONV_CASES`` on the shared input: output and gradients."""
    import torch
    from torch import nn
    from torch.nn import functional as F

    pad, settings = CONV_CASES[name]
    torch.manual_seed(seed)
    conv = nn.Conv2d(**settings)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Using padding='same' with even kernel")  # the case tests exactly that
        y = conv(F.pad(x, pad) if pad else x)
    cotangent, grads = vjp({"y": y}, {"x": x, **dict(conv.named_parameters())})
    if settings.get("padding") == "same":
        explicit = F.conv2d(F.pad(x, (1, 2, 1, 2)), conv.weight, conv.bias)
        assert torch.allclose(y, explicit, atol=1e-6), "'same' with an even kernel pads 1 before and 2 after"
    arrays = {
        **prefixed(f"conv.{name}", {"y": y, "cot": cotangent["y"]}),
        **prefixed(f"conv.{name}.sd", conv.state_dict()),
        **prefixed(f"conv.{name}.grad", grads),
    }
    names = ("in_channels", "out_channels", "kernel_size", "stride", "padding", "dilation", "groups", "padding_mode")
    conv2d = module_settings(conv, names)
    meta = {"conv2d": {**conv2d, "bias": conv.bias is not None}, "seed": seed}
    if pad:
        meta["pad"] = {"F.pad": list(pad), "order": "(left, right, top, bottom), applied before the convolution"}
    if settings.get("padding") == "same":
        meta["same_padding"] = {"before": 1, "after": 2, "axes": "height and width"}
    return arrays, meta


def conv() -> dict[str, np.ndarray]:
    """conv.npz: the ``CONV_CASES`` convolutions of one shared input ``conv.x`` [2, 3, 9, 8]."""
    import torch

    seed = 40
    torch.manual_seed(seed)
    x = torch.randn(2, 3, 9, 8, requires_grad=True)
    arrays, meta = {"conv.x": as_numpy(x)}, {"seed": seed}
    for i, name in enumerate(CONV_CASES):
        case_arrays, meta[name] = conv_case(name, x, seed=seed + 1 + i)
        arrays.update(case_arrays)
    return with_meta(arrays, {"conv": meta})


# ---------------------------------------------------------------------------------------------
# pool.npz
# ---------------------------------------------------------------------------------------------


def pool() -> dict[str, np.ndarray]:
    """pool.npz: the ``POOL_CASES`` max poolings of ``pool.x`` [2, 3, 7, 6], outputs and input gradients."""
    import torch
    from torch import nn

    seed = 50
    torch.manual_seed(seed)
    x = torch.randn(2, 3, 7, 6, requires_grad=True)
    arrays, meta = {"pool.x": as_numpy(x)}, {"seed": seed}
    for name, settings in POOL_CASES.items():
        max_pool = nn.MaxPool2d(**settings)
        y = max_pool(x)
        cotangent, grads = vjp({"y": y}, {"x": x})
        arrays.update(prefixed(f"pool.{name}", {"y": y, "cot": cotangent["y"], "grad.x": grads["x"]}))
        meta[name] = module_settings(max_pool, ("kernel_size", "stride", "padding", "dilation", "ceil_mode"))
    return with_meta(arrays, {"pool": meta})


# ---------------------------------------------------------------------------------------------
# losses.npz
# ---------------------------------------------------------------------------------------------


def losses() -> dict[str, np.ndarray]:
    """losses.npz: scalar losses (mean reduction unless said otherwise) and the gradient w.r.t. their input."""
    import torch
    from torch.nn import functional as F

    seed = 60
    torch.manual_seed(seed)
    data = {
        "logits": torch.randn(6, 5),
        "targets": torch.randint(0, 5, (6,)),
        "class_weight": torch.empty(5).uniform_(0.5, 2.0),
        "b_logits": torch.randn(6),
        "b_targets": torch.randint(0, 2, (6,)).float(),
        "pred": torch.randn(6, 3),
        "target": torch.randn(6, 3) * 2,
        "kl_target": torch.softmax(torch.randn(6, 5), -1),
    }
    cases = {  # name: (input differentiated, the loss as a torch expression of the inputs, recorded in meta)
        "ce": ("logits", "F.cross_entropy(logits, targets)"),
        "ce_smooth": ("logits", "F.cross_entropy(logits, targets, label_smoothing=0.1)"),
        "ce_weight": ("logits", "F.cross_entropy(logits, targets, weight=class_weight)"),
        "nll": ("logits", "F.nll_loss(F.log_softmax(logits, -1), targets)"),
        "bce_logits": ("b_logits", "F.binary_cross_entropy_with_logits(b_logits, b_targets)"),
        "bce": ("b_logits", "F.binary_cross_entropy(torch.sigmoid(b_logits), b_targets)"),
        "mse": ("pred", "F.mse_loss(pred, target)"),
        "l1": ("pred", "F.l1_loss(pred, target)"),
        "smooth_l1": ("pred", "F.smooth_l1_loss(pred, target, beta=1.0)"),
        "huber": ("pred", "F.huber_loss(pred, target, delta=1.5)"),
        "kl_div": ("logits", "F.kl_div(F.log_softmax(logits, -1), kl_target, reduction='batchmean')"),
    }
    arrays, meta = prefixed("loss", data), {"seed": seed}
    for name, (wrt, expression) in cases.items():
        inputs = {**data, wrt: data[wrt].clone().requires_grad_()}
        value = eval(expression, {"F": F, "torch": torch}, inputs)  # noqa: S307 - the expressions above, nothing else
        (grad,) = torch.autograd.grad(value, inputs[wrt])
        arrays.update(prefixed(f"loss.{name}", {"value": value, "grad": grad}))
        meta[name] = {"expression": expression, "grad_wrt": wrt}
    meta["reduction"] = "mean unless the expression says otherwise"
    return with_meta(arrays, {"loss": meta})


# ---------------------------------------------------------------------------------------------
# optim.npz
# ---------------------------------------------------------------------------------------------


def optimizer_trajectory(name: str, X, Y, w0) -> tuple[dict, dict]:
    """``OPTIMIZER_STEPS`` steps of one ``OPTIMIZERS`` entry on ``mean((X @ w - Y)²)`` from ``w0``."""
    import torch

    kind, settings = OPTIMIZERS[name]
    w = w0.clone().requires_grad_()
    optimizer = getattr(torch.optim, kind)([w], **settings)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, **STEPLR) if name == "steplr" else None
    trajectory, lrs = [w.detach().clone()], []
    for _ in range(OPTIMIZER_STEPS):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.zero_grad()
        ((X @ w - Y) ** 2).mean().backward()
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        trajectory.append(w.detach().clone())
    arrays = {f"opt.{name}.traj": as_numpy(torch.stack(trajectory))}
    meta = {"class": f"torch.optim.{kind}", "hyperparameters": optimizer.defaults}
    if scheduler is not None:
        arrays[f"opt.{name}.lr"] = as_numpy(np.array(lrs))
        meta["scheduler"] = {"class": "torch.optim.lr_scheduler.StepLR", **STEPLR, "stepped": "after every optimizer step"}
    return arrays, meta


def optim() -> dict[str, np.ndarray]:
    """optim.npz: every ``OPTIMIZERS`` trajectory [13, 3, 2] (w0, then w after each step) of a least-squares loss."""
    import torch

    seed = 70
    torch.manual_seed(seed)
    X, Y, w0 = torch.randn(8, 3), torch.randn(8, 2), torch.randn(3, 2)
    arrays = prefixed("opt", {"X": X, "Y": Y, "w0": w0})
    meta = {"loss": "((X @ w - Y) ** 2).mean()", "steps": OPTIMIZER_STEPS, "seed": seed}
    for name in OPTIMIZERS:
        trajectory, meta[name] = optimizer_trajectory(name, X, Y, w0)
        arrays.update(trajectory)
    return with_meta(arrays, {"opt": meta})


# ---------------------------------------------------------------------------------------------
# graph.npz
# ---------------------------------------------------------------------------------------------


def gat_conv(in_channels: int, out_channels: int, heads: int, concat: bool):
    """PyTorch Geometric's ``GATConv`` in pure torch (add_self_loops, negative_slope 0.2, no dropout, bias).

    Parameters as PyG names them: ``lin.weight`` [heads·out, in] (no bias), ``att_src`` and
    ``att_dst`` [1, heads, out] (PyG's glorot), ``bias`` [heads·out] (concat) or [out] (mean).
    ``forward(x, edge_index)`` removes self loops, appends one per node (in node order) after the
    edges, and returns ``(out, alpha [E + N, heads])``; ``edge_index[0]`` is the source j and
    ``edge_index[1]`` the target i of each message j -> i.
    """
    import torch
    from torch import nn
    from torch.nn import functional as F

    def glorot_(tensor):
        bound = math.sqrt(6.0 / (tensor.size(-2) + tensor.size(-1)))
        with torch.no_grad():
            tensor.uniform_(-bound, bound)

    def segment_softmax(logits_ExH, index_E, num_nodes):
        """PyG's ``softmax(src, index)``: over the edges that share a target."""
        index_ExH = index_E[:, None].expand_as(logits_ExH)
        maxima = torch.full((num_nodes, logits_ExH.shape[1]), -math.inf)
        maxima = maxima.scatter_reduce(0, index_ExH, logits_ExH.detach(), "amax")
        exp_ExH = (logits_ExH - maxima[index_E]).exp()
        sums = torch.zeros(num_nodes, logits_ExH.shape[1]).index_add(0, index_E, exp_ExH) + 1e-16
        return exp_ExH / sums[index_E]

    class GATConv(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(in_channels, heads * out_channels, bias=False)
            self.att_src = nn.Parameter(torch.empty(1, heads, out_channels))
            self.att_dst = nn.Parameter(torch.empty(1, heads, out_channels))
            self.bias = nn.Parameter(torch.zeros(heads * out_channels if concat else out_channels))
            for parameter in (self.lin.weight, self.att_src, self.att_dst):
                glorot_(parameter)

        def forward(self, x_NxF, edge_index):
            num_nodes = x_NxF.shape[0]
            edge_index = edge_index[:, edge_index[0] != edge_index[1]]
            loops = torch.arange(num_nodes).expand(2, num_nodes)
            source, target = torch.cat([edge_index, loops], dim=1)
            h_NxHxC = self.lin(x_NxF).view(num_nodes, heads, out_channels)
            score_src, score_dst = (h_NxHxC * self.att_src).sum(-1), (h_NxHxC * self.att_dst).sum(-1)
            alpha_ExH = segment_softmax(F.leaky_relu(score_src[source] + score_dst[target], 0.2), target, num_nodes)
            out_NxHxC = torch.zeros_like(h_NxHxC).index_add(0, target, alpha_ExH[..., None] * h_NxHxC[source])
            out = out_NxHxC.flatten(1) if concat else out_NxHxC.mean(dim=1)
            return out + self.bias, alpha_ExH

    return GATConv()


def gat_case(name: str, concat: bool, x, edge_index, seed: int) -> tuple[dict, dict]:
    """One ``gat_conv(4, 3, heads=2, concat)`` on the shared graph: output, attention and gradients."""
    import torch

    torch.manual_seed(seed)
    layer = gat_conv(4, 3, heads=2, concat=concat)
    with torch.no_grad():
        layer.bias.copy_(torch.randn_like(layer.bias) * 0.1)
    out, alpha = layer(x, edge_index)
    cotangent, grads = vjp({"out": out}, {"x": x, **dict(layer.named_parameters())})

    receivers = torch.cat([edge_index[1], torch.arange(6)])
    assert torch.allclose(torch.zeros(6, 2).index_add(0, receivers, alpha), torch.ones(6, 2)), "alpha sums to 1 per receiver"
    assert torch.allclose(alpha[-1], torch.ones(2)), "node 5 attends only to itself"
    arrays = {
        **prefixed(f"gat.{name}", {"out": out, "alpha": alpha, "cot": cotangent["out"]}),
        **prefixed(f"gat.{name}.sd", layer.state_dict()),
        **prefixed(f"gat.{name}.grad", grads),
    }
    meta = {"in_channels": 4, "out_channels": 3, "heads": 2, "concat": concat, "bias": "randn * 0.1", "seed": seed}
    return arrays, meta


def graph() -> dict[str, np.ndarray]:
    """graph.npz: PyG-style GATConv, heads concatenated and averaged, on a 6-node graph (node 5 receives no edge)."""
    import torch

    seed = 80
    torch.manual_seed(seed)
    x = torch.randn(6, 4, requires_grad=True)
    edge_index = torch.tensor(GAT_EDGES).T.contiguous()
    concat, concat_meta = gat_case("concat", True, x, edge_index, seed=seed + 1)
    mean, mean_meta = gat_case("mean", False, x, edge_index, seed=seed + 2)
    meta = {
        "layer": "PyG GATConv: add_self_loops=True, negative_slope=0.2, dropout=0.0, bias=True, lin without bias",
        "edge_index": "[2, E]: row 0 = source j, row 1 = target i (message j -> i); self loops appended in node order",
        "alpha": "[E + N, heads], softmax over the edges into each target, in edge order then the self loops",
        "seed": seed,
        "concat": concat_meta,
        "mean": mean_meta,
    }
    return with_meta({**prefixed("gat", {"x": x, "edge_index": edge_index}), **concat, **mean}, {"gat": meta})


# ---------------------------------------------------------------------------------------------
# fpn.npz
# ---------------------------------------------------------------------------------------------


def fpn() -> dict[str, np.ndarray]:
    """fpn.npz: ``torchvision.ops.FeaturePyramidNetwork([3, 5, 4], 6)`` (random biases) on three feature maps."""
    import torch
    import torchvision

    seed = 90
    torch.manual_seed(seed)
    model = torchvision.ops.FeaturePyramidNetwork([3, 5, 4], 6).eval()
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if name.endswith("bias"):
                parameter.copy_(torch.randn_like(parameter) * 0.1)
    inputs = {"x0": torch.randn(1, 3, 26, 30), "x1": torch.randn(1, 5, 13, 15), "x2": torch.randn(1, 4, 7, 8)}
    with torch.no_grad():
        outputs = model(dict(inputs))
    assert list(outputs) == list(inputs)
    arrays = {
        **prefixed("fpn", inputs),
        **prefixed("fpn", {f"y{i}": y for i, y in enumerate(outputs.values())}),
        **prefixed("fpn.sd", model.state_dict()),
    }
    meta = {
        "module": "torchvision.ops.FeaturePyramidNetwork",
        "in_channels_list": [3, 5, 4],
        "out_channels": 6,
        "extra_blocks": None,
        "norm_layer": None,
        "mode": "eval",
        "upsampling": "F.interpolate(size=lateral's size, mode='nearest')",
        "biases": "every bias randn * 0.1",
        "inputs": "dict x0, x1, x2 in this order; outputs y0, y1, y2 in the dict's order",
        "seed": seed,
    }
    return with_meta(arrays, {"fpn": meta})


# ---------------------------------------------------------------------------------------------
# resnet.npz
# ---------------------------------------------------------------------------------------------


def resnet() -> dict[str, np.ndarray]:
    """resnet.npz: torchvision ``resnet18(num_classes=10)`` with ``seeded_state_dict`` weights (not stored).

    Saves the state_dict keys (torch's order), their shapes, the weights' digest, an input and the logits.
    """
    import torch
    import torchvision

    model = torchvision.models.resnet18(num_classes=10).eval()
    shapes = {key: tuple(value.shape) for key, value in model.state_dict().items()}
    state_dict = seeded_state_dict(shapes, seed=0)
    model.load_state_dict({key: torch.from_numpy(value) for key, value in state_dict.items()}, strict=True)
    seed = 100
    torch.manual_seed(seed)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        logits = model(x)
    assert torch.isfinite(logits).all() and 1e-2 < logits.std() < 1e3, f"logits std {logits.std()}"
    arrays = {
        "resnet.keys": np.array(list(shapes)),
        "resnet.shapes": np.array(json.dumps({key: list(shape) for key, shape in shapes.items()})),
        "resnet.sha256": np.array(state_dict_sha256(state_dict)),
        **prefixed("resnet", {"x": x, "logits": logits}),
    }
    meta = {
        "model": "torchvision.models.resnet18(num_classes=10)",
        "mode": "eval",
        "weights": "seeded_state_dict(shapes, seed=0) from tests/torch_reference/generate.py, load_state_dict(strict=True)",
        "weights_seed": 0,
        "sha256": "state_dict_sha256: sha256 over the arrays' bytes in sorted key order",
        "seed": seed,
    }
    return with_meta(arrays, {"resnet": meta})


# ---------------------------------------------------------------------------------------------
# gpt.npz
# ---------------------------------------------------------------------------------------------


def gpt() -> dict[str, np.ndarray]:
    """gpt.npz: the benchmark's PyTorch GPT (``benchmarks.char_lm.torch_gpt``), random biases and LayerNorms."""
    import dataclasses

    import torch
    from torch import nn

    from benchmarks.char_lm import Size, torch_gpt

    size = Size(vocab_size=11, block_size=8, d_model=16, num_heads=2, num_layers=2, batch_size=4)
    seed = 0
    torch.manual_seed(seed)
    model = torch_gpt(size).eval()
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.LayerNorm):
                module.weight.copy_(1 + torch.randn_like(module.weight) * 0.1)
            if isinstance(module, (nn.Linear, nn.LayerNorm)):
                module.bias.copy_(torch.randn_like(module.bias) * 0.1)
    ids = torch.randint(0, size.vocab_size, (2, size.block_size))
    with torch.no_grad():
        logits = model(ids)
    arrays = {**prefixed("gpt", {"ids": ids, "logits": logits}), **prefixed("gpt.sd", model.state_dict())}
    meta = {
        "model": "benchmarks.char_lm.torch_gpt(size)",
        "size": dataclasses.asdict(size),
        "mode": "eval",
        "randomised": "every Linear/LayerNorm bias randn * 0.1, every LayerNorm weight 1 + randn * 0.1",
        "seed": seed,
    }
    return with_meta(arrays, {"gpt": meta})


# ---------------------------------------------------------------------------------------------
# preprocess.npz
# ---------------------------------------------------------------------------------------------


def preprocess() -> dict[str, np.ndarray]:
    """preprocess.npz: torchvision's PIL pipeline (Resize, CenterCrop, ToTensor, Normalize) on scikit-learn's china.jpg."""
    import PIL
    import PIL.Image
    import sklearn.datasets
    from torchvision import transforms

    path = os.path.join(os.path.dirname(sklearn.datasets.__file__), "images", "china.jpg")
    with PIL.Image.open(path) as image:
        rgb = image.convert("RGB")

    def pipeline(resize: int, crop: int):
        normalize = transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD)
        return transforms.Compose([transforms.Resize(resize), transforms.CenterCrop(crop), transforms.ToTensor(), normalize])(rgb)

    arrays = {"pre.small": as_numpy(pipeline(64, 56)), "pre.full": as_numpy(pipeline(256, 224)).astype(np.float16)}
    meta = {
        "image": "os.path.join(os.path.dirname(sklearn.datasets.__file__), 'images', 'china.jpg'), PIL, convert('RGB')",
        "image_size": list(rgb.size),
        "pillow": PIL.__version__,
        "pipeline": "Compose([Resize(resize), CenterCrop(crop), ToTensor(), Normalize(mean, std)])",
        "resize_interpolation": "bilinear (Resize's default; PIL antialiases)",
        "mean": list(IMAGENET_MEAN),
        "std": list(IMAGENET_STD),
        "small": {"resize": 64, "crop": 56, "dtype": "float32"},
        "full": {"resize": 256, "crop": 224, "dtype": "float16 (computed in float32, stored as float16 to keep the file small)"},
    }
    return with_meta(arrays, {"pre": meta})


# ---------------------------------------------------------------------------------------------

FILES = {
    "recurrent.npz": recurrent,
    "attention.npz": attention,
    "normalization.npz": normalization,
    "conv.npz": conv,
    "pool.npz": pool,
    "losses.npz": losses,
    "optim.npz": optim,
    "graph.npz": graph,
    "fpn.npz": fpn,
    "resnet.npz": resnet,
    "gpt.npz": gpt,
    "preprocess.npz": preprocess,
}


def main() -> None:
    """Write every file of ``FILES`` (one summary line each) and check their total size."""
    import torch

    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    torch.set_default_dtype(torch.float32)
    for name, build in FILES.items():
        arrays = build()
        write_npz(OUT_DIR / name, arrays)
        print(summary_line(OUT_DIR / name, arrays))
    total = sum((OUT_DIR / name).stat().st_size for name in FILES)
    assert total < MAX_TOTAL_BYTES, f"the reference files take {total / 1024:.0f} KB; keep them under 2 MB"


if __name__ == "__main__":
    main()
