"""Notebook 06: grokking under weight decay and the Fisher penalty (study 5's grokking notebook), and what grokked
circuits share: modular addition, a one-layer transformer without LayerNorm (Nanda et al. 2023), full-batch AdamW,
the seed study's grid of weight decay x sampled-label Fisher weight λ with `seeds` seeds per cell (each copy its own
weight decay and λ). When a copy groks: analysis.grok. All pairs of grokked seeds of the connectivity setting and of
the control (weight decay 0: memorises, never groks) at the end of training, after every method of
analysis.residual_methods, and pairs at the checkpoints before and after grokking; each seed's key frequencies
(analysis.fourier). The findings: grokking_summary.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..analysis import barrier as B
from ..analysis.checkpoint_paths import paths_over_training
from ..analysis.fourier import frequency_table, jaccard
from ..analysis.grok import cell_table, grok_table, grokked_seeds
from ..analysis.interpolate import alpha_grid
from ..analysis.residual_methods import QUANTITIES, barrier_columns, barriers_by_method, method_paths
from ..config import ConfigError, CopySettings, RunSpec, Seeds, TrainConfig
from ..data.modular import ModularDataConfig, modular_data
from ..ensemble import copy_state, stack_states
from ..families import SeqClassConfig, family_of
from ..publish.paths import shown
from ..publish.tb import command as tb_command, write_history
from ..runs.layout import tensorboard_dir
from . import grokking_figures as figs
from .base import Study
from .grokking_summary import describe
from .params import (ALPHAS, DEFINITION, MAX_BATCH, MAX_MODULUS, MAX_SEED, MAX_STEPS, MAX_UNITS, RATE, STEPS, UNITS,
                     WIDTH, Bool, Int, ListOf, Real, StudyParams, param)


@dataclass(frozen=True)
class Params(StudyParams):
    """Notebook 06's parameters; the defaults are the paper setting (one GPU)."""

    p: int = param(113, "the modulus: residues 0..p-1, predict (a + b) mod p", Int(3, MAX_MODULUS))
    train_frac: float = param(0.3, "share of the p² pairs for training", Real(0, 1, lo_open=True, hi_open=True))
    data_seed: int = param(0, "seed of the train/test split", Int(0, MAX_SEED))
    d_model: int = param(128, "residual width", WIDTH)
    n_heads: int = param(4, "attention heads (d_model must be divisible by it)", WIDTH)
    d_mlp: int = param(512, "MLP width", WIDTH)
    lr: float = param(1e-3, "AdamW learning rate", RATE)
    betas: list = param([0.9, 0.98], "AdamW betas", ListOf(Real(0, 1, hi_open=True), 2, 2))
    warmup: int = param(10, "linear warm-up steps", STEPS)
    fisher_batch: int = param(0, "training pairs the Fisher penalty is computed on (0: the full batch)", Int(0, MAX_BATCH))
    weight_decay: list = param([2.0, 1.0, 0.5, 0.25, 0.0], "the grid's weight decays", ListOf(Real(0)))
    fisher: list = param([1.0, 0.5, 0.25, 0.0], "the grid's Fisher penalty weights λ", ListOf(Real(0)))
    fisher_every: int = param(1, "compute the Fisher penalty every this many steps", STEPS)
    steps: int = param(40000, "full-batch training steps", STEPS)
    eval_every: int = param(100, "steps between evaluations of train and test accuracy", STEPS)
    checkpoints: int = param(8, "checkpoints kept over training (the barrier before and after grokking)", UNITS)
    alphas: int = param(11, "points on each path, endpoints included", ALPHAS)
    definition: str = param(B.DEFAULT, "the barrier definition of the findings", DEFINITION)
    seeds: int = param(3, "seeds per cell of the grid", UNITS)
    connect_setting: list = param([1.0, 0.0], "[weight decay, λ] of the connectivity setting",
                                  ListOf(Real(0), 2, 2))
    connect_seeds: int = param(5, "seeds of the connectivity setting (all pairs of its grokked seeds)", Int(3, MAX_UNITS))
    control_setting: list = param([0.0, 0.0], "[weight decay, λ] of the control (never groks)",
                                  ListOf(Real(0), 2, 2))
    trajectory_pairs: int = param(3, "pairs followed over the checkpoints", UNITS)
    key_factor: float = param(2.0, "a key frequency carries this many times the uniform share", RATE)
    learn_steps: int = param(200, "steps of the learned alignment", STEPS)
    learn_lr: float = param(1e-2, "learning rate of the learned alignment", RATE)
    learn_units: bool = param(False, "the learned alignment also learns the MLP permutation", Bool())
    grok_evals: int = param(20, "a grok holds the accuracy for this many consecutive evaluations (0: to the end)",
                            Int(0, MAX_STEPS))

    def check(self) -> None:
        grid = [[float(w), float(f)] for w in self.weight_decay for f in self.fisher]
        for name in ("connect_setting", "control_setting"):
            if [float(x) for x in getattr(self, name)] not in grid:
                raise ConfigError(f"{name}={getattr(self, name)!r} is not in the grid weight_decay x fisher")
        if self.connect_seeds < self.seeds:
            raise ConfigError(f"connect_seeds={self.connect_seeds} must be >= seeds={self.seeds}")
        if self.d_model % self.n_heads:
            raise ConfigError(f"d_model={self.d_model} must be divisible by n_heads={self.n_heads}")


