"""Seed 002 slides 9-10: a bi-LSTM + self-attention forecasts next-day stock returns; long/flat backtest.

    python -m experiments.stock_forecast                                  # bokeh's sample prices
    python -m experiments.stock_forecast --csv prices.csv --symbol XYZ      # any CSV with date, close

Daily (split-adjusted) closes of ``--symbol`` from ``bokeh_sampledata`` (its file fetched
once on first use, ``nnjax.data.packaged``) become windows of 60 days of close, SMA-20, RSI-14 and
MACD, min-max scaled on the training period, each labelled with the next day's return; the days are
split 70/15/15 in time order (``nnjax.data.prices.make_stock_dataset``). The model trains through
``nnjax.tasks.fit`` with the ``regression`` (MSE) objective on returns divided by their training
standard deviation (``test_loss`` from ``fit`` is the MSE in those units; ``target_scale`` in the
JSON line is that deviation). ``--validation-fraction`` defaults to 0: ``fit`` would draw a *random*
validation subset from overlapping training windows; the time-ordered validation period is
evaluated here instead.

On the test period it reports MSE/RMSE/MAE of the predicted returns, directional accuracy (with
the share of up days, which "always up" scores), and a backtest of the long/flat strategy (long
for the next day when the predicted return is > 0) against buy-and-hold: Sharpe ratio, maximum
drawdown, annual return and win rate, without costs. The seed's figures (Sharpe 1.84, directional
accuracy 0.67) are printed, not measured; expect a model that does not beat buy-and-hold.
``--seeds N`` trains N models at once: every model figure is their mean with ``_std`` and ``_per_seed``
(``beats_buy_hold_sharpe`` compares the mean Sharpe); the plots are the first seed's.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from typing import Any

import jax
import numpy as np

from nnjax import cli, losses, plots
from nnjax.apps import finance
from nnjax.config import TrainConfig, check_divisible, check_fraction, option
from nnjax.data import Dataset, predict_batched
from nnjax.data.prices import SYMBOLS, StockDataset, bokeh_stocks_path, load_stock, make_stock_dataset
from nnjax.errors import ConfigError
from nnjax.models.forecast import POOLINGS, StockForecaster
from nnjax.tasks import fit
from nnjax.train.runner import rounded, seed_states, seed_statistics, stack_seeds

SPLIT = (0.7, 0.15, 0.15)
SPLITS = ("val", "test")  # the time-ordered periods evaluated after training


@dataclasses.dataclass(frozen=True)
class Config(TrainConfig):
    """bi-LSTM(128) -> 8-head self-attention (256) -> last step -> Dense(64) -> 1 on 60-day AAPL windows; Adam 1e-3, batch 64."""

    epochs: int = 10
    batch_size: int = 64
    learning_rate: float = 1e-3
    data: str = option("stocks", "only stocks: bokeh_sampledata's daily prices, or the file given by --csv")
    symbol: str = option(
        "AAPL", f"ticker: {', '.join(SYMBOLS)} from bokeh_sampledata; with --csv, the rows of its ticker column (if any)"
    )
    csv: str | None = option(None, "a CSV with date and close columns, read instead of bokeh_sampledata")
    validation_fraction: float = option(
        0.0, "keep 0: a random validation split leaks overlapping windows; the time-ordered validation period is "
        "evaluated instead"
    )
    window: int = option(60, "trading days per input window")
    hidden: int = option(128, "LSTM units per direction")
    heads: int = option(8, "self-attention heads (dividing --attention-features)")
    attention_features: int = option(256, "self-attention query/key/value features")
    dense: int = option(64, "units of the ReLU layer before the output")
    pooling: str = option("last", "summary of the sequence: the last step (the seed's) or the mean", choices=POOLINGS)
    dropout: float = option(0.1, "dropout rate on the attention weights and the pooled features, in [0, 1)")

    def validate(self) -> None:
        super().validate()
        if self.data != "stocks":
            raise ConfigError(f"--data must be 'stocks' (bokeh_sampledata, or the file given by --csv), got {self.data!r}")
        if self.csv is None and self.symbol not in SYMBOLS:
            raise ConfigError(f"--symbol must be one of {', '.join(SYMBOLS)} for bokeh_sampledata, got {self.symbol!r}")
        check_divisible(self, "attention_features", "heads")
        check_fraction(self, "dropout")


def evaluate_seed(
    model: StockForecaster, params: Any, stocks: StockDataset, scale: float, batch_size: int
) -> tuple[dict[str, float], np.ndarray, np.ndarray]:
    """One trained model's figures -- ``{val,test}_{mse,rmse,mae,directional_accuracy,long_fraction}`` of its
    predicted next-day returns and ``model_*``, its long/flat backtest on the test period -- with its test
    predictions [N] and equity curve."""
    predict = jax.jit(lambda x: model.apply({"params": params}, x)[:, 0])
    figures = {}
    for split in SPLITS:
        predicted_N = predict_batched(lambda batch, _: predict(batch["x"]), stocks.splits[split], batch_size) * scale
        errors = finance.forecast_errors(predicted_N, stocks.next_return[split])
        figures |= {f"{split}_{k}": v for k, v in errors.items()}
    trading, equity = finance.trading_report(stocks.prices["test"], (predicted_N > 0).astype(np.float64))
    return figures | {f"model_{k}": v for k, v in trading.items()}, predicted_N, equity


def main(config: Config) -> dict:
    try:
        prices = load_stock(config.symbol, config.csv)
    except (OSError, ValueError) as err:
        raise ConfigError(f"cannot read --symbol {config.symbol!r} from --csv {config.csv}: {err}") from err
    try:
        stocks = make_stock_dataset(prices.close_T, config.window, SPLIT)
    except ValueError as err:
        raise ConfigError(f"{config.symbol} prices do not fit --window {config.window}: {err}") from err
    scale = float(np.std(stocks.splits["train"]["y"]))
    scaled = {name: {"x": s["x"], "y": s["y"] / scale} for name, s in stocks.splits.items()}
    source = config.csv or f"bokeh_sampledata {bokeh_stocks_path()} (adjusted close)"
    data = Dataset(f"stocks-{config.symbol}", source, scaled["train"], scaled["test"], num_classes=0)
    model = StockForecaster(
        config.hidden, config.heads, config.attention_features, config.dense, config.pooling, config.dropout
    )
    result = fit(config, model, data, losses.regression, experiment="stock_forecast", multi_seed=True)
    per_seed = [evaluate_seed(model, state.params, stocks, scale, config.eval_batch_size)
                for state in seed_states(result.state, config.seeds)]
    figures = stack_seeds([seed[0] for seed in per_seed])
    predicted_N, model_equity = per_seed[0][1:]
    actual_N = stocks.next_return["test"]
    hold_trading, hold_equity = finance.trading_report(stocks.prices["test"], np.ones_like(predicted_N))

    workdir = result.summary["workdir"]
    days_N = stocks.days["test"]
    period = f"{prices.dates_T[days_N[0]]}..{prices.dates_T[days_N[-1] + 1]}"
    plots.return_predictions(
        actual_N, predicted_N, os.path.join(workdir, "predictions.png"),
        title=f"{config.symbol} next-day returns, test period {period}",
    )
    plots.equity_curves(
        {"long/flat (model)": model_equity, "buy and hold": hold_equity}, os.path.join(workdir, "equity.png"),
        title=f"{config.symbol} test period {period}, no costs",
    )
    return {
        **result.summary,
        **{k: rounded(v, 4 if k.startswith("model_") else 6) for k, v in seed_statistics("", figures).items()},
        **{f"{split}_up_day_fraction": round(float(np.mean(stocks.next_return[split] > 0)), 6) for split in SPLITS},
        **{f"buy_hold_{k}": round(v, 4) for k, v in hold_trading.items()},
        "beats_buy_hold_sharpe": bool(np.mean(figures["model_sharpe"]) > hold_trading["sharpe"]),
        "target_scale": round(scale, 6),
        "symbol": config.symbol,
        "test_period": period,
        "test_days": len(predicted_N),
        "plots": ["predictions.png", "equity.png", "learning_curves.png"],
        "workdir": workdir,
    }


if __name__ == "__main__":
    sys.exit(cli.run(main, Config, prog="stock_forecast"))
