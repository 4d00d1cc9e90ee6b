"""Notebook 01: instability at initialisation (Frankle et al. 2020 on a small transformer LM).

From each of several initialisations, copies are trained with different SGD noise (data order and dropout
masks); every pair of copies of one initialisation is interpolated linearly and the error, loss and
perplexity barriers are measured on windows spread over every train and test play. The headline follows
Frankle et al.'s criterion (the error barrier in absolute points against 2 points); pairs are averaged within
their initialisation, the independent unit. A noise floor (a copy against itself a little earlier) and a
word-level panel sit beside the main, character-level result.
"""
from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from ..analysis.interpolate import alpha_grid, interpolation_curve
from ..analysis.metrics import METRICS, barrier_table
from ..config import ConfigError
from ..ensemble import copy_state
from ..publish.paths import shown
from ..publish.tb import command as tb_command
from ..publish.tb import write_history
from ..runs.layout import tensorboard_dir
from . import instability_init_figures as figs
from .base import Study
from .lm_setup import (LMParams, add_word_equivalent, chars_per_word, copy_seeds, eval_splits, lm_spec,
                       load_study_corpus, pairs_of)
from .params import MAX_UNITS, STEPS, UNITS, Int, Mapping, Maybe, param


WORD_METRICS = ("loss_word", "ppl_word")
VARIANT_KEYS = ("level", "vocab_cap", "steps", "epochs", "copies", "inits", "model_overrides", "decay_frac",
                "eval_tokens")


@dataclass(frozen=True)
class Params(LMParams):
    """Notebook 01's parameters (LMParams plus these)."""

    inits: int = param(3, "initialisations (the independent units)", UNITS)
    copies: int = param(4, "copies per initialisation (every pair of them is scored)", Int(2, MAX_UNITS))
    floor_steps: int = param(100, "the noise floor: a copy against itself this many steps before the end", STEPS)
    variant: dict | None = param(None, "settings of a second panel, e.g. {'level': 'word', 'steps': 1500}",
                                 Maybe(Mapping()))

    def check(self) -> None:
        super().check()
        if self.variant is not None:
            unknown = sorted(set(self.variant) - set(VARIANT_KEYS))
            if unknown:
                raise ConfigError(f"variant has unknown key(s) {unknown}; it may set {list(VARIANT_KEYS)}")
            self.replace(**self.variant, variant=None).validate()
        for q in panels(self).values():
            lm_spec(q, 2, max(q.steps or 1, q.floor_steps + 1), copy_seeds(q, q.inits, q.copies)).validate()


def panels(p: Params) -> dict[str, Params]:
    """The parameters of each panel: the main setting and, when given, the variant."""
    out = {"main": p}
    if p.variant:
        out["variant"] = p.replace(**p.variant, variant=None)
    return out


# eval_tokens sized by the barrier's evaluation noise (bench/eval_precision.py): 12,000 tokens left a pair's barrier a
# standard error of 0.20-0.27 points of error (% of loss); 24,000 bring it to about a tenth of the 2-point criterion
QUICK = Params(level="char", model_overrides={"d_model": 64, "d_ff": 64}, steps=3000, decay_frac=0.25,
               variant={"level": "word", "vocab_cap": 1000, "steps": 1500, "copies": 2}, eval_tokens=24000)


