"""The benchmarks' measuring functions at tiny sizes: same model in both frameworks, sane figures, JSON out.

PyTorch is optional (the ``bench`` extra): tests that need it skip when it is not installed.
"""

import argparse
import dataclasses
import json

import jax
import numpy as np
import pytest

from benchmarks import char_lm, memory
from benchmarks import ppo as ppo_bench

TINY_LM = char_lm.Size(vocab_size=11, block_size=8, d_model=16, num_heads=2, num_layers=2, batch_size=4)


def test_torch_gpt_has_the_nnjax_parameter_count_at_the_nanogpt_size():
    pytest.importorskip("torch")
    assert char_lm.torch_param_count(char_lm.Size()) == char_lm.nnjax_param_count(char_lm.Size()) == 809_856


def test_torch_gpt_with_the_nnjax_weights_gives_the_same_logits():
    """Same architecture, not just the same size: the comparison is like for like."""
    torch = pytest.importorskip("torch")
    ids = np.random.default_rng(0).integers(0, TINY_LM.vocab_size, (2, TINY_LM.block_size)).astype(np.int32)
    model = char_lm.nnjax_lm(TINY_LM)
    params = jax.jit(model.init)(jax.random.key(0), ids)["params"]
    expected = jax.jit(model.apply)({"params": params}, ids)
    with torch.no_grad():
        model_torch = char_lm.torch_gpt(TINY_LM)
        model_torch.load_state_dict({k: torch.from_numpy(v) for k, v in char_lm.torch_gpt_state_dict(params, TINY_LM).items()})
        logits = model_torch(torch.from_numpy(ids).long()).numpy()
    np.testing.assert_allclose(logits, expected, atol=1e-5)


@pytest.mark.parametrize("framework", char_lm.FRAMEWORKS)
def test_worker_trains_and_times(framework):
    if framework == "torch":
        pytest.importorskip("torch")
    size = dataclasses.replace(TINY_LM, num_layers=1)
    worker = char_lm.run_worker(framework, size, steps=4, warmup=2, chunk=2, num_windows=32)
    assert worker["tokens_per_s"] > 0
    assert worker["params"] == char_lm.nnjax_param_count(size)
    assert worker["backend"] == "cpu"


def _args(**overrides) -> argparse.Namespace:
    return char_lm.parse_args([f"--{k.replace('_', '-')}={v}" for k, v in overrides.items()])


def _worker(tokens_per_s, params=809_856, backend="cpu"):
    return {"params": params, "tokens_per_s": tokens_per_s, "backend": backend, "load_avg": 0.5}


def test_summary_takes_the_best_run_and_gives_ratio_gflops_and_mfu_only_on_gpu():
    size = char_lm.Size()
    runs = {"nnjax": [_worker(2500.0), _worker(3000.0)], "torch": [_worker(1500.0), None]}
    result = json.loads(json.dumps(char_lm.summarize(size, _args(), runs)))
    per_token = 6 * (809_856 - 64 * 128) + 12 * 4 * 128 * 64
    assert result["flops_per_token"] == char_lm.flops_per_token(809_856, size) == per_token
    assert result["nnjax_tokens_per_s"] == 3000.0 and result["nnjax_runs_tokens_per_s"] == [2500.0, 3000.0]
    assert result["torch_runs_tokens_per_s"] == [1500.0, None]
    assert result["nnjax_over_torch"] == 2.0
    assert result["nnjax_gflops_per_s"] == pytest.approx(3000 * per_token / 1e9, abs=0.01)
    assert result["nnjax_mfu"] is None and result["torch_mfu"] is None

    runs["nnjax"] = [_worker(3000.0, backend="gpu")]
    result = char_lm.summarize(size, _args(peak_tflops=100), runs)
    assert result["nnjax_mfu"] == pytest.approx(3000 * per_token / 100e12, abs=1e-4)
    assert result["torch_mfu"] is None


def test_summary_rejects_different_models_and_reports_failures():
    runs = {"nnjax": [_worker(1.0, params=10)], "torch": [_worker(1.0, params=11)]}
    with pytest.raises(AssertionError, match="parameter counts differ"):
        char_lm.summarize(char_lm.Size(), _args(), runs)
    result = char_lm.summarize(char_lm.Size(), _args(), {"nnjax": runs["nnjax"], "torch": [None]})
    assert result["torch_tokens_per_s"] is None and "nnjax_over_torch" not in result


@pytest.mark.parametrize("flags", [["--steps", "7", "--chunk", "5"], ["--warmup", "3", "--chunk", "2"], ["--frameworks", "keras"]])
def test_bad_flags_exit_with_usage_error(flags):
    with pytest.raises(SystemExit) as exit_info:
        char_lm.parse_args(flags)
    assert exit_info.value.code == 2


