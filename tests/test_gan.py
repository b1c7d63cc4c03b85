"""GAN tests: spectral normalisation against SVD and flax's SpectralNorm, the gradient penalty against
closed forms and explicit Jacobians, the phase-decomposed convolutions against flax/XLA, one jitted
DCGAN step, and a short 1-D GAN run end to end."""

import json
import os

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments import gan_1d
from nnjax.config import parse_config
from nnjax.errors import ConfigError
from nnjax.models.gan import Discriminator, DownConv, Generator, MLPCritic, MLPGenerator, down_conv, up_conv
from nnjax.models.spectral import SpectralNorm, spectral_normalize
from nnjax.tasks import adversarial


def _normal(seed: int, shape: tuple[int, ...]) -> jnp.ndarray:
    """Test inputs from numpy (jax.random would compile a PRNG kernel per shape)."""
    return jnp.asarray(np.random.default_rng(seed).standard_normal(shape, dtype=np.float32))


def test_spectral_normalize_reaches_unit_top_singular_value():
    kernel = _normal(0, (3, 3, 4, 6))
    u = _normal(1, (6,))
    normed, u_new, sigma = spectral_normalize(kernel, u, 50)
    s_true = np.linalg.svd(np.asarray(kernel).reshape(-1, 6), compute_uv=False)
    assert abs(float(sigma) - s_true[0]) < 1e-3 * s_true[0]
    assert abs(np.linalg.svd(np.asarray(normed).reshape(-1, 6), compute_uv=False)[0] - 1.0) < 1e-3
    chex.assert_shape(normed, kernel.shape)
    np.testing.assert_allclose(np.linalg.norm(u_new), 1.0, atol=1e-5)
    one_step_sigma = spectral_normalize(kernel, u, 1)[2]
    assert float(one_step_sigma) < s_true[0] - 1e-3  # one iteration from a random u underestimates sigma


