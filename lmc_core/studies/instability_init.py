"""Notebook 01: instability at initialisation (Frankle et al. 2020 on a small transformer LM).

From each of several initialisations, copies are trained with different SGD noise (data order and dropout
masks); every pair of copies of one initialisation is interpolated linearly and the error, loss and
perplexity barriers are measured on windows spread over every train and test play. The headline follows
Frankle et al.'s criterion (the error barrier in absolute points against 2 points); pairs are averaged within
their initialisation, the independent unit. A bootstrap over the evaluation windows gives each barrier's evaluation noise;
shorter training lengths of the same setting show how the barrier depends on T, and a word-level panel sits beside
the main, character-level result.
"""
from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from ..analysis.eval_noise import bootstrap_se, per_unit
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
from .params import MAX_UNITS, STEPS, UNITS, Int, ListOf, Mapping, Maybe, param


WORD_METRICS = ("loss_word", "ppl_word")
VARIANT_KEYS = ("level", "vocab_cap", "steps", "epochs", "copies", "inits", "model_overrides", "decay_frac",
                "eval_tokens")


@dataclass(frozen=True)
class Params(LMParams):
    """Notebook 01's parameters (LMParams plus these)."""

    inits: int = param(3, "initialisations (the independent units)", UNITS)
    copies: int = param(4, "copies per initialisation (every pair of them is scored)", Int(2, MAX_UNITS))
    lengths: list = param([], "shorter training lengths (steps) of the main panel, each trained with 2 copies of every "
                          "initialisation and the same schedule shape: how the barrier depends on T", ListOf(STEPS, 0))
    resamples: int = param(1000, "bootstrap resamples of the evaluation windows (each barrier's evaluation noise)",
                           Int(100, 100000))
    variant: dict | None = param(None, "settings of a second panel, e.g. {'level': 'word', 'steps': 1500}",
                                 Maybe(Mapping()))

    def check(self) -> None:
        super().check()
        if self.variant is not None:
            unknown = sorted(set(self.variant) - set(VARIANT_KEYS))
            if unknown:
                raise ConfigError(f"variant has unknown key(s) {unknown}; it may set {list(VARIANT_KEYS)}")
            self.replace(**self.variant, variant=None, lengths=[]).validate()
        if self.lengths and self.epochs:
            raise ConfigError(f"lengths={self.lengths} are steps: set epochs=0 and steps, or lengths=[]")
        if any(t >= self.steps for t in self.lengths) or len(set(self.lengths)) < len(self.lengths):
            raise ConfigError(f"lengths={self.lengths} must be distinct and shorter than steps={self.steps} (the main "
                              "panel's length)")
        for q in panels(self).values():
            lm_spec(q, 2, q.steps or 1, copy_seeds(q, q.inits, q.copies)).validate()


def panels(p: Params) -> dict[str, Params]:
    """The parameters of each panel: the main setting, its shorter training lengths (2 copies of every
    initialisation) and, when given, the variant."""
    out = {"main": p}
    for t in sorted(p.lengths):
        out[f"T={t}"] = p.replace(steps=t, copies=2, lengths=[], variant=None)
    if p.variant:
        out["variant"] = p.replace(**p.variant, variant=None, lengths=[])
    return out


