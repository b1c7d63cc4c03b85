"""Training regimes on the runner (``nnjax.train.runner``): each is a ``Task``, a schedule and a config."""

from nnjax.tasks.supervised import Supervised, evaluate, fit, planned_steps, predict_probabilities

__all__ = ["Supervised", "evaluate", "fit", "planned_steps", "predict_probabilities"]
