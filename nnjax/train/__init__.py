"""The training engine every regime runs on: the runner, state, steps, parallelism, checkpoints, writer."""

from nnjax.train.checkpoint import Checkpointer, read_checkpoint
from nnjax.train.compiled import Compiled
from nnjax.train.parallel import Parallel
from nnjax.train.runner import RunResult, Schedule, Task, run
from nnjax.train.state import TrainState, create_train_state, model_variables
from nnjax.train.steps import make_eval_step, make_train_chunk, make_train_step
from nnjax.train.writer import MetricWriter

__all__ = [
    "Checkpointer",
    "Compiled",
    "MetricWriter",
    "Parallel",
    "RunResult",
    "Schedule",
    "Task",
    "TrainState",
    "create_train_state",
    "make_eval_step",
    "make_train_chunk",
    "make_train_step",
    "model_variables",
    "read_checkpoint",
    "run",
]
