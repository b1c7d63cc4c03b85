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


# benchmarks/unet.py: the PyTorch U-Net and DCGAN are nnjax's (same weights: same outputs, losses, gradients).

from benchmarks import unet as unet_bench  # noqa: E402

TINY_UNET = unet_bench.UNetSize(base=2, tile=16, batch_size=4, tiles=4)
TINY_GAN = unet_bench.GANSize(channels=2, latent_dim=8, batch_size=4, images=8)


def _random_variables(shapes, seed: int = 0):
    """Variables shaped like ``shapes`` (``jax.eval_shape`` of an init) drawn by numpy, nothing compiled:
    N(0, 0.5^2), BatchNorm variances uniform in [0.5, 1.5]."""
    rng = np.random.default_rng(seed)

    def draw(path, leaf):
        if jax.tree_util.keystr(path).endswith("['var']"):
            return rng.uniform(0.5, 1.5, leaf.shape).astype(np.float32)
        return rng.normal(0, 0.5, leaf.shape).astype(np.float32)

    return jax.tree_util.tree_map_with_path(draw, shapes)


def _torch_load(torch, module, state: dict):
    module.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()})
    return module


def _nchw(torch, x_NxHxWxC):
    return torch.from_numpy(x_NxHxWxC).permute(0, 3, 1, 2)


def test_unet_benchmark_sizes_are_read_from_the_experiments_defaults(monkeypatch):
    from dataclasses import replace

    from experiments import dcgan, unet_segmentation

    unet, seg = unet_bench.UNetSize(), unet_segmentation.Config()
    assert (unet.base, unet.tile, unet.batch_size, unet.learning_rate) == (64, seg.tile, seg.batch_size, seg.learning_rate)
    gan, experiment = unet_bench.GANSize(), dcgan.Config()
    for name in ("channels", "latent_dim", "batch_size", "n_critic", "gp_weight", "learning_rate", "adam_b1", "adam_b2"):
        assert getattr(experiment, name) == getattr(gan, name), name
    # Read when a size is made: a changed default reaches the benchmark.
    original = unet_segmentation.Config
    monkeypatch.setattr(unet_segmentation, "Config", lambda: replace(original(), tile=32, dice_weight=2.0))
    assert (unet_bench.UNetSize().tile, unet_bench.UNetSize().dice_weight) == (32, 2.0)
    # What both frameworks' steps write out instead of reading: the experiments' other choices.
    assert (seg.optimizer, seg.boundary_weight, seg.augment) == ("adam", 0.0, True)
    assert experiment.loss == "wasserstein" and experiment.critic_learning_rate == 0 and experiment.power_iterations == 1
    assert not experiment.gp_one_sided and not experiment.linear_decay


def test_torch_unet_and_dcgan_have_the_nnjax_parameter_counts():
    pytest.importorskip("torch")
    count = lambda variables: sum(leaf.size for leaf in jax.tree.leaves(variables["params"]))  # noqa: E731
    unet, _, _ = unet_bench.nnjax_unet_parts(unet_bench.UNetSize())
    x = jax.ShapeDtypeStruct((1, 64, 64, 1), np.float32)
    assert count(jax.eval_shape(lambda x: unet.init(jax.random.key(0), x), x)) == 7_773_699
    assert sum(p.numel() for p in unet_bench.torch_unet(64).parameters()) == 7_773_699
    gan = unet_bench.GANSize()
    generator, critic = unet_bench.nnjax_gan_networks(gan)
    z, images = jax.ShapeDtypeStruct((1, gan.latent_dim), np.float32), jax.ShapeDtypeStruct((1, 32, 32, 1), np.float32)
    nnjax_count = count(jax.eval_shape(lambda z: generator.init(jax.random.key(0), z), z)) + count(
        jax.eval_shape(lambda x: critic.init(jax.random.key(0), x), images))
    torch_count = sum(p.numel() for net in (unet_bench.torch_generator(gan), unet_bench.torch_critic(gan)) for p in net.parameters())
    assert torch_count == nnjax_count == 538_370


