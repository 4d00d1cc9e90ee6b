"""Notebook 06: grokking under weight decay and the Fisher penalty (study 5's grokking notebook).

Modular addition with a one-layer transformer without LayerNorm (Nanda et al. 2023), AdamW with
full-batch steps. The seed study's grid — weight decay x sampled-label Fisher weight lambda — trains
as ONE ensemble (per-copy weight decay and lambda), with train and test accuracy, the weight norm and
the Fisher trace logged during training. Steps-to-grok is the first logged step with test accuracy
>= 95 %. For a few settings a second copy from another initialisation is trained, and the barrier
between the two (before and after weight matching, which removes the permutation symmetry between
independent initialisations) is measured at checkpoints before and after grokking.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from ..analysis import barrier as B
from ..align import apply_permutation, weight_matching
from ..config import ConfigError, CopySettings, RunSpec, Seeds, TrainConfig
from ..data.modular import ModularDataConfig, modular_data
from ..ensemble import copy_state
from ..families import SeqClassConfig, family_of
from ..analysis.interpolate import alpha_grid, interpolate_states
from ..runs.store import RunStore
from .common import (StudyResult, check_alphas, check_positive, prepare, tensorboard_logs,
                     without_store)

PREFIX = "06"
GROK_ACC = 0.95

STUDY_DEFAULTS = dict(
    p=113, train_frac=0.3, data_seed=0, d_model=128, n_heads=4, d_mlp=512, lr=1e-3, betas=[0.9, 0.98], warmup=10,
    fisher_batch=0,
    weight_decay=[2.0, 1.0, 0.5, 0.25, 0.0], fisher=[1.0, 0.5, 0.25, 0.0], fisher_every=1, steps=40000,
    eval_every=100, checkpoints=8, barrier_settings=[[1.0, 0.0], [1.0, 1.0], [0.25, 0.0]], alphas=11, definition=B.DEFAULT,
)
PROFILES = {
    "smoke": {**STUDY_DEFAULTS, "p": 11, "train_frac": 0.6, "d_model": 16, "n_heads": 2, "d_mlp": 32, "lr": 1e-2,
              "weight_decay": [1.0, 0.0], "fisher": [1.0, 0.0], "steps": 40, "eval_every": 10, "checkpoints": 2,
              "barrier_settings": [[1.0, 0.0]], "alphas": 5},
    # a small modulus, a larger training fraction, a narrower model and a 10x larger learning rate, so that
    # grokking happens within minutes on a CPU; the Fisher penalty on 128 examples every 4th step
    "quick": {**STUDY_DEFAULTS, "p": 31, "train_frac": 0.4, "d_model": 32, "n_heads": 4, "d_mlp": 128, "lr": 1e-2,
              "steps": 4000, "eval_every": 25, "checkpoints": 8, "fisher_every": 4, "fisher_batch": 128,
              # second seeds for settings that grok within this budget, and weight decay 0 (never groks) as a control
              "barrier_settings": [[2.0, 0.0], [1.0, 0.25], [0.5, 0.5], [0.0, 0.0]]},
    "paper": dict(STUDY_DEFAULTS),  # p = 113, 30 % train, the full grid, 40k full-batch steps (one GPU)
}


def check_params(p: dict) -> None:
    """Every check that needs no training."""
    check_positive(p, "p", "d_model", "n_heads", "d_mlp", "steps", "eval_every", "checkpoints", "warmup",
                   "fisher_every")
    check_alphas(p)
    if not 0 < p["train_frac"] < 1:
        raise ConfigError(f"train_frac={p['train_frac']} must lie in (0, 1)")
    for name in ("weight_decay", "fisher"):
        v = p[name]
        if not v or any(not isinstance(x, (int, float)) or x < 0 for x in v):
            raise ConfigError(f"{name}={v!r} must be a non-empty list of values >= 0")
    for s in p["barrier_settings"]:
        if list(s) not in [[float(w), float(f)] for w in p["weight_decay"] for f in p["fisher"]]:
            raise ConfigError(f"barrier setting {s!r} is not in the grid weight_decay x fisher")
    if p["d_model"] % p["n_heads"]:
        raise ConfigError(f"d_model={p['d_model']} must be divisible by n_heads={p['n_heads']}")
    if p["definition"] not in B.DEFINITIONS:
        raise ConfigError(f"definition={p['definition']!r}; choose one of {list(B.DEFINITIONS)}")


def grid_spec(p: dict, n_train: int) -> tuple[RunSpec, pd.DataFrame]:
    """The whole grid (and the second copies of the barrier settings) as one ensemble."""
    model = SeqClassConfig(vocab_size=p["p"] + 1, n_out=p["p"], d_model=p["d_model"], n_heads=p["n_heads"],
                           d_ff=p["d_mlp"])
    T = p["steps"]
    ckpts = tuple(sorted({int(round(T * (i + 1) / p["checkpoints"])) for i in range(p["checkpoints"] - 1)}))
    train = TrainConfig(steps=T, batch_size=n_train, optimizer="adamw", lr=p["lr"], betas=tuple(p["betas"]),
                        schedule="constant", warmup_steps=p["warmup"], clip_norm=None, fisher_mode="sampled",
                        fisher_batch=p["fisher_batch"],
                        fisher_every=p["fisher_every"], eval_every=p["eval_every"], checkpoints=ckpts,
                        store_optimizer=False, on_divergence="freeze", diverge_factor=5.0, save_every=max(T // 10, 1))
    rows, seeds, per_copy = [], [], []
    for wd in p["weight_decay"]:
        for lam in p["fisher"]:
            rows.append({"weight_decay": float(wd), "fisher": float(lam), "seed": 1})
    for wd, lam in p["barrier_settings"]:
        rows.append({"weight_decay": float(wd), "fisher": float(lam), "seed": 2})
    for r in rows:
        seeds.append(Seeds(init=r["seed"], data=0, dropout=r["seed"]))  # full batch: no data order
        per_copy.append(CopySettings(weight_decay=r["weight_decay"], fisher=r["fisher"]))
    data = ModularDataConfig(p=p["p"], train_frac=p["train_frac"], seed=p["data_seed"])
    spec = RunSpec(model=model, data=data, train=train, seeds=tuple(seeds), per_copy=tuple(per_copy))
    return spec, pd.DataFrame(rows).assign(copy=range(len(rows)))


def run(params: dict | None = None) -> StudyResult:
    """Train the grid, find when each setting groks, measure barriers before and after, write figures."""
    p, fig_dir, store, _, device = prepare(PROFILES, params, check_params)
    data = modular_data(ModularDataConfig(p=p["p"], train_frac=p["train_frac"], seed=p["data_seed"]))
    spec, copies = grid_spec(p, len(data["train"]))
    run_ = store.get(spec, data["train"], device, p["progress"], monitor={"train": data["train"], "test": data["test"]})
    hist = run_.history
    curves = (hist.dropna(subset=["test_acc"]).merge(copies, on="copy")
              [["copy", "weight_decay", "fisher", "seed", "step", "train_acc", "test_acc", "train_loss", "test_loss",
                "weight_norm"]])
    fisher_trace = hist[["copy", "step", "penalty"]].merge(copies, on="copy")
    grok = grok_table(curves, copies, run_.diverged, p["steps"])
    barriers, paths = barrier_table(p, spec, store, run_, copies, data, device)
    runs = [{"run": "grid", "copies": spec.k, "trained_now": run_.trained_now, "diverged": len(run_.diverged),
             "store": run_.path}]
    res = StudyResult(params=p, tables={"grok": grok, "curves": curves, "barriers": barriers, "paths": paths,
                                        "runs": without_store(runs)})
    if p["tensorboard"]:
        res.tensorboard = tensorboard_logs(runs, store.root, PREFIX)
    from . import grokking_figures as figs

    fig, d = figs.accuracy_figure(curves, grok, p)
    res.add_figure(f"{PREFIX}_accuracy_curves", fig, d)
    fig, d = figs.grok_heatmap(grok, p)
    res.add_figure(f"{PREFIX}_steps_to_grok", fig, d)
    fig, d = figs.norm_fisher_figure(curves, fisher_trace, p)
    res.add_figure(f"{PREFIX}_weight_norm_and_fisher", fig, d)
    if len(barriers):
        fig, d = figs.barrier_figure(barriers, grok, p)
        res.add_figure(f"{PREFIX}_barrier_before_after_grokking", fig, d)
    res.add_csv(f"{PREFIX}_grok", grok)
    res.add_csv(f"{PREFIX}_curves", curves)
    res.add_csv(f"{PREFIX}_barriers", barriers)
    res.add_csv(f"{PREFIX}_path_curves", paths)
    res.publish(fig_dir, PREFIX, figs.describe(grok, barriers, p))
    return res


def grok_table(curves: pd.DataFrame, copies: pd.DataFrame, diverged: dict, steps: int) -> pd.DataFrame:
    """Per copy: the first logged step with train accuracy >= 95 % (memorised) and with test accuracy >= 95 %
    (grokked; NaN if not within the run), the delay between them, final accuracies and weight norm."""
    rows = []
    for r in copies.itertuples():
        g = curves[curves["copy"] == r.copy].sort_values("step")
        mem = g[g.train_acc >= GROK_ACC].step
        grk = g[g.test_acc >= GROK_ACC].step
        last = g.iloc[-1] if len(g) else None
        rows.append({"copy": r.copy, "weight_decay": r.weight_decay, "fisher": r.fisher, "seed": r.seed,
                     "diverged": r.copy in diverged,
                     "memorised_step": float(mem.iloc[0]) if len(mem) else np.nan,
                     "grok_step": float(grk.iloc[0]) if len(grk) and r.copy not in diverged else np.nan,
                     "final_train_acc": float(last.train_acc) if last is not None else np.nan,
                     "final_test_acc": float(last.test_acc) if last is not None else np.nan,
                     "final_weight_norm": float(last.weight_norm) if last is not None else np.nan})
    out = pd.DataFrame(rows)
    out["delay"] = out.grok_step - out.memorised_step
    return out


def barrier_table(p: dict, spec: RunSpec, store: RunStore, run_, copies: pd.DataFrame, data,
                  device) -> tuple[pd.DataFrame, pd.DataFrame]:
    """For each barrier setting: test-loss and error barriers between its two seeds at every checkpoint, as they
    are and after weight matching; and the curves they come from (one row per setting, step, kind and alpha)."""
    fam = family_of(spec.model)
    pspec = fam.perm_spec(spec.model)
    test = fam.eval_examples(spec.model, data["test"])
    alphas = alpha_grid(p["alphas"])
    states = {s: store.checkpoint(spec, s) for s in spec.train.checkpoints}
    states[spec.train.steps] = run_.state
    init = fam.init(spec.model, [s.init for s in spec.seeds])
    full = lambda st: {**{n: init[n] for n in init if n not in st}, **st}  # noqa: E731
    rows, paths = [], []
    for wd, lam in p["barrier_settings"]:
        pair = copies[(copies.weight_decay == wd) & (copies.fisher == lam)].sort_values("seed")["copy"].tolist()
        if len(pair) != 2 or any(c in run_.diverged for c in pair):
            continue
        for step, st in sorted(states.items()):
            st = full(st)
            a, b = copy_state(st, pair[0]), copy_state(st, pair[1])
            perms, _ = weight_matching(pspec, a, b, seed=0)
            for kind, bb in (("unaligned", b), ("weight matching", apply_permutation(b, pspec, perms))):
                r = fam.evaluate(spec.model, interpolate_states(a, bb, alphas), test, batch_size=4096, device=device)
                rows.append({"weight_decay": wd, "fisher": lam, "step": step, "kind": kind,
                             "loss_barrier": B.barrier(alphas, r.loss, p["definition"]),
                             "error_barrier_pp": 100 * B.barrier(alphas, r.error, p["definition"]),
                             "endpoint_test_acc": float(0.5 * (r.accuracy[0] + r.accuracy[-1])),
                             "endpoint_test_loss": float(0.5 * (r.loss[0] + r.loss[-1]))})
                paths += [{"setting": f"wd {wd:g}, λ {lam:g}", "step": step, "kind": kind, "split": "test",
                           "alpha": float(x), "loss": float(lo), "error": float(er)}
                          for x, lo, er in zip(alphas, r.loss, r.error)]
    cols = ["setting", "step", "kind", "split", "alpha", "loss", "error"]
    return pd.DataFrame(rows), pd.DataFrame(paths, columns=cols)
