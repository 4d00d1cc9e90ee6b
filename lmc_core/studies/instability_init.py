"""Notebook 01: instability at initialisation (Frankle et al. 2020 on a small transformer LM).

From each of several initialisations, copies are trained with different SGD noise (data order and dropout
masks); every pair of copies of one initialisation is interpolated linearly and the error, loss and
perplexity barriers are measured on windows spread over every train and test play. The headline follows
Frankle et al.'s criterion (the error barrier in absolute points against 2 points), with an interval that
resamples initialisations first, then pairs. A noise floor (a copy against itself a little earlier) and a
word-level panel sit beside the main, character-level result.
"""
from __future__ import annotations

import pandas as pd

from ..analysis.interpolate import alpha_grid, interpolation_curve
from ..analysis.metrics import METRICS, barrier_table
from ..config import ConfigError, check_int
from ..ensemble import copy_state
from ..publish.paths import shown
from ..publish.tb import command as tb_command
from ..publish.tb import write_history
from ..runs.layout import tensorboard_dir
from . import instability_init_figures as figs
from .common import StudyResult, prepare
from .lm_setup import (STUDY_DEFAULTS, add_word_equivalent, chars_per_word, check_lm_params, copy_seeds,
                       eval_splits, load_study_corpus, lm_spec, pairs_of)

PREFIX = "01"
WORD_METRICS = ("loss_word", "ppl_word")

PROFILES = {
    # seconds: a narrow model, a small vocabulary, a few dozen steps
    "smoke": {**STUDY_DEFAULTS, "level": "char", "model_overrides": {"d_model": 32, "d_ff": 32}, "vocab_cap": 2000,
              "steps": 40,
              "inits": 2, "copies": 2, "alphas": 5, "eval_tokens": 2000, "floor_steps": 5, "decay_frac": 0.25,
              "variant": {"level": "word", "vocab_cap": 500, "steps": 20}},
    # minutes on a 2-core CPU: the PTB study's post-norm model narrowed to d=64, on characters (a small
    # vocabulary, so a step is cheap); 3 initialisations x 4 copies = 18 pairs; the last quarter of training
    # decays the rate to 0 so the endpoints sit at their basin floor. The word-level panel: the same model on
    # words (a 1000-word vocabulary), 3 initialisations x 2 copies, shorter.
    "quick": {**STUDY_DEFAULTS, "level": "char", "model_overrides": {"d_model": 64, "d_ff": 64}, "steps": 3000,
              "inits": 3, "copies": 4, "alphas": 21, "eval_tokens": 12000, "floor_steps": 100, "decay_frac": 0.25,
              "variant": {"level": "word", "vocab_cap": 1000, "steps": 1500, "copies": 2}},
    # the PTB study's setting (its d=200 model, SGD lr 2.5, StepLR 0.95 per epoch, clipping 0.5, 8 epochs) on
    # the word-level Shakespeare corpus, or on PTB with overrides corpus="ptb", data_path=<folder>; the
    # character-level model beside it as the variant (GPU)
    "paper": {**STUDY_DEFAULTS, "steps": 0, "epochs": 8, "inits": 3, "copies": 4, "alphas": 31,
              "eval_tokens": None, "floor_steps": 200, "variant": {"level": "char", "vocab_cap": 10000}},
}
VARIANT_KEYS = ("level", "vocab_cap", "steps", "epochs", "copies", "inits", "model_overrides", "decay_frac",
                "eval_tokens")


def check_params(p: dict) -> None:
    """Every check that needs no data: bad input stops here, before loading or training anything."""
    check_int("inits", p["inits"], 1)
    check_int("copies", p["copies"], 2)
    check_int("floor_steps", p["floor_steps"], 1)
    check_lm_params(p)
    variant = p["variant"]
    if variant is not None:
        if not isinstance(variant, dict):
            raise ConfigError(f"variant={variant!r} must be None or a dict of settings for the second panel, e.g. "
                              '{"level": "word", "vocab_cap": 1000, "steps": 1500}')
        unknown = sorted(set(variant) - set(VARIANT_KEYS))
        if unknown:
            raise ConfigError(f"variant has unknown key(s) {unknown}; it may set {list(VARIANT_KEYS)}")
        check_params({**p, **variant, "variant": None})
    for q in panels(p).values():
        lm_spec(q, 2, max(q["steps"] or 1, q["floor_steps"] + 1), copy_seeds(q, q["inits"], q["copies"])).validate()


def panels(p: dict) -> dict[str, dict]:
    """The parameters of each panel: the main setting and, when given, the variant."""
    out = {"main": p}
    if p["variant"]:
        out["variant"] = {**p, **p["variant"], "variant": None}
    return out


