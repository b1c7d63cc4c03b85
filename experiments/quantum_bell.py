"""Seed 000 slide 6: prepare a Bell state (H on q0, CX q0 -> q1), measure every qubit, count the outcomes.

    python -m experiments.quantum_bell
    python -m experiments.quantum_bell --shots 10000 --num-qubits 3 --seed 1

The seed runs Qiskit's ``qasm_simulator``; here the circuit runs on ``nnjax.apps.quantum``'s JAX
state-vector simulator and the shots are drawn from the exact outcome probabilities. With more than
two qubits the extra qubits stay in ``|0>`` (the seed's register is ``num_qubits`` wide; the Bell pair is
always q0, q1). Bitstrings are big-endian (``'q0 q1 ...'``); ``qiskit_counts`` gives Qiskit's
little-endian keys. Writes ``histogram.png`` (a bar chart of the counts).
"""

from __future__ import annotations

import dataclasses
import os
import sys

import jax
import numpy as np

from nnjax import cli, plots
from nnjax.apps import quantum
from nnjax.config import RunConfig, option, prepare_workdir
from nnjax.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class Config(RunConfig):
    """A Bell pair on q0, q1 of a num_qubits register, measured shots times (the seed: 2 qubits, 1000 shots)."""

    num_qubits: int = option(2, "qubits in the register, in [2, 12]; the Bell pair is q0, q1, the rest stay |0>")
    shots: int = option(1000, "measurements drawn from the exact outcome probabilities")

    def validate(self) -> None:
        if not 2 <= self.num_qubits <= 12:
            raise ConfigError(f"--num-qubits must be in [2, 12] (the Bell pair needs 2), got {self.num_qubits}")
        super().validate()


def main(config: Config) -> dict:
    workdir = prepare_workdir(config, "quantum_bell")
    state = quantum.run_circuit(quantum.BELL, config.num_qubits)
    probs_D = np.asarray(quantum.probabilities(state), np.float64)
    probs = {label: round(float(p), 6) for label, p in zip(quantum.bitstrings(config.num_qubits), probs_D)}
    counts = quantum.sample_counts(state, jax.random.key(config.seed), config.shots)
    zero_label = "0" * config.num_qubits
    z_score = (counts.get(zero_label, 0) - config.shots / 2) / np.sqrt(config.shots / 4)
    plots.count_histogram(counts, probs, config.shots, os.path.join(workdir, "histogram.png"), "Bell state (H q0, CX q0->q1)")
    return {
        "circuit": [[name, list(qubits)] for name, qubits in quantum.BELL],
        "num_qubits": config.num_qubits,
        "shots": config.shots,
        "counts": counts,
        "qiskit_counts": {quantum.to_qiskit_bitstring(k): v for k, v in counts.items()},
        "probabilities": probs,
        "zero_count_z_score": round(float(z_score), 4),
        "bit_order": "big-endian: qubit 0 is the leftmost bit",
        "plots": ["histogram.png"],
        "workdir": workdir,
    }


if __name__ == "__main__":
    sys.exit(cli.run(main, Config, prog="quantum_bell"))
