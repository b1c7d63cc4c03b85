"""Seed 003 slide 4: the chain rule, with jax instead of SymPy.

Prints the partials of h(x, y, z) = exp(x² + y²) · sin(z) derived by hand and by ``jax.grad``,
and the derivative of a composition f_n ∘ … ∘ f_1 as the product of its local derivatives.

    python -m experiments.chain_rule --point 0.5,-0.3,1.2 --chain square,sin,tanh
"""

from __future__ import annotations

import dataclasses
import functools
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np

from nnjax import cli, plots
from nnjax.config import RunConfig, check_positive, option, prepare_workdir
from nnjax.errors import ConfigError
from nnjax.scratch import chain_rule


def _floats(text: str) -> tuple[float, ...]:
    return tuple(float(v) for v in text.split(",") if v.strip())


@dataclasses.dataclass(frozen=True)
class Config(RunConfig):
    """Partials of the seed's h at (x, y, z) = (0.5, -0.3, 1.2); chain square -> sin -> tanh at x = 0.7."""

    point: str = option("0.5,-0.3,1.2", "x,y,z at which the partials of h are taken")
    chain: str = option(
        "square,sin,tanh", f"comma-separated functions, first applied first, from {', '.join(chain_rule.SCALAR_FUNCTIONS)}"
    )
    chain_at: float = option(0.7, "x at which the composition's derivative is traced")
    x_max: float = option(2.0, "the derivative curve is drawn on [-x_max, x_max]")
    num_points: int = option(101, "grid points of that curve (>= 2)")

    @property
    def xyz(self) -> tuple[float, float, float]:
        """``--point`` as (x, y, z)."""
        return _floats(self.point)

    @property
    def chain_names(self) -> tuple[str, ...]:
        """``--chain`` as function names, first applied first."""
        return tuple(name.strip() for name in self.chain.split(",") if name.strip())

    def validate(self) -> None:
        try:
            xyz = self.xyz
        except ValueError:
            xyz = ()
        if len(xyz) != 3:
            raise ConfigError(f"--point must be three comma-separated numbers like 0.5,-0.3,1.2; got {self.point!r}")
        unknown = [name for name in self.chain_names if name not in chain_rule.SCALAR_FUNCTIONS]
        if not self.chain_names or unknown:
            raise ConfigError(
                f"--chain must be comma-separated names from {', '.join(chain_rule.SCALAR_FUNCTIONS)}; got {self.chain!r}"
            )
        check_positive(self, "x_max")
        if self.num_points < 2:
            raise ConfigError(f"--num-points must be >= 2, got {self.num_points}")
        super().validate()


def _rounded(values) -> list[float]:
    return [round(float(v), 6) for v in np.asarray(values)]


def evaluate(fns: list[chain_rule.ScalarFn], xyz_3: jax.Array, x: jax.Array, x_N: jax.Array) -> dict:
    """Both routes to h's partials at ``xyz_3`` and to the derivative of ``compose(fns)`` at ``x`` and on ``x_N``."""
    composite = chain_rule.compose(fns)
    return {
        "h": chain_rule.h(*xyz_3),
        "by_hand": jnp.stack(chain_rule.h_partials(*xyz_3)),
        "by_autodiff": jnp.stack(jax.grad(chain_rule.h, argnums=(0, 1, 2))(*xyz_3)),
        "trace": chain_rule.chain_derivative(fns, x),
        "autodiff_at": jax.grad(composite)(x),
        "traces_N": jax.vmap(lambda v: chain_rule.chain_derivative(fns, v))(x_N),
        "autodiff_N": jax.vmap(jax.grad(composite))(x_N),
    }


def main(config: Config) -> dict:
    workdir = prepare_workdir(config, "chain_rule")
    fns = [chain_rule.SCALAR_FUNCTIONS[name] for name in config.chain_names]
    x_N = jnp.linspace(-config.x_max, config.x_max, config.num_points)
    out = jax.jit(functools.partial(evaluate, fns))(jnp.asarray(config.xyz), jnp.asarray(config.chain_at), x_N)
    trace, traces_N = out["trace"], out["traces_N"]
    plots.chain_rule_curves(
        x_N, traces_N.values_N1[:, -1], traces_N.derivative, out["autodiff_N"], " ∘ ".join(reversed(config.chain_names)),
        os.path.join(workdir, "chain_rule.png"),
    )
    return {
        "point": _rounded(config.xyz),
        "h": round(float(out["h"]), 6),
        "partials_by_hand": _rounded(out["by_hand"]),
        "partials_by_autodiff": _rounded(out["by_autodiff"]),
        "partials_max_abs_difference": float(jnp.max(jnp.abs(out["by_hand"] - out["by_autodiff"]))),
        "chain": {
            "functions": list(config.chain_names),
            "x": config.chain_at,
            "intermediate_values": _rounded(trace.values_N1),
            "local_derivatives": _rounded(trace.local_derivatives_N),
            "product_of_local_derivatives": round(float(trace.derivative), 6),
            "autodiff": round(float(out["autodiff_at"]), 6),
            "max_abs_difference_on_grid": float(jnp.max(jnp.abs(traces_N.derivative - out["autodiff_N"]))),
        },
        "plots": ["chain_rule.png"],
        "workdir": workdir,
    }


if __name__ == "__main__":
    sys.exit(cli.run(main, Config, prog="chain_rule"))
