"""PyTorch weights in nnjax, and back: one ``*_from_torch`` import (and, where the mapping is one to one, a
``*_to_torch`` export) per layer family, torchvision ResNet ``state_dict`` files, and warm starts.

Every import takes a torch module (its ``state_dict()`` is read) or a state dict of torch tensors or numpy
arrays, by torch's names, optionally under a ``prefix`` (``'encoder.rnn.'``), and gives the nnjax module's
``params`` (or ``{'params', 'batch_stats'}``); a missing or mis-shaped entry is a ``WeightsError`` naming it.
Every export gives a state dict of numpy arrays by torch's names (``torch.from_numpy`` each for
``load_state_dict``). The tests check each family against PyTorch's own outputs and gradients, stored in
``tests/torch_reference`` (``python -m tests.torch_reference.generate`` rewrites them where torch is installed).

| nnjax | torch | import / export |
|---|---|---|
| ``models.LSTM``, ``models.SimpleRNN`` | ``nn.LSTM``, ``nn.RNN`` (one layer, one direction) | ``recurrent_params_from_torch`` / ``recurrent_params_to_torch`` |
| ``models.MultiHeadAttention`` | ``nn.MultiheadAttention`` | ``attention_params_from_torch`` / ``attention_params_to_torch`` |
| ``models.Conv2D`` (``flax.linen.Conv``) | ``nn.Conv2d`` | ``conv_params_from_torch`` / ``conv_params_to_torch`` |
| ``models.BatchNorm`` (``flax.linen.BatchNorm``) | ``nn.BatchNorm2d`` / ``1d`` | ``batchnorm_variables_from_torch`` / ``batchnorm_variables_to_torch`` |
| ``models.GATLayer`` | PyTorch Geometric ``GATConv`` | ``gat_params_from_torch`` |
| ``models.FPN`` | ``torchvision.ops.FeaturePyramidNetwork`` | ``fpn_params_from_torch`` |
| ``models.resnet`` | ``torchvision.models.resnet*`` | ``resnet_params_from_torch`` / ``resnet_params_to_torch`` |

torchvision's pretrained ResNets cannot be downloaded here; on a networked machine write one with

    python -c "import torch, torchvision; torch.save(torchvision.models.resnet50(weights='IMAGENET1K_V2').state_dict(), 'resnet50.pth')"

then ``load_torch_state_dict('resnet50.pth')`` and ``resnet_params_from_torch(sd, 'resnet50')``
give ``{'params', 'batch_stats'}`` for ``nnjax.models.resnet.resnet50()``. The layout changes are
conv weights OIHW -> HWIO, the fc weight transposed, BatchNorm weight/bias/running_mean/running_var
-> scale/bias/mean/var; ``num_batches_tracked`` is dropped (flax does not count batches).
"""

from __future__ import annotations

import dataclasses
import functools
import os
import re
import zipfile
from collections.abc import Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from nnjax.config import SEED_AXIS
from nnjax.errors import DataUnavailableError, FileFormatError, WeightsError
from nnjax.models.resnet import VARIANTS, resnet

Variables = dict[str, Any]

_BN_LEAVES = {"weight": "scale", "bias": "bias", "running_mean": "mean", "running_var": "var"}
_PRETRAINED_HINT = (
    "write one on a machine with network access: python -c \"import torch, torchvision; "
    "torch.save(torchvision.models.resnet50(weights='IMAGENET1K_V2').state_dict(), 'resnet50.pth')\""
)


def state_dict_arrays(module_or_state_dict: Any, prefix: str = "") -> dict[str, np.ndarray]:
    """The entries of a torch module's ``state_dict()`` (or of a state dict of tensors or arrays) whose names
    start with ``prefix``, as numpy arrays by their names without it."""
    state_dict = module_or_state_dict.state_dict() if hasattr(module_or_state_dict, "state_dict") else module_or_state_dict
    arrays = {}
    for key, value in state_dict.items():
        if key.startswith(prefix):
            value = value.detach().cpu().numpy() if hasattr(value, "detach") else value
            arrays[key[len(prefix):]] = np.asarray(value)
    return arrays


def _entry(arrays: Mapping[str, np.ndarray], name: str, family: str, ndim: int | None = None) -> np.ndarray:
    """``arrays[name]`` as float32; ``WeightsError`` naming it (and what there is) if missing or of another rank."""
    if name not in arrays:
        raise WeightsError(f"{family} state_dict lacks {name!r}; it has {', '.join(sorted(arrays)) or 'nothing'}")
    array = np.asarray(arrays[name], np.float32)
    if ndim is not None and array.ndim != ndim:
        raise WeightsError(f"{family} state_dict entry {name!r} has shape {array.shape}; expected {ndim} axes")
    return array