def run(params: dict | None = None) -> StudyResult:
    """Train every panel's copies, interpolate every pair, write figures, CSVs and the summary."""
    p, fig_dir, store, cache_dir, device = prepare(PROFILES, params, check_params)
    alphas = alpha_grid(p["alphas"])
    curves, floors, runs, histories = [], [], [], {}
    for name, q in panels(p).items():
        corpus, steps = load_study_corpus(q, cache_dir)
        if steps <= q["floor_steps"]:
            raise ConfigError(f"floor_steps={q['floor_steps']} must be below the training length ({steps} steps)")
        spec = lm_spec(q, len(corpus.vocab), steps, copy_seeds(q, q["inits"], q["copies"]),
                       checkpoints=(steps - q["floor_steps"],))
        run_ = store.get(spec, corpus.train, device, p["progress"])
        ev = eval_splits(corpus, spec.model.context, q["eval_tokens"], q["eval_seed"])
        cpw = chars_per_word(q, cache_dir) if q["level"] == "char" else None
        label = f"{q['level']} level" + ("" if name == "main" or q["level"] != p["level"] else " (variant)")
        for i in range(q["inits"]):
            for a, b in pairs_of(q["copies"]):
                c = _curve(spec, copy_state(run_.state, i * q["copies"] + a),
                           copy_state(run_.state, i * q["copies"] + b), ev, alphas, p, device, cpw)
                curves.append(c.assign(panel=label, init=i, pair=f"{i}:{a}-{b}"))
            earlier = copy_state(store.checkpoint(spec, steps - q["floor_steps"]), i * q["copies"])
            f = _curve(spec, earlier, copy_state(run_.state, i * q["copies"]), ev, alphas, p, device, cpw)
            floors.append(f.assign(panel=label, init=i, pair=f"{i}:0 vs itself {q['floor_steps']} steps earlier"))
        histories[label] = run_.history.assign(panel=label, init=lambda h: h["copy"] // q["copies"])
        runs.append({"panel": label, "run": run_.path.name, "copies": spec.k, "inits": q["inits"],
                     "pairs": q["inits"] * len(pairs_of(q["copies"])), "steps": steps,
                     "schedule": _schedule_words(spec.train), "trained_now": run_.trained_now, "device": str(device),
                     "train_tokens": corpus.train.numel(), "vocab": len(corpus.vocab),
                     "eval_tokens": int(c.tokens.iloc[0]), "chars_per_word": cpw, "store": run_.path})
        if p["tensorboard"]:  # from the stored loss log: works for runs trained now and for cached ones
            write_history(tensorboard_dir(run_.path) , run_.history)
    curves, floors = pd.concat(curves, ignore_index=True), pd.concat(floors, ignore_index=True)
    metrics = METRICS + tuple(m for m in WORD_METRICS if m in curves)
    barriers = barrier_table(curves, ("panel", "init", "pair"), metrics)
    floor_barriers = barrier_table(floors, ("panel", "init", "pair"), metrics)
    summary = figs.summary_table(barriers, floor_barriers, p["definition"])
    res = StudyResult(params=p, tables={"curves": curves, "barriers": barriers, "floor": floor_barriers,
                                        "summary": summary, "run": pd.DataFrame(runs)})
    res.tables["run"]["store"] = res.tables["run"]["store"].map(shown)
    if p["tensorboard"]:
        res.tensorboard = "\n".join(tb_command(tensorboard_dir(r["store"])) for r in runs)
    history = pd.concat(histories.values(), ignore_index=True)
    fig, d = figs.training_figure(history, res.tables["run"], p["profile"])
    res.add_figure(f"{PREFIX}_training", fig, d)
    fig, d = figs.interpolation_figure(curves, p["profile"])
    res.add_figure(f"{PREFIX}_interpolation", fig, d)
    fig, d = figs.instability_figure(barriers, floor_barriers, p["definition"], p["profile"])
    res.add_figure(f"{PREFIX}_instability", fig, d)
    res.add_csv(f"{PREFIX}_barriers", barriers)
    res.add_csv(f"{PREFIX}_noise_floor", floor_barriers)
    res.add_csv(f"{PREFIX}_curves", pd.concat([curves, floors.assign(floor=True)], ignore_index=True))
    res.publish(fig_dir, PREFIX, figs.describe(barriers, floor_barriers, res.tables["run"], p))
    return res


def _curve(spec, a, b, ev, alphas, p, device, cpw):
    c = interpolation_curve(spec.model, a, b, ev, alphas, None, p["eval_batch"], device)
    return add_word_equivalent(c, cpw) if cpw else c


def _schedule_words(tc) -> str:
    if tc.schedule == "cosine":
        return f"SGD lr {tc.lr:g} constant to step {tc.hold_steps}, cosine to 0 at {tc.steps}"
    return f"SGD lr {tc.lr:g}, StepLR x{tc.gamma:g} per epoch"
