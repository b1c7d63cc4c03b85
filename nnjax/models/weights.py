"""Local weights files: a params pytree saved as flax msgpack (``flax.serialization.msgpack_serialize``).

The file holds the nested dict of arrays that ``model.init(...)['params']`` returns (e.g.
``{'encoder': {'token_embed': {'embedding': ...}, ...}, 'head': {...}}``); nothing is downloaded.
``load_params(path, like)`` checks the file against a template tree (e.g. freshly initialised
params of the model that will use the weights) and names the first mismatch.
"""

from __future__ import annotations

import os
from typing import Any

import jax
import numpy as np
from flax import serialization, traverse_util

from nnjax.errors import DataUnavailableError


def save_params(path: str, params: Any) -> str:
    """Write the params pytree (nested dicts of arrays) to ``path`` as msgpack; returns ``path``."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    state = serialization.to_state_dict(jax.device_get(params))
    with open(path, "wb") as f:
        f.write(serialization.msgpack_serialize(state))
    return path


def _flat(tree: Any) -> dict[str, Any]:
    """'/'-joined path -> leaf of a nested-dict state."""
    state = serialization.to_state_dict(tree)
    if not isinstance(state, dict):
        return {"": state}
    return {"/".join(map(str, k)): v for k, v in traverse_util.flatten_dict(state, keep_empty_nodes=True).items()}


def check_tree(loaded: Any, like: Any, source: str = "weights") -> None:
    """ValueError naming the first path whose presence, shape or dtype kind differs between ``loaded`` and ``like``."""
    got, want = _flat(loaded), _flat(like)
    for path in sorted(want):
        if path not in got:
            raise ValueError(f"{source} lacks the parameter {path!r} (shape {np.shape(want[path])}) that the model needs")
        got_shape, want_shape = np.shape(got[path]), np.shape(want[path])
        if got_shape != want_shape:
            raise ValueError(f"{source} parameter {path!r} has shape {got_shape}; the model expects {want_shape}")
    extra = sorted(set(got) - set(want))
    if extra:
        raise ValueError(f"{source} has the parameter {extra[0]!r} (shape {np.shape(got[extra[0]])}) that the model lacks")


def load_params(path: str, like: Any = None) -> Any:
    """The params pytree saved at ``path``.

    Without ``like``: nested dicts of numpy arrays as stored. With ``like`` (a params tree of the
    target model: arrays from ``model.init``, or ``jax.ShapeDtypeStruct`` leaves from
    ``jax.eval_shape(model.init, ...)``, which skips the initialisation): the file must have exactly ``like``'s paths and
    shapes (ValueError naming the first mismatching path and both shapes otherwise), and the
    result has ``like``'s structure and dtypes. DataUnavailableError if ``path`` does not exist.
    """
    if not os.path.isfile(path):
        raise DataUnavailableError(f"weights file {path} does not exist; write one with save_params (or train the experiment)")
    with open(path, "rb") as f:
        raw = f.read()
    try:
        loaded = serialization.msgpack_restore(raw)
    except Exception as e:  # msgpack raises several unrelated types on a corrupt file
        raise ValueError(f"{path} is not a msgpack params file written by save_params: {e}") from e
    if like is None:
        return loaded
    check_tree(loaded, like, source=path)
    restored = serialization.from_state_dict(like, loaded)
    return jax.tree_util.tree_map(lambda new, old: np.asarray(new, dtype=_dtype(old)), restored, like)


def _dtype(leaf: Any) -> np.dtype:
    """The dtype of an array or ``jax.ShapeDtypeStruct`` leaf."""
    return np.dtype(leaf.dtype) if hasattr(leaf, "dtype") else np.asarray(leaf).dtype