def test_memory_remat_keeps_fewer_residuals_and_same_gradients():
    size = char_lm.Size(vocab_size=11, block_size=16, d_model=16, num_heads=2, num_layers=1, batch_size=4)
    result = json.loads(json.dumps(memory.measure(size, ("none", "full"), steps=1)))
    none, full = result["none"], result["full"]
    assert full["residual_bytes"] < none["residual_bytes"]
    assert full["residual_bytes_ratio"] == pytest.approx(full["residual_bytes"] / none["residual_bytes"], abs=1e-3)
    assert none["grad_max_abs_diff"] == 0.0 and full["grad_max_abs_diff"] < 1e-6
    for figures in (none, full):
        assert figures["temp_bytes"] > 0 and figures["step_s"] > 0
        assert figures["peak_bytes"] == (
            figures["argument_bytes"] + figures["output_bytes"] - figures["alias_bytes"] + figures["temp_bytes"]
        )
    assert result["num_params"] == char_lm.nnjax_param_count(char_lm.Size(11, 16, 16, 2, 1, 4))


# benchmarks/ppo.py: the PyTorch PPO is nnjax's PPO (network, loss, gradients, GAE), and every figure is measured.

TINY_PPO = {"num_envs": 2, "num_steps": 4, "update_epochs": 1, "num_minibatches": 1, "hidden": (8, 8)}


def _ppo_params(config):
    from nnjax.envs import cartpole
    from nnjax.tasks import ppo as nnjax_ppo

    network = nnjax_ppo.make_network(config)
    return network, network.init(jax.random.PRNGKey(0), np.zeros((1, cartpole.OBS_DIM), np.float32))["params"]


def _torch_model(torch, config, params):
    model = ppo_bench.torch_actor_critic(config)
    model.load_state_dict({k: torch.from_numpy(v) for k, v in ppo_bench.torch_state_dict(params).items()})
    return model


def _ppo_batch(size: int = 64) -> dict[str, np.ndarray]:
    """A minibatch whose old log-probs and values are far enough off that both clips act on some rows."""
    rng = np.random.default_rng(0)
    return {
        "obs": rng.normal(size=(size, 4)).astype(np.float32), "action": rng.integers(0, 2, size).astype(np.int32),
        "log_prob": (np.log(0.5) + rng.normal(0, 0.3, size)).astype(np.float32),
        "value": rng.normal(0, 0.5, size).astype(np.float32), "advantage": rng.normal(1, 2, size).astype(np.float32),
        "target": rng.normal(0, 2, size).astype(np.float32),
    }


def test_torch_actor_critic_with_the_nnjax_weights_gives_the_same_logits_and_values():
    torch = pytest.importorskip("torch")
    config = ppo_bench.ppo_config(1)
    network, params = _ppo_params(config)
    assert sum(p.numel() for p in ppo_bench.torch_actor_critic(config).parameters()) == sum(
        x.size for x in jax.tree.leaves(params)) == 4 * 256 + 256 * 256 + 256 * 3 + 256 * 2 + 3
    obs = _ppo_batch()["obs"]
    logits, value = jax.jit(network.apply)({"params": params}, obs)
    with torch.no_grad():
        logits_torch, value_torch = _torch_model(torch, config, params)(torch.from_numpy(obs))
    np.testing.assert_allclose(logits_torch.numpy(), logits, atol=1e-5)
    np.testing.assert_allclose(value_torch.numpy(), value, atol=1e-5)


def test_torch_ppo_loss_and_gradients_equal_nnjax_ppo_loss():
    torch = pytest.importorskip("torch")
    from nnjax.tasks import ppo as nnjax_ppo

    config = ppo_bench.ppo_config(1, **TINY_PPO)
    network, params = _ppo_params(config)
    batch = _ppo_batch()
    (loss, parts), grads = jax.jit(jax.value_and_grad(
        lambda p: nnjax_ppo.ppo_loss(p, network.apply, batch, config), has_aux=True))(params)
    assert 0 < parts["clip_fraction"] < 1
    model = _torch_model(torch, config, params)
    batch_torch = {k: torch.from_numpy(v).long() if k == "action" else torch.from_numpy(v) for k, v in batch.items()}
    loss_torch, parts_torch = ppo_bench.torch_ppo_loss(model, batch_torch, config)
    loss_torch.backward()
    np.testing.assert_allclose(loss_torch.item(), loss, atol=1e-5)
    for name, part in parts_torch.items():
        np.testing.assert_allclose(part.item(), parts[name], atol=1e-5, err_msg=name)
    expected = ppo_bench.torch_state_dict(grads)  # the gradients laid out as torch's parameters
    for name, parameter in model.named_parameters():
        np.testing.assert_allclose(parameter.grad.numpy(), expected[name], atol=1e-5, err_msg=name)


