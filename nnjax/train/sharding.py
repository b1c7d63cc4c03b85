"""Sharded parameters and optimizer state for ``--parallel fsdp``: a 2-D mesh and one table of rules.

The mesh has axes ``('data', 'model')`` of sizes (devices / M, M), M from ``--model-parallel``. Batches are
split over ``data`` (and replicated over ``model``). Every parameter is split by its logical axis names
(``nnjax.logical_axes.logical_init``; the TransformerLM's embeddings, attention and MLP name theirs)
through ``LOGICAL_AXIS_RULES``:

- ``embed`` (d_model) -> ``data``: FSDP / ZeRO-3, each data replica keeps 1/(devices/M) of every weight and XLA
  all-gathers it for the matmul and reduce-scatters its gradient;
- ``mlp``, ``heads``, ``vocab`` -> ``model``: Megatron-style tensor parallelism, each model-axis device keeps its
  own MLP columns, attention heads and vocabulary rows;
- ``kv`` (head width), ``position`` -> not split.

A parameter without names (every other model's, LayerNorm scales) is split FSDP-style over ``data`` along
its largest axis that ``data`` divides. A named axis whose size its mesh axis does not divide stays whole:
a sharding never changes what is computed, only where. Optimizer-state leaves mirror the parameters (Adam's
``mu``/``nu``): a leaf whose trailing dict keys and shape are a parameter's gets that parameter's sharding;
every other leaf (step, PRNG key, counts, BatchNorm statistics) is replicated.
"""

from __future__ import annotations

import math
from typing import Any

import flax.linen as nn
import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from nnjax.errors import ConfigError
from nnjax.logical_axes import logical_axes_boxed

LOGICAL_AXIS_RULES: tuple[tuple[str, str | None], ...] = (
    ("embed", "data"),
    ("mlp", "model"),
    ("heads", "model"),
    ("vocab", "model"),
    ("kv", None),
    ("position", None),
)

KeyPath = tuple[str, ...]  # the dict keys from a params tree's root to one leaf, e.g. ('block_0', 'mlp_in', 'kernel')


def make_mesh(model_parallel: int) -> Mesh:
    """Every device in a [devices / M, M] mesh with axes ('data', 'model'); a row of M devices is one data
    replica, so tensor-parallel groups are neighbouring devices (within one process when M divides its count)."""
    devices = jax.devices()
    if len(devices) % model_parallel:
        raise ConfigError(
            f"--model-parallel {model_parallel} does not divide the {len(devices)} devices; use a divisor of {len(devices)}"
        )
    return Mesh(np.array(devices).reshape(-1, model_parallel), ("data", "model"))


def param_logical_axes(model: nn.Module, sample_x: Any) -> dict[KeyPath, tuple[str | None, ...]]:
    """The logical axis names of every named parameter of ``model`` initialised on ``sample_x`` ([B, ...]), by
    its key path; computed from shapes alone (``jax.eval_shape``), nothing is initialised."""
    with logical_axes_boxed():
        shapes = jax.eval_shape(lambda k, x: model.init(k, x, train=False), jax.random.PRNGKey(0), sample_x)
    boxed = lambda x: isinstance(x, nn.LogicallyPartitioned)  # noqa: E731
    named = jax.tree_util.tree_flatten_with_path(shapes.get("params", {}), is_leaf=boxed)[0]
    return {_dict_keys(path): leaf.names for path, leaf in named if boxed(leaf)}


def param_spec(shape: tuple[int, ...], names: tuple[str | None, ...] | None, mesh: Mesh) -> P:
    """The ``PartitionSpec`` of a parameter of ``shape``: its ``names`` through ``LOGICAL_AXIS_RULES``, or, without
    names, ``data`` on its largest axis that ``data`` divides; a mesh axis that does not divide its array axis is
    dropped (that axis stays whole)."""
    if names is None:
        divisible = [i for i, size in enumerate(shape) if size % mesh.shape["data"] == 0]
        if not divisible or mesh.shape["data"] == 1:
            return P()
        largest = max(divisible, key=lambda i: shape[i])
        return P(*("data" if i == largest else None for i in range(len(shape))))
    if len(names) != len(shape):
        raise ValueError(f"{len(names)} logical axis names {names} for a parameter of shape {shape}")
    axes = nn.logical_to_mesh_axes(names, LOGICAL_AXIS_RULES)
    return P(*(axis if axis is not None and size % mesh.shape[axis] == 0 else None for axis, size in zip(axes, shape)))


def state_shardings(state: Any, mesh: Mesh, param_axes: dict[KeyPath, tuple[str | None, ...]]) -> Any:
    """A ``NamedSharding`` for every leaf of a ``TrainState`` (host or device): parameters by ``param_spec``,
    optimizer-state leaves that mirror a parameter like it, everything else replicated."""
    by_path = {
        _dict_keys(path): (np.shape(leaf), param_spec(np.shape(leaf), param_axes.get(_dict_keys(path)), mesh))
        for path, leaf in jax.tree_util.tree_flatten_with_path(state.params)[0]
    }

    def sharding(path: Any, leaf: Any) -> NamedSharding:
        keys = _dict_keys(path)
        for start in range(len(keys)):  # the longest trailing run of dict keys that names a parameter
            shape_spec = by_path.get(keys[start:])
            if shape_spec is not None and shape_spec[0] == np.shape(leaf):
                return NamedSharding(mesh, shape_spec[1])
        return NamedSharding(mesh, P())

    return jax.tree_util.tree_map_with_path(sharding, state)


def bytes_per_device(tree: Any, shardings: Any) -> int:
    """Bytes of ``tree``'s leaves (arrays or shape/dtype structs) that one device holds under ``shardings`` (a
    tree of the same structure)."""
    total = 0
    for leaf, sharding in zip(jax.tree.leaves(tree), jax.tree.leaves(shardings, is_leaf=_is_sharding)):
        shard_shape = sharding.shard_shape(np.shape(leaf))
        total += math.prod(shard_shape) * np.dtype(leaf.dtype).itemsize
    return total


def _is_sharding(x: Any) -> bool:
    return isinstance(x, jax.sharding.Sharding)


def _dict_keys(path: tuple[Any, ...]) -> KeyPath:
    """The dict keys (``DictKey``) of a pytree key path, in order; attribute and sequence keys are skipped."""
    return tuple(str(entry.key) for entry in path if isinstance(entry, jax.tree_util.DictKey))
