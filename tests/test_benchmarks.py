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
