"""Character language modelling with ``TransformerLM`` (seed 000·13): model, decoding flags, run files, report.

``LMConfig`` holds the flags of a character LM experiment beyond its data: the model's sizes, the
optimizer's warm-up and weight decay (``nnjax.optim.adamw_warmup_cosine``) and how to decode.
A run trains through ``nnjax.tasks.fit`` with ``losses.next_token`` and leaves ``lm.msgpack``
(params) and ``vocab.json`` in its directory (``save_lm``); ``load_lm`` reads them back with the
sizes from the run's ``config.json``. ``sample_texts`` decodes from a model: sampled continuations
of the prompt (``nnjax.models.generation.generate``) or the beam-search results
(``lm_beam_search``); ``lm_report`` turns the run's summary into validation figures per character.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from nnjax.config import TrainConfig, check_divisible, option, parse_escapes
from nnjax.distributed import is_main_process
from nnjax.data import Dataset
from nnjax.data.chars import CharVocabulary
from nnjax.errors import ConfigError, DataUnavailableError
from nnjax.models.generation import generate, lm_beam_search
from nnjax.models.transformer import REMAT_POLICIES, TransformerLM
from nnjax.models.weights import load_params, save_params
from nnjax.train import RunResult
from nnjax.train.runner import rounded

WEIGHTS_FILE, VOCAB_FILE, SAMPLES_FILE = "lm.msgpack", "vocab.json", "samples.txt"


@dataclasses.dataclass(frozen=True)
class LMConfig(TrainConfig):
    """Flags of a character LM: ``TransformerLM`` sizes (nanoGPT's CPU configuration), AdamW, decoding."""

    optimizer: str = option(
        "adamw", "only adamw (beta2 0.99, clipped at gradient norm 1, warm-up then cosine decay)", choices=("adamw",)
    )
    warmup_steps: int = option(100, "linear warm-up steps, then cosine decay to --learning-rate / 10; 0: none",
                               minimum=0)
    weight_decay: float = option(0.1, "AdamW's decoupled weight decay, on matrices only")
    validation_fraction: float = option(
        0.0, "fraction of the training windows held out at random; 0: none (the held-out text is evaluated instead)"
    )
    block_size: int = option(64, "context length in characters")
    d_model: int = option(128, "transformer width (divisible by --num-heads)")
    num_heads: int = option(4, "attention heads per block")
    num_layers: int = option(4, "transformer blocks")
    dropout: float = option(0.0, "dropout rate on attention weights and residual branches")
    remat: str = option(
        "none", "what each block keeps for the backward pass: none (no rematerialisation: everything), full (its input "
        "only), dots (matmul outputs), dots_no_batch (weight matmuls only)", choices=tuple(REMAT_POLICIES),
    )
    sample: bool = option(False, "generate from the trained run in --workdir instead of training")
    prompt: str = option("\\n", "text the samples continue; the escapes \\n, \\t, \\r and \\\\ are decoded")
    num_samples: int = option(1, "continuations to sample; 0 (after training): none", minimum=0)
    max_new_tokens: int = option(500, "characters generated per sample")
    temperature: float = option(0.8, "sampling temperature; 0: greedy")
    top_k: int = option(0, "> 0: sample from the k most likely characters only; 0: from all", minimum=0)
    top_p: float = option(1.0, "< 1: sample from the smallest set of characters holding this probability; 1: all")
    eos: str = option("", "a character that ends a sample (escapes decoded); empty: none, a newline for beam search")
    beam_size: int = option(0, "> 0: beam search (with --sample) instead of sampling; 0: sample", minimum=0)
    length_alpha: float = option(0.6, "beam search length normalisation: scores divided by ((5 + n) / 6) ** alpha")

    def resumable_fields(self) -> set[str]:
        """``TrainConfig``'s, without the run's length (the cosine schedule depends on it), plus every decoding flag."""
        decoding = {"sample", "prompt", "num_samples", "max_new_tokens", "temperature", "top_k", "top_p", "eos",
                    "beam_size", "length_alpha"}
        return (super().resumable_fields() - {"epochs", "steps"}) | decoding

    def validate(self) -> None:
        super().validate()
        check_divisible(self, "d_model", "num_heads")
        if self.temperature < 0 or not 0.0 < self.top_p <= 1.0 or self.length_alpha < 0:
            raise ConfigError(
                "need --temperature >= 0, 0 < --top-p <= 1 and --length-alpha >= 0, got "
                f"{self.temperature}, {self.top_p}, {self.length_alpha}"
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
        """``--prompt`` with its backslash escapes decoded (``nnjax.config.parse_escapes``)."""
        return parse_escapes(self.prompt, "prompt")

    def eos_char(self) -> str:
        """The end-of-sample character: ``--eos`` decoded, or a newline for beam search when not given."""
        return parse_escapes(self.eos, "eos") or ("\n" if self.beam_size else "")

    def check_vocabulary(self, vocab: CharVocabulary) -> None:
        """``ConfigError`` naming the first character of ``--prompt`` or ``--eos`` that ``vocab`` lacks (the model
        could only read it as 'unknown')."""
        for flag, text in (("prompt", self.prompt_text()), ("eos", self.eos_char())):
            missing = next((c for c in text if not vocab.contains(c)), None)
            if missing is not None:
                raise ConfigError(
                    f"--{flag} has the character {missing!r} (U+{ord(missing):04X}) that the model's {len(vocab)}-character "
                    "vocabulary lacks; use characters of its training text"
                )


def make_lm(vocab_size: int, sizes: LMConfig | Mapping[str, Any]) -> TransformerLM:
    """The ``TransformerLM`` over ``vocab_size`` characters of a config (or of a run's ``config.json`` dict)."""
    get = sizes.get if isinstance(sizes, Mapping) else lambda name: getattr(sizes, name)
    return TransformerLM(
        vocab_size, get("block_size"), get("d_model"), get("num_heads"), get("num_layers"),
        dropout=get("dropout"), remat=get("remat") or "none",
    )


def save_lm(workdir: str, params: Any, vocab: CharVocabulary) -> None:
    """Write the trained ``params`` (``WEIGHTS_FILE``) and the ``vocab`` (``VOCAB_FILE``) into ``workdir`` (the main
    process only: every process of a multi-process run holds the same params)."""
    if not is_main_process():
        return
    save_params(os.path.join(workdir, WEIGHTS_FILE), params)
    vocab.to_json(os.path.join(workdir, VOCAB_FILE))


def load_lm(workdir: str) -> tuple[TransformerLM, Any, CharVocabulary]:
    """(model, params, vocabulary) of the run trained into ``workdir`` (sizes from its ``config.json``).

    ``DataUnavailableError`` naming the missing files when ``workdir`` holds no trained run.
    """
    paths = {name: os.path.join(workdir, name) for name in ("config.json", WEIGHTS_FILE, VOCAB_FILE)}
    missing = [p for p in paths.values() if not os.path.isfile(p)]
    if missing:
        raise DataUnavailableError(f"--sample: {', '.join(missing)} not found; train into --workdir first")
    with open(paths["config.json"]) as f:
        saved = json.load(f)
    vocab = CharVocabulary.from_json(paths[VOCAB_FILE])
    model = make_lm(len(vocab), saved)
    like = jax.eval_shape(model.init, jax.random.PRNGKey(0), jnp.zeros((1, model.block_size), jnp.int32))["params"]
    return model, load_params(paths[WEIGHTS_FILE], like=like), vocab


def sample_texts(config: LMConfig, model: TransformerLM, params: Any, vocab: CharVocabulary, key: jax.Array) -> list[str]:
    """Decoded texts, each the prompt plus its continuation.

    With ``config.beam_size`` K > 0: up to K beam-search results, best first, each ending at the EOS
    character or when the context window is full. Otherwise ``config.num_samples`` sampled
    continuations of up to ``config.max_new_tokens`` characters (temperature, top-k, top-p, EOS).
    The prompt keeps its last ``block_size - 1`` characters.
    """
    config.check_vocabulary(vocab)
    prompt_ids = vocab.encode(config.prompt_text())[-(model.block_size - 1) :]
    eos = config.eos_char()
    eos_id = vocab.id_of(eos) if eos else None
    if config.beam_size:
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


def write_samples(config: LMConfig, model: TransformerLM, params: Any, vocab: CharVocabulary, path: str) -> list[str]:
    """``config.num_samples`` sampled continuations of the prompt (never beam search), also written to ``path``."""
    samples = sample_texts(dataclasses.replace(config, beam_size=0), model, params, vocab, jax.random.PRNGKey(config.seed))
    if not is_main_process():
        return samples
    with open(path, "w", encoding="utf-8") as f:
        f.write(f"# temperature {config.temperature}, top-k {config.top_k}, top-p {config.top_p}\n")
        f.write("\n---\n".join(samples) + "\n")
    return samples


def sample_run(config: LMConfig) -> dict[str, Any]:
    """``--sample``: the decoded texts of the run trained into ``config.workdir`` and the decoding settings."""
    model, params, vocab = load_lm(config.workdir)
    texts = sample_texts(config, model, params, vocab, jax.random.PRNGKey(config.seed))
    mode = {"beam_size": config.beam_size} if config.beam_size else {
        "temperature": config.temperature, "top_k": config.top_k, "top_p": config.top_p
    }
    return {"samples": texts, **mode, "eos": config.eos_char() or None, "workdir": config.workdir}


def _validation_key(key: str) -> str:
    """A summary key as ``lm_report`` names it: ``test_*`` (the held-out text) → ``val_*``, ``val_*`` (random
    training windows) → ``val_windows_*``."""
    if key.startswith("test_"):
        return "val_" + key.removeprefix("test_")
    return "val_windows_" + key.removeprefix("val_") if key.startswith("val_") else key


def lm_report(result: RunResult, data: Dataset, block_size: int, params: Any) -> dict[str, Any]:
    """The run's summary with its test figures read as validation ones, per character.

    ``val_loss`` (nats per character) and ``val_accuracy`` are the summary's ``test_loss`` and
    ``test_accuracy`` (``data.test`` holds the held-out text), with their ``_std`` and ``_per_seed``
    under ``--seeds``; ``val_bpc`` = ``val_loss / ln 2`` (and per seed); ``tokens_per_s`` = training
    examples per second x ``block_size``; plus the vocabulary size, the characters of each split and the
    parameter count of one model's ``params``. With ``--validation-fraction`` > 0 the figures on the randomly
    held-out training windows are ``val_windows_*``.
    """
    summary = {_validation_key(key): value for key, value in result.summary.items()}
    bpc = {key.replace("val_loss", "val_bpc"): rounded(np.divide(value, math.log(2)).tolist())
           for key, value in summary.items() if key.startswith("val_loss")}
    return {
        **{key: value for key, value in summary.items() if key.startswith("val_loss")},
        **bpc,
        **summary,
        "tokens_per_s": round(summary.get("examples_per_s", 0.0) * block_size, 1),
        "vocab_size": data.num_classes,
        "train_chars": int(data.train["x"].size),
        "val_chars": int(data.test["x"].size),
        "num_params": sum(int(np.size(p)) for p in jax.tree.leaves(params)),
    }