class InstabilityAtInit(Study):
    """Copies of one initialisation, different SGD noise: are the trained pairs linearly connected?"""

    prefix, notebook = "01", "01_instability_at_init"
    question = "Are two copies of one initialisation, trained with different SGD noise, linearly connected?"
    claim = ("Frankle et al. 2020: copies from initialisation are separated by an error barrier above 2 points "
             "(ResNet-20, CIFAR-10); the PTB transformer study: perplexity instability 13.7 % on test (its normalisation)")
    capped, capped_eval = {"eval_tokens": 512}, {"eval_tokens": 1}
    profiles = {
        # seconds: a narrow model, a small vocabulary, a few dozen steps
        "smoke": QUICK.replace(profile="smoke", model_overrides={"d_model": 32, "d_ff": 32}, vocab_cap=2000,
                               steps=40, inits=2, copies=2, alphas=5, eval_tokens=2000, floor_steps=5,
                               variant={"level": "word", "vocab_cap": 500, "steps": 20}),
        # minutes on a 2-core CPU: the PTB study's post-norm model narrowed to d=64, on characters; 3 initialisations
        # x 4 copies; the last quarter of training decays the rate to 0 so the endpoints sit at their basin floor.
        # The word-level panel: the same model on words (a 1000-word vocabulary), 3 x 2 copies, shorter.
        "quick": QUICK,
        # the PTB study's setting (its d=200 model, SGD lr 2.5, StepLR 0.95 per epoch, clipping 0.5, 8 epochs) on
        # word-level Shakespeare, or on PTB with overrides corpus="ptb", data_path=<folder>; the character-level
        # model as the variant (GPU)
        "paper": Params(profile="paper", steps=0, epochs=8, precision="auto", dropout_masks="hash",
                        alphas=31, eval_tokens=48000, floor_steps=200,  # SE about half of 12,000's (above)
                        variant={"level": "char", "vocab_cap": 10000}),
    }

    def compute(self, p: Params, ctx) -> dict:
        """Train every panel's copies, interpolate every pair and its noise floor."""
        curves, floors, runs, histories = [], [], [], []
        for name, q in panels(p).items():
            corpus, steps = load_study_corpus(q, ctx.cache_dir)
            if steps <= q.floor_steps:
                raise ConfigError(f"floor_steps={q.floor_steps} must be below the training length ({steps} steps)")
            spec = lm_spec(q, len(corpus.vocab), steps, copy_seeds(q, q.inits, q.copies),
                           checkpoints=(steps - q.floor_steps,))
            run = ctx.store.get(spec, corpus.train, ctx.device, p.progress)
            label = f"{q.level} level" + ("" if name == "main" or q.level != p.level else " (variant)")
            c, f, cpw = panel_curves(q, spec, run, ctx, corpus, label, steps)
            curves.append(c)
            floors.append(f)
            histories.append(run.history.assign(panel=label, init=lambda h: h["copy"] // q.copies))
            runs.append(figs.run_row(q, spec, run, label, corpus, steps, ctx.device, int(c.tokens.iloc[0]), cpw))
            if p.tensorboard:  # from the stored loss log: works for runs trained now and for cached ones
                write_history(tensorboard_dir(run.path), run.history)
        curves, floors = pd.concat(curves, ignore_index=True), pd.concat(floors, ignore_index=True)
        metrics = METRICS + tuple(m for m in WORD_METRICS if m in curves)
        barriers = barrier_table(curves, ("panel", "init", "pair"), metrics)
        floor = barrier_table(floors, ("panel", "init", "pair"), metrics)
        run_table = pd.DataFrame(runs)
        data = {"run": run_table.assign(store=run_table.store.map(shown)), "curves": curves, "floors": floors,
                "barriers": barriers, "floor": floor, "history": pd.concat(histories, ignore_index=True),
                "summary": figs.summary_table(barriers, floor, p.definition)}
        if p.tensorboard:
            data["tensorboard"] = "\n".join(tb_command(tensorboard_dir(r["store"])) for r in runs)
        return data

    def figures(self, p: Params, data: dict):
        yield "training", *figs.training_figure(data["history"], data["run"], p.profile)
        yield "interpolation", *figs.interpolation_figure(data["curves"], p.profile)
        yield "instability", *figs.instability_figure(data["barriers"], data["floor"], p.definition, p.profile)

    def csvs(self, p: Params, data: dict) -> dict:
        return {"barriers": data["barriers"], "noise_floor": data["floor"],
                "curves": pd.concat([data["curves"], data["floors"].assign(floor=True)], ignore_index=True)}

    def findings(self, p: Params, data: dict):
        return figs.describe(data["barriers"], data["floor"], data["run"], p)

    def setting(self, p: Params) -> str:
        return figs.setting_words(p)


def panel_curves(q: Params, spec, run, ctx, corpus, label: str, steps: int):
    """Every pair's path of one panel, each initialisation's noise floor (copy 0 against itself earlier) and the
    characters per word-level token of a character panel (None for a word panel)."""
    ev = eval_splits(corpus, spec.model.context, q.eval_tokens, q.eval_seed)
    cpw = chars_per_word(q, ctx.cache_dir) if q.level == "char" else None
    alphas = alpha_grid(q.alphas)

    def curve(a, b):
        c = interpolation_curve(spec.model, a, b, ev, alphas, None, q.eval_batch, ctx.device)
        return add_word_equivalent(c, cpw) if cpw else c

    early = ctx.store.checkpoint(spec, steps - q.floor_steps)
    curves, floors = [], []
    for i in range(q.inits):
        for a, b in pairs_of(q.copies):
            c = curve(copy_state(run.state, i * q.copies + a), copy_state(run.state, i * q.copies + b))
            curves.append(c.assign(panel=label, init=i, pair=f"{i}:{a}-{b}"))
        f = curve(copy_state(early, i * q.copies), copy_state(run.state, i * q.copies))
        floors.append(f.assign(panel=label, init=i, pair=f"{i}:0 vs itself {q.floor_steps} steps earlier"))
    return pd.concat(curves, ignore_index=True), pd.concat(floors, ignore_index=True), cpw


STUDY = InstabilityAtInit()
run = STUDY.run
PROFILES = STUDY.profiles
