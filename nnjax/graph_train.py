"""Full-batch semi-supervised node classification: every step sees the whole graph, and the loss is
the cross-entropy over the labelled nodes only (Kipf & Welling / Veličković et al. training regime).

``fit`` does not serve here (it batches examples and holds out a validation split, while one graph is
one example whose nodes are split by masks), so this module is a small loop on the shared pieces:
``TrainState``/``create_train_state``, ``make_optimizer``, ``Checkpointer``, ``MetricWriter``,
``prepare_workdir`` and a tqdm bar. The step is jitted; the state's key is split once per step into
the next key and the step's dropout key.
"""

from __future__ import annotations

import dataclasses
import os
import time
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from nnjax import plots
from nnjax.config import OPTIMIZERS, RunConfig, check_positive, prepare_workdir
from nnjax.data.graphs import NodeClassification
from nnjax.errors import ConfigError
from nnjax.models.graph import Graph, add_self_loops
from nnjax.optim import make_optimizer
from nnjax.train.checkpoint import Checkpointer
from nnjax.train.loop import run_steps
from nnjax.train.state import TrainState, create_train_state
from nnjax.train.writer import MetricWriter

Metrics = dict[str, jax.Array]


@dataclasses.dataclass(frozen=True)
class NodeClassificationConfig(RunConfig):
    """Full-batch training fields; defaults are the GAT paper's: Adam lr 5e-3, L2 weight decay 5e-4,
    200 epochs (one step each)."""

    epochs: int = 200
    learning_rate: float = 5e-3
    weight_decay: float = 5e-4  # coupled L2 (added to the gradient, as PyTorch's Adam weight_decay)
    optimizer: str = dataclasses.field(default="adam", metadata={"choices": OPTIMIZERS})
    log_every_epochs: int = 10
    checkpoint_every_epochs: int = 0  # 0: only at the end
    keep_checkpoints: int = 2

    def validate(self) -> None:
        check_positive(self, "epochs", "learning_rate", "log_every_epochs", "keep_checkpoints")
        for name in ("weight_decay", "checkpoint_every_epochs"):
            if getattr(self, name) < 0:
                raise ConfigError(f"--{name.replace('_', '-')} must be >= 0 (0 disables), got {getattr(self, name)}")
        super().validate()


def masked_cross_entropy(log_probs_NxC: jax.Array, labels_N: jax.Array, mask_N: jax.Array) -> jax.Array:
    """Mean of -log p(label_i) over the nodes where ``mask`` holds (0 if none does)."""
    nll_N = -jnp.take_along_axis(log_probs_NxC, labels_N[:, None], axis=1)[:, 0]
    mask_N = mask_N.astype(log_probs_NxC.dtype)
    return jnp.sum(nll_N * mask_N) / jnp.maximum(jnp.sum(mask_N), 1.0)


def masked_accuracy(log_probs_NxC: jax.Array, labels_N: jax.Array, mask_N: jax.Array) -> jax.Array:
    """Fraction of the nodes where ``mask`` holds whose arg-max class equals the label."""
    correct_N = (jnp.argmax(log_probs_NxC, axis=-1) == labels_N).astype(jnp.float32)
    mask_N = mask_N.astype(jnp.float32)
    return jnp.sum(correct_N * mask_N) / jnp.maximum(jnp.sum(mask_N), 1.0)


def make_tx(config: NodeClassificationConfig) -> optax.GradientTransformation:
    """``make_optimizer(optimizer, lr)`` after adding ``weight_decay * params`` to the gradient."""
    return optax.chain(optax.add_decayed_weights(config.weight_decay), make_optimizer(config.optimizer, config.learning_rate))


def train_step(state: TrainState, graph: Graph, labels_N: jax.Array, mask_N: jax.Array) -> tuple[TrainState, Metrics]:
    """One full-batch step in training mode (dropout on): minimise the masked cross-entropy."""
    rng, dropout_key = jax.random.split(state.rng)

    def loss_fn(params):
        log_probs_NxC = state.apply_fn({"params": params}, graph, train=True, rngs={"dropout": dropout_key})
        return masked_cross_entropy(log_probs_NxC, labels_N, mask_N), log_probs_NxC

    (loss, log_probs_NxC), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    metrics = {"loss": loss, "accuracy": masked_accuracy(log_probs_NxC, labels_N, mask_N)}
    return state.apply_gradients(grads=grads, rng=rng), metrics


def predict(state: TrainState, graph: Graph) -> jax.Array:
    """Log-probabilities [N, classes] in evaluation mode (no dropout)."""
    return state.apply_fn({"params": state.params}, graph, train=False)