# eval_tokens sized by the barrier's evaluation noise (bench/eval_precision.py): 12,000 tokens left a pair's barrier a
# standard error of 0.20-0.27 points of error (% of loss); 24,000 bring it to about a tenth of the 2-point criterion.
# 6 initialisations x 3 copies (6 x 2 left the units' means noisier: [1.33, 2.86] points; with 5 x 3 a rebuild on
# another CPU moved the interval's lower end from 2.63 to 1.98 points). No word panel: on words (1000-word vocabulary,
# 3 x 3 copies) test error stayed at 71.8 % / 71.1 % after 1500 / 3000 steps; `paper` is words. Trained compiled with
# the counter-based dropout masks and, on a CPU with bf16 instructions, bf16 autocast (as notebook 02's quick
# profile): 1.6-1.8x the eager fp32 step at K = 8 on one thread (bench/ensemble.py).
QUICK = Params(level="char", model_overrides={"d_model": 64, "d_ff": 64}, steps=3000, decay_frac=0.25, inits=6,
               copies=3, lengths=[1500], eval_tokens=24000, precision="auto", dropout_masks="hash", compile=True)


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
                               steps=40, inits=2, copies=2, lengths=[20], alphas=5, eval_tokens=2000, resamples=200,
                               precision="fp32", dropout_masks="device", compile=False,
                               variant={"level": "word", "vocab_cap": 500, "steps": 20}),
        # minutes on a 2-core CPU: the PTB study's post-norm model narrowed to d=64, on characters; 6 initialisations
        # x 3 copies at T = 3000 and x 2 at T = 1500; the last quarter of training decays the rate to 0 so the
        # endpoints sit at their basin floor.
        "quick": QUICK,
        # the PTB study's setting (its d=200 model, SGD lr 2.5, StepLR 0.95 per epoch, clipping 0.5, 8 epochs) on
        # word-level Shakespeare, or on PTB with overrides corpus="ptb", data_path=<folder>; the character-level
        # model as the variant (GPU)
        # (fused_cross_entropy: the 10,000-word output layer is the step's largest cost; bench/ensemble.py +fused)
        "paper": Params(profile="paper", steps=0, epochs=8, precision="auto", dropout_masks="hash", inits=5,
                        fused_cross_entropy=True,
                        copies=3, alphas=31, eval_tokens=48000,  # SE about half of 12,000's (above)
                        variant={"level": "char", "vocab_cap": 10000}),
    }

    def compute(self, p: Params, ctx) -> dict:
        """Train every panel's copies, interpolate every pair, bootstrap each barrier over the evaluation windows."""
        curves, noise, runs, histories = [], [], [], []
        for name, q in panels(p).items():
            corpus, steps = load_study_corpus(q, ctx.cache_dir)
            spec = lm_spec(q, len(corpus.vocab), steps, copy_seeds(q, q.inits, q.copies))
            run = ctx.store.get(spec, corpus.train, ctx.device, p.progress)
            label = panel_label(p, name, q, steps)
            c, se, cpw = panel_curves(q, spec, run, ctx, corpus, label)
            curves.append(c)
            noise.append(se)
            histories.append(run.history.assign(panel=label, init=lambda h: h["copy"] // q.copies))
            runs.append({**figs.run_row(q, spec, run, label, corpus, steps, ctx.device, int(c.tokens.iloc[0]), cpw),
                         "role": name if name in ("main", "variant") else "length"})
            if p.tensorboard:  # from the stored loss log: works for runs trained now and for cached ones
                write_history(tensorboard_dir(run.path), run.history)
        curves, noise = pd.concat(curves, ignore_index=True), pd.concat(noise, ignore_index=True)
        metrics = METRICS + tuple(m for m in WORD_METRICS if m in curves)
        barriers = barrier_table(curves, ("panel", "init", "pair"), metrics)
        run_table = pd.DataFrame(runs)
        data = {"run": run_table.assign(store=run_table.store.map(shown)), "curves": curves, "eval_noise": noise,
                "barriers": barriers, "history": pd.concat(histories, ignore_index=True),
                "summary": figs.summary_table(barriers, noise, p.definition)}
        if p.tensorboard:
            data["tensorboard"] = "\n".join(tb_command(tensorboard_dir(r["store"])) for r in runs)
        return data

    def figures(self, p: Params, data: dict):
        yield "training", *figs.training_figure(data["history"], data["run"], p.profile)
        yield "interpolation", *figs.interpolation_figure(data["curves"], p.profile)
        yield "instability", *figs.instability_figure(data["barriers"], data["eval_noise"], p.definition, p.profile)
        if p.lengths:
            yield "instability_vs_length", *figs.length_figure(data["barriers"], data["run"], p.definition, p.profile)

    def csvs(self, p: Params, data: dict) -> dict:
        return {"barriers": data["barriers"], "eval_noise": data["eval_noise"], "curves": data["curves"]}

    def findings(self, p: Params, data: dict):
        return figs.describe(data["barriers"], data["eval_noise"], data["run"], p)

    def setting(self, p: Params) -> str:
        return figs.setting_words(p)


def panel_label(p: Params, name: str, q: Params, steps: int) -> str:
    """A panel's name in tables and figures: its level, and its length when the main panel has other lengths."""
    label = f"{q.level} level"
    if name == "variant":
        return label + (" (variant)" if q.level == p.level else "")
    return label + (f", T = {steps}" if p.lengths else "")


def panel_curves(q: Params, spec, run, ctx, corpus, label: str):
    """Every pair's path of one panel, the evaluation noise of its barriers (the standard error over `resamples`
    bootstrap resamples of the evaluation windows, per pair, split and metric, barrier q.definition) and the
    characters per word-level token of a character panel (None for a word panel)."""
    ev = eval_splits(corpus, spec.model.context, q.eval_tokens, q.eval_seed)
    cpw = chars_per_word(q, ctx.cache_dir) if q.level == "char" else None
    alphas = alpha_grid(q.alphas)
    curves, noise = [], []
    for i in range(q.inits):
        for a, b in pairs_of(q.copies):
            c, res = interpolation_curve(spec.model, copy_state(run.state, i * q.copies + a),
                                         copy_state(run.state, i * q.copies + b), ev, alphas, None, q.eval_batch,
                                         ctx.device, keep=("examples",))
            pair = f"{i}:{a}-{b}"
            curves.append((add_word_equivalent(c, cpw) if cpw else c).assign(panel=label, init=i, pair=pair))
            for j, (split, r) in enumerate(res.items()):
                for m, metric in enumerate(("error", "loss")):
                    se = bootstrap_se(alphas, per_unit(r, metric, spec.model.context), metric, q.resamples,
                                      seed=q.eval_seed + 1000 * i + 100 * a + 10 * b + 2 * j + m,
                                      definitions=(q.definition,))
                    noise.append({"panel": label, "init": i, "pair": pair, "split": split, "metric": metric,
                                  "definition": q.definition, "se": se[q.definition], "windows": r.tokens //
                                  spec.model.context, "resamples": q.resamples})
    return pd.concat(curves, ignore_index=True), pd.DataFrame(noise), cpw


STUDY = InstabilityAtInit()
run = STUDY.run
PROFILES = STUDY.profiles