def test_torch_unet_with_the_nnjax_weights_gives_the_same_outputs_loss_and_running_means():
    """Train mode (batch statistics) in both; the correction kernel is nonzero, so the refinement path counts."""
    torch = pytest.importorskip("torch")
    model, objective, _ = unet_bench.nnjax_unet_parts(TINY_UNET)
    x, y = unet_bench.synthetic_tiles(TINY_UNET)
    variables = _random_variables(jax.eval_shape(lambda: model.init(jax.random.key(0), x)))

    def forward(variables, x, y):
        outputs, updates = model.apply(variables, x, train=True, mutable=["batch_stats"])
        return outputs, objective(outputs, {"y": y})["loss"].mean(), updates["batch_stats"]

    outputs, loss, batch_stats = jax.jit(forward)(variables, x, y)
    model_torch = _torch_load(torch, unet_bench.torch_unet(TINY_UNET.base), unet_bench.torch_unet_state_dict(variables))
    outputs_torch = model_torch(_nchw(torch, x))
    for name, logits in outputs.items():
        np.testing.assert_allclose(outputs_torch[name].detach().numpy()[:, 0], logits[..., 0], atol=1e-4, err_msg=name)
    loss_torch = unet_bench.torch_segmentation_loss(outputs_torch, torch.from_numpy(y), TINY_UNET)
    np.testing.assert_allclose(loss_torch.item(), loss, rtol=1e-5)
    expected = unet_bench.torch_unet_state_dict({"params": variables["params"], "batch_stats": batch_stats})
    means = [name for name in expected if name.endswith("running_mean")]
    assert len(means) == 2 * 8
    for name in means:  # flax's momentum 0.9 is torch's 0.1
        np.testing.assert_allclose(model_torch.state_dict()[name].numpy(), expected[name], atol=1e-5, err_msg=name)


def test_unet_torch_dihedral_gives_each_mask_its_image_symmetry():
    torch = pytest.importorskip("torch")
    x, y = unet_bench.synthetic_tiles(unet_bench.UNetSize(tile=8, tiles=32))
    images, masks = _nchw(torch, x), torch.from_numpy(y)
    torch.manual_seed(0)
    images_aug, masks_aug = unet_bench.torch_dihedral(images, masks)
    symmetries = [lambda a, k=k, t=t: torch.rot90(a, k, (-2, -1)).transpose(-1, -2) if t else torch.rot90(a, k, (-2, -1))
                  for k in range(4) for t in (False, True)]
    used = set()
    for image, mask, image_aug, mask_aug in zip(images, masks, images_aug, masks_aug):
        (found,) = [i for i, op in enumerate(symmetries) if torch.equal(op(image), image_aug)]
        assert torch.equal(symmetries[found](mask), mask_aug)
        used.add(found)
    assert len(used) > 4


def _tiny_gan():
    """nnjax's tiny generator and critic with random variables, a noise batch, real images, and the torch copies."""
    torch = pytest.importorskip("torch")
    generator, critic = unet_bench.nnjax_gan_networks(TINY_GAN)
    z = np.random.default_rng(0).normal(size=(TINY_GAN.batch_size, TINY_GAN.latent_dim)).astype(np.float32)
    real = unet_bench.synthetic_images(TINY_GAN)[: TINY_GAN.batch_size]
    g_variables = _random_variables(jax.eval_shape(lambda: generator.init(jax.random.key(0), z)), seed=1)
    c_variables = _random_variables(jax.eval_shape(lambda: critic.init(jax.random.key(0), real)), seed=2)
    torch_nets = (_torch_load(torch, unet_bench.torch_generator(TINY_GAN), unet_bench.torch_generator_state_dict(g_variables)),
                  _torch_load(torch, unet_bench.torch_critic(TINY_GAN), unet_bench.torch_critic_state_dict(c_variables)))
    return torch, (generator, critic), (g_variables, c_variables), z, real, torch_nets


def test_dcgan_torch_generator_with_the_nnjax_weights_gives_the_same_images_and_running_means():
    torch, (generator, _), (variables, _), z, _, (generator_torch, _) = _tiny_gan()
    images, updates = jax.jit(lambda v, z: generator.apply(v, z, train=True, mutable=["batch_stats"]))(variables, z)
    before = {k: v.clone() for k, v in generator_torch.state_dict().items()}
    with torch.no_grad():
        fixed = generator_torch(torch.from_numpy(z), update_stats=False)
        assert all(torch.equal(v, before[k]) for k, v in generator_torch.state_dict().items())
        updated = generator_torch(torch.from_numpy(z))
    for images_torch in (fixed, updated):
        np.testing.assert_allclose(images_torch.permute(0, 2, 3, 1).numpy(), images, atol=1e-5)
    for i in range(3):  # flax's momentum 0.99 is torch's 0.01
        np.testing.assert_allclose(generator_torch.norms[i].running_mean.numpy(),
                                   updates["batch_stats"][f"BatchNorm_{i}"]["mean"], atol=1e-6)