def test_torch_gae_equals_nnjax_gae():
    torch = pytest.importorskip("torch")
    from nnjax.tasks import ppo as nnjax_ppo

    rng = np.random.default_rng(1)
    reward, value, next_value = (rng.normal(size=(16, 3)).astype(np.float32) for _ in range(3))
    done = rng.random((16, 3)) < 0.3
    terminated = done & (rng.random((16, 3)) < 0.5)
    expected = nnjax_ppo.gae(reward, value, next_value, terminated, done, 0.99, 0.95)
    got = ppo_bench.torch_gae(*map(torch.from_numpy, (reward, value, next_value)),
                              *(torch.from_numpy(x.astype(np.float32)) for x in (terminated, done)), 0.99, 0.95)
    for g, e in zip(got, expected):
        np.testing.assert_allclose(g.numpy(), e, atol=1e-5)


def test_cartpole_envs_reset_in_the_same_step_and_keep_the_final_observation():
    pytest.importorskip("gymnasium")
    from nnjax.envs import cartpole

    envs = ppo_bench.cartpole_envs(2)
    obs, _ = envs.reset(seed=0)
    for _ in range(200):  # always pushing right ends every episode within a few dozen steps
        previous = obs
        obs, reward, terminated, truncated, info = envs.step(np.ones(2, np.int64))
        if terminated.any():
            break
    env = int(np.flatnonzero(terminated)[0])
    final_obs = info["final_obs"][env]
    assert reward[env] == 1.0 and abs(final_obs[0] - previous[env][0]) < 0.1
    assert abs(final_obs[2]) > cartpole.THETA_THRESHOLD  # the pole fell: the finished episode's last observation
    assert np.all(np.abs(obs[env]) <= 0.05)  # the reset observation, returned in the same step
    envs.close()


@pytest.mark.parametrize("figure", [pytest.param("nnjax", marks=pytest.mark.slow), "nnjax_jit", "torch"])
def test_each_figure_trains_a_couple_of_updates_and_reports_env_steps_per_s(figure):
    """``nnjax`` is slow: ``train_ppo`` on the runner, eager init, compile and plots included (~4 s on a quiet CPU)."""
    if figure == "torch":
        pytest.importorskip("torch")
        pytest.importorskip("gymnasium")
    config = ppo_bench.ppo_config(2, **TINY_PPO)
    run = {"nnjax": ppo_bench.run_nnjax, "nnjax_jit": ppo_bench.run_nnjax_jit,
           "torch": lambda c: ppo_bench.run_torch(c, warmup=1, threads=1)}[figure]
    figures = run(config)
    assert figures["env_steps_per_s"] > 0 and figures["final_return"] >= 0
    if figure == "torch":
        assert 0 < figures["rollout_fraction"] < 1
    else:
        assert figures["compile_s"] > 0


def _ppo_worker(nnjax=None, nnjax_jit=None, torch=None, load_avg=0.5):
    figures = {}
    if nnjax is not None:
        figures = {"nnjax": {"env_steps_per_s": nnjax, "compile_s": 2.5, "final_return": 30.0},
                   "nnjax_jit": {"env_steps_per_s": nnjax_jit, "compile_s": 2.0, "final_return": 31.0}}
    if torch is not None:
        figures = {"torch": {"env_steps_per_s": torch, "rollout_fraction": 0.55, "final_return": 29.0}}
    return {"load_avg": load_avg, "figures": figures}


def test_ppo_summary_takes_each_figures_best_run_and_gives_the_ratios():
    runs = {"nnjax": [_ppo_worker(20_000.0, 30_000.0), _ppo_worker(25_000.0, 28_000.0, load_avg=1.5)],
            "torch": [_ppo_worker(torch=10_000.0), None]}
    result = json.loads(json.dumps(ppo_bench.summarize(ppo_bench.parse_args([]), runs)))
    assert result["env_steps_per_update"] == 1024 and result["hidden"] == [256, 256]
    assert result["nnjax_env_steps_per_s"] == 25_000.0 and result["nnjax_load_avg"] == 1.5
    assert result["nnjax_runs_env_steps_per_s"] == [20_000.0, 25_000.0]
    assert result["nnjax_jit_env_steps_per_s"] == 30_000.0 and result["nnjax_jit_compile_s"] == 2.0
    assert result["torch_runs_env_steps_per_s"] == [10_000.0, None] and result["torch_rollout_fraction"] == 0.55
    assert result["nnjax_over_torch"] == 2.5 and result["nnjax_jit_over_torch"] == 3.0
    assert result["goal_nnjax_over_torch"] == 20.0

    failed = ppo_bench.summarize(ppo_bench.parse_args([]), {"nnjax": runs["nnjax"], "torch": [None]})
    assert failed["torch_env_steps_per_s"] is None and "nnjax_over_torch" not in failed


@pytest.mark.parametrize("flags", [["--updates", "0"], ["--warmup", "-1"], ["--torch-threads", "0"], ["--frameworks", "jax"]])
def test_ppo_bad_flags_exit_with_usage_error(flags):
    with pytest.raises(SystemExit) as exit_info:
        ppo_bench.parse_args(flags)
    assert exit_info.value.code == 2