def copies_table(p: Params) -> pd.DataFrame:
    """One row per copy: weight decay, λ, seed (1..`seeds` in every cell, 1..`connect_seeds` in the connectivity
    setting)."""
    n = {(float(w), float(f)): p.seeds for w in p.weight_decay for f in p.fisher} | {
        tuple(float(x) for x in p.connect_setting): p.connect_seeds}
    return pd.DataFrame([{"weight_decay": w, "fisher": f, "seed": s} for (w, f), k in n.items()
                         for s in range(1, k + 1)])


def grid_spec(p: Params, n_train: int, copies: pd.DataFrame) -> RunSpec:
    """The copies of `copies` as one ensemble (every seed s: init s, dropout s; full batch: no data order)."""
    model = SeqClassConfig(vocab_size=p.p + 1, n_out=p.p, d_model=p.d_model, n_heads=p.n_heads, d_ff=p.d_mlp)
    T, k = p.steps, p.checkpoints
    train = TrainConfig(steps=T, batch_size=n_train, optimizer="adamw", lr=p.lr, betas=tuple(p.betas),
                        schedule="constant", warmup_steps=p.warmup, clip_norm=None, fisher_mode="sampled",
                        fisher_batch=p.fisher_batch, fisher_every=p.fisher_every, eval_every=p.eval_every,
                        checkpoints=tuple(sorted({round(T * (i + 1) / k) for i in range(k - 1)})), store_optimizer=False,
                        on_divergence="freeze", diverge_factor=5.0, save_every=max(T // 10, 1))
    seeds = tuple(Seeds(init=int(s), data=0, dropout=int(s)) for s in copies.seed)
    per_copy = tuple(CopySettings(weight_decay=float(w), fisher=float(f))
                     for w, f in zip(copies.weight_decay, copies.fisher))
    return RunSpec(model=model, data=ModularDataConfig(p=p.p, train_frac=p.train_frac, seed=p.data_seed), train=train,
                   seeds=seeds, per_copy=per_copy)


class Grokking(Study):
    """Grokking over a weight-decay x Fisher-penalty grid, and the connectivity of grokked seeds."""

    prefix, notebook = "06", "06_grokking"
    question = ("Does a transformer on modular addition grok sooner with more weight decay or a stronger Fisher "
                "penalty, and are two grokked solutions linearly connected after alignment?")
    claim = ("Study 5 (modular addition, p = 113, one unseeded run per cell of weight decay {2, 1, 0.5, 0.25, 0} × "
             "Fisher λ {1, 0.5, 0.25, 0}): higher weight decay and a higher Fisher penalty give quicker grokking "
             "(read off its plots; no number)")
    capped = {"learn_steps": 5}
    profiles = {
        "smoke": Params(profile="smoke", p=11, train_frac=0.6, d_model=16, n_heads=2, d_mlp=32, lr=1e-2,
                        weight_decay=[1.0, 0.0], fisher=[1.0, 0.0], steps=40, eval_every=10, checkpoints=2, alphas=5,
                        seeds=2, connect_seeds=3, learn_steps=3, trajectory_pairs=1, grok_evals=2),
        # minutes on a CPU: small p, 10x the learning rate, the penalty on 128 pairs every 4th step; a 4 x 2 grid
        # whose every cell fits the training set at this rate (λ 0.5 stops wd >= 1 from fitting; wd 0.5 groks too
        # late to hold the 500-step window), so that each variable has 4 neighbouring comparisons; 2700 steps: every
        # seed of a 3000-step run that grokked had crossed by step 2025; 6 connectivity seeds, not 5: the interval over
        # pairs that share models is erratic at 5 (docs/statistics.md)
        "quick": Params(p=31, train_frac=0.5, d_model=32, n_heads=4, d_mlp=128, lr=1e-2,
                        weight_decay=[2.0, 1.5, 1.0, 0.0], fisher=[0.1, 0.0], steps=2700, eval_every=25, checkpoints=6,
                        fisher_every=4, fisher_batch=128, connect_seeds=6),
        "paper": Params(profile="paper"),  # p = 113, 30 % train, the full grid, 40k full-batch steps (one GPU)
    }

    def compute(self, p: Params, ctx) -> dict:
        """Train the grid, find when each copy groks (sustained), align the grokked pairs every way."""
        data = modular_data(ModularDataConfig(p=p.p, train_frac=p.train_frac, seed=p.data_seed))
        parts, runs = train_grid(p, ctx, data)  # global copy numbers: the penalised ensemble first, then the plain
        offsets = np.cumsum([0] + [len(part) for part, _, _ in parts])
        copies = pd.concat([part for part, _, _ in parts], ignore_index=True).assign(copy=lambda t: range(len(t)))
        hist = pd.concat([r.history.assign(copy=r.history["copy"] + o) for (_, _, r), o in zip(parts, offsets)],
                         ignore_index=True)
        diverged = {c + o: s for (_, _, r), o in zip(parts, offsets) for c, s in r.diverged.items()}
        curves = hist.dropna(subset=["test_acc"]).merge(copies, on="copy")[[
            "copy", "weight_decay", "fisher", "seed", "step", "train_acc", "test_acc", "train_loss", "test_loss",
            "weight_norm"]]
        grok = grok_table(curves, copies, diverged, p.grok_evals)
        pairs, paths, freqs = connectivity(p, parts[0][1], stack_states([r.state for _, _, r in parts]), copies, grok,
                                           data, ctx.device)
        # the checkpoints of the connectivity setting live in the ensemble that trained it (its own copy numbers)
        k = 0 if float(p.connect_setting[1]) > 0 or len(parts) == 1 else 1
        trajectory = barriers_over_training(p, parts[k][1], ctx.store, parts[k][2], grok.assign(
            copy=grok["copy"] - offsets[k]), data, ctx.device)
        out = {"grok": grok, "cells": cell_table(grok), "curves": curves, "pairs": pairs, "paths": paths,
               "frequencies": freqs, "trajectory": trajectory, "runs": pd.DataFrame(runs),
               "fisher_trace": hist[["copy", "step", "penalty"]].merge(copies, on="copy")}
        if p.tensorboard:  # from the stored logs: works for runs trained now and for cached ones
            for _, _, r in parts:
                write_history(tensorboard_dir(r.path), r.history)
            out["tensorboard"] = "\n".join(tb_command(tensorboard_dir(r.path)) for _, _, r in parts)
        return out

    def figures(self, p: Params, data: dict):
        yield "accuracy_curves", *figs.accuracy_figure(data["curves"], data["grok"], p)
        yield "steps_to_grok", *figs.grok_heatmap(data["cells"], p)
        yield "weight_norm_and_fisher", *figs.norm_fisher_figure(data["curves"], data["fisher_trace"], p)
        yield "barrier_before_after_grokking", *figs.trajectory_figure(data["trajectory"], data["grok"], p)
        yield "barrier_vs_frequency_overlap", *figs.overlap_figure(data["pairs"], p)
        yield "key_frequencies", *figs.frequency_figure(data["frequencies"], p)

    def csvs(self, p: Params, data: dict) -> dict:
        return {"grok": data["grok"], "cells": data["cells"], "curves": data["curves"], "pair_barriers": data["pairs"],
                "path_curves": data["paths"], "trajectory": data["trajectory"]}

    def findings(self, p: Params, data: dict):
        return describe(data["grok"], data["cells"], data["pairs"], data["trajectory"], p)

    def setting(self, p: Params) -> str:
        return (f"p = {p.p}, {p.steps} steps, weight decay × λ = {len(p.weight_decay)} × {len(p.fisher)} cells × "
                f"{p.seeds} seeds ({p.connect_seeds} in the connectivity setting)")


def train_grid(p: Params, ctx, data) -> tuple[list, list[dict]]:
    """The grid as two ensembles, the copies with a Fisher penalty and those without (only the former pay for its
    double backward): [(copies, spec, stored run)] and a row per run for the runs table."""
    table = copies_table(p)
    parts, runs = [], []
    for name, part in (("penalised", table[table.fisher > 0]), ("plain", table[table.fisher == 0])):
        if not len(part):
            continue
        spec = grid_spec(p, len(data["train"]), part)
        r = ctx.store.get(spec, data["train"], ctx.device, p.progress, monitor={k: data[k] for k in ("train", "test")})
        parts.append((part, spec, r))
        runs.append({"run": name, "copies": spec.k, "trained_now": r.trained_now, "diverged": len(r.diverged),
                     "store": shown(r.path)})
    return parts, runs


def connectivity(p, spec, state, copies: pd.DataFrame, grok: pd.DataFrame, data, device
                 ) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(pairs: one row per pair with `<quantity>:<method>` columns, their paths, each copy's Fourier shares)."""
    fam = family_of(spec.model)
    test, alphas = fam.eval_examples(spec.model, data["test"]), alpha_grid(p.alphas)
    freqs, keys = frequency_table({c: copy_state(state, c) for c in copies["copy"]},
                                  copies[["copy", "weight_decay", "fisher", "seed"]], p.p, p.key_factor)
    align = dict(x_train=data["train"]["tokens"], train=data["train"].tensors, learn_steps=p.learn_steps,
                 learn_lr=p.learn_lr, learn_units=p.learn_units)
    info, paths = [], []
    for role, (wd, lam) in (("grokked", p.connect_setting), ("control", p.control_setting)):
        cell = grokked_seeds(grok, wd, lam) if role == "grokked" else grok[
            (grok.weight_decay == wd) & (grok.fisher == lam) & ~grok.diverged.astype(bool)].sort_values("seed")
        for (ca, sa), (cb, sb) in itertools.combinations(cell[["copy", "seed"]].to_numpy(), 2):
            ka, kb = keys[int(ca)], keys[int(cb)]
            row = {"setting": f"{role}: wd {wd:g}, λ {lam:g}", "pair": f"{int(sa)}-{int(sb)}", "role": role,
                   "weight_decay": wd, "fisher": lam, "seed_a": int(sa), "seed_b": int(sb), "overlap": jaccard(ka, kb),
                   "keys_a": str(ka), "keys_b": str(kb)}
            path, diag = method_paths(fam, spec.model, copy_state(state, int(ca)), copy_state(state, int(cb)), alphas,
                                      test, device, {**align, "seed": int(sa)}, setting=row["setting"],
                                      pair=row["pair"])
            info.append({**row, **diag})
            paths.append(path)
    if not paths:  # no two seeds in either setting
        return pd.DataFrame(columns=["setting", "pair", "role"]), pd.DataFrame(columns=[
            "setting", "pair", "kind", "split", "alpha", "loss", "error"]), freqs
    paths = pd.concat(paths, ignore_index=True)
    return pd.DataFrame(info).merge(barriers_by_method(paths, ("setting", "pair"), p.definition),
                                    left_on=["setting", "pair"], right_index=True), paths, freqs


def barriers_over_training(p, spec, store, run_, grok: pd.DataFrame, data, device) -> pd.DataFrame:
    """Unaligned and weight-matched test barriers of the first `trajectory_pairs` pairs of grokked seeds of the
    connectivity setting at every kept checkpoint (before and after grokking); grok's copy numbers are the
    ensemble's (`spec`, `run_`)."""
    pairs = list(itertools.combinations(grokked_seeds(grok, *p.connect_setting)[["copy", "seed"]].to_numpy(), 2))
    test = family_of(spec.model).eval_examples(spec.model, data["test"])
    paths = paths_over_training(spec, store, run_, pairs[: p.trajectory_pairs], alpha_grid(p.alphas), test, device)
    if not len(paths):
        return pd.DataFrame(columns=["step", "pair", "kind", *QUANTITIES], dtype=float)
    return barrier_columns(paths, ("step", "pair", "kind"), p.definition)


STUDY = Grokking()
run = STUDY.run
PROFILES = STUDY.profiles
