"""A small state-vector quantum-circuit simulator in JAX (seed 000 slide 6: a Bell state, measured).

State: an ``n``-qubit state is a complex64 tensor of shape ``[2] * n``; axis ``i`` is qubit ``i``.

Bit order (big-endian): qubit 0 is the **leftmost** bit. The amplitude of ``|q0 q1 ... q_{n-1}>`` is
``state[q0, q1, ..., q_{n-1}]``, the flattened index is ``sum_i q_i 2^(n-1-i)``, bitstrings read
``'q0 q1 ... q_{n-1}'`` and a gate on qubits ``(a, b)`` acts in the basis ``|q_a q_b>``, so the operator
of ``A`` on qubit 0 and ``B`` on qubit 1 is ``np.kron(A, B)``. Qiskit is little-endian: its count key
``'c_{n-1} ... c_0'`` puts qubit 0 on the *right*; ``to_qiskit_bitstring`` converts (Bell and GHZ
counts read the same both ways).

Circuit: a tuple of ``(gate, qubits)`` pairs, e.g. ``BELL = (("h", (0,)), ("cx", (0, 1)))``; gates are
``"h"``, ``"x"``, ``"z"`` on one qubit and ``"cx"`` on ``(control, target)``. ``run_circuit`` is jitted
with the circuit as a static argument (one compilation per circuit).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

_SQRT_HALF = 1.0 / np.sqrt(2.0)
GATES: dict[str, np.ndarray] = {
    "h": np.array([[1, 1], [1, -1]], np.complex64) * np.complex64(_SQRT_HALF),
    "x": np.array([[0, 1], [1, 0]], np.complex64),
    "z": np.array([[1, 0], [0, -1]], np.complex64),
    "cx": np.array([[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 0, 1], [0, 0, 1, 0]], np.complex64),  # |control target>
}

Circuit = tuple[tuple[str, tuple[int, ...]], ...]
BELL: Circuit = (("h", (0,)), ("cx", (0, 1)))


def ghz(num_qubits: int) -> Circuit:
    """The GHZ circuit: H on qubit 0, then CX from qubit ``i`` to ``i + 1`` -> ``(|0..0> + |1..1>) / sqrt(2)``."""
    if num_qubits < 2:
        raise ValueError(f"num_qubits must be >= 2 for a GHZ state, got {num_qubits}")
    return (("h", (0,)),) + tuple(("cx", (i, i + 1)) for i in range(num_qubits - 1))


def zero_state(num_qubits: int) -> jax.Array:
    """``|0...0>`` as a complex64 ``[2] * num_qubits`` tensor."""
    if num_qubits < 1:
        raise ValueError(f"num_qubits must be >= 1, got {num_qubits}")
    return jnp.zeros((2,) * num_qubits, jnp.complex64).at[(0,) * num_qubits].set(1.0)


def apply_gate(state: jax.Array, gate_KxK: jax.Array, qubits: Sequence[int]) -> jax.Array:
    """Apply a ``k``-qubit gate (``[2^k, 2^k]`` in the basis ``|q_{qubits[0]} ... q_{qubits[k-1]}>``) to a state.

    Contracts the gate's input axes with the state's axes ``qubits`` (``tensordot``) and moves the gate's
    output axes back into those positions; the other qubits are untouched. Returns a ``[2] * n`` state.
    """
    k = len(qubits)
    gate = jnp.asarray(gate_KxK, state.dtype).reshape((2,) * (2 * k))
    out = jnp.tensordot(gate, state, axes=(tuple(range(k, 2 * k)), tuple(qubits)))
    return jnp.moveaxis(out, tuple(range(k)), tuple(qubits))


def validate_circuit(circuit: Sequence[tuple[str, Sequence[int]]], num_qubits: int) -> Circuit:
    """The circuit as a hashable tuple; ``ValueError`` naming the first unknown gate or bad qubit list."""
    checked = []
    for position, (name, qubits) in enumerate(circuit):
        if name not in GATES:
            raise ValueError(f"circuit[{position}]: unknown gate {name!r}; expected one of {', '.join(GATES)}")
        arity = int(np.log2(GATES[name].shape[0]))
        qubits = tuple(int(q) for q in qubits)
        if len(qubits) != arity or len(set(qubits)) != arity or not all(0 <= q < num_qubits for q in qubits):
            raise ValueError(
                f"circuit[{position}]: gate {name!r} needs {arity} distinct qubits in [0, {num_qubits}), got {qubits}"
            )
        checked.append((name, qubits))
    return tuple(checked)


@functools.partial(jax.jit, static_argnames=("circuit",))
def _run(state: jax.Array, circuit: Circuit) -> jax.Array:
    for name, qubits in circuit:
        state = apply_gate(state, GATES[name], qubits)
    return state


def run_circuit(circuit: Sequence[tuple[str, Sequence[int]]], num_qubits: int, state: jax.Array | None = None) -> jax.Array:
    """The ``[2] * n`` state after applying ``circuit`` in order to ``state`` (default ``|0...0>``); jitted."""
    circuit = validate_circuit(circuit, num_qubits)
    state = zero_state(num_qubits) if state is None else jnp.asarray(state, jnp.complex64)
    if state.shape != (2,) * num_qubits:
        raise ValueError(f"state must have shape {(2,) * num_qubits} for {num_qubits} qubits, got {state.shape}")
    return _run(state, circuit)


def circuit_unitary(circuit: Sequence[tuple[str, Sequence[int]]], num_qubits: int) -> jax.Array:
    """The circuit's ``[2^n, 2^n]`` matrix (column ``j`` = the circuit applied to basis state ``j``, big-endian)."""
    circuit = validate_circuit(circuit, num_qubits)
    dim = 2**num_qubits
    basis_Dx2s = jnp.eye(dim, dtype=jnp.complex64).reshape((dim,) + (2,) * num_qubits)
    columns = jax.vmap(lambda s: _run(s, circuit))(basis_Dx2s)
    return columns.reshape(dim, dim).T


