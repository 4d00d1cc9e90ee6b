"""Notebook 04, MLP part (study 5 on MNIST-1D): the learning-rate x Fisher-weight grids, the width sweep, and what
their barriers may claim.

Each optimizer's grid is dispatched as jobs, one per (lr, lambda, pair); compatible jobs train as one ensemble.
For every pair: the barriers A <-> B, A <-> pi(B) after weight matching and after activation matching, and the
control A <-> pi(A); the endpoints' loss and error; the disagreement between A and the midpoint of the aligned
path; sparsity and entropy. A cell (optimizer, lr, lambda) counts as *trained* when every pair's models learnt and
its endpoints' mean test error is within `trained_margin_pp` points of that optimizer's best cell: the others are
drawn hollow and left out of every claim. Pairs share their init seeds across cells (pair i is seeds 2i+1, 2i+2
everywhere), so a pair index is the independent unit that bootstraps resample.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import torch

from ..align import activation_matching, apply_permutation, random_permutation, weight_matching
from ..analysis import barrier as B
from ..analysis.diagnostics import activation_entropy, disagreement, sparsity, weight_distance
from ..analysis.interpolate import interpolate_states
from ..analysis.verdict import interval, unit_bootstrap
from ..config import CopySettings, RunSpec, Seeds, TrainConfig
from ..data.vectors import VectorDataConfig, load_vectors
from ..ensemble import copy_state, stack_states
from ..families import family_of
from ..models.mlp import MLPConfig
from ..rng import generator
from ..runs.dispatch import Job, Recipe, dispatch

KINDS = ("unaligned", "weight matching", "activation matching", "control A-pi(A)")
# a model whose test loss is still within 10 % of a uniform guess (ln C) has not learnt the task (e.g. all
# ReLUs dead after a too-large step): its flat path is no finding about connectivity
COLLAPSED = 0.9
CELL = ["optimizer", "width", "lr", "fisher"]


def lrs(p: dict, opt: str) -> list[float]:
    """The log-spaced learning rates of one optimizer."""
    lo, hi, n = p["lr_grid"][opt]
    return [float(x) for x in np.geomspace(lo, hi, n)] if n > 1 else [float(lo)]


def train_data(dataset: str, cache_dir: str):
    """The training Examples of a vector dataset (a Recipe for dispatched jobs)."""
    return load_vectors(VectorDataConfig(dataset=dataset), cache_dir)["train"]


def mlp_spec_of(p: dict, data: VectorDataConfig, opt: str, d_in: int = 40, n_classes: int = 10,
                settings: list[tuple[float, float]] | None = None, hidden: tuple[int, ...] | None = None,
                pairs: int | None = None) -> tuple[RunSpec, list[dict]]:
    """One optimizer's grid as ONE ensemble: for every (lr, lambda) — by default the whole lr x lambda grid — `pairs`
    pairs of independently initialised models (the same init seeds in every setting). Returns the spec and each
    copy's setting."""
    model = MLPConfig(d_in=d_in, hidden=tuple(hidden or p["hidden"]), n_classes=n_classes)
    train = TrainConfig(steps=p["steps"], batch_size=p["batch_size"], optimizer=opt, lr=1.0,
                        momentum=p["sgd_momentum"] if opt == "sgd" else 0.0,
                        weight_decay=p["adamw_weight_decay"] if opt == "adamw" else 0.0,
                        schedule="cosine" if opt == "sgd" else "constant", warmup_steps=p["warmup_steps"] if opt == "sgd" else 0,
                        clip_norm=None, fisher_mode=p["fisher_mode"], fisher_batch=p["fisher_batch"],
                        fisher_every=p["fisher_every"],
                        on_divergence="freeze", save_every=max(p["steps"] // 4, 1))
    settings = settings if settings is not None else [(lr, float(lam)) for lr in lrs(p, opt) for lam in p["fisher"]]
    seeds, per_copy, rows = [], [], []
    for lr, lam in settings:
        for pair in range(pairs or p["pairs"]):
            for m, side in enumerate("AB"):
                s = 1 + 2 * pair + m  # model A of pair 0 has seed 1, B seed 2, ...
                seeds.append(Seeds(init=s, data=s, dropout=s))
                per_copy.append(CopySettings(lr=lr, fisher=float(lam)))
                rows.append({"optimizer": opt, "width": model.hidden[0], "lr": lr, "fisher": float(lam), "pair": pair,
                             "side": side})
    return RunSpec(model=model, data=data, train=train, seeds=tuple(seeds), per_copy=tuple(per_copy)), rows


def grid_jobs(spec: RunSpec, copies: list[dict], recipe: Recipe) -> list[Job]:
    """One job per (lr, lambda, pair): its two models, with their own per-copy settings."""
    return [Job(replace(spec, seeds=spec.seeds[i : i + 2], per_copy=spec.per_copy[i : i + 2]), recipe)
            for i in range(0, len(copies), 2)]


def train_and_align(grids: dict, recipe: Recipe, data, alphas, p: dict, store_root, device
                    ) -> tuple[list[dict], list[pd.DataFrame], list[dict]]:
    """Dispatch every grid's jobs (each grid packs into ensembles), then align and interpolate every pair.
    grids: name -> (spec, copies). Returns pair rows, curve tables and one runs row per grid."""
    jobs = {name: grid_jobs(spec, copies, recipe) for name, (spec, copies) in grids.items()}
    done = dispatch([j for js in jobs.values() for j in js], store_root, p["executor"], device, p["progress"],
                    slurm=p["slurm"])
    rows, curves, runs = [], [], []
    i = 0
    for name, (spec, copies) in grids.items():
        mine = done[i : i + len(jobs[name])]
        i += len(jobs[name])
        state = stack_states([r.state for r in mine])
        diverged = {2 * n + c: s for n, r in enumerate(mine) for c, s in r.diverged.items()}
        runs.append({"optimizer": name, "copies": spec.k, "trained_now": any(r.trained_now for r in mine),
                     "diverged": len(diverged), "store": mine[0].path, "runs": [r.path for r in mine]})
        r, c = align_pairs(spec, state, copies, diverged, data, alphas, p, device)
        rows += r
        curves.append(c)
    return rows, curves, runs


def _paths(a, b, spec, p, x_match, alphas, seed: int):
    """Stacked paths A->B, A->pi_wm(B), A->pi_am(B), A->pi(A) (control) and what matching found."""
    fam = family_of(spec.model)
    pspec = fam.perm_spec(spec.model)
    # weight matching is coordinate ascent: from `wm_restarts` sweep orders keep the permutations with the highest
    # objective sum <A, pi(B)> (chosen by the matching objective, never by a barrier)
    perms_wm, info = max((weight_matching(pspec, a, b, seed=seed + 7919 * r) for r in range(p["wm_restarts"])),
                         key=lambda m: m[1].objective[-1])
    b_wm = apply_permutation(b, pspec, perms_wm)
    perms_am, _ = activation_matching(pspec, fam.activations(spec.model, a, x_match),
                                      fam.activations(spec.model, b, x_match))
    b_am = apply_permutation(b, pspec, perms_am)
    shuffled = apply_permutation(a, pspec, random_permutation(pspec, generator(seed, 0xC0)))
    perms_c, _ = weight_matching(pspec, a, shuffled, seed=seed)
    a_back = apply_permutation(shuffled, pspec, perms_c)
    path = stack_states([interpolate_states(a, e, alphas) for e in (b, b_wm, b_am, a_back)])
    return path, {"wm_sweeps": info.sweeps, "wm_seconds": info.seconds, "b_wm": b_wm,
                  "cos_before": weight_distance(a, b)["cosine"], "cos_after_wm": weight_distance(a, b_wm)["cosine"]}


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
    mid = int(np.argmin(np.abs(np.asarray(alphas) - 0.5)))
    for i in range(0, len(copies), 2):
        ident = {k: copies[i][k] for k in ("optimizer", "width", "lr", "fisher", "pair")}
        if i in diverged or i + 1 in diverged:
            rows.append({**ident, "diverged": True, "collapsed": False})
            continue
        a, b = copy_state(state, i), copy_state(state, i + 1)
        # matching seeded by the pair, so a pair gets the same alignment in the grid and in the width sweep
        path, info = _paths(a, b, spec, p, x_match, alphas, seed=int(copies[i]["pair"]))
        r = fam.evaluate(spec.model, path, test, batch_size=1024, device=device)
        cr = [{**ident, "kind": kind, "split": "test", "alpha": float(al), "loss": float(r.loss[j * n + q]),
               "error": float(r.error[j * n + q])} for j, kind in enumerate(KINDS) for q, al in enumerate(alphas)]
        curve_rows += cr
        cd = pd.DataFrame(cr)
        bar = {kind: B.barrier(g.alpha, g.loss, p["definition"]) for kind, g in cd.groupby("kind")}
        chord = {kind: B.barrier(g.alpha, g.loss, "chord") for kind, g in cd.groupby("kind")}
        midloss = {kind: float(np.interp(0.5, g.alpha, g.loss)) for kind, g in cd.groupby("kind")}
        with torch.no_grad():  # the midpoint of the path after weight matching, as a model of its own
            mid_state = copy_state(path, n + mid)
            mid_pred = fam.model_from_state(spec.model, mid_state).eval()(test["x"][None]).argmax(-1)[0]
        endpoint = 0.5 * float(r.loss[0] + r.loss[n - 1])
        rows.append({**ident, "diverged": False,
                     "collapsed": bool(max(r.loss[0], r.loss[n - 1]) >= COLLAPSED * fam.chance_loss(spec.model)),
                     "loss_a": float(r.loss[0]), "loss_b": float(r.loss[n - 1]), "endpoint_loss": endpoint,
                     "endpoint_error": 0.5 * float(r.error[0] + r.error[n - 1]),
                     "barrier_unaligned": bar[KINDS[0]], "barrier_wm": bar[KINDS[1]], "barrier_am": bar[KINDS[2]],
                     "barrier_control": bar[KINDS[3]], "chord_unaligned": chord[KINDS[0]], "chord_wm": chord[KINDS[1]],
                     "chord_am": chord[KINDS[2]], "rel_barrier_wm_pct": 100 * bar[KINDS[1]] / endpoint,
                     "rel_barrier_unaligned_pct": 100 * bar[KINDS[0]] / endpoint,
                     "midpoint_unaligned": midloss[KINDS[0]], "midpoint_wm": midloss[KINDS[1]],
                     "midpoint_error_wm": float(r.error[n + mid]),
                     "sparsity_a": float(spars[i]), "sparsity_b": float(spars[i + 1]), "entropy_a": float(ent[i]),
                     "disagree_ab": disagreement(preds[i].numpy(), preds[i + 1].numpy()),
                     "disagree_a_mid": disagreement(preds[i].numpy(), mid_pred.numpy()),
                     "cos_before": info["cos_before"], "cos_after_wm": info["cos_after_wm"],
                     "wm_sweeps": info["wm_sweeps"], "wm_seconds": info["wm_seconds"]})
    return rows, pd.DataFrame(curve_rows)


def mark_trained(table: pd.DataFrame, margin_pp: float) -> pd.DataFrame:
    """The table with a `trained` column: the cell (optimizer, width, lr, lambda) has no diverged or collapsed
    pair and its endpoints' mean test error is at most `margin_pp` points above the best cell of its optimizer
    (and width)."""
    t = table.copy()
    ok = ~t.diverged.astype(bool) & ~t.collapsed.astype(bool) if "endpoint_error" in t else pd.Series(False, t.index)
    cell_err = t[ok].groupby(CELL).endpoint_error.mean()
    bad_cells = set(t[~ok].set_index(CELL).index)
    best = cell_err.groupby(["optimizer", "width"]).min()
    good = {c for c, e in cell_err.items() if c not in bad_cells and e <= best[(c[0], c[1])] + margin_pp / 100}
    t["trained"] = [tuple(r) in good for r in t[CELL].itertuples(index=False)]
    return t


def per_pair(table: pd.DataFrame, column: str) -> pd.DataFrame:
    """[pair x cell] matrix of one column over the trained cells (cells as columns)."""
    t = table[table.trained]
    return t.pivot_table(index="pair", columns=CELL, values=column, aggfunc="first")


def argmin_lr(table: pd.DataFrame, opt: str, lam: float, column: str = "barrier_wm", seed: int = 0) -> dict:
    """Where `column` (mean over pairs) is lowest along the trained learning rates of (optimizer, lambda), with its
    bootstrap over pairs (a pair index is one unit: resampled with replacement, every cell's mean recomputed).

    Returns lr (point estimate), trained lrs, the bootstrap share of each lr, the 95 % range of the argmin and the
    verdict: "interior" (every resample's argmin lies strictly inside the trained range: a sweet spot), "edge" (every
    95 % resample at one end), "inconclusive", or "too few" (fewer than 3 trained learning rates or 2 pairs).
    """
    t = table[table.trained & (table.optimizer == opt) & (table.fisher == lam)]
    m = t.pivot_table(index="pair", columns="lr", values=column, aggfunc="first").dropna(axis=0)
    grid = [float(x) for x in m.columns]
    out = {"optimizer": opt, "fisher": lam, "column": column, "trained_lrs": grid, "pairs": int(len(m))}
    if len(grid) < 3 or len(m) < 2:
        return {**out, "lr": float(m.mean().idxmin()) if len(grid) else float("nan"), "verdict": "too few",
                "share": {}, "low": float("nan"), "high": float("nan")}
    vals = m.to_numpy()
    point = grid[int(np.argmin(vals.mean(0)))]
    dist = unit_bootstrap([row for row in vals], lambda gs: grid[int(np.argmin(np.mean(gs, 0)))], seed=seed,
                          within=False)
    low, high = (float(x) for x in np.quantile(dist, [0.025, 0.975], method="inverted_cdf"))
    share = {lr: float(np.mean(dist == lr)) for lr in grid}
    if grid[0] < low and high < grid[-1]:
        verdict = "interior"
    elif high == grid[0] or low == grid[-1]:
        verdict = "edge"
    else:
        verdict = "inconclusive"
    return {**out, "lr": point, "verdict": verdict, "share": share, "low": low, "high": high}


def fisher_effect(table: pd.DataFrame, opt: str, lam: float, column: str = "barrier_wm") -> dict:
    """Mean over the learning rates at which EVERY lambda trained of column(lambda) - column(0), per pair, and
    its bootstrap interval over pairs (paired: the same seeds in every cell)."""
    t = table[table.optimizer == opt]
    cells = t.groupby("lr").apply(lambda g: bool(g.trained.all() and g.fisher.nunique() == t.fisher.nunique()),
                                  include_groups=False)
    common = [lr for lr, ok in cells.items() if ok]
    out = {"optimizer": opt, "fisher": lam, "common_lrs": common}
    if not common:
        return {**out, "interval": interval([])}
    s = t[t.lr.isin(common)]
    diff = (s[s.fisher == lam].groupby("pair")[column].mean() - s[s.fisher == 0].groupby("pair")[column].mean()).dropna()
    return {**out, "interval": interval(diff.to_numpy(), unit="pair")}


def width_settings(table: pd.DataFrame, opt: str) -> float | None:
    """The learning rate of the width sweep: the trained lambda = 0 cell with the lowest barrier after weight
    matching (None when no lambda = 0 cell trained)."""
    t = table[table.trained & (table.optimizer == opt) & (table.fisher == 0)]
    if not len(t):
        return None
    return float(t.groupby("lr").barrier_wm.mean().idxmin())


def median_pair(table: pd.DataFrame) -> pd.Series | None:
    """The trained pair whose barrier after weight matching is the median of all trained pairs (the lower median)."""
    t = table[table.trained].sort_values("barrier_wm")
    return t.iloc[(len(t) - 1) // 2] if len(t) else None
