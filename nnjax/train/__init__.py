"""One trainer for every supervised experiment: state, steps, parallelism, checkpoints, loop."""

from nnjax.train.checkpoint import Checkpointer
from nnjax.train.loop import FitResult, chunk_bounds, evaluate, fit, planned_steps
from nnjax.train.parallel import Parallel
from nnjax.train.state import TrainState, create_train_state, model_variables
from nnjax.train.steps import make_eval_step, make_train_chunk, make_train_step
from nnjax.train.writer import MetricWriter

__all__ = [
    "Checkpointer",
    "FitResult",
    "MetricWriter",
    "Parallel",
    "TrainState",
    "chunk_bounds",
    "create_train_state",
    "evaluate",
    "fit",
    "make_eval_step",
    "make_train_chunk",
    "make_train_step",
    "model_variables",
    "planned_steps",
]
