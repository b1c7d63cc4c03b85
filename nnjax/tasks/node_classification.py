"""Full-batch semi-supervised node classification: every step sees the whole graph, and the loss is
the cross-entropy over the labelled nodes only (Kipf & Welling / Veličković et al. training regime).

Unlike ``fit`` (minibatches of examples, a held-out validation split), one graph is one example whose
nodes are split by masks, so the ``FullBatchGraph`` task runs one jitted full-batch step per epoch
on the runner (``nnjax.train.runner``). The state's key is split once per step into the next key and
the step's dropout key. ``--seeds N`` stacks N states (seeds --seed + k) along a leading [S] axis and
``jax.vmap``s the step and the evaluation over it.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from nnjax.config import OPTIMIZERS, ResumableConfig, check_positive, option
from nnjax.data.graphs import NodeClassification
from nnjax.errors import ConfigError
from nnjax.models.graph import Graph, add_self_loops
from nnjax.optim import make_optimizer
from nnjax.train.runner import RunResult, Schedule, Task, init_per_seed, rounded, run, seed_statistics, seed_values
from nnjax.train.state import TrainState, create_train_state

Metrics = dict[str, jax.Array]


@dataclasses.dataclass(frozen=True)
class NodeClassificationConfig(ResumableConfig):
    """Full-batch training fields; defaults are the GAT paper's: Adam lr 5e-3, L2 weight decay 5e-4,
    200 epochs (one step each)."""

    epochs: int = option(200, "full-batch training steps, one per epoch")
    learning_rate: float = option(5e-3, "the optimizer's learning rate")
    weight_decay: float = option(5e-4, "coupled L2 weight decay (added to the gradient, as PyTorch's Adam weight_decay); "
                                       "0: none")
    optimizer: str = option("adam", "optimizer (momentum: SGD with momentum 0.9)", choices=OPTIMIZERS)
    log_every_epochs: int = option(10, "epochs between metric rows")
    checkpoint_every_epochs: int = option(0, "epochs between checkpoints; 0: only at the end", minimum=0)
    keep_checkpoints: int = option(2, "newest checkpoints kept in --workdir")
    seeds: int = option(1, "N > 1: seeds --seed .. --seed+N-1 trained at once in one vmapped step; each metric is "
                           "their mean, with <metric>_std and <metric>_per_seed", minimum=1)

    def resumable_fields(self) -> set[str]:
        """More epochs (the learning rate is constant), other log and checkpoint intervals."""
        return super().resumable_fields() | {"epochs", "log_every_epochs", "checkpoint_every_epochs", "keep_checkpoints"}

    def validate(self) -> None:
        check_positive(self, "learning_rate")
        if self.weight_decay < 0:
            raise ConfigError(f"--weight-decay must be >= 0 (0 disables), got {self.weight_decay}")
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


class FullBatchGraph(Task):
    """Full-batch semi-supervised training of ``model`` on one graph: a step per epoch on the labelled
    nodes (dropout on), a chunk of epochs in one jitted ``lax.scan``, the test nodes evaluated (dropout off)
    after every chunk."""

    def __init__(self, config: NodeClassificationConfig, model: nn.Module, data: NodeClassification, self_loops: bool):
        super().__init__()
        self.config, self.model, self.data = config, model, data
        self.graph = to_graph(data, self_loops)
        self.labels_N = jnp.asarray(data.labels_N)
        self.masks = {"train": jnp.asarray(data.train_mask_N), "test": jnp.asarray(data.test_mask_N)}
        self.seeds = config.seeds
        per_seed = (lambda f: jax.vmap(f, in_axes=(0, None, None, None))) if self.seeds > 1 else (lambda f: f)
        step = per_seed(train_step)

        def chunk(state, graph, labels_N, mask_N, epochs_C):
            return jax.lax.scan(lambda s, _: step(s, graph, labels_N, mask_N), state, epochs_C)

        self._chunk = jax.jit(chunk, donate_argnums=0)
        self._evaluate = jax.jit(per_seed(evaluate))

    def init_state(self) -> TrainState:
        return init_per_seed(lambda key: create_train_state(self.model, make_tx(self.config), self.graph, key),
                             self.config.seed, self.seeds)

    def train_chunk(self, state: TrainState, start: int, stop: int) -> tuple[TrainState, Metrics]:
        return self.compiled("node_classification_steps", self._chunk, state, self.graph, self.labels_N,
                             self.masks["train"], jnp.arange(start, stop))

    def evaluation(self, state: TrainState) -> dict[str, float | list[float]]:
        """Evaluation-mode ``{train,test}_{loss,accuracy}`` (with ``_std`` and ``_per_seed`` for several seeds)."""
        metrics, _ = self.compiled("evaluate", self._evaluate, state, self.graph, self.labels_N, self.masks)
        return seed_statistics("", jax.device_get(metrics))

    def log_metrics(self, state: TrainState) -> dict[str, float]:
        return {k: v for k, v in self.evaluation(state).items() if k.startswith("test_")}

    def finish(self, state: TrainState, rows: list[dict[str, Any]], workdir: str) -> dict[str, Any]:
        return {
            **{k: rounded(v) for k, v in self.evaluation(jax.device_put(state)).items()},
            "epochs": int(np.max(state.step)),
            **({"seeds": seed_values(self.config.seed, self.seeds)} if self.seeds > 1 else {}),
            "labelled_nodes": int(self.data.train_mask_N.sum()),
            "test_nodes": int(self.data.test_mask_N.sum()),
        }


def train_node_classifier(
    config: NodeClassificationConfig,
    model: nn.Module,
    data: NodeClassification,
    experiment: str,
    self_loops: bool = True,
    **extra: Any,
) -> RunResult:
    """Train ``model`` (``model.apply(variables, graph, train)`` -> log-probs [N, classes]) on ``data``'s
    labelled nodes for ``config.epochs`` full-batch steps; resume from the run directory's checkpoint.

    Writes config.json (plus ``extra``), metrics.jsonl (every ``log_every_epochs`` a 'train' row with
    the mean loss/accuracy on the labelled nodes over those steps, dropout on, and a 'test' row with
    the evaluation-mode loss/accuracy on the test nodes), checkpoints (every ``checkpoint_every_epochs``)
    and ``learning_curves.png``. The summary holds the final evaluation-mode train/test loss and accuracy;
    ``predict(result.state, to_graph(data))`` gives the final log-probabilities. With ``config.seeds`` S > 1
    every figure is the mean over seeds with ``_std`` and ``_per_seed``, and each leaf of ``result.state`` is
    stacked [S, ...] (``nnjax.train.runner.seed_states`` slices it).
    """
    task = FullBatchGraph(config, model, data, self_loops)
    schedule = Schedule(
        total_steps=config.epochs, log_every=config.log_every_epochs, checkpoint_every=config.checkpoint_every_epochs,
        keep_checkpoints=config.keep_checkpoints, unit="epoch",
    )
    return run(task, schedule, config, experiment, title=f"{experiment} on {data.name}", data=data.name, **extra)
