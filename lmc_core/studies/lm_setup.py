"""What notebooks 01 and 02 share: the PTB study's model and optimiser, the corpus, the schedule that brings the
endpoints to their basin floor, evaluation samples spread over every play, and the scale conversions between
character and word models."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from ..analysis import barrier as B
from ..config import ConfigError, DataConfig, RunSpec, Seeds, TrainConfig, check_real, model_preset
from ..data import CORPORA, LEVELS, load_corpus
from ..data.batches import Examples
from ..data.loader import spread_windows
from ..publish.paths import resolve
from .common import check_alphas, check_model_overrides, check_optional_positive, check_positive

# Study 1 trains with SGD lr 2.5, StepLR(0.95 per epoch), clipping 0.5, batch 16 x bptt 35, dropout 0.2, 8 epochs.
# decay_frac > 0 replaces StepLR with a constant rate and a cosine decay over the last decay_frac of training, so
# that the endpoints reach the floor of their basin (a run shorter than an epoch never steps StepLR).
STUDY_DEFAULTS = dict(model="ptb-transformer", model_overrides={}, corpus="shakespeare", level="word",
                      vocab_cap=10000, data_path=None, optimizer="sgd", lr=2.5, gamma=0.95, clip_norm=0.5,
                      batch_size=16, first_seed=1, definition=B.DEFAULT, eval_batch=32, epochs=0, decay_frac=0.0,
                      eval_seed=0)

DEFINITION_WORDS = {"mean": "max over α minus the endpoints' mean",
                    "chord": "max height above the chord between the endpoints",
                    "subchord": "max height above any chord between two points of the path",
                    "midpoint": "value at α = ½ minus the endpoints' mean"}


def check_lm_params(p: dict) -> None:
    """Every check of the shared LM settings that needs no data."""
    check_positive(p, "batch_size", "eval_batch")
    check_alphas(p)
    check_optional_positive(p, "eval_tokens")
    check_real("decay_frac", p["decay_frac"], 0, 1, hi_open=True)
    if p["definition"] not in B.DEFINITIONS:
        raise ConfigError(f"definition={p['definition']!r}; choose one of {list(B.DEFINITIONS)}")
    if p["corpus"] not in CORPORA:
        raise ConfigError(f"corpus={p['corpus']!r} is unknown; choose one of {list(CORPORA)} "
                          "(shakespeare works offline)")
    if p["level"] not in LEVELS:
        raise ConfigError(f"level={p['level']!r}; choose one of {list(LEVELS)}")
    if p["data_path"] is not None and p["corpus"] != "ptb":
        raise ConfigError(f"data_path is only read by corpus='ptb' (a folder with ptb.train.txt, ...), "
                          f"not by corpus={p['corpus']!r}")
    if p["epochs"]:
        check_positive(p, "epochs")
    else:
        check_positive(p, "steps")
    check_model_overrides(p["model_overrides"])


def train_config(p: dict, steps: int, checkpoints: tuple[int, ...] = ()) -> TrainConfig:
    """The study's optimiser: StepLR per epoch, or (decay_frac > 0) a constant rate then a cosine decay to 0
    over the last decay_frac of training."""
    common = dict(steps=steps, batch_size=p["batch_size"], optimizer=p["optimizer"], lr=p["lr"],
                  clip_norm=p["clip_norm"], save_every=max(steps // 10, 1), checkpoints=checkpoints)
    if p["decay_frac"]:
        hold = int(round(steps * (1 - p["decay_frac"])))
        return TrainConfig(schedule="cosine", hold_steps=min(hold, steps - 1), **common)
    return TrainConfig(schedule="step", gamma=p["gamma"], **common)


def lm_spec(p: dict, vocab_size: int, steps: int, seeds: tuple[Seeds, ...], checkpoints: tuple[int, ...] = ()
            ) -> RunSpec:
    """The RunSpec of the given copies."""
    model = model_preset(p["model"], vocab_size=vocab_size, **p["model_overrides"])
    data = DataConfig(corpus=p["corpus"], level=p["level"], vocab_cap=p["vocab_cap"], path=p["data_path"])
    return RunSpec(model=model, data=data, train=train_config(p, steps, checkpoints), seeds=seeds)


def load_study_corpus(p: dict, cache_dir) -> tuple:
    """(corpus, total steps T) for a study's parameters; T from `epochs` when set. A relative data_path
    is taken from the project's home (lmc_core.publish.paths), as the other folders are."""
    path = p["data_path"]
    if path is not None and not Path(path).expanduser().exists() and resolve(path, path).exists():
        path = str(resolve(path, path))  # relative to the project's home, not to where the kernel started
    corpus = load_corpus(p["corpus"], level=p["level"], vocab_cap=p["vocab_cap"], path=path,
                         cache_dir=str(cache_dir))
    if p["epochs"]:
        context = model_preset(p["model"], **p["model_overrides"]).context
        steps = p["epochs"] * ((corpus.train.numel() - 1) // context // p["batch_size"])
    else:
        steps = p["steps"]
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


def chars_per_word(p: dict, cache_dir, split: str = "test") -> float:
    """Characters (with line ends) per word-level token (with <eos>) of the same plays: the factor that turns a
    character model's loss per character into nats per word-equivalent, so its barriers sit on the scale of a
    word model's (the PTB study's)."""
    char = load_corpus(p["corpus"], level="char", vocab_cap=p["vocab_cap"], path=p["data_path"],
                       cache_dir=str(cache_dir))
    word = load_corpus(p["corpus"], level="word", vocab_cap=p["vocab_cap"], path=p["data_path"],
                       cache_dir=str(cache_dir))
    return float(char.split(split).numel() / word.split(split).numel())


def add_word_equivalent(curves, cpw: float):
    """Curves of a character model with loss and perplexity per word-equivalent (loss x characters per word)."""
    out = curves.copy()
    out["loss_word"] = out["loss"] * cpw
    with np.errstate(over="ignore"):
        out["ppl_word"] = np.exp(out["loss_word"])
    return out


def copy_seeds(p: dict, inits: int, copies: int) -> tuple[Seeds, ...]:
    """`copies` copies of each of `inits` initialisations: init seeds 0.., distinct data and dropout seeds."""
    s0 = p["first_seed"]
    return tuple(Seeds(init=i, data=s0 + i * copies + c, dropout=s0 + i * copies + c)
                 for i in range(inits) for c in range(copies))


def pairs_of(copies: int) -> list[tuple[int, int]]:
    """Every pair (a, b), a < b, among the copies of one initialisation."""
    return [(a, b) for a in range(copies) for b in range(a + 1, copies)]


def with_steps(spec: RunSpec, steps: int) -> RunSpec:
    """The spec with another training length (same everything else)."""
    return replace(spec, train=replace(spec.train, steps=steps))
