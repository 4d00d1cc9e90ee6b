"""Notebook 04: permutation alignment (Git Re-Basin) across learning rates, optimizers and a Fisher penalty.

MLP part (study 5, FlatMinimaInterpretability, on MNIST-1D): for each optimizer, a learning-rate x
Fisher-weight grid of pairs of independently initialised MLPs trains as ONE ensemble (per-copy lr and
lambda). For every pair: endpoint losses, the barrier A<->B, A<->pi(B) after weight matching and after
activation matching, the control A<->pi(A) (a random permutation of A matched back: 0), activation
sparsity and entropy, prediction disagreement. Diverged copies are frozen and shown as gaps.
Transformer part: pairs of independently initialised Shakespeare LMs (pre-norm, learned positions),
loss vs alpha before and after weight and activation matching, next to Theus et al.'s GPT-2 numbers.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import torch

from ..analysis import barrier as B
from ..align import activation_matching, apply_permutation, random_permutation, weight_matching
from ..config import ConfigError, CopySettings, DataConfig, RunSpec, Seeds, TrainConfig, model_preset
from ..runs.dispatch import Job, Recipe, dispatch
from ..data import load_corpus
from ..data.loader import windows
from ..data.vectors import VectorDataConfig, load_vectors
from ..analysis.diagnostics import activation_entropy, disagreement, sparsity, weight_distance
from ..ensemble import copy_state, stack_states
from ..families import family_of
from ..analysis.interpolate import alpha_grid, interpolate_states
from ..analysis.metrics import fmt_spread, mean_se
from ..models.mlp import MLPConfig
from ..publish.plotting import COLORS, plt
from .reference import THEUS_GPT2_SHAKESPEARE_BARRIER_NATS
from ..rng import generator
from ..runs.store import RunStore
from .common import (StudyResult, check_alphas, check_positive, prepare, tensorboard_logs,
                     without_store)

PREFIX = "04"
OPTIMIZERS = ("sgd", "adam", "adamw")
KINDS = ("unaligned", "weight matching", "activation matching", "control A-pi(A)")
# a model whose test loss is still within 10 % of a uniform guess (ln C) has not learnt the task (e.g. all
# ReLUs dead after a too-large step): its flat path is no finding about connectivity
COLLAPSED = 0.9

STUDY_DEFAULTS = dict(
    # MLP part (the seed study: 784-512-512-512-10 on MNIST, 50 epochs at batch 500; SGD momentum 0.9 with
    # warm-up + cosine, Adam, AdamW wd 0.25; lambda in {0, 0.5, 1}; true-label gradient-norm penalty)
    dataset="mnist1d", hidden=[128, 128, 128], batch_size=100, steps=800, warmup_steps=10,
    lr_grid={"sgd": [0.005, 1.0, 5], "adam": [5e-5, 1e-1, 6], "adamw": [5e-5, 1e-1, 6]},
    optimizers=list(OPTIMIZERS), fisher=[0.0, 0.5, 1.0], fisher_mode="empirical", fisher_batch=0,
    sgd_momentum=0.9, adamw_weight_decay=0.25, pairs=2, alphas=11, match_examples=1000, definition=B.DEFAULT,
    executor="inprocess", slurm={},
    # transformer part
    run_lm=True, lm_model="tinygpt", lm_overrides={"context": 64, "n_layers": 2}, lm_level="char",
    lm_steps=800, lm_batch=16, lm_lr=3e-3, lm_warmup=80, lm_pairs=2, lm_eval_tokens=8192, lm_match_tokens=4096,
)

PROFILES = {
    "smoke": {**STUDY_DEFAULTS, "hidden": [32, 32], "steps": 30, "lr_grid": {"sgd": [0.01, 0.5, 2], "adam": [1e-3, 1e-2, 2],
              "adamw": [1e-3, 1e-2, 2]}, "optimizers": ["sgd", "adam"], "fisher": [0.0, 1.0], "pairs": 1,
              "alphas": 5, "lm_overrides": {"context": 16, "n_layers": 1, "d_model": 32, "d_ff": 64},
              "lm_steps": 30, "lm_pairs": 1, "lm_eval_tokens": 1024, "lm_match_tokens": 512, "match_examples": 256},
    "quick": dict(STUDY_DEFAULTS),
    # the seed study's sweep size on MNIST-1D with the 3x512 MLP (GPU): 20 learning rates per optimizer
    "paper": {**STUDY_DEFAULTS, "hidden": [512, 512, 512], "steps": 2000,
              "lr_grid": {"sgd": [0.005, 1.0, 20], "adam": [5e-5, 1e-1, 20], "adamw": [5e-5, 1e-1, 20]},
              "pairs": 3, "alphas": 21, "lm_overrides": {"context": 128, "n_layers": 4, "d_model": 128, "d_ff": 512},
              "lm_steps": 5000, "lm_batch": 32, "lm_pairs": 3, "lm_eval_tokens": 65536},
}


def check_params(p: dict) -> None:
    """Every check that needs no data or training."""
    check_positive(p, "batch_size", "steps", "pairs", "match_examples", "lm_steps", "lm_batch", "lm_pairs",
                   "lm_eval_tokens", "lm_match_tokens")
    check_alphas(p)
    if p["definition"] not in B.DEFINITIONS:
        raise ConfigError(f"definition={p['definition']!r}; choose one of {list(B.DEFINITIONS)}")
    bad = [o for o in p["optimizers"] if o not in OPTIMIZERS]
    if bad or not p["optimizers"]:
        raise ConfigError(f"optimizers={p['optimizers']!r}; choose from {list(OPTIMIZERS)}")
    for o in p["optimizers"]:
        g = p["lr_grid"].get(o)
        if not (isinstance(g, (list, tuple)) and len(g) == 3 and 0 < g[0] <= g[1] and isinstance(g[2], int) and g[2] > 0):
            raise ConfigError(f"lr_grid[{o!r}]={g!r} must be [lowest lr, highest lr, number of log-spaced values]")
    if not p["fisher"] or any(not isinstance(f, (int, float)) or f < 0 for f in p["fisher"]):
        raise ConfigError(f"fisher={p['fisher']!r} must be a non-empty list of weights >= 0")
    mlp_spec_of(p, VectorDataConfig(dataset=p["dataset"]).validate(), "sgd")[0].validate()
    if p["run_lm"]:
        model_preset(p["lm_model"], **p["lm_overrides"])


def lrs(p: dict, opt: str) -> list[float]:
    """The log-spaced learning rates of one optimizer."""
    lo, hi, n = p["lr_grid"][opt]
    return [float(x) for x in np.geomspace(lo, hi, n)] if n > 1 else [float(lo)]


def mlp_spec_of(p: dict, data: VectorDataConfig, opt: str, d_in: int = 40, n_classes: int = 10
                ) -> tuple[RunSpec, list[dict]]:
    """One optimizer's whole grid as ONE ensemble: for every (lr, lambda), `pairs` pairs of independently
    initialised models (the same init seeds in every setting). Returns the spec and each copy's setting."""
    model = MLPConfig(d_in=d_in, hidden=tuple(p["hidden"]), n_classes=n_classes)
    train = TrainConfig(steps=p["steps"], batch_size=p["batch_size"], optimizer=opt, lr=1.0,
                        momentum=p["sgd_momentum"] if opt == "sgd" else 0.0,
                        weight_decay=p["adamw_weight_decay"] if opt == "adamw" else 0.0,
                        schedule="cosine" if opt == "sgd" else "constant", warmup_steps=p["warmup_steps"] if opt == "sgd" else 0,
                        clip_norm=None, fisher_mode=p["fisher_mode"], fisher_batch=p["fisher_batch"],
                        on_divergence="freeze", save_every=max(p["steps"] // 4, 1))
    seeds, per_copy, rows = [], [], []
    for lr in lrs(p, opt):
        for lam in p["fisher"]:
            for pair in range(p["pairs"]):
                for m, side in enumerate("AB"):
                    s = 1 + 2 * pair + m  # model A of pair 0 has seed 1, B seed 2, ...
                    seeds.append(Seeds(init=s, data=s, dropout=s))
                    per_copy.append(CopySettings(lr=lr, fisher=float(lam)))
                    rows.append({"optimizer": opt, "lr": lr, "fisher": float(lam), "pair": pair, "side": side})
    return RunSpec(model=model, data=data, train=train, seeds=tuple(seeds), per_copy=tuple(per_copy)), rows


def train_data(dataset: str, cache_dir: str):
    """The training Examples of a vector dataset (a Recipe for dispatched jobs)."""
    return load_vectors(VectorDataConfig(dataset=dataset), cache_dir)["train"]


def grid_jobs(spec: RunSpec, copies: list[dict], recipe: Recipe) -> list[Job]:
    """One job per (lr, lambda, pair): its two models, with their own per-copy settings."""
    return [Job(replace(spec, seeds=spec.seeds[i : i + 2], per_copy=spec.per_copy[i : i + 2]), recipe)
            for i in range(0, len(copies), 2)]


def run(params: dict | None = None) -> StudyResult:
    """Train the grids and the LM pairs, align, interpolate, write figures, CSVs and the summary."""
    p, fig_dir, store, cache_dir, device = prepare(PROFILES, params, check_params)
    data_cfg = VectorDataConfig(dataset=p["dataset"])
    data = load_vectors(data_cfg, cache_dir)
    d_in, n_classes = data["train"]["x"].shape[1], int(data["train"]["y"].max()) + 1
    alphas = alpha_grid(p["alphas"])
    recipe = Recipe.of("lmc_core.studies.alignment:train_data", dataset=p["dataset"], cache_dir=str(cache_dir))
    grids = {opt: mlp_spec_of(p, data_cfg, opt, d_in, n_classes) for opt in p["optimizers"]}
    jobs = {opt: grid_jobs(spec, copies, recipe) for opt, (spec, copies) in grids.items()}
    # every optimizer's grid is one pack (one ensemble); each (lr, lambda, pair) is stored on its own
    done = dispatch([j for js in jobs.values() for j in js], store.root, p["executor"], device, p["progress"],
                    slurm=p["slurm"])
    rows, curves, runs = [], [], []
    i = 0
    for opt, (spec, copies) in grids.items():
        mine = done[i : i + len(jobs[opt])]
        i += len(jobs[opt])
        state = stack_states([r.state for r in mine])
        diverged = {2 * n + c: s for n, r in enumerate(mine) for c, s in r.diverged.items()}
        runs.append({"optimizer": opt, "copies": spec.k, "trained_now": any(r.trained_now for r in mine),
                     "diverged": len(diverged), "store": mine[0].path, "runs": [r.path for r in mine]})
        r, c = align_pairs(spec, state, copies, diverged, data, alphas, p, device)
        rows += r
        curves.append(c)
    table = pd.DataFrame(rows)
    curves = pd.concat(curves, ignore_index=True)
    res = StudyResult(params=p, tables={"mlp": table, "mlp_curves": curves, "runs": pd.DataFrame(runs)})
    fig, d = barrier_vs_lr_figure(table, p["definition"], p["profile"])
    res.add_figure(f"{PREFIX}_barrier_vs_lr", fig, d)
    fig, d = sparsity_figure(table, p["profile"])
    res.add_figure(f"{PREFIX}_sparsity_vs_lr", fig, d)
    best = usable(table).sort_values("barrier_wm").iloc[0]
    sel = curves[(curves.optimizer == best.optimizer) & (curves.lr == best.lr) & (curves.fisher == best.fisher)
                 & (curves.pair == best.pair)]
    fig, d = pair_curves_figure(sel, f"MLP, {best.optimizer} lr {best.lr:.3g}, λ = {best.fisher:g} (lowest barrier "
                                     f"after weight matching), pair {int(best.pair)}", p["profile"])
    res.add_figure(f"{PREFIX}_mlp_loss_vs_alpha", fig, d)
    res.add_csv(f"{PREFIX}_mlp_barriers", table)
    res.add_csv(f"{PREFIX}_mlp_curves", curves)
    lm = None
    if p["run_lm"]:
        lm, lm_curves, lm_run = lm_part(p, store, cache_dir, device, alphas)
        res.tables.update({"lm": lm, "lm_curves": lm_curves})
        runs.append(lm_run)
        fig, d = lm_figure(lm_curves, lm, p["definition"], p["profile"])
        res.add_figure(f"{PREFIX}_lm_loss_vs_alpha", fig, d)
        res.add_csv(f"{PREFIX}_lm_barriers", lm)
    if p["tensorboard"]:  # every grid's and the LM pairs' loss logs, from the store
        logs = [{"run": f"{r['optimizer']}-{n}", "store": path} for r in runs for n, path in
                enumerate(r.get("runs", [r["store"]]))]
        res.tensorboard = tensorboard_logs(logs, store.root, PREFIX)
    res.tables["runs"] = without_store([{k: v for k, v in r.items() if k != "runs"} for r in runs])
    res.publish(fig_dir, PREFIX, describe(table, lm, p))
    return res


def _paths(a, b, spec, p, x_match, seed: int):
    """Stacked paths A->B, A->pi_wm(B), A->pi_am(B), A->pi(A) (control) and what matching found."""
    fam = family_of(spec.model)
    pspec = fam.perm_spec(spec.model)
    perms_wm, info = weight_matching(pspec, a, b, seed=seed)
    b_wm = apply_permutation(b, pspec, perms_wm)
    perms_am, _ = activation_matching(pspec, fam.activations(spec.model, a, x_match),
                                      fam.activations(spec.model, b, x_match))
    b_am = apply_permutation(b, pspec, perms_am)
    shuffled = apply_permutation(a, pspec, random_permutation(pspec, generator(seed, 0xC0)))
    perms_c, _ = weight_matching(pspec, a, shuffled, seed=seed)
    a_back = apply_permutation(shuffled, pspec, perms_c)
    alphas = alpha_grid(p["alphas"])
    ends = [b, b_wm, b_am, a_back]
    path = stack_states([interpolate_states(a, e, alphas) for e in ends])
    return path, {"wm_sweeps": info.sweeps, "wm_seconds": info.seconds, "b_wm": b_wm,
                  "cos_before": weight_distance(a, b)["cosine"], "cos_after_wm": weight_distance(a, b_wm)["cosine"]}


def _curve_rows(result, alphas, ident: dict, n_alpha: int) -> list[dict]:
    rows = []
    for j, kind in enumerate(KINDS):
        for i, al in enumerate(alphas):
            q = j * n_alpha + i
            rows.append({**ident, "kind": kind, "split": "test", "alpha": float(al), "loss": float(result.loss[q]),
                         "error": float(result.error[q])})
    return rows


def align_pairs(spec: RunSpec, state, copies: list[dict], diverged: dict, data, alphas, p: dict, device):
    """Per pair: matching, the four paths evaluated on the test split, diagnostics; diverged pairs are gaps."""
    fam = family_of(spec.model)
    test = fam.eval_examples(spec.model, data["test"])
    x_match = data["train"]["x"][: p["match_examples"]]
    hid = fam.hidden_units(spec.model, state, test["x"])  # [K, N, h] per layer
    spars, ent = sparsity(hid), activation_entropy(hid)
    with torch.no_grad():
        preds = fam.model_from_state(spec.model, state).eval()(test["x"][None]).argmax(-1)  # [K, N]
    rows, curve_rows = [], []
    n = len(alphas)
    for i in range(0, len(copies), 2):
        ca = copies[i]
        ident = {k: ca[k] for k in ("optimizer", "lr", "fisher", "pair")}
        if i in diverged or i + 1 in diverged:
            rows.append({**ident, "diverged": True, "collapsed": False})
            continue
        a, b = copy_state(state, i), copy_state(state, i + 1)
        path, info = _paths(a, b, spec, p, x_match, seed=i)
        r = fam.evaluate(spec.model, path, test, batch_size=1024, device=device)
        cr = _curve_rows(r, alphas, ident, n)
        curve_rows += cr
        cd = pd.DataFrame(cr)
        bar = {kind: B.barrier(g.alpha, g.loss, p["definition"]) for kind, g in cd.groupby("kind")}
        mid = {kind: float(np.interp(0.5, g.alpha, g.loss)) for kind, g in cd.groupby("kind")}
        with torch.no_grad():
            wm_pred = fam.model_from_state(spec.model, info["b_wm"]).eval()(test["x"][None]).argmax(-1)[0]
        chance = fam.chance_loss(spec.model)
        collapsed = bool(max(r.loss[0], r.loss[n - 1]) >= COLLAPSED * chance)
        rows.append({**ident, "diverged": False, "collapsed": collapsed,
                     "loss_a": float(r.loss[0]), "loss_b": float(r.loss[n - 1]),
                     "endpoint_loss": 0.5 * float(r.loss[0] + r.loss[n - 1]),
                     "endpoint_error": 0.5 * float(r.error[0] + r.error[n - 1]),
                     "barrier_unaligned": bar[KINDS[0]], "barrier_wm": bar[KINDS[1]], "barrier_am": bar[KINDS[2]],
                     "barrier_control": bar[KINDS[3]], "midpoint_unaligned": mid[KINDS[0]], "midpoint_wm": mid[KINDS[1]],
                     "sparsity_a": float(spars[i]), "sparsity_b": float(spars[i + 1]), "entropy_a": float(ent[i]),
                     "disagree_ab": disagreement(preds[i].numpy(), preds[i + 1].numpy()),
                     "disagree_a_wm": disagreement(preds[i].numpy(), wm_pred.numpy()),
                     "cos_before": info["cos_before"], "cos_after_wm": info["cos_after_wm"],
                     "wm_sweeps": info["wm_sweeps"], "wm_seconds": info["wm_seconds"]})
    return rows, pd.DataFrame(curve_rows)


def lm_part(p: dict, store: RunStore, cache_dir, device, alphas):
    """Pairs of independently initialised character-level pre-norm LMs, aligned and interpolated."""
    corpus = load_corpus("shakespeare", level=p["lm_level"], cache_dir=str(cache_dir))
    model = model_preset(p["lm_model"], vocab_size=len(corpus.vocab), **p["lm_overrides"])
    if model.positions != "learned" or model.arch != "prenorm":
        raise ConfigError("the transformer part needs a pre-norm model with learned positions (lm_model='tinygpt')")
    train = TrainConfig(steps=p["lm_steps"], batch_size=p["lm_batch"], optimizer="adamw", lr=p["lm_lr"],
                        schedule="cosine", warmup_steps=p["lm_warmup"], clip_norm=1.0, betas=(0.9, 0.95),
                        save_every=max(p["lm_steps"] // 4, 1))
    seeds = tuple(Seeds(init=s, data=s, dropout=s) for s in range(1, 2 * p["lm_pairs"] + 1))
    spec = RunSpec(model=model, data=DataConfig(level=p["lm_level"]), train=train, seeds=seeds)
    run_ = store.get(spec, corpus.train, device=device, progress=p["progress"])
    fam = family_of(model)
    test = fam.eval_examples(model, corpus.test, p["lm_eval_tokens"])
    tokens = windows(corpus.train, model.context, p["lm_match_tokens"])[:, :-1][None]
    rows, curve_rows = [], []
    n = len(alphas)
    for pair in range(p["lm_pairs"]):
        a, b = copy_state(run_.state, 2 * pair), copy_state(run_.state, 2 * pair + 1)
        path, info = _paths(a, b, spec, p, tokens, seed=pair)
        r = fam.evaluate(model, path, test, batch_size=32, device=device)
        cr = _curve_rows(r, alphas, {"pair": pair}, n)
        curve_rows += cr
        cd = pd.DataFrame(cr)
        row = {"pair": pair, "loss_a": float(r.loss[0]), "loss_b": float(r.loss[n - 1]),
               "cos_before": info["cos_before"], "cos_after_wm": info["cos_after_wm"], "wm_sweeps": info["wm_sweeps"],
               "wm_seconds": info["wm_seconds"]}
        for kind, g in cd.groupby("kind"):
            for d in ("mean", "chord"):
                row[f"{d}:{kind}"] = B.barrier(g.alpha, g.loss, d)
        rows.append(row)
    lm_run = {"optimizer": "lm (adamw)", "copies": spec.k, "trained_now": run_.trained_now, "diverged": 0,
              "store": run_.path}
    return pd.DataFrame(rows), pd.DataFrame(curve_rows), lm_run


def barrier_vs_lr_figure(table: pd.DataFrame, definition: str, profile: str):
    """Per optimizer: barrier after weight matching (solid), after activation matching (dash-dot) and
    unaligned (dashed) vs learning rate, a colour per Fisher weight; below, the endpoints' test loss (dotted) and
    study 5's measure, the raw test loss at the midpoint of the path after weight matching (solid)."""
    opts = list(dict.fromkeys(table.optimizer))
    fig, axes = plt.subplots(2, len(opts), figsize=(4.6 * len(opts), 6.4), squeeze=False, sharex="col",
                             gridspec_kw={"height_ratios": [2, 1]})
    rows = []
    trained = usable(table)
    ran = table[~table.diverged.astype(bool)] if "barrier_wm" in table else table.iloc[0:0]
    for j, opt in enumerate(opts):
        ax, ax2 = axes[0][j], axes[1][j]
        for c, lam in enumerate(sorted(table.fisher.unique())):
            g = trained[(trained.optimizer == opt) & (trained.fisher == lam)]
            grid = sorted(table[(table.optimizer == opt)].lr.unique())
            m = g.groupby("lr")[["barrier_wm", "barrier_am", "barrier_unaligned"]].mean().reindex(grid)
            m["midpoint_wm"] = g.groupby("lr").midpoint_wm.mean().reindex(grid)
            m["endpoint_loss"] = ran[(ran.optimizer == opt) & (ran.fisher == lam)].groupby("lr").endpoint_loss.mean()
            bad = ran[(ran.optimizer == opt) & (ran.fisher == lam) & ran.collapsed.astype(bool)]
            if len(bad):
                ax2.plot(bad.lr, bad.endpoint_loss, "x", ms=7, color=COLORS[c])
            ax.plot(m.index, m.barrier_wm, "-o", ms=3, color=COLORS[c], label=f"λ = {lam:g}, weight matching")
            ax.plot(m.index, m.barrier_am, "-.", lw=1, color=COLORS[c], label=f"λ = {lam:g}, activation matching")
            ax.plot(m.index, m.barrier_unaligned, "--", lw=1, color=COLORS[c], label=f"λ = {lam:g}, unaligned")
            ax2.plot(m.index, m.endpoint_loss, ":o", ms=3, color=COLORS[c], label=f"λ = {lam:g}, endpoints")
            ax2.plot(m.index, m.midpoint_wm, "-", lw=1, color=COLORS[c], label=f"λ = {lam:g}, midpoint after weight matching")
            rows += [{"optimizer": opt, "fisher": lam, "lr": lr, **r._asdict()} for lr, r in zip(m.index, m.itertuples(index=False))]
        ax.set_xscale("log")
        ax.set_title(opt, fontsize=10)
        ax.set_ylabel(f"test-loss barrier '{definition}' (nats)")
        ax.grid(alpha=0.3)
        ax2.set_xlabel("learning rate (log axis; gaps: diverged; x: not trained)")
        ax2.set_ylabel("test loss (nats)")
        ax2.grid(alpha=0.3)
    axes[0][0].legend(fontsize=6, ncol=1)
    axes[1][0].legend(fontsize=6)
    fig.suptitle(f"MLP on MNIST-1D: barrier between independently initialised models before and after alignment "
                 f"({profile} profile; mean over pairs)", fontsize=10)
    fig.tight_layout()
    return fig, pd.DataFrame(rows)


def usable(table: pd.DataFrame) -> pd.DataFrame:
    """Pairs that trained: not diverged, and both models better than a uniform guess by more than 10 %."""
    if "barrier_wm" not in table:
        return table.iloc[0:0]
    return table[~table.diverged.astype(bool) & ~table.collapsed.astype(bool)]


def sparsity_figure(table: pd.DataFrame, profile: str):
    """Activation sparsity (fraction of ReLU outputs at zero, mean over layers, model A, test set) vs lr."""
    opts = list(dict.fromkeys(table.optimizer))
    fig, axes = plt.subplots(1, len(opts), figsize=(4.6 * len(opts), 3.4), squeeze=False, sharey=True)
    rows = []
    ok = usable(table)
    for j, opt in enumerate(opts):
        ax = axes[0][j]
        grid = sorted(table[table.optimizer == opt].lr.unique())
        for c, lam in enumerate(sorted(table.fisher.unique())):
            g = ok[(ok.optimizer == opt) & (ok.fisher == lam)].groupby("lr").sparsity_a.mean().reindex(grid)
            ax.plot(g.index, g.values, "-o", ms=3, color=COLORS[c], label=f"λ = {lam:g}")
            rows += [{"optimizer": opt, "fisher": lam, "lr": lr, "sparsity": v} for lr, v in g.items()]
        ax.set_xscale("log")
        ax.set_title(opt, fontsize=10)
        ax.set_xlabel("learning rate (log axis)")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("fraction of ReLU outputs at 0")
    axes[0][0].legend(fontsize=8)
    fig.suptitle(f"Activation sparsity of the MLP vs learning rate ({profile} profile; mean over pairs)", fontsize=10)
    fig.tight_layout()
    return fig, pd.DataFrame(rows)


def pair_curves_figure(curves: pd.DataFrame, title: str, profile: str):
    """Test loss and error vs alpha for one pair: unaligned, after weight / activation matching, control."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for ax, metric in zip(axes, ("loss", "error")):
        for c, kind in enumerate(KINDS):
            g = curves[curves.kind == kind].sort_values("alpha")
            ax.plot(g.alpha, g[metric], "-o", ms=3, color=COLORS[c], label=kind)
        ax.set_xlabel(r"interpolation weight $\alpha$ (0 = A, 1 = B or π(B))")
        ax.set_ylabel("test cross-entropy (nats)" if metric == "loss" else "test error")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(f"{title} ({profile} profile)", fontsize=10)
    fig.tight_layout()
    return fig, curves


def lm_figure(curves: pd.DataFrame, lm: pd.DataFrame, definition: str, profile: str):
    """Test loss vs alpha of the LM pairs before and after alignment, with the barriers in nats."""
    fig, ax = plt.subplots(figsize=(7, 4))
    for c, kind in enumerate(KINDS):
        g = curves[curves.kind == kind].groupby("alpha").loss.mean()
        m, se, n = mean_se(lm[f"{definition}:{kind}"])
        ax.plot(g.index, g.values, "-o", ms=3, color=COLORS[c], label=f"{kind}: barrier {fmt_spread(m, se, 3)} nats")
    t = THEUS_GPT2_SHAKESPEARE_BARRIER_NATS
    ax.plot([], [], " ", label=f"Theus et al. 2025, GPT-2 on Tiny Shakespeare: {t['unaligned']:g} → "
                              f"{t['weight matching']:g} nats after weight matching")
    ax.set_xlabel(r"interpolation weight $\alpha$ (0 = A, 1 = B or π(B))")
    ax.set_ylabel("test cross-entropy (nats/char), mean over pairs")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower center")
    fig.suptitle(f"Two independently initialised Shakespeare LMs before and after alignment (barrier '{definition}', "
                 f"{profile} profile)", fontsize=10)
    fig.tight_layout()
    return fig, curves.groupby(["kind", "alpha"]).loss.mean().reset_index()


def describe(table: pd.DataFrame, lm: pd.DataFrame | None, p: dict) -> tuple[str, dict]:
    """The findings in words (Markdown) from this run's numbers, and the numbers as data."""
    d = p["definition"]
    ok = usable(table)
    lines = [f"**Profile `{p['profile']}`: MLP {'-'.join(str(h) for h in p['hidden'])} on MNIST-1D, {p['steps']} steps; "
             f"{p['pairs']} pair(s) of independently initialised models per (optimizer, lr, λ); test-loss barrier "
             f"`{d}` in nats, mean ± standard error over pairs.**", ""]
    numbers = {"definition": d, "optimizers": {}}
    ctrl = ok.barrier_control.abs().max() if len(ok) else float("nan")
    lines.append(f"- Control: a model against a random permutation of itself, matched back, has a barrier of at most "
                 f"{ctrl:.2e} nats over all {len(ok)} pairs (weight matching recovers the permutation).")
    numbers["control_max_abs"] = float(ctrl)
    n_div = int(table.diverged.astype(bool).sum())
    n_col = int(table.collapsed.astype(bool).sum())
    if n_div or n_col:
        lines.append(f"- {n_div} of {len(table)} pairs diverged (a copy frozen during training) and {n_col} did not learn "
                     f"(test loss within 10 % of a uniform guess, e.g. every ReLU dead): they are gaps in the figures, "
                     "not results.")
    for opt, g in ok.groupby("optimizer", sort=False):
        per = g.groupby(["lr", "fisher"])
        m = per.barrier_wm.mean()
        lr_best, lam_best = m.idxmin()
        sel = g[(g.lr == lr_best) & (g.fisher == lam_best)]
        wm, wse, _ = mean_se(sel.barrier_wm)
        un, use, _ = mean_se(sel.barrier_unaligned)
        lo_lr = g[(g.lr == g.lr.min()) & (g.fisher == lam_best)]
        hi_lr = g[(g.lr == g.lr.max()) & (g.fisher == lam_best)]
        lines.append(f"- **{opt}**: the barrier after weight matching is lowest at lr {lr_best:.3g}, λ = {lam_best:g}: "
                     f"{fmt_spread(wm, wse, 3)} nats, against {fmt_spread(un, use, 3)} unaligned (endpoints' test loss "
                     f"{sel.endpoint_loss.mean():.2f}); with the same λ at the smallest lr "
                     f"({g.lr.min():.3g}) it is {fmt_spread(*mean_se(lo_lr.barrier_wm)[:2], 3)}, at the largest that trained "
                     f"({g.lr.max():.3g}) {fmt_spread(*mean_se(hi_lr.barrier_wm)[:2], 3)} nats. "
                     f"Sparsity there: {sel.sparsity_a.mean():.2f} (smallest lr {lo_lr.sparsity_a.mean():.2f}, largest "
                     f"{hi_lr.sparsity_a.mean():.2f}).")
        by_lam = g.groupby("fisher").barrier_wm.mean()
        numbers["optimizers"][opt] = {"best_lr": lr_best, "best_fisher": lam_best, "barrier_wm": wm, "barrier_wm_se": wse,
                                      "barrier_unaligned": un, "by_fisher": {str(k): v for k, v in by_lam.items()}}
    best_opt = min(numbers["optimizers"], key=lambda o: numbers["optimizers"][o]["barrier_wm"]) if numbers["optimizers"] else None
    interior = sum(1 for o, v in numbers["optimizers"].items()
                   if lrs(p, o)[0] < v["best_lr"] < lrs(p, o)[-1])
    lines.append("")
    lines.append(f"Sweet spot: for {interior} of {len(numbers['optimizers'])} optimizers the lowest aligned barrier lies "
                 "strictly inside the learning-rate grid (study 5 reported such a sweet spot for SGD and Adam)." )
    # study 5's own measure: the raw test loss at the midpoint of the aligned path (nothing subtracted), which
    # also grows when the endpoints themselves are poor (too small a learning rate)
    raw = {}
    for opt, g in ok.groupby("optimizer", sort=False):
        mid = g[g.fisher == 0].groupby("lr").midpoint_wm.mean() if (g.fisher == 0).any() else g.groupby("lr").midpoint_wm.mean()
        if len(mid):
            raw[opt] = (float(mid.idxmin()), float(mid.min()), lrs(p, opt)[0] < mid.idxmin() < lrs(p, opt)[-1])
    if raw:
        lines.append("By study 5's own measure — the raw test loss at the midpoint of the path after weight matching, "
                     "λ = 0 — the lowest lies at " + "; ".join(
                         f"lr {lr:.3g} for {o} ({v:.3f} nats, {'inside' if inner else 'at the edge of'} the grid)"
                         for o, (lr, v, inner) in raw.items())
                     + f": a sweet spot for {sum(v[2] for v in raw.values())} of {len(raw)} optimizers. That measure "
                     "includes the endpoints' own loss, so it rises at small learning rates where the barrier does not.")
        numbers["midpoint_sweet_spot"] = {o: {"lr": v[0], "midpoint_loss": v[1], "interior": bool(v[2])}
                                          for o, v in raw.items()}
    lam_rows = ok.groupby("fisher").barrier_wm.mean()
    if len(lam_rows) > 1:
        lines.append("Mean aligned barrier over the whole grid by Fisher weight: " + "; ".join(
            f"λ = {k:g}: {v:.3f} nats" for k, v in lam_rows.items()) + ".")
    headline = (f"weight matching lowers the MLP barrier to {numbers['optimizers'][best_opt]['barrier_wm']:.3f} nats "
                f"({best_opt}, lr {numbers['optimizers'][best_opt]['best_lr']:.3g})" if best_opt else "no pair trained")
    if lm is not None and len(lm):
        lines.append("")
        un, use, n = mean_se(lm[f"{d}:unaligned"])
        wm, wse, _ = mean_se(lm[f"{d}:weight matching"])
        am, ase, _ = mean_se(lm[f"{d}:activation matching"])
        t = THEUS_GPT2_SHAKESPEARE_BARRIER_NATS
        lines.append(f"**Transformer** ({n} pair(s) of independently initialised character-level pre-norm LMs): test-loss "
                     f"barrier {fmt_spread(un, use, 3)} nats unaligned, {fmt_spread(wm, wse, 3)} after weight matching, "
                     f"{fmt_spread(am, ase, 3)} after activation matching (control "
                     f"{lm[f'{d}:control A-pi(A)'].abs().max():.1e}). Theus et al. report {t['unaligned']:g} → "
                     f"{t['weight matching']:g} nats for GPT-2 (124M) on Tiny Shakespeare: a model of a few hundred "
                     "thousand parameters trained for minutes on a CPU is far from that regime, so compare the direction "
                     "and the relative reduction, not the nats.")
        numbers["lm"] = {"unaligned": un, "unaligned_se": use, "weight_matching": wm, "weight_matching_se": wse,
                         "activation_matching": am, "activation_matching_se": ase, "pairs": n}
        headline += f"; LM barrier {un:.3f} → {wm:.3f} nats after weight matching"
    numbers["headline"] = headline
    return "\n".join(lines), numbers
