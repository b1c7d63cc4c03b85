"""Domain tools built on nnjax: finance, quantum circuits, signal features."""
