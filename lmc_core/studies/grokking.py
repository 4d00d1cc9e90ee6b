"""Notebook 06: grokking under weight decay and the Fisher penalty (study 5's grokking notebook), and what grokked
circuits share.

Modular addition with a one-layer transformer without LayerNorm (Nanda et al. 2023), AdamW with full-batch steps.
The seed study's grid — weight decay x sampled-label Fisher weight lambda — trains with `seeds` seeds per cell
(per-copy weight decay and lambda; the copies with a Fisher penalty as one ensemble, those without as another, so
only the former pay for its double backward), with train and test accuracy, the weight norm and the Fisher trace
logged. A copy has *grokked* at the first logged step from which its test accuracy stays >= 95 % for `grok_evals`
consecutive evaluations (0: to the end of the run; a transient spike is no grok, nor is a crossing too late in the
run to be held that long); its final accuracy is reported
beside it, and only seeds that grokked and end at >= 95 % enter the connectivity question. Cells whose seeds never fit the
training set are named and left out of the claims. One setting that groks reliably gets `connect_seeds` seeds:
all pairs among its grokked seeds, and the pairs of the weight-decay-0 control, are aligned by permutation, by an
invertible residual map and by learned maps (lmc_core.studies.grokking_connect), and their barriers are set
against the overlap of the two seeds' key Fourier frequencies.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from ..analysis import barrier as B
from ..config import ConfigError, CopySettings, RunSpec, Seeds, TrainConfig
from ..data.modular import ModularDataConfig, modular_data
from ..ensemble import stack_states
from ..families import SeqClassConfig
from ..runs.store import RunStore
from . import grokking_connect as connect
from .common import StudyResult, check_alphas, check_positive, prepare, tensorboard_logs, without_store

PREFIX = "06"
GROK_ACC = 0.95

STUDY_DEFAULTS = dict(
    p=113, train_frac=0.3, data_seed=0, d_model=128, n_heads=4, d_mlp=512, lr=1e-3, betas=[0.9, 0.98], warmup=10,
    fisher_batch=0,
    weight_decay=[2.0, 1.0, 0.5, 0.25, 0.0], fisher=[1.0, 0.5, 0.25, 0.0], fisher_every=1, steps=40000,
    eval_every=100, checkpoints=8, alphas=11, definition=B.DEFAULT, seeds=3,
    connect_setting=[1.0, 0.0], connect_seeds=5, control_setting=[0.0, 0.0], trajectory_pairs=3,
    key_factor=2.0, learn_steps=200, learn_lr=1e-2, learn_units=False,
    grok_evals=20,  # a grok holds >= 95 % test accuracy for this many consecutive evaluations (0: to the end)
)
PROFILES = {
    "smoke": {**STUDY_DEFAULTS, "p": 11, "train_frac": 0.6, "d_model": 16, "n_heads": 2, "d_mlp": 32, "lr": 1e-2,
              "weight_decay": [1.0, 0.0], "fisher": [1.0, 0.0], "steps": 40, "eval_every": 10, "checkpoints": 2,
              "alphas": 5, "seeds": 2, "connect_seeds": 3, "learn_steps": 3, "trajectory_pairs": 1, "grok_evals": 2},
    # a small modulus, a larger training fraction, a narrower model and a 10x larger learning rate, so that
    # grokking happens within minutes on a CPU; the Fisher penalty on 128 examples every 4th step; a 3 x 2 part of
    # the grid with three seeds per cell (wd 0.5 left out: it groks too late in 3000 steps to hold the 500-step
    # window, and its three seeds per lambda would push the notebook past 10 minutes on 2 cores)
    "quick": {**STUDY_DEFAULTS, "p": 31, "train_frac": 0.5, "d_model": 32, "n_heads": 4, "d_mlp": 128, "lr": 1e-2,
              "weight_decay": [2.0, 1.0, 0.0], "fisher": [0.5, 0.0], "steps": 3000, "eval_every": 25,
              "checkpoints": 6, "fisher_every": 4, "fisher_batch": 128, "connect_seeds": 6},
    "paper": dict(STUDY_DEFAULTS),  # p = 113, 30 % train, the full grid, 40k full-batch steps (one GPU)
}


def check_params(p: dict) -> None:
    """Every check that needs no training."""
    check_positive(p, "p", "d_model", "n_heads", "d_mlp", "steps", "eval_every", "checkpoints", "warmup",
                   "fisher_every", "seeds", "connect_seeds", "learn_steps", "trajectory_pairs")
    if not isinstance(p["grok_evals"], int) or isinstance(p["grok_evals"], bool) or p["grok_evals"] < 0:
        raise ConfigError(f"grok_evals={p['grok_evals']!r} must be an integer >= 0 (consecutive evaluations at >= 95 % "
                          "test accuracy that make a grok; 0: to the end of the run)")
    check_alphas(p)
    if not 0 < p["train_frac"] < 1:
        raise ConfigError(f"train_frac={p['train_frac']} must lie in (0, 1)")
    for name in ("weight_decay", "fisher"):
        v = p[name]
        if not v or any(not isinstance(x, (int, float)) or x < 0 for x in v):
            raise ConfigError(f"{name}={v!r} must be a non-empty list of values >= 0")
    grid = [[float(w), float(f)] for w in p["weight_decay"] for f in p["fisher"]]
    for name in ("connect_setting", "control_setting"):
        if [float(x) for x in p[name]] not in grid:
            raise ConfigError(f"{name}={p[name]!r} is not in the grid weight_decay x fisher")
    if p["connect_seeds"] < max(p["seeds"], 3):
        raise ConfigError(f"connect_seeds={p['connect_seeds']} must be >= seeds={p['seeds']} and >= 3 (pairs among "
                          "seeds are resampled by seed)")
    if p["d_model"] % p["n_heads"]:
        raise ConfigError(f"d_model={p['d_model']} must be divisible by n_heads={p['n_heads']}")
    if p["definition"] not in B.DEFINITIONS:
        raise ConfigError(f"definition={p['definition']!r}; choose one of {list(B.DEFINITIONS)}")


def copies_table(p: dict) -> pd.DataFrame:
    """One row per copy: weight decay, lambda, seed (seeds 1..`seeds` in every cell, up to `connect_seeds` in the
    connectivity setting)."""
    rows = []
    for wd in p["weight_decay"]:
        for lam in p["fisher"]:
            n = p["connect_seeds"] if [float(wd), float(lam)] == [float(x) for x in p["connect_setting"]] else p["seeds"]
            rows += [{"weight_decay": float(wd), "fisher": float(lam), "seed": s} for s in range(1, n + 1)]
    return pd.DataFrame(rows)


def grid_spec(p: dict, n_train: int, copies: pd.DataFrame) -> RunSpec:
    """The copies of `copies` as one ensemble (every seed s: init s, dropout s; full batch: no data order)."""
    model = SeqClassConfig(vocab_size=p["p"] + 1, n_out=p["p"], d_model=p["d_model"], n_heads=p["n_heads"],
                           d_ff=p["d_mlp"])
    T = p["steps"]
    ckpts = tuple(sorted({int(round(T * (i + 1) / p["checkpoints"])) for i in range(p["checkpoints"] - 1)}))
    train = TrainConfig(steps=T, batch_size=n_train, optimizer="adamw", lr=p["lr"], betas=tuple(p["betas"]),
                        schedule="constant", warmup_steps=p["warmup"], clip_norm=None, fisher_mode="sampled",
                        fisher_batch=p["fisher_batch"], fisher_every=p["fisher_every"], eval_every=p["eval_every"],
                        checkpoints=ckpts, store_optimizer=False, on_divergence="freeze", diverge_factor=5.0,
                        save_every=max(T // 10, 1))
    seeds = tuple(Seeds(init=int(s), data=0, dropout=int(s)) for s in copies.seed)
    per_copy = tuple(CopySettings(weight_decay=float(w), fisher=float(f)) for w, f in zip(copies.weight_decay, copies.fisher))
    data = ModularDataConfig(p=p["p"], train_frac=p["train_frac"], seed=p["data_seed"])
    return RunSpec(model=model, data=data, train=train, seeds=seeds, per_copy=per_copy)


def run(params: dict | None = None) -> StudyResult:
    """Train the grid, find when each copy groks (sustained), align the grokked pairs every way, write figures."""
    p, fig_dir, store, _, device = prepare(PROFILES, params, check_params)
    data = modular_data(ModularDataConfig(p=p["p"], train_frac=p["train_frac"], seed=p["data_seed"]))
    monitor = {"train": data["train"], "test": data["test"]}
    table = copies_table(p)
    parts, runs = [], []
    for name, part in (("penalised", table[table.fisher > 0]), ("plain", table[table.fisher == 0])):
        if not len(part):
            continue
        spec = grid_spec(p, len(data["train"]), part)
        r = store.get(spec, data["train"], device, p["progress"], monitor=monitor)
        parts.append((part, spec, r))
        runs.append({"run": name, "copies": spec.k, "trained_now": r.trained_now, "diverged": len(r.diverged),
                     "store": r.path})
    copies, hist, diverged, states = [], [], {}, []
    offset = 0
    for part, spec, r in parts:  # global copy numbers: the penalised ensemble first, then the plain one
        copies.append(part.assign(copy=range(offset, offset + len(part)), offset=offset))  # noqa
        hist.append(r.history.assign(copy=r.history["copy"] + offset))
        diverged.update({c + offset: s for c, s in r.diverged.items()})
        states.append(r.state)
        offset += len(part)
    copies = pd.concat(copies, ignore_index=True).drop(columns="offset")
    hist = pd.concat(hist, ignore_index=True)
    state = stack_states(states)
    curves = (hist.dropna(subset=["test_acc"]).merge(copies, on="copy")
              [["copy", "weight_decay", "fisher", "seed", "step", "train_acc", "test_acc", "train_loss", "test_loss",
                "weight_norm"]])
    fisher_trace = hist[["copy", "step", "penalty"]].merge(copies, on="copy")
    grok = grok_table(curves, copies, diverged, p["grok_evals"])
    cells = cell_table(grok)
    pairs, paths, freqs = connect.connectivity(p, parts[0][1], state, copies, grok, data, device)
    # the checkpoints of the connectivity setting live in the ensemble that trained it (its own copy numbers)
    lam = float(p["connect_setting"][1])
    k = 0 if lam > 0 or len(parts) == 1 else 1
    _, cspec, crun = parts[k]
    off = int(copies[copies.fisher > 0].shape[0]) if k == 1 else 0
    trajectory = connect.barriers_over_training(p, cspec, store, crun, grok.assign(copy=grok["copy"] - off), data, device)
    res = StudyResult(params=p, tables={"grok": grok, "cells": cells, "curves": curves, "pairs": pairs,
                                        "paths": paths, "frequencies": freqs, "trajectory": trajectory,
                                        "runs": without_store(runs)})
    if p["tensorboard"]:
        res.tensorboard = tensorboard_logs(runs, store.root, PREFIX)
    from . import grokking_figures as figs
    from .grokking_summary import describe

    for name, (fig, d) in (("accuracy_curves", figs.accuracy_figure(curves, grok, p)),
                           ("steps_to_grok", figs.grok_heatmap(cells, p)),
                           ("weight_norm_and_fisher", figs.norm_fisher_figure(curves, fisher_trace, p)),
                           ("barrier_before_after_grokking", figs.trajectory_figure(trajectory, grok, p)),
                           ("barrier_vs_frequency_overlap", figs.overlap_figure(pairs, p)),
                           ("key_frequencies", figs.frequency_figure(freqs, p))):
        res.add_figure(f"{PREFIX}_{name}", fig, d)
    for name, t in (("grok", grok), ("cells", cells), ("curves", curves), ("pair_barriers", pairs),
                    ("path_curves", paths), ("trajectory", trajectory)):
        res.add_csv(f"{PREFIX}_{name}", t)
    res.publish(fig_dir, PREFIX, describe(grok, cells, pairs, trajectory, p))
    return res


def grok_table(curves: pd.DataFrame, copies: pd.DataFrame, diverged: dict, evals: int = 0) -> pd.DataFrame:
    """Per copy: when it fit the training set (first logged step with train accuracy >= 95 %), when its test
    accuracy first reached 95 % (`first_hit_step`), when it grokked (`grok_step`: the first logged step from which
    test accuracy stays >= 95 % for `evals` consecutive evaluations — a crossing in the run's last `evals - 1`
    evaluations cannot be held that long and is not counted; evals = 0: from there to the end of the run; NaN if it
    never did), the final accuracies and weight norm."""
    rows = []
    for r in copies.itertuples():
        g = curves[curves["copy"] == r.copy].sort_values("step")
        steps, test = g.step.to_numpy(float), g.test_acc.to_numpy(float)
        ok = test >= GROK_ACC
        if evals <= 0:  # from here to the end of the run (suffix-all of ok)
            stay = np.flip(np.logical_and.accumulate(np.flip(ok))) if len(ok) else ok
        else:  # a whole window of `evals` evaluations: a crossing too close to the end to be held is not a grok
            stay = np.array([i + evals <= len(ok) and bool(ok[i : i + evals].all()) for i in range(len(ok))], dtype=bool)
        tail = np.flip(np.logical_and.accumulate(np.flip(ok))) if len(ok) else ok
        gone = r.copy in diverged
        mem = g[g.train_acc >= GROK_ACC].step
        last = g.iloc[-1] if len(g) else None
        rows.append({"copy": r.copy, "weight_decay": r.weight_decay, "fisher": r.fisher, "seed": r.seed,
                     "diverged": gone, "memorised_step": float(mem.iloc[0]) if len(mem) else np.nan,
                     "first_hit_step": float(steps[ok][0]) if ok.any() and not gone else np.nan,
                     "grok_step": float(steps[stay][0]) if stay.any() and not gone else np.nan,
                     # held >= 95 % from here to the end, but from too late a step to complete the window
                     "late_step": float(steps[tail][0]) if tail.any() and not stay.any() and not gone else np.nan,
                     "final_train_acc": float(last.train_acc) if last is not None else np.nan,
                     "final_test_acc": float(last.test_acc) if last is not None else np.nan,
                     "final_weight_norm": float(last.weight_norm) if last is not None else np.nan})
    out = pd.DataFrame(rows)
    out["delay"] = out.grok_step - out.memorised_step
    return out


def cell_table(grok: pd.DataFrame) -> pd.DataFrame:
    """Per (weight decay, lambda): seeds, how many fit the training set and how many grokked, the median grok step
    with its range over seeds (a seed that did not grok counts as later than every step: the median and the upper
    end are then infinite), the median final test accuracy."""
    rows = []
    for (wd, lam), g in grok.groupby(["weight_decay", "fisher"]):
        steps = g.grok_step.fillna(np.inf).to_numpy()
        fit = np.isfinite(g.memorised_step) | np.isfinite(g.grok_step)
        rows.append({"weight_decay": wd, "fisher": lam, "seeds": len(g), "fit": int(fit.sum()),
                     "grokked": int(np.isfinite(g.grok_step).sum()), "median_grok_step": float(np.median(steps)),
                     "min_grok_step": float(steps.min()), "max_grok_step": float(steps.max()),
                     "median_final_test_acc": float(g.final_test_acc.median()),
                     "transient_only": int((np.isfinite(g.first_hit_step) & ~np.isfinite(g.grok_step)).sum())})
    out = pd.DataFrame(rows)
    out["fits"] = out.fit == out.seeds
    out["no_fit"] = out.fit == 0
    return out
