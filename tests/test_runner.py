"""The one runner (``nnjax.train.runner``): chunk boundaries that depend on the step alone, and a run
killed after a checkpoint that resumes bit-identical to an uninterrupted one, for every regime on it:
supervised ``fit``, the GAN alternation, full-batch graph training and PPO (tiny settings)."""

import chex
import jax
import numpy as np
import pytest
from conftest import blob_dataset
from hypothesis import given
from hypothesis import strategies as st

from nnjax import losses
from nnjax.config import TrainConfig
from nnjax.data.graphs import karate_club
from nnjax.models import MLP
from nnjax.models.gan import MLPCritic, MLPGenerator
from nnjax.models.graph import GAT
from nnjax.tasks import adversarial, fit, node_classification, ppo
from nnjax.tasks.supervised import Supervised
from nnjax.train.runner import Schedule


@given(
    total=st.integers(1, 60), start_frac=st.floats(0, 1), log_every=st.integers(1, 12),
    ckpt_every=st.integers(0, 15), steps_per_epoch=st.integers(0, 9), ckpt_epochs=st.integers(0, 3),
)
def test_chunks_tile_the_run_and_end_at_every_log_checkpoint_and_epoch_step(
    total, start_frac, log_every, ckpt_every, steps_per_epoch, ckpt_epochs
):
    schedule = Schedule(total, log_every, ckpt_every, steps_per_epoch, ckpt_epochs if steps_per_epoch else 0)
    start = int(start_frac * (total - 1))
    chunks = list(schedule.chunks(start))
    assert chunks[0][0] == start and chunks[-1][1] == total
    assert all(a < b for a, b in chunks) and all(b == c for (_, b), (c, _) in zip(chunks, chunks[1:]))
    ends = {b for _, b in chunks}
    for p in range(start + 1, total + 1):
        in_epoch = p % steps_per_epoch if steps_per_epoch else p
        if in_epoch % log_every == 0 or schedule.checkpoint_due(p) or schedule.epoch_end(p):
            assert p in ends
        if ckpt_every and p % ckpt_every == 0:
            assert schedule.checkpoint_due(p)
    assert schedule.checkpoint_due(total)
    # Resuming from any chunk end replays the remaining chunks of the uninterrupted run exactly.
    for _, resume in chunks[:-1]:
        assert list(schedule.chunks(resume)) == [c for c in chunks if c[0] >= resume]


def test_checkpoints_do_not_wait_for_a_log_step():
    """Log every 50, checkpoint every 75: checkpoints at 75, 150, 225 and 300 (not only where they coincide)."""
    schedule = Schedule(total_steps=300, log_every=50, checkpoint_every=75)
    chunks = list(schedule.chunks(0))
    assert [b for _, b in chunks] == [50, 75, 100, 150, 200, 225, 250, 300]
    assert [b for _, b in chunks if schedule.checkpoint_due(b)] == [75, 150, 225, 300]


class Killed(Exception):
    """Stands in for a kill between chunks."""


def _patch_chunks(monkeypatch, task_class, kill_at: int | None, starts: list[int]) -> None:
    """Record the start of every chunk ``task_class`` runs in ``starts``; raise ``Killed`` on the first
    chunk that starts at or after ``kill_at``."""
    original = task_class.train_chunk

    def train_chunk(self, state, start, stop):
        if kill_at is not None and start >= kill_at:
            raise Killed
        starts.append(start)
        return original(self, state, start, stop)

    monkeypatch.setattr(task_class, "train_chunk", train_chunk)


def _assert_resume_is_bit_identical(monkeypatch, task_class, train, kill_at: int):
    """``train(name)`` uninterrupted, and killed at ``kill_at`` then rerun: the rerun starts from a
    checkpoint after step 0 and ends with the same final state and metric rows."""
    whole = train("whole")
    with monkeypatch.context() as patch:
        _patch_chunks(patch, task_class, kill_at, [])
        with pytest.raises(Killed):
            train("resumed")
    starts = []
    with monkeypatch.context() as patch:
        _patch_chunks(patch, task_class, None, starts)
        resumed = train("resumed")
    assert starts[0] > 0, starts  # it restored a checkpoint instead of starting over
    chex.assert_trees_all_equal(*(jax.tree.leaves(jax.device_get(r.state)) for r in (resumed, whole)))
    assert resumed.history == whole.history
    assert resumed.summary["steps"] == whole.summary["steps"]
    return whole, resumed


def test_supervised_fit_resumes_bit_identical(tmp_path, monkeypatch):
    data = blob_dataset(n_train=96, n_test=32)

    def train(name):
        config = TrainConfig(epochs=2, batch_size=16, log_every_steps=2, checkpoint_every_steps=3,
                             eval_batch_size=32, workdir=str(tmp_path / name))
        return fit(config, MLP(features=(8, 4)), data, losses.classification, experiment="test")

    whole, _ = _assert_resume_is_bit_identical(monkeypatch, Supervised, train, kill_at=5)
    assert whole.summary["steps"] == 8  # 2 epochs of 4 steps


def test_gan_resumes_bit_identical(tmp_path, monkeypatch):
    def train(name):
        config = adversarial.AdversarialConfig(steps=8, batch_size=4, latent_dim=2, n_critic=2, log_every_steps=2,
                                               checkpoint_every_steps=3, workdir=str(tmp_path / name))
        return adversarial.train_adversarial(config, MLPGenerator((8,)), MLPCritic((8,)), None,
                                             adversarial.gaussian_sampler(4.0, 1.5), (1,), "test")

    _assert_resume_is_bit_identical(monkeypatch, adversarial.Adversarial, train, kill_at=4)


def test_graph_training_resumes_bit_identical(tmp_path, monkeypatch):
    data = karate_club()

    def train(name):
        config = node_classification.NodeClassificationConfig(epochs=12, log_every_epochs=5, checkpoint_every_epochs=3,
                                                              workdir=str(tmp_path / name))
        return node_classification.train_node_classifier(config, GAT(data.num_classes, 4, 2, 1, 0.6), data, "test")

    _assert_resume_is_bit_identical(monkeypatch, node_classification.FullBatchGraph, train, kill_at=7)


def test_ppo_resumes_bit_identical(tmp_path, monkeypatch):
    def train(name):
        config = ppo.PPOConfig(num_envs=4, num_steps=8, total_timesteps=4 * 8 * 4, update_epochs=1, num_minibatches=2,
                               hidden=(8,), seeds=2, checkpoint_every_updates=2, workdir=str(tmp_path / name))
        return ppo.train_ppo(config, "test")

    whole, resumed = _assert_resume_is_bit_identical(monkeypatch, ppo.PPO, train, kill_at=2)
    assert resumed.summary["final_return_per_seed"] == whole.summary["final_return_per_seed"]
    assert np.all(np.isfinite(whole.summary["final_return_per_seed"]))