def recurrent_params_from_torch(module_or_state_dict: Any, prefix: str = "") -> Variables:
    """``torch.nn.LSTM`` / ``torch.nn.RNN`` (tanh, one layer, one direction) -> ``{'cell': {'w_ih', 'w_hh', 'b'}}``,
    the params of ``models.LSTM`` / ``models.SimpleRNN``.

    torch stacks the LSTM gates (i, f, g, o), nnjax's order, so ``w_ih = weight_ih_l0.T`` ([D, G*H]) and
    ``w_hh = weight_hh_l0.T``; torch's two biases act only through their sum, ``b = bias_ih_l0 + bias_hh_l0``
    (zeros for ``bias=False``). torch's ``batch_first`` changes no weight.
    """
    arrays = state_dict_arrays(module_or_state_dict, prefix)
    deeper = sorted(k for k in arrays if not k.endswith("_l0"))
    if deeper:
        raise WeightsError(f"only one-layer, one-direction LSTM/RNN weights map to one nnjax layer; found {deeper[0]!r}")
    w_ih = _entry(arrays, "weight_ih_l0", "LSTM/RNN", 2)
    w_hh = _entry(arrays, "weight_hh_l0", "LSTM/RNN", 2)
    bias = sum((_entry(arrays, name, "LSTM/RNN", 1) for name in ("bias_ih_l0", "bias_hh_l0") if name in arrays),
               np.zeros(w_ih.shape[0], np.float32))
    return {"cell": {"w_ih": w_ih.T, "w_hh": w_hh.T, "b": bias}}


def recurrent_params_to_torch(params: Variables) -> dict[str, np.ndarray]:
    """``models.LSTM`` / ``SimpleRNN`` params -> a ``torch.nn.LSTM`` / ``RNN`` state dict (all of ``b`` in
    ``bias_ih_l0``, ``bias_hh_l0`` zero: the same layer)."""
    cell = params.get("params", params)["cell"]
    b = np.asarray(cell["b"], np.float32)
    return {"weight_ih_l0": np.asarray(cell["w_ih"], np.float32).T.copy(),
            "weight_hh_l0": np.asarray(cell["w_hh"], np.float32).T.copy(),
            "bias_ih_l0": b, "bias_hh_l0": np.zeros_like(b)}