def evaluate(state: TrainState, graph: Graph, labels_N: jax.Array, masks: dict[str, jax.Array]) -> tuple[Metrics, jax.Array]:
    """(``{<split>_loss, <split>_accuracy}`` for each named node mask, log-probabilities [N, classes]),
    in evaluation mode."""
    log_probs_NxC = predict(state, graph)
    metrics = {}
    for split, mask_N in masks.items():
        metrics[f"{split}_loss"] = masked_cross_entropy(log_probs_NxC, labels_N, mask_N)
        metrics[f"{split}_accuracy"] = masked_accuracy(log_probs_NxC, labels_N, mask_N)
    return metrics, log_probs_NxC


def to_graph(data: NodeClassification, self_loops: bool = True) -> Graph:
    """The ``Graph`` of ``data`` (with one self-loop per node if ``self_loops``) as device arrays."""
    senders_E, receivers_E = data.senders_E, data.receivers_E
    if self_loops:
        senders_E, receivers_E = add_self_loops(senders_E, receivers_E, data.num_nodes)
    return jax.device_put(Graph(data.nodes_NxF, senders_E.astype(np.int32), receivers_E.astype(np.int32)))


@dataclasses.dataclass
class NodeClassificationResult:
    """The trained host state, final log-probabilities [N, classes], all metric rows and a summary."""

    state: TrainState
    log_probs_NxC: np.ndarray
    history: list[dict[str, Any]]
    summary: dict[str, Any]


def train_node_classifier(
    config: NodeClassificationConfig,
    model: nn.Module,
    data: NodeClassification,
    experiment: str,
    self_loops: bool = True,
    **extra: Any,
) -> NodeClassificationResult:
    """Train ``model`` (``model.apply(variables, graph, train)`` -> log-probs [N, classes]) on ``data``'s
    labelled nodes for ``config.epochs`` full-batch steps; resume from the run directory's checkpoint.

    Writes config.json (plus ``extra``), metrics.jsonl (every ``log_every_epochs`` a 'train' row with
    the mean loss/accuracy on the labelled nodes over those steps, dropout on, and a 'test' row with
    the evaluation-mode loss/accuracy on the test nodes), checkpoints and ``learning_curves.png``.
    The summary holds the final evaluation-mode train/test loss and accuracy.
    """
    workdir = prepare_workdir(config, experiment, data=data.name, **extra)
    graph = to_graph(data, self_loops)
    labels_N = jnp.asarray(data.labels_N)
    masks = {"train": jnp.asarray(data.train_mask_N), "test": jnp.asarray(data.test_mask_N)}
    state = jax.device_get(create_train_state(model, make_tx(config), graph, jax.random.PRNGKey(config.seed)))
    checkpoints = Checkpointer(os.path.join(workdir, "checkpoints"), config.keep_checkpoints)
    resumed = checkpoints.latest_step() is not None
    if resumed:
        state = checkpoints.restore(state)
    writer = MetricWriter(workdir, resume_step=int(state.step) if resumed else None)
    tick = time.perf_counter()
    step_fn = jax.jit(train_step, donate_argnums=0).lower(state, graph, labels_N, masks["train"]).compile()
    eval_fn = jax.jit(evaluate)
    compile_s = time.perf_counter() - tick
    try:
        state, train_s = run_steps(
            lambda state: step_fn(state, graph, labels_N, masks["train"]), jax.device_put(state), int(state.step),
            config.epochs, config.log_every_epochs, config.checkpoint_every_epochs, checkpoints, writer,
            evaluate=lambda state: _test_metrics(eval_fn, state, graph, labels_N, masks), unit="epoch",
        )
        plots.learning_curves(writer.rows, os.path.join(workdir, "learning_curves.png"), title=f"{experiment} on {data.name}")
    finally:
        checkpoints.close()
        writer.close()
    final, log_probs_NxC = jax.device_get(eval_fn(state, graph, labels_N, masks))
    summary = {
        **{k: round(float(v), 4) for k, v in final.items()},
        "epochs": int(state.step),
        "labelled_nodes": int(data.train_mask_N.sum()),
        "test_nodes": int(data.test_mask_N.sum()),
        "compile_s": round(compile_s, 2),
        "train_time_s": round(train_s, 2),
        "workdir": workdir,
    }
    return NodeClassificationResult(
        state=jax.device_get(state), log_probs_NxC=np.asarray(log_probs_NxC), history=writer.rows, summary=summary
    )


def _test_metrics(eval_fn: Any, state: TrainState, graph: Graph, labels_N: jax.Array, masks: dict[str, jax.Array]) -> dict[str, float]:
    """The evaluation-mode ``test_*`` metrics of ``state`` (for the loop's 'test' rows)."""
    evaluation, _ = jax.device_get(eval_fn(state, graph, labels_N, masks))
    return {k: float(v) for k, v in evaluation.items() if k.startswith("test_")}