def probabilities(state: jax.Array) -> jax.Array:
    """Measurement probabilities ``|amplitude|^2`` ``[2^n]`` (float32, big-endian index) of a ``[2] * n`` state."""
    return jnp.abs(state.reshape(-1)) ** 2


def bitstrings(num_qubits: int) -> list[str]:
    """Labels ``'q0 ... q_{n-1}'`` of the ``2^n`` basis states in ``probabilities`` order."""
    return [format(i, f"0{num_qubits}b") for i in range(2**num_qubits)]


def sample_counts(state: jax.Array, key: jax.Array, shots: int) -> dict[str, int]:
    """Measure every qubit ``shots`` times: ``{bitstring: count}`` of the outcomes seen (sorted, big-endian).

    Inverse-CDF sampling: outcome ``i`` is drawn when ``u * total`` (``u ~ U[0, 1)`` from ``key``) falls in
    ``[cdf[i-1], cdf[i])``, an empty interval for a zero-probability outcome; one compiled draw per ``shots``.
    """
    if shots < 1:
        raise ValueError(f"shots must be >= 1, got {shots}")
    cdf_D = np.cumsum(np.asarray(probabilities(state), np.float64))
    uniform_S = np.asarray(jax.random.uniform(key, (shots,)), np.float64) * cdf_D[-1]
    outcomes_S = np.minimum(np.searchsorted(cdf_D, uniform_S, side="right"), cdf_D.size - 1)
    counts_D = np.bincount(outcomes_S, minlength=cdf_D.size)
    labels = bitstrings(state.ndim)
    return {labels[i]: int(c) for i, c in enumerate(counts_D) if c}


def to_qiskit_bitstring(bits: str) -> str:
    """Our big-endian ``'q0 q1 ...'`` label as Qiskit's little-endian count key ``'... q1 q0'``."""
    return bits[::-1]