def test_dcgan_torch_critic_loss_with_gradient_penalty_and_its_gradients_equal_nnjax():
    """One critic update's loss as ``make_adversarial_step`` computes it (WGAN loss on the spectral-normed critic
    writing its vectors, penalty through the same kernels), its gradients, and the written vectors."""
    from nnjax.tasks import adversarial

    torch, (_, critic), (_, variables), _, real, (_, critic_torch) = _tiny_gan()
    fake = unet_bench.synthetic_images(TINY_GAN, seed=1)[: TINY_GAN.batch_size]
    key, b = jax.random.key(3), TINY_GAN.batch_size

    def loss_fn(params):
        v = {"params": params, "batch_stats": variables["batch_stats"]}
        scores, updates = critic.apply(v, np.concatenate([real, fake]), train=True, mutable=["batch_stats"])
        penalty = adversarial.gradient_penalty(lambda x: critic.apply(v, x, train=False), real, fake, key)
        return adversarial.critic_loss("wasserstein", scores[:b], scores[b:]) + TINY_GAN.gp_weight * penalty, updates

    (loss, updates), grads = jax.jit(jax.value_and_grad(loss_fn, has_aux=True))(variables["params"])
    alpha_B = np.array(jax.random.uniform(key, (b, 1, 1, 1)))[:, 0, 0, 0]  # the penalty's interpolation weights
    loss_torch = unet_bench.torch_critic_loss(critic_torch, _nchw(torch, real), _nchw(torch, fake), torch.from_numpy(alpha_B),
                                              TINY_GAN)
    loss_torch.backward()
    np.testing.assert_allclose(loss_torch.item(), loss, rtol=1e-5)
    expected = unet_bench.torch_critic_state_dict({"params": grads, "batch_stats": updates["batch_stats"]})
    for name in critic_torch.state_dict():
        got = getattr(critic_torch, name).numpy() if name.startswith("u_") else critic_torch.get_parameter(name).grad.numpy()
        np.testing.assert_allclose(got, expected[name], rtol=1e-4, atol=1e-6, err_msg=name)


def test_dcgan_lowered_flops_count_every_critic_update_and_leave_scan_alone():
    """One more critic update (an iteration of the step's scan) adds its FLOPs: less than the whole n_critic=1 step."""
    from nnjax.tasks import adversarial

    generator, critic = unet_bench.nnjax_gan_networks(TINY_GAN)
    scan, counts = jax.lax.scan, []
    for n_critic in (1, 2):
        config = dataclasses.replace(unet_bench.adversarial_config(TINY_GAN), n_critic=n_critic)
        state = jax.eval_shape(lambda: adversarial.create_gan_state(config, generator, critic, (32, 32, 1), jax.random.key(0)))
        data = jax.ShapeDtypeStruct((TINY_GAN.images, 32, 32, 1), np.float32)
        counts.append(unet_bench.lowered_flops(adversarial.make_adversarial_step(config, adversarial.sample_rows), state, data))
    assert 0.2 * counts[0] < counts[1] - counts[0] < counts[0]
    assert jax.lax.scan is scan


@pytest.mark.parametrize("model", unet_bench.MODELS)
def test_unet_and_dcgan_torch_workers_train_and_time(model):
    pytest.importorskip("torch")
    size = TINY_UNET if model == "unet" else TINY_GAN
    worker = unet_bench.run_worker(model, "torch", size, unet_bench.Timing(warmup=1, steps=2, chunk=1))
    assert worker["steps_per_s"] > 0 and worker["backend"] == "cpu"
    assert worker["examples_per_s"] == pytest.approx(worker["steps_per_s"] * (4 if model == "unet" else 5 * 4))
    assert worker["params"] == (7_827 if model == "unet" else 7_906)


def _unet_worker(steps_per_s, params=7_773_699, framework="nnjax"):
    figures = {"steps_per_s": steps_per_s, "examples_per_s": 16 * steps_per_s, "params": params, "load_avg": 0.5,
               "backend": "cpu"}
    return figures | ({"compile_s": 14.0, "flops_per_step": 2.5e11} if framework == "nnjax" else {})


def test_unet_summary_takes_the_best_run_and_gives_ratio_examples_and_gflops():
    runs = {"nnjax": [_unet_worker(0.2), _unet_worker(0.25)], "torch": [_unet_worker(0.5, framework="torch"), None]}
    timing = unet_bench.DEFAULT_TIMING["unet"]
    result = json.loads(json.dumps(unet_bench.summarize_model("unet", unet_bench.UNetSize(), timing, runs)))
    assert result["base"] == 64 and result["batch_size"] == 16 and result["steps"] == timing.steps
    assert result["nnjax_steps_per_s"] == 0.25 and result["nnjax_runs_steps_per_s"] == [0.2, 0.25]
    assert result["torch_runs_steps_per_s"] == [0.5, None] and result["torch_examples_per_s"] == 8.0
    assert result["nnjax_gflops_per_s"] == 62.5 and result["torch_gflops_per_s"] == 125.0
    assert result["nnjax_compile_s"] == 14.0 and result["nnjax_over_torch"] == 0.5