def test_spectral_norm_matches_flax_and_updates_u_only_in_training():
    x = _normal(2, (5, 7))
    ours, theirs = SpectralNorm(nn.Dense(4), n_steps=3), nn.SpectralNorm(nn.Dense(4), n_steps=3)
    v_ours = ours.init(jax.random.PRNGKey(3), x, update_stats=False)
    v_theirs = theirs.init(jax.random.PRNGKey(3), x, update_stats=False)
    u0 = v_ours["batch_stats"]["u"]
    v_theirs = {  # the same kernel, bias and u in flax's layout
        "params": {"layer_instance": v_ours["params"]["layer"]},
        "batch_stats": {**v_theirs["batch_stats"], "layer_instance/kernel/u": u0[None]},
    }
    (y_ours, new_ours), (y_theirs, new_theirs) = (
        m.apply(v, x, update_stats=True, mutable=["batch_stats"]) for m, v in ((ours, v_ours), (theirs, v_theirs))
    )
    np.testing.assert_allclose(y_ours, y_theirs, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(new_ours["batch_stats"]["u"], new_theirs["batch_stats"]["layer_instance/kernel/u"][0], atol=1e-6)
    assert not np.allclose(new_ours["batch_stats"]["u"], u0)
    y_eval, kept = ours.apply(v_ours, x, update_stats=False, mutable=["batch_stats"])
    np.testing.assert_array_equal(kept["batch_stats"]["u"], u0)
    np.testing.assert_allclose(y_eval, y_ours, rtol=1e-6)  # same stored u -> same normalised kernel


@pytest.mark.parametrize("scale", [1.0, 0.3, 2.5])
def test_gradient_penalty_of_a_linear_critic_is_closed_form(scale):
    w = _normal(4, (2, 3))
    w = scale * w / jnp.linalg.norm(w)
    critic = lambda x_Bx2x3: jnp.sum(x_Bx2x3 * w, axis=(1, 2))  # noqa: E731  grad = w everywhere
    real, fake = (_normal(k, (6, 2, 3)) for k in (5, 6))
    key = jax.random.PRNGKey(7)
    assert abs(float(adversarial.gradient_penalty(critic, real, fake, key)) - (scale - 1.0) ** 2) < 1e-5
    one_sided = float(adversarial.gradient_penalty(critic, real, fake, key, one_sided=True))
    assert abs(one_sided - max(scale - 1.0, 0.0) ** 2) < 1e-5
    if scale == 1.0:
        assert float(adversarial.gradient_penalty(critic, real, fake, key)) < 1e-10


def test_per_sample_input_grads_match_the_jacobian_diagonal():
    w1, w2 = _normal(8, (3, 5)), _normal(9, (5,))
    critic = lambda x_Bx3: jnp.tanh(x_Bx3 @ w1) @ w2 + 0.1 * jnp.sum(x_Bx3**3, axis=1)  # noqa: E731
    x = _normal(10, (4, 3))
    jac_BxBx3 = jax.jacobian(critic)(x)
    expected = jac_BxBx3[jnp.arange(4), jnp.arange(4)]
    np.testing.assert_allclose(adversarial.per_sample_input_grads(critic, x), expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(jax.grad(lambda x: critic(x).sum())(x), expected, rtol=1e-5, atol=1e-6)  # sum trick agrees
    off_diagonal = jac_BxBx3.at[jnp.arange(4), jnp.arange(4)].set(0.0)
    np.testing.assert_array_equal(off_diagonal, 0.0)


def test_up_and_down_conv_equal_flax_and_xla():
    x = _normal(11, (2, 6, 8, 3))
    kernel = _normal(12, (4, 4, 3, 5))
    flax_up = nn.ConvTranspose(5, (4, 4), strides=(2, 2), padding=((2, 2), (2, 2)), use_bias=False)
    expected_up = flax_up.apply({"params": {"kernel": kernel}}, x)
    expected_down = jax.lax.conv_general_dilated(x, kernel, (2, 2), ((1, 1), (1, 1)), dimension_numbers=("NHWC", "HWIO", "NHWC"))
    np.testing.assert_allclose(up_conv(x, kernel), expected_up, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(down_conv(x, kernel), expected_down, rtol=1e-5, atol=1e-5)


def test_dcgan_networks_shapes_without_compiling():
    z, x = jax.ShapeDtypeStruct((3, 8), jnp.float32), jax.ShapeDtypeStruct((3, 32, 32, 1), jnp.float32)
    g_vars = jax.eval_shape(lambda z: Generator(8, channels=4).init(jax.random.PRNGKey(0), z), z)
    d_vars = jax.eval_shape(lambda x: Discriminator(4).init(jax.random.PRNGKey(0), x), x)
    assert jax.eval_shape(lambda v, z: Generator(8, channels=4).apply(v, z), g_vars, z).shape == (3, 32, 32, 1)
    assert jax.eval_shape(lambda v, x: Discriminator(4).apply(v, x), d_vars, x).shape == (3,)
    assert [u.shape for u in jax.tree.leaves(d_vars["batch_stats"])] == [(8,), (16,), (32,), (1,)]  # one u per layer
    assert len(jax.tree.leaves(g_vars["batch_stats"])) == 6  # 3 BatchNorms x (mean, var)
    with pytest.raises(ValueError, match="32, 32"):
        Discriminator(4).init(jax.random.PRNGKey(0), jnp.zeros((1, 28, 28, 1)))


def test_spectral_norm_wraps_a_strided_conv_kernel():
    x = _normal(13, (1, 4, 4, 2))
    layer = SpectralNorm(DownConv(3), n_steps=2)
    variables = layer.init(jax.random.PRNGKey(14), x, update_stats=False)
    kernel, u = variables["params"]["layer"]["kernel"], variables["batch_stats"]["u"]
    expected = down_conv(x, spectral_normalize(kernel, u, 2)[0])  # the bias is zero at init
    np.testing.assert_allclose(layer.apply(variables, x, update_stats=False), expected, rtol=1e-5, atol=1e-6)


def _mlp_config(**overrides):
    return adversarial.AdversarialConfig(batch_size=4, latent_dim=2, n_critic=2, **overrides)


def test_one_jitted_step_updates_both_networks_and_keeps_shapes():
    config = _mlp_config()
    state = adversarial.create_gan_state(config, MLPGenerator((8,)), MLPCritic((8,)), (1,), jax.random.PRNGKey(0))
    new_state, metrics = jax.jit(adversarial.make_adversarial_step(config, adversarial.gaussian_sampler(4.0, 1.5)))(state, None)
    assert jax.tree.map(np.shape, new_state) == jax.tree.map(np.shape, state)
    for name in ("generator", "critic"):
        old, new = getattr(state, name), getattr(new_state, name)
        pairs = zip(jax.tree.leaves(old.params), jax.tree.leaves(new.params))
        assert all(not np.allclose(a, b) for a, b in pairs if a.size > 1)  # the critic's output bias gets no gradient
        assert not np.array_equal(old.rng, new.rng)
    np.testing.assert_array_equal(new_state.critic.params["Dense_1"]["bias"], state.critic.params["Dense_1"]["bias"])
    assert int(new_state.critic.step) == 2 and int(new_state.generator.step) == 1
    assert set(metrics) == {"critic_loss", "generator_loss", "gp", "wasserstein"}
    assert all(np.isfinite(float(v)) for v in metrics.values()) and float(metrics["gp"]) > 0.0


@pytest.mark.slow
def test_dcgan_step_updates_both_networks_spectral_and_batchnorm_state():
    """The full DCGAN step at tiny sizes (~25 s CPU on 2 cores, nearly all XLA compilation)."""
    config = adversarial.AdversarialConfig(batch_size=4, latent_dim=8, n_critic=2)
    state = adversarial.create_gan_state(config, Generator(8, channels=4), Discriminator(4), (32, 32, 1), jax.random.PRNGKey(0))
    data = jax.random.uniform(jax.random.PRNGKey(1), (10, 32, 32, 1), minval=-1.0, maxval=1.0)
    new_state, metrics = jax.jit(adversarial.make_adversarial_step(config, adversarial.sample_rows))(state, data)
    assert jax.tree.map(np.shape, new_state) == jax.tree.map(np.shape, state)
    for name in ("generator", "critic"):
        old, new = getattr(state, name), getattr(new_state, name)
        for tree in ("params", "batch_stats"):  # the critic's batch_stats are its spectral-norm vectors u
            pairs = zip(jax.tree.leaves(getattr(old, tree)), jax.tree.leaves(getattr(new, tree)))
            assert all(not np.allclose(a, b) for a, b in pairs if a.size > 1), (name, tree)
    assert all(np.isfinite(float(v)) for v in metrics.values())


def test_config_rejects_bad_values():
    with pytest.raises(ConfigError, match="--n-critic must be >= 1"):
        parse_config(adversarial.AdversarialConfig, ["--n-critic", "0"])
    with pytest.raises(ConfigError, match="--adam-b1 must be in"):
        parse_config(adversarial.AdversarialConfig, ["--adam-b1", "1.0"])


def test_gan_1d_short_run_learns_the_target(tmp_path):
    config = gan_1d.Config(steps=400, linear_decay=False, log_every_steps=200, eval_samples=4000, workdir=str(tmp_path))
    result = gan_1d.main(config)
    assert result["mean_error"] < 0.5 and result["std_error"] < 0.5, result  # the untrained generator's mean is ~4 off
    assert result["steps"] == 400
    for name in ("histogram.png", "critic.png", "losses.png", "config.json"):
        assert os.path.exists(tmp_path / name)
    with open(tmp_path / "metrics.jsonl") as f:
        rows = [json.loads(line) for line in f]
    assert [row["step"] for row in rows] == [200, 400]


def test_gan_1d_two_seeds_at_once_train_as_their_one_seed_runs(tmp_path):
    """The oracle is the one-seed run: seed k of ``--seeds 2`` (seed 3 + k) trains as ``--seed 3 + k``; 30 steps,
    before the critic's unconstrained offset has drifted apart under rounding (it has no restoring force)."""
    flags = dict(steps=30, log_every_steps=15, eval_samples=1000)
    together = gan_1d.main(gan_1d.Config(seed=3, seeds=2, workdir=str(tmp_path / "seeds"), **flags))
    alone = gan_1d.main(gan_1d.Config(seed=4, workdir=str(tmp_path / "alone"), **flags))
    assert together["seeds"] == [3, 4]
    # The generated_* figures draw their noise from --seed + 1 (4 here, 5 alone): only the losses have a twin.
    for key in ("critic_loss", "generator_loss", "wasserstein", "gp"):
        np.testing.assert_allclose(together[f"{key}_per_seed"][1], alone[key], atol=2e-3, err_msg=key)
        assert together[key] == pytest.approx(np.mean(together[f"{key}_per_seed"]), abs=1e-4)
    assert together["generated_mean_per_seed"][0] != together["generated_mean_per_seed"][1]
