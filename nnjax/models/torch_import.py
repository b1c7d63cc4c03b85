"""Pretrained weights: torchvision ResNet ``state_dict`` -> nnjax ``ResNet`` variables, and warm starts.

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

from nnjax.errors import DataUnavailableError, FileFormatError, WeightsError
from nnjax.models.resnet import VARIANTS, resnet

Variables = dict[str, Any]

_BN_LEAVES = {"weight": "scale", "bias": "bias", "running_mean": "mean", "running_var": "var"}
_PRETRAINED_HINT = (
    "write one on a machine with network access: python -c \"import torch, torchvision; "
    "torch.save(torchvision.models.resnet50(weights='IMAGENET1K_V2').state_dict(), 'resnet50.pth')\""
)


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


def resnet_params_from_torch(state_dict: Mapping[str, Any], variant: str) -> Variables:
    """torchvision ResNet ``state_dict`` (arrays by name) -> ``{'params', 'batch_stats'}`` for
    ``nnjax.models.resnet.resnet(variant, num_classes)``; ``num_classes`` is read off ``fc.weight``.

    ``WeightsError`` naming the first missing key, unexpected key or shape mismatch (with both shapes,
    in torch's layout) and, when the weights fit another variant, that variant.
    """
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {', '.join(VARIANTS)}, got {variant!r}")
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
    """nnjax ``ResNet`` variables -> a torchvision ``state_dict`` of numpy arrays (torch names and layouts, every
    BatchNorm's ``num_batches_tracked`` as 0): the inverse of ``resnet_params_from_torch``, for
    ``torchvision_model.load_state_dict({k: torch.from_numpy(v) for k, v in sd.items()})`` or ``np.savez``."""
    state_dict: dict[str, np.ndarray] = {}
    for collection, tree in variables.items():
        for path, value in traverse_util.flatten_dict(tree).items():
            array = np.asarray(value, np.float32)
            state_dict[_torch_name(collection, path)] = np.ascontiguousarray(
                np.transpose(array, (3, 2, 0, 1)) if array.ndim == 4 else array.T if array.ndim == 2 else array
            )
            if collection == "batch_stats" and path[-1] == "mean":
                state_dict[_torch_name(collection, path).rpartition(".")[0] + ".num_batches_tracked"] = np.array(0)
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
    of the model (``drop(variables, 'fc')`` leaves a new head freshly initialised).
    """

    module: nn.Module
    pretrained: Variables

    def init(self, rngs: Any, *args: Any, **kwargs: Any) -> Variables:
        """The module's fresh variables with ``pretrained`` substituted (see ``overlay``)."""
        return overlay(dict(self.module.init(rngs, *args, **kwargs)), self.pretrained)

    def apply(self, *args: Any, **kwargs: Any) -> Any:
        """``module.apply``."""
        return self.module.apply(*args, **kwargs)