def test_unet_summary_rejects_different_models_and_reports_failures():
    timing, size = unet_bench.DEFAULT_TIMING["unet"], unet_bench.UNetSize()
    runs = {"nnjax": [_unet_worker(1.0)], "torch": [_unet_worker(1.0, params=1, framework="torch")]}
    with pytest.raises(AssertionError, match="parameter counts differ"):
        unet_bench.summarize_model("unet", size, timing, runs)
    result = unet_bench.summarize_model("unet", size, timing, {"nnjax": [None], "torch": runs["torch"]})
    assert result["nnjax_steps_per_s"] is None and result["flops_per_step"] is None
    assert result["torch_gflops_per_s"] is None and "nnjax_over_torch" not in result


def test_unet_benchmark_alternates_workers_and_prints_one_json_line_per_run(monkeypatch, capsys):
    calls = []

    def fake_worker(model, framework, argv):
        calls.append((model, framework))
        return _unet_worker(1.0 if framework == "nnjax" else 2.0, params=3, framework=framework)

    monkeypatch.setattr(unet_bench, "run_subprocess", fake_worker)
    unet_bench.main(["--repeats", "2", "--channels", "8"])
    assert calls == [("unet", "nnjax"), ("unet", "torch"), ("dcgan", "nnjax"), ("dcgan", "torch")] * 2
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["benchmark"] == "unet" and result["repeats"] == 2 and result["dcgan"]["channels"] == 8
    assert result["unet"]["nnjax_over_torch"] == result["dcgan"]["nnjax_over_torch"] == 0.5
    assert result["dcgan"]["examples_per_step"] == 5 * 32 and result["dcgan"]["chunk"] == 5


@pytest.mark.parametrize("flags", [["--steps", "7", "--chunk", "5", "--warmup", "5"], ["--warmup", "0"], ["--models", "resnet"],
                                   ["--frameworks", "keras"], ["--base", "0"], ["--repeats", "0"]])
def test_unet_bad_flags_exit_with_usage_error(flags):
    with pytest.raises(SystemExit) as exit_info:
        unet_bench.parse_args(flags)
    assert exit_info.value.code == 2


# benchmarks/workers.py and the MNIST CNN driver built on it.

from benchmarks import mnist_cnn as mnist_bench  # noqa: E402
from benchmarks.workers import alternate, launch_worker  # noqa: E402


def test_launch_worker_parses_the_last_stdout_line_and_returns_none_on_failure(tmp_path, monkeypatch, capsys):
    (tmp_path / "fake_worker.py").write_text(
        "import json, sys\n"
        "print('progress line')\n"
        "if sys.argv[1] == 'fail':\n"
        "    sys.exit('worker broke')\n"
        "print(json.dumps({'rate': float(sys.argv[1])}))\n")
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    assert launch_worker("fake_worker", ["2.5"], "fake", lambda w: f"rate {w['rate']}") == {"rate": 2.5}
    assert capsys.readouterr().err == "rate 2.5\n"
    assert launch_worker("fake_worker", ["fail"], "fake", lambda w: "unreachable") is None
    assert capsys.readouterr().err == "fake failed:\nworker broke\n\n"


def test_alternate_runs_every_key_once_per_round_in_order():
    calls = []
    runs = alternate(3, ["a", "b"], lambda key: calls.append(key) or ({"n": len(calls)} if key == "a" else None))
    assert calls == ["a", "b"] * 3
    assert runs == {"a": [{"n": 1}, {"n": 3}, {"n": 5}], "b": [None, None, None]}


def test_mnist_benchmark_alternates_workers_and_reports_each_best_run(monkeypatch, capsys):
    rates = iter([10.0, 5.0, 8.0, 12.0, 4.0, None])
    calls = []

    def fake_worker(framework, argv):
        calls.append(framework)
        rate = next(rates)
        return None if rate is None else {"examples_per_s": rate, "load_avg": 0.5}

    monkeypatch.setattr(mnist_bench, "run_subprocess", fake_worker)
    mnist_bench.main(["--repeats", "2"])
    assert calls == ["nnjax", "torch", "keras"] * 2
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["nnjax_runs_examples_per_s"] == [10.0, 12.0] and result["nnjax_examples_per_s"] == 12.0
    assert result["keras_runs_examples_per_s"] == [8.0, None] and result["keras_examples_per_s"] == 8.0
    assert result["nnjax_over_torch"] == 2.4 and result["nnjax_over_keras"] == 1.5 and result["repeats"] == 2
    failed = mnist_bench.summarize(mnist_bench.parse_args([]), {"nnjax": [{"examples_per_s": 10.0}], "torch": [None]})
    assert failed["torch_examples_per_s"] is None and "nnjax_over_torch" not in failed


@pytest.mark.parametrize("flags", [["--repeats", "0"], ["--epochs", "0"], ["--frameworks", "jax"]])
def test_mnist_bad_flags_exit_with_usage_error(flags):
    with pytest.raises(SystemExit) as exit_info:
        mnist_bench.parse_args(flags)
    assert exit_info.value.code == 2
