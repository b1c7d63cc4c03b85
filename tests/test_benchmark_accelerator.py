"""``python -m benchmarks.accelerator --smoke`` in process on the 8 fake CPU devices, and its MFU and sizing rules."""

import contextlib
import dataclasses
import io
import json

import pytest

from conftest import nnjax_logger_kept

from benchmarks import accelerator
from nnjax.errors import ConfigError


@pytest.fixture(scope="module")
def smoke_result(tmp_path_factory):
    """The JSON object of one ``--smoke`` run (the last stdout line), and the copy it wrote to ``--out``."""
    out = tmp_path_factory.mktemp("accelerator") / "result.json"
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(io.StringIO()), nnjax_logger_kept():
        accelerator.main(["--smoke", "--out", str(out)])  # it sets up logging: later tests' caplog must see nnjax's
    line = stdout.getvalue().strip().splitlines()[-1]
    return json.loads(line), json.loads(out.read_text())


def test_smoke_run_measures_every_part_on_eight_devices(eight_devices, smoke_result):
    result, written = smoke_result
    assert written == result
    assert result["smoke"] is True and result["backend"] == "cpu" and result["num_devices"] == len(eight_devices)
    assert set(result) >= {"device_kind", "lm", "mnist_cnn", "equivalence", "wall_s", "jax_version"}
    lm = result["lm"]
    assert lm["precision"] == "bfloat16" and lm["batch_size"] == 8 * lm["batch_size_per_device"]
    assert lm["tokens_per_s"] > 0 and lm["step_s"] > 0 and lm["compile_s"] > 0 and lm["timed_steps"] >= 4
    assert lm["flops_per_token"] == accelerator.char_lm.flops_per_token(lm["num_params"], accelerator.SMOKE.lm)
    assert lm["final_loss"] > 0
    mnist = result["mnist_cnn"]
    assert mnist["examples_per_s"] > 0 and mnist["compile_s"] > 0 and mnist["steps"] == 2


def test_smoke_run_has_no_mfu_on_a_cpu_and_says_why(smoke_result):
    lm = smoke_result[0]["lm"]
    assert lm["mfu"] is None and lm["peak_tflops_per_device"] is None
    assert "'cpu'" in lm["mfu_reason"] and "--peak-tflops" in lm["mfu_reason"]


def test_smoke_run_finds_one_and_eight_devices_equivalent(smoke_result):
    check = smoke_result[0]["equivalence"]
    assert check["num_devices"] == 8 and check["equivalent"] is True
    assert check["max_abs_loss_diff"] <= 1e-5 and check["max_abs_param_diff"] <= 1e-5
    assert check["rtol"] == check["atol"] == accelerator.EQUIVALENCE_TOLERANCE


@pytest.mark.parametrize("kind, tflops", [("NVIDIA H100 80GB HBM3", 989.0), ("NVIDIA H200", 989.0),
                                          ("NVIDIA A100-SXM4-40GB", 312.0), ("TPU v4", 275.0),
                                          ("TPU v5 lite", 197.0), ("TPU v5p", 459.0), ("TPU v6 lite", 918.0)])
def test_peak_of_a_known_device_kind(kind, tflops):
    assert accelerator.peak_flops(kind, None) == (tflops * 1e12, None)


def test_peak_override_and_unknown_kind():
    assert accelerator.peak_flops("cpu", 100.0) == (100e12, None)
    assert accelerator.peak_flops("TPU v4", 100.0) == (100e12, None)  # the flag wins over the table
    peak, reason = accelerator.peak_flops("Mystery GPU", None)
    assert peak is None and "'Mystery GPU'" in reason


def test_mfu_is_model_flops_over_the_peak_of_every_device():
    assert accelerator.mfu(flops_per_token=1_000, tokens_per_s=2e9, peak_flops_per_device=1e13, num_devices=4) == 0.05


@pytest.mark.parametrize("bytes_limit, preset", [(12e9, "gpt2-small"), (64e9, "0.8b"), (105e9, "1.9b")])
def test_lm_size_is_the_largest_that_fits_the_budget(bytes_limit, preset):
    """T4 (16 GB), H100 (80 GB) and H200 (141 GB) with XLA's default 75 % GPU memory pool."""
    name, size = accelerator.choose_lm_size(int(bytes_limit))
    assert name == preset and accelerator.MIN_BATCH <= size.batch_size <= accelerator.MAX_BATCH
    budget = accelerator.MEMORY_FRACTION * bytes_limit
    num_params = accelerator.preset_param_count(accelerator.LM_PRESETS[name])
    assert accelerator.estimated_bytes(size, num_params) <= budget
    doubled = dataclasses.replace(size, batch_size=2 * size.batch_size)
    assert size.batch_size == accelerator.MAX_BATCH or accelerator.estimated_bytes(doubled, num_params) > budget


def test_too_little_memory_is_a_config_error():
    with pytest.raises(ConfigError, match="smallest LM preset"):
        accelerator.choose_lm_size(1_000_000_000)