def attention_params_from_torch(module_or_state_dict: Any, num_heads: int, prefix: str = "") -> Variables:
    """``torch.nn.MultiheadAttention`` -> params of ``models.MultiHeadAttention(num_heads)``.

    torch's fused ``in_proj_weight`` [3E, E] (or ``q/k/v_proj_weight`` when ``kdim``/``vdim`` differ) splits into
    the query, key and value kernels [D, H, Dh]; ``out_proj.weight`` [E, E] becomes the out kernel [H, Dh, E].
    Both scale the scores by 1/sqrt(Dh). torch's masks say where *not* to attend (``key_padding_mask`` True at
    padding, boolean ``attn_mask`` True where forbidden); nnjax's say where to attend: pass their negation.
    """
    arrays = state_dict_arrays(module_or_state_dict, prefix)
    family = "MultiheadAttention"
    if "in_proj_weight" in arrays:
        weights = np.split(_entry(arrays, "in_proj_weight", family, 2), 3)
    else:
        weights = [_entry(arrays, f"{n}_proj_weight", family, 2) for n in "qkv"]
    embed = weights[0].shape[0]
    if embed % num_heads:
        raise WeightsError(f"{family} width {embed} is not divisible by num_heads {num_heads}")
    heads = (num_heads, embed // num_heads)
    biases = np.split(_entry(arrays, "in_proj_bias", family, 1), 3) if "in_proj_bias" in arrays else [None] * 3
    params: Variables = {}
    for name, w, b in zip(("query", "key", "value"), weights, biases):
        params[name] = {"kernel": w.T.reshape(w.shape[1], *heads)} | ({} if b is None else {"bias": b.reshape(heads)})
    out_w = _entry(arrays, "out_proj.weight", family, 2)
    params["out"] = {"kernel": out_w.T.reshape(*heads, out_w.shape[0])}
    if "out_proj.bias" in arrays:
        params["out"]["bias"] = _entry(arrays, "out_proj.bias", family, 1)
    return params


def attention_params_to_torch(params: Variables) -> dict[str, np.ndarray]:
    """``models.MultiHeadAttention`` params (query/key/value widths equal) -> a ``torch.nn.MultiheadAttention``
    state dict."""
    params = params.get("params", params)
    kernels = [np.asarray(params[n]["kernel"], np.float32) for n in ("query", "key", "value")]
    state = {"in_proj_weight": np.concatenate([k.reshape(k.shape[0], -1).T for k in kernels])}
    if "bias" in params["query"]:
        state["in_proj_bias"] = np.concatenate([np.asarray(params[n]["bias"], np.float32).reshape(-1)
                                                for n in ("query", "key", "value")])
    out = np.asarray(params["out"]["kernel"], np.float32)
    state["out_proj.weight"] = out.reshape(-1, out.shape[-1]).T.copy()
    if "bias" in params["out"]:
        state["out_proj.bias"] = np.asarray(params["out"]["bias"], np.float32)
    return state


def conv_params_from_torch(module_or_state_dict: Any, prefix: str = "") -> Variables:
    """``torch.nn.Conv2d`` -> ``{'kernel': [Kh, Kw, C, F], 'bias': [F]}`` of ``models.Conv2D`` / ``flax.linen.Conv``
    (OIHW -> HWIO). Give ``Conv2D`` torch's ``padding`` as is (an int, a pair, or 'SAME' for 'same')."""
    arrays = state_dict_arrays(module_or_state_dict, prefix)
    params = {"kernel": _entry(arrays, "weight", "Conv2d", 4).transpose(2, 3, 1, 0)}
    if "bias" in arrays:
        params["bias"] = _entry(arrays, "bias", "Conv2d", 1)
    return params


def conv_params_to_torch(params: Variables) -> dict[str, np.ndarray]:
    """``models.Conv2D`` params -> a ``torch.nn.Conv2d`` state dict (HWIO -> OIHW)."""
    params = params.get("params", params)
    state = {"weight": np.asarray(params["kernel"], np.float32).transpose(3, 2, 0, 1).copy()}
    if "bias" in params:
        state["bias"] = np.asarray(params["bias"], np.float32)
    return state


def batchnorm_variables_from_torch(module_or_state_dict: Any, prefix: str = "") -> Variables:
    """``torch.nn.BatchNorm2d`` (or 1d/3d) -> ``{'params': {'scale', 'bias'}, 'batch_stats': {'mean', 'var'}}`` of
    ``models.BatchNorm`` / ``flax.linen.BatchNorm``. torch's ``momentum=0.1`` is nnjax's ``momentum=0.9``;
    ``models.BatchNorm(unbiased_running_var=True)`` keeps updating the running variance as torch does."""
    arrays = state_dict_arrays(module_or_state_dict, prefix)
    family = "BatchNorm"
    return {
        "params": {"scale": _entry(arrays, "weight", family, 1), "bias": _entry(arrays, "bias", family, 1)},
        "batch_stats": {"mean": _entry(arrays, "running_mean", family, 1), "var": _entry(arrays, "running_var", family, 1)},
    }


def batchnorm_variables_to_torch(variables: Variables) -> dict[str, np.ndarray]:
    """``models.BatchNorm`` variables -> a ``torch.nn.BatchNorm2d`` state dict (``num_batches_tracked`` 0)."""
    params, stats = variables["params"], variables["batch_stats"]
    return {"weight": np.asarray(params["scale"], np.float32), "bias": np.asarray(params["bias"], np.float32),
            "running_mean": np.asarray(stats["mean"], np.float32), "running_var": np.asarray(stats["var"], np.float32),
            "num_batches_tracked": np.array(0)}


def gat_params_from_torch(module_or_state_dict: Any, prefix: str = "") -> Variables:
    """PyTorch Geometric ``GATConv`` (``lin.weight`` [heads*C, F] — ``lin_src.weight`` in older releases —,
    ``att_src``/``att_dst`` [1, heads, C], ``bias``) -> params of ``models.GATLayer(C, heads, concat)``.

    Both compute alpha_ij = softmax_j LeakyReLU(a_src . W x_j + a_dst . W x_i) over the edges j -> i and
    sum alpha_ij W x_j per receiver; ``GATConv`` adds self loops itself (``add_self_loops=True``), nnjax takes
    them in the graph (``models.graph.add_self_loops``, which appends them after the edges as PyG does).
    """
    arrays = state_dict_arrays(module_or_state_dict, prefix)
    family = "GATConv"
    lin = "lin.weight" if "lin.weight" in arrays else "lin_src.weight"
    att_src, att_dst = (_entry(arrays, name, family, 3)[0] for name in ("att_src", "att_dst"))
    params = {"proj": {"kernel": _entry(arrays, lin, family, 2).T}, "att_src": att_src, "att_dst": att_dst}
    if "bias" in arrays:
        params["bias"] = _entry(arrays, "bias", family, 1)
    return params


def fpn_params_from_torch(module_or_state_dict: Any, prefix: str = "") -> Variables:
    """``torchvision.ops.FeaturePyramidNetwork`` (no extra block) -> params of ``models.FPN``: its lateral
    ``inner_blocks.i.0`` and output ``layer_blocks.i.0`` convolutions as ``inner_i`` / ``layer_i``."""
    arrays = state_dict_arrays(module_or_state_dict, prefix)
    levels = sorted({int(k.split(".")[1]) for k in arrays if k.startswith("inner_blocks.")})
    if not levels:
        raise WeightsError("FeaturePyramidNetwork state_dict has no 'inner_blocks.*' entries")
    return {
        f"{kind}_{i}": conv_params_from_torch(arrays, f"{kind}_blocks.{i}.0.")
        for kind in ("inner", "layer")
        for i in levels
    }


def load_torch_state_dict(path: str) -> dict[str, np.ndarray]:
    """The ``state_dict`` saved at ``path`` as numpy arrays (floating ones as float32), by its torch names.

    ``path`` is a ``torch.save(model.state_dict(), path)`` file (read with torch, imported only here; a
    checkpoint dict that nests the weights under 'state_dict' or 'model' is unwrapped) or a numpy ``.npz``
    of the same names and torch-layout arrays (``np.savez(path, **{k: v.numpy() for k, v in sd.items()})``),
    read without torch. ``DataUnavailableError`` if the file is missing or reading it needs torch that is not
    installed; ``FileFormatError`` if it is neither format.
    """
    if not os.path.isfile(path):
        raise DataUnavailableError(f"weights file {path} does not exist; {_PRETRAINED_HINT}")
    with open(path, "rb") as f:
        magic = f.read(2)
    if magic not in (b"PK", b"\x80\x02"):  # torch.save: a zip archive (legacy: a pickle); np.savez: a zip archive
        raise FileFormatError(f"weights file {path} is neither a PyTorch state_dict (torch.save) nor a numpy .npz archive")
    if zipfile.is_zipfile(path) and _is_npz(path):
        with np.load(path, allow_pickle=False) as arrays:
            return {k: arrays[k].astype(np.float32) if arrays[k].dtype.kind == "f" else arrays[k] for k in arrays.files}
    try:
        import torch
    except ImportError as err:
        raise DataUnavailableError(
            f"reading {path} needs PyTorch (pip install torch), or save it as a numpy .npz of the state_dict"
        ) from err
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - torch raises many kinds for a damaged or foreign file
        raise FileFormatError(f"weights file {path} cannot be read by torch.load ({type(err).__name__})") from err
    for key in ("state_dict", "model"):
        if isinstance(loaded, Mapping) and isinstance(loaded.get(key), Mapping):
            loaded = loaded[key]
    if not isinstance(loaded, Mapping):
        raise FileFormatError(f"{path} holds a {type(loaded).__name__}, not a state_dict; save model.state_dict()")
    return {k: v.detach().float().numpy() if v.is_floating_point() else v.numpy() for k, v in loaded.items()}


def _is_npz(path: str) -> bool:
    """Whether the zip archive ``path`` is a numpy ``.npz`` (every member a ``.npy``), not a ``torch.save`` file."""
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
    return bool(names) and all(name.endswith(".npy") for name in names)


def torch_key_to_path(key: str, ndim: int) -> tuple[str, tuple[str, ...]] | None:
    """(collection, flax path) for a torchvision ResNet key, e.g. 'layer1.0.downsample.1.running_var'
    -> ('batch_stats', ('layer1_0', 'downsample_bn', 'var')); None for ``num_batches_tracked``.

    ``ndim`` (of the tensor) tells a conv/fc 'weight' (kernel) from a BatchNorm 'weight' (scale).
    """
    module, _, leaf = key.rpartition(".")
    if leaf == "num_batches_tracked":
        return None
    module = re.sub(r"^(layer\d+)\.(\d+)\.", r"\1_\2.", module)
    module = module.replace("downsample.0", "downsample_conv").replace("downsample.1", "downsample_bn")
    names = tuple(module.split("."))
    if leaf == "weight" and ndim in (2, 4):
        return "params", (*names, "kernel")
    if leaf not in _BN_LEAVES:
        return "params", (*names, leaf)
    collection = "batch_stats" if leaf.startswith("running_") else "params"
    return collection, (*names, _BN_LEAVES[leaf])


def _to_flax_layout(array: np.ndarray) -> np.ndarray:
    """Conv weight OIHW -> HWIO, linear weight [out, in] -> [in, out]; vectors unchanged."""
    if array.ndim == 4:
        return np.transpose(array, (2, 3, 1, 0))
    if array.ndim == 2:
        return array.T
    return array


@functools.lru_cache(maxsize=8)
def _template(variant: str, num_classes: int) -> dict[str, dict[tuple[str, ...], tuple[int, ...]]]:
    """Flat path -> shape of every variable of ``resnet(variant, num_classes)`` (traced, not computed)."""
    model = resnet(variant, num_classes)
    shapes = jax.eval_shape(lambda k, x: model.init(k, x), jax.random.PRNGKey(0), jnp.zeros((1, 32, 32, 3)))
    return {col: {p: tuple(a.shape) for p, a in traverse_util.flatten_dict(tree).items()} for col, tree in shapes.items()}


def resnet_params_from_torch(module_or_state_dict: Any, variant: str) -> Variables:
    """torchvision ResNet (a module, or its ``state_dict`` of tensors or arrays) -> ``{'params', 'batch_stats'}`` for
    ``nnjax.models.resnet.resnet(variant, num_classes)``; ``num_classes`` is read off ``fc.weight``.

    ``WeightsError`` naming the first missing key, unexpected key or shape mismatch (with both shapes,
    in torch's layout) and, when the weights fit another variant, that variant.
    """
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {', '.join(VARIANTS)}, got {variant!r}")
    state_dict = state_dict_arrays(module_or_state_dict)
    try:
        return _resnet_variables(state_dict, variant)
    except WeightsError as err:
        fits = [other for other in VARIANTS if other != variant and _fits(state_dict, other)]
        if fits:
            raise WeightsError(f"{err}: these are {fits[0]} weights (pass --arch {fits[0]})") from None
        raise


def _fits(state_dict: Mapping[str, Any], variant: str) -> bool:
    try:
        _resnet_variables(state_dict, variant)
    except WeightsError:
        return False
    return True


def _resnet_variables(state_dict: Mapping[str, Any], variant: str) -> Variables:
    if "fc.weight" not in state_dict:
        raise WeightsError(f"state_dict lacks 'fc.weight', so it is not a torchvision {variant} state_dict")
    template = _template(variant, int(np.shape(state_dict["fc.weight"])[0]))
    flat: dict[str, dict[tuple[str, ...], np.ndarray]] = {col: {} for col in template}
    for key, value in state_dict.items():
        array = np.asarray(value)
        target = torch_key_to_path(key, array.ndim)
        if target is None:
            continue
        collection, path = target
        if path not in template[collection]:
            raise WeightsError(f"state_dict has the key {key!r} (shape {array.shape}) that torchvision's {variant} lacks")
        want = template[collection][path]
        got = _to_flax_layout(array)
        if got.shape != want:
            raise WeightsError(f"state_dict key {key!r} has shape {array.shape}; {variant} expects {_torch_shape(want)}")
        flat[collection][path] = got.astype(np.float32)
    for collection, shapes in template.items():
        missing = sorted(set(shapes) - set(flat[collection]))
        if missing:
            raise WeightsError(
                f"state_dict lacks {len(missing)} {collection} entries of {variant}, first: {_torch_name(collection, missing[0])!r}"
            )
    return {col: traverse_util.unflatten_dict(tree) for col, tree in flat.items()}


def resnet_params_to_torch(variables: Variables) -> dict[str, np.ndarray]:
    """nnjax ``ResNet`` variables -> a torchvision ``state_dict`` of numpy arrays, in torch's key order, with every
    BatchNorm's running statistics and ``num_batches_tracked`` (0) after its weight and bias: the inverse of
    ``resnet_params_from_torch``, for ``model.load_state_dict({k: torch.from_numpy(v) for k, v in sd.items()})``
    or ``np.savez``."""
    stats = traverse_util.flatten_dict(variables.get("batch_stats", {}))
    state_dict: dict[str, np.ndarray] = {}
    for path, value in traverse_util.flatten_dict(variables["params"]).items():
        array = np.asarray(value, np.float32)
        state_dict[_torch_name("params", path)] = np.ascontiguousarray(
            np.transpose(array, (3, 2, 0, 1)) if array.ndim == 4 else array.T if array.ndim == 2 else array
        )
        module = path[:-1]
        if path[-1] == "bias" and (*module, "mean") in stats:
            for leaf in ("mean", "var"):
                state_dict[_torch_name("batch_stats", (*module, leaf))] = np.asarray(stats[(*module, leaf)], np.float32)
            state_dict[_torch_name("batch_stats", (*module, "mean")).rpartition(".")[0] + ".num_batches_tracked"] = np.array(0)
    return state_dict


def _torch_shape(flax_shape: tuple[int, ...]) -> tuple[int, ...]:
    """The torch layout of a flax shape: HWIO -> OIHW, [in, out] -> [out, in]."""
    if len(flax_shape) == 4:
        return tuple(flax_shape[i] for i in (3, 2, 0, 1))
    return tuple(reversed(flax_shape))


def _torch_name(collection: str, path: tuple[str, ...]) -> str:
    """The torchvision key of a flax path (for error messages)."""
    leaf_names = {v: k for k, v in _BN_LEAVES.items()} | {"kernel": "weight"}
    if collection == "batch_stats":
        leaf_names = {"mean": "running_mean", "var": "running_var"}
    module = ".".join(path[:-1]).replace("downsample_conv", "downsample.0").replace("downsample_bn", "downsample.1")
    module = re.sub(r"^(layer\d+)_(\d+)", r"\1.\2", module)
    return f"{module}.{leaf_names.get(path[-1], path[-1])}"


def overlay(fresh: Variables, pretrained: Variables) -> Variables:
    """``fresh`` variables with every entry of ``pretrained`` substituted at the same path.

    ValueError naming the first path of ``pretrained`` that ``fresh`` lacks or has with another
    shape. Paths only in ``fresh`` (e.g. a new classification head) keep their fresh values.
    """
    merged = {col: traverse_util.flatten_dict(tree) for col, tree in fresh.items()}
    for col, tree in pretrained.items():
        for path, value in traverse_util.flatten_dict(tree).items():
            name = "/".join((col, *path))
            if path not in merged.get(col, {}):
                raise ValueError(f"pretrained variable {name} does not exist in the model")
            if np.shape(value) != np.shape(merged[col][path]):
                raise ValueError(
                    f"pretrained variable {name} has shape {np.shape(value)}; the model's is {np.shape(merged[col][path])}"
                )
            merged[col][path] = jnp.asarray(value, dtype=merged[col][path].dtype)
    return {col: traverse_util.unflatten_dict(tree) for col, tree in merged.items()}


def drop(variables: Variables, *top_level: str) -> Variables:
    """``variables`` without the top-level modules ``top_level`` (e.g. 'fc' to replace the head)."""
    return {col: {k: v for k, v in tree.items() if k not in top_level} for col, tree in variables.items()}


@dataclasses.dataclass(frozen=True, eq=False)
class WarmStart:
    """A model that initialises to ``pretrained`` variables: ``init`` overlays them on a fresh init.

    Pass it wherever a flax module's ``init``/``apply`` are used (e.g. ``nnjax.tasks.fit``) to start
    training from imported weights; ``apply`` is the module's. ``pretrained`` may cover only part
    of the model (``drop(variables, 'fc')`` leaves a new head freshly initialised). With ``per_seed``, every
    leaf of ``pretrained`` has a leading [S] axis, one set per seed of a ``--seeds`` run, and ``init`` (called
    under that run's ``jax.vmap``) takes the set of its seed, ``lax.axis_index(SEED_AXIS)``.
    """

    module: nn.Module
    pretrained: Variables
    per_seed: bool = False

    def init(self, rngs: Any, *args: Any, **kwargs: Any) -> Variables:
        """The module's fresh variables with ``pretrained`` (or its seed's slice) substituted (see ``overlay``)."""
        pretrained = self.pretrained
        if self.per_seed:
            seed = jax.lax.axis_index(SEED_AXIS)
            pretrained = jax.tree.map(lambda x_S: jnp.asarray(x_S)[seed], pretrained)
        return overlay(dict(self.module.init(rngs, *args, **kwargs)), pretrained)

    def apply(self, *args: Any, **kwargs: Any) -> Any:
        """``module.apply``."""
        return self.module.apply(*args, **kwargs)
