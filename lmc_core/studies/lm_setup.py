"""What notebooks 01 and 02 share: the PTB study's model and optimiser, the corpus, the schedule that brings the
endpoints to their basin floor, evaluation samples spread over every play, and the scale conversions between
character and word models."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..analysis import barrier as B
from ..config import MODEL_PRESETS, ConfigError, DataConfig, ModelConfig, RunSpec, Seeds, TrainConfig, model_preset
from ..data import CORPORA, LEVELS, load_corpus
from ..data.batches import Examples
from ..data.loader import spread_windows
from ..publish.paths import resolve
from ..train.trainer import resolve_precision
from .params import (ALPHAS, BATCH, DEFINITION, EXAMPLES, MAX_SEED, MAX_STEPS, MAX_VOCAB, RATE, Bool, Choice, Int,
                     Mapping, Maybe, Real, StudyParams, Text, param)


@dataclass(frozen=True)
class LMParams(StudyParams):
    """The settings notebooks 01 and 02 share: study 1's model and optimiser (SGD lr 2.5, StepLR 0.95 per epoch,
    clipping 0.5, batch 16 x bptt 35, dropout 0.2, 8 epochs), the corpus and the evaluation sample. decay_frac > 0
    replaces StepLR by a constant rate and a cosine decay to 0 over the last decay_frac of training, so that the
    endpoints reach the floor of their basin (a run shorter than an epoch never steps StepLR)."""

    model: str = param("ptb-transformer", "model preset (lmc_core.MODEL_PRESETS)", Choice(tuple(MODEL_PRESETS)))
    model_overrides: dict = param({}, "model fields to change, e.g. {'d_model': 64}", Mapping())
    corpus: str = param("shakespeare", "corpus (shakespeare works offline; ptb needs data_path)", Choice(CORPORA))
    level: str = param("word", "tokens: word | char | bpe | gpt2", Choice(LEVELS))
    vocab_cap: int = param(10000, "word level: the vocabulary's cap", Int(2, MAX_VOCAB))
    data_path: str | None = param(None, "corpus='ptb': a folder with ptb.train.txt, ptb.valid.txt, ptb.test.txt",
                                  Maybe(Text()))
    optimizer: str = param("sgd", "sgd | adam | adamw", Choice(("sgd", "adam", "adamw")))
    lr: float = param(2.5, "peak learning rate", RATE)
    gamma: float = param(0.95, "StepLR factor per epoch (decay_frac = 0)", Real(0, 1, lo_open=True))
    clip_norm: float = param(0.5, "per-copy gradient-norm clipping", RATE)
    batch_size: int = param(16, "sequences per step", BATCH)
    first_seed: int = param(1, "the first data/dropout seed", Int(0, MAX_SEED))
    definition: str = param(B.DEFAULT, "the barrier definition of the headline", DEFINITION)
    eval_batch: int = param(32, "windows per evaluation batch", BATCH)
    epochs: int = param(0, "training length in epochs (0: use steps)", Int(0, MAX_STEPS))
    steps: int = param(1000, "training length in steps (when epochs = 0)", Int(0, MAX_STEPS))
    decay_frac: float = param(0.0, "share of training over which the rate decays to 0 (0: StepLR)",
                              Real(0, 1, hi_open=True))
    eval_seed: int = param(0, "seed of the evaluation windows", Int(0, MAX_SEED))
    alphas: int = param(21, "points on each path, endpoints included", ALPHAS)
    eval_tokens: int | None = param(12000, "evaluation tokens per split (None: the whole split)", Maybe(EXAMPLES))
    precision: str = param("fp32", "training precision: fp32, bf16 (autocast) or auto (bf16 on a GPU or a CPU with "
                           "bf16 instructions, else fp32); the barriers are evaluated in fp32 either way",
                           Choice(("fp32", "bf16", "auto")))
    dropout_masks: str = param("device", "dropout masks: device (a generator per copy on a CPU, the hash on a GPU) or "
                               "hash (the same masks on every device; needed by compile)", Choice(("device", "hash")))
    compile: bool = param(False, "train through torch.compile (pays on long runs: bench/ensemble.py's break-even)",
                          Bool())
    fused_cross_entropy: bool = param(False, "train with the output layer and cross-entropy as one operation that "
                                      "never holds the logits (pays with a large vocabulary: bench/ensemble.py "
                                      "+fused); it rounds differently, so it is a different run", Bool())

    def check(self) -> None:
        """Rules between the shared fields."""
        if self.data_path is not None and self.corpus != "ptb":
            raise ConfigError(f"data_path is only read by corpus='ptb' (a folder with ptb.train.txt, ...), "
                              f"not by corpus={self.corpus!r}")
        if not self.epochs and not self.steps:
            raise ConfigError("set steps (> 0) or epochs (> 0): the training length")
        check_model_overrides(self.model_overrides)
        if self.compile and self.dropout_masks != "hash":
            raise ConfigError("compile=True needs dropout_masks='hash' (a torch.Generator per copy cannot be "
                              "compiled); set dropout_masks='hash'")


DEFINITION_WORDS = {"mean": "max over α minus the endpoints' mean",
                    "chord": "max height above the chord between the endpoints",
                    "subchord": "max height above any chord between two points of the path",
                    "midpoint": "value at α = ½ minus the endpoints' mean"}


def check_model_overrides(overrides: dict, set_by_study: tuple[str, ...] = ("vocab_size",), config: type = ModelConfig
                          ) -> None:
    """model_overrides must name known model fields the study does not set itself."""
    known = {f.name for f in dataclasses.fields(config)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ConfigError(f"model_overrides has unknown key(s) {unknown}; valid keys are "
                          f"{sorted(known - set(set_by_study))}")
    clash = sorted(set(overrides) & set(set_by_study))
    if clash:
        raise ConfigError(f"model_overrides may not set {clash}: the study sets it from the data "
                          "(the corpus vocabulary)")


def train_config(p: LMParams, steps: int, checkpoints: tuple[int, ...] = ()) -> TrainConfig:
    """The study's optimiser: StepLR per epoch, or (decay_frac > 0) a constant rate then a cosine decay to 0
    over the last decay_frac of training."""
    common = dict(steps=steps, batch_size=p.batch_size, optimizer=p.optimizer, lr=p.lr,
                  clip_norm=p.clip_norm, save_every=max(steps // 10, 1), checkpoints=checkpoints,
                  precision=resolve_precision(p.precision), dropout_masks=p.dropout_masks, compile=p.compile,
                  fused_cross_entropy=p.fused_cross_entropy)
    if p.decay_frac:
        hold = int(round(steps * (1 - p.decay_frac)))
        return TrainConfig(schedule="cosine", hold_steps=min(hold, steps - 1), **common)
    return TrainConfig(schedule="step", gamma=p.gamma, **common)


def lm_spec(p: LMParams, vocab_size: int, steps: int, seeds: tuple[Seeds, ...], checkpoints: tuple[int, ...] = ()
            ) -> RunSpec:
    """The RunSpec of the given copies."""
    model = model_preset(p.model, vocab_size=vocab_size, **p.model_overrides)
    data = DataConfig(corpus=p.corpus, level=p.level, vocab_cap=p.vocab_cap, path=p.data_path)
    return RunSpec(model=model, data=data, train=train_config(p, steps, checkpoints), seeds=seeds)


def load_study_corpus(p: LMParams, cache_dir) -> tuple:
    """(corpus, total steps T) for a study's parameters; T from `epochs` when set. A relative data_path
    is taken from the project's home (lmc_core.publish.paths), as the other folders are."""
    path = p.data_path
    if path is not None and not Path(path).expanduser().exists() and resolve(path, path).exists():
        path = str(resolve(path, path))  # relative to the project's home, not to where the kernel started
    corpus = load_corpus(p.corpus, level=p.level, vocab_cap=p.vocab_cap, path=path,
                         cache_dir=str(cache_dir))
    if p.epochs:
        context = model_preset(p.model, **p.model_overrides).context
        steps = p.epochs * ((corpus.train.numel() - 1) // context // p.batch_size)
    else:
        steps = p.steps
    return corpus, steps


def eval_splits(corpus, context: int, max_tokens: int | None, seed: int) -> dict[str, Examples]:
    """{"train", "test"}: windows spread over every play of the split (a seeded sample of max_tokens tokens, or
    the whole split), the same for every model and every alpha."""
    out = {}
    for split in ("train", "test"):
        stream = corpus.split(split)
        n = stream.numel() if max_tokens is None else max_tokens
        out[split] = Examples(tokens=spread_windows(stream, context, n, seed))
    return out


def chars_per_word(p: LMParams, cache_dir, split: str = "test") -> float:
    """Characters (with line ends) per word-level token (with <eos>) of the same plays: the factor that turns a
    character model's loss per character into nats per word-equivalent, so its barriers sit on the scale of a
    word model's (the PTB study's)."""
    char = load_corpus(p.corpus, level="char", vocab_cap=p.vocab_cap, path=p.data_path,
                       cache_dir=str(cache_dir))
    word = load_corpus(p.corpus, level="word", vocab_cap=p.vocab_cap, path=p.data_path,
                       cache_dir=str(cache_dir))
    return float(char.split(split).numel() / word.split(split).numel())


def add_word_equivalent(curves, cpw: float):
    """Curves of a character model with loss and perplexity per word-equivalent (loss x characters per word)."""
    out = curves.copy()
    out["loss_word"] = out["loss"] * cpw
    with np.errstate(over="ignore"):
        out["ppl_word"] = np.exp(out["loss_word"])
    return out


def copy_seeds(p: LMParams, inits: int, copies: int) -> tuple[Seeds, ...]:
    """`copies` copies of each of `inits` initialisations: init seeds 0.., distinct data and dropout seeds."""
    s0 = p.first_seed
    return tuple(Seeds(init=i, data=s0 + i * copies + c, dropout=s0 + i * copies + c)
                 for i in range(inits) for c in range(copies))


def pairs_of(copies: int) -> list[tuple[int, int]]:
    """Every pair (a, b), a < b, among the copies of one initialisation."""
    return [(a, b) for a in range(copies) for b in range(a + 1, copies)]
