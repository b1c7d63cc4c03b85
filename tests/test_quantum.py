"""State-vector simulator vs explicit np.kron matrices, sampling within binomial bounds, the Bell demo."""

import json
import os

import hypothesis.strategies as st
import jax
import numpy as np
import pytest
from hypothesis import given, settings

from experiments import quantum_bell
from nnjax.apps import quantum

I2 = np.eye(2)
P0, P1 = np.diag([1.0, 0.0]), np.diag([0.0, 1.0])  # |0><0|, |1><1|
H = np.array([[1, 1], [1, -1]]) / np.sqrt(2)
X = np.array([[0, 1], [1, 0]])
Z = np.diag([1, -1])


def test_hadamard_on_zero_is_plus_state():
    state = quantum.run_circuit((("h", (0,)),), 1)
    assert state.dtype == np.complex64 and state.shape == (2,)
    np.testing.assert_allclose(state, np.array([1, 1]) / np.sqrt(2), atol=1e-7)


@pytest.mark.parametrize(
    ("circuit", "expected"),
    [
        ((("x", (0,)),), np.kron(X, I2)),
        ((("x", (1,)),), np.kron(I2, X)),
        ((("z", (1,)),), np.kron(I2, Z)),
        ((("h", (0,)),), np.kron(H, I2)),
        # CX = |0><0| (x) I + |1><1| (x) X with the control on the left (qubit 0), and its mirror.
        ((("cx", (0, 1)),), np.kron(P0, I2) + np.kron(P1, X)),
        ((("cx", (1, 0)),), np.kron(I2, P0) + np.kron(X, P1)),
        # Matrices compose right to left: the circuit's first gate is the rightmost factor.
        (quantum.BELL, (np.kron(P0, I2) + np.kron(P1, X)) @ np.kron(H, I2)),
    ],
)
def test_two_qubit_circuit_matrices_match_kron_products(circuit, expected):
    np.testing.assert_allclose(quantum.circuit_unitary(circuit, 2), expected, atol=1e-6)


def test_cx_truth_table_big_endian():
    """|control target>: the target flips exactly when the control (leftmost bit) is 1."""
    for bits, flipped in (("00", "00"), ("01", "01"), ("10", "11"), ("11", "10")):
        basis = np.zeros((2, 2), np.complex64)
        basis[int(bits[0]), int(bits[1])] = 1.0
        probs = np.asarray(quantum.probabilities(quantum.run_circuit((("cx", (0, 1)),), 2, state=basis)))
        assert quantum.bitstrings(2)[int(np.argmax(probs))] == flipped and probs.max() == pytest.approx(1.0)


# A 3-qubit circuit touching every gate and a non-adjacent, reversed CX pair; its matrix as kron products.
CIRCUIT3 = (("h", (2,)), ("x", (1,)), ("cx", (2, 0)), ("z", (0,)))
CX_2_TO_0 = np.kron(np.kron(I2, I2), P0) + np.kron(np.kron(X, I2), P1)
MATRIX3 = np.kron(np.kron(Z, I2), I2) @ CX_2_TO_0 @ np.kron(np.kron(I2, X), I2) @ np.kron(np.kron(I2, I2), H)


def test_three_qubit_circuit_matrix_matches_kron_products():
    np.testing.assert_allclose(quantum.circuit_unitary(CIRCUIT3, 3), MATRIX3, atol=1e-6)


@settings(deadline=None, max_examples=10)
@given(seed=st.integers(0, 2**31 - 1))
def test_circuit_preserves_norm_and_inner_products(seed):
    """Unitarity on random 3-qubit states (one compiled circuit), and the output is the matrix times the input."""
    rng = np.random.default_rng(seed)
    a, b = (rng.standard_normal(8) + 1j * rng.standard_normal(8) for _ in range(2))
    a, b = (v / np.linalg.norm(v) for v in (a, b))
    out_a, out_b = (np.asarray(quantum.run_circuit(CIRCUIT3, 3, state=v.reshape(2, 2, 2))).reshape(8) for v in (a, b))
    assert float(quantum.probabilities(out_a).sum()) == pytest.approx(1.0, abs=1e-5)
    np.testing.assert_allclose(np.vdot(out_a, out_b), np.vdot(a, b), atol=1e-5)
    np.testing.assert_allclose(out_a, MATRIX3 @ a, atol=1e-5)


def test_bell_samples_only_00_and_11_within_binomial_bound():
    counts = quantum.sample_counts(quantum.run_circuit(quantum.BELL, 2), jax.random.key(0), 1000)
    assert set(counts) <= {"00", "11"} and sum(counts.values()) == 1000
    assert abs(counts.get("00", 0) - 500) <= 4 * np.sqrt(1000 * 0.25)


def test_sampling_follows_unequal_probabilities():
    """|0> rotated so that P(1) = 1/4 (not a symmetric case): the sample frequency tracks it."""
    state = np.array([np.sqrt(0.75), np.sqrt(0.25)], np.complex64)
    counts = quantum.sample_counts(state, jax.random.key(1), 1000)
    assert abs(counts["1"] - 250) <= 4 * np.sqrt(1000 * 0.25 * 0.75)


def test_ghz_three_qubits():
    state = quantum.run_circuit(quantum.ghz(3), 3)
    expected = np.zeros(8)
    expected[[0, 7]] = 1 / np.sqrt(2)
    np.testing.assert_allclose(state.reshape(-1), expected, atol=1e-6)
    counts = quantum.sample_counts(state, jax.random.key(2), 1000)
    assert set(counts) <= {"000", "111"} and abs(counts.get("000", 0) - 500) <= 4 * np.sqrt(1000 * 0.25)


def test_bit_order_and_qiskit_conversion():
    state = quantum.run_circuit((("x", (0,)),), 3)  # only qubit 0 flipped
    assert quantum.sample_counts(state, jax.random.key(3), 1000) == {"100": 1000}
    assert quantum.to_qiskit_bitstring("100") == "001"


@pytest.mark.parametrize(
    ("circuit", "message"),
    [((("y", (0,)),), "unknown gate 'y'"), ((("cx", (0, 0)),), "2 distinct qubits"), ((("h", (2,)),), "in \\[0, 2\\)")],
)
def test_bad_circuits_raise(circuit, message):
    with pytest.raises(ValueError, match=message):
        quantum.run_circuit(circuit, 2)


def test_quantum_bell_demo(tmp_path):
    result = quantum_bell.main(quantum_bell.Config(workdir=str(tmp_path)))
    assert set(result["counts"]) <= {"00", "11"} and sum(result["counts"].values()) == 1000
    assert result["probabilities"] == pytest.approx({"00": 0.5, "01": 0.0, "10": 0.0, "11": 0.5}, abs=1e-6)
    assert os.path.getsize(tmp_path / "histogram.png") > 0
    assert json.loads(json.dumps(result)) == result
