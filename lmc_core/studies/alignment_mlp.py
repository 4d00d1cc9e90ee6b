"""Notebook 04, MLP part (study 5 on MNIST-1D): the learning-rate x Fisher-weight grids and the width sweep.

Each optimizer's grid is dispatched as jobs, one per (lr, lambda, pair); compatible jobs train as one ensemble.
For every pair: the barriers A <-> B, A <-> pi(B) after weight and activation matching, and the control A <-> pi(A)
(analysis.pair_alignment); the endpoints' loss and error; the disagreement between A and the midpoint of the aligned
path; sparsity and entropy. A cell (optimizer, width, lr, lambda) is *trained* when every pair's models learnt and its
endpoints' mean test error is within `trained_margin_pp` points of its optimizer's best cell: the others are drawn
hollow and left out of every finding. Pair i is seeds 2i+1, 2i+2 in every cell and width: the independent unit.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import torch

from ..analysis.diagnostics import activation_entropy, disagreement, sparsity
from ..analysis.lr_grid import budget_steps, lowest_lr, middle_points
from ..analysis.pair_alignment import classifier_pair
from ..config import CopySettings, RunSpec, Seeds, TrainConfig
from ..data.vectors import VectorDataConfig
from ..ensemble import copy_state, stack_states
from ..families import family_of
from ..models.mlp import MLPConfig
from ..runs.dispatch import Job, Recipe, dispatch

def lrs(p, opt: str) -> list[float]:
    """The log-spaced learning rates of one optimizer."""
    lo, hi, n = p.lr_grid[opt]
    return [float(x) for x in np.geomspace(lo, hi, n)] if n > 1 else [float(lo)]


def mlp_spec_of(p, data: VectorDataConfig, opt: str, d_in: int = 40, n_classes: int = 10,
                settings: list[tuple[float, float]] | None = None, hidden: tuple[int, ...] | None = None,
                pairs: int | None = None) -> tuple[RunSpec, list[dict]]:
    """One optimizer's grid as ONE ensemble: for every (lr, lambda) — by default the whole lr x lambda grid — `pairs`
    pairs of independently initialised models (the same init seeds in every setting). Returns the spec and each
    copy's setting."""
    model = MLPConfig(d_in=d_in, hidden=tuple(hidden or p.hidden), n_classes=n_classes)
    sgd = opt == "sgd"
    train = TrainConfig(steps=p.steps, batch_size=p.batch_size, optimizer=opt, lr=1.0,
                        momentum=p.sgd_momentum if sgd else 0.0,
                        weight_decay=p.adamw_weight_decay if opt == "adamw" else 0.0,
                        schedule="cosine" if sgd else "constant", warmup_steps=p.warmup_steps if sgd else 0,
                        clip_norm=None, fisher_mode=p.fisher_mode, fisher_batch=p.fisher_batch,
                        fisher_every=p.fisher_every, on_divergence="freeze", save_every=max(p.steps // 4, 1))
    penalised = middle_points(lrs(p, opt), p.fisher_lrs) if opt in p.fisher_optimizers else []
    settings = settings if settings is not None else [(lr, float(lam)) for lr in lrs(p, opt) for lam in p.fisher
                                                      if lam == 0 or lr in penalised]
    seeds, per_copy, rows = [], [], []
    for lr, lam in settings:
        for pair in range(pairs or p.pairs):
            for m, side in enumerate("AB"):
                s = 1 + 2 * pair + m  # model A of pair 0 has seed 1, B seed 2, ...
                seeds.append(Seeds(init=s, data=s, dropout=s))
                per_copy.append(CopySettings(lr=lr, fisher=float(lam)))
                rows.append({"optimizer": opt, "width": model.hidden[0], "lr": lr, "fisher": float(lam), "pair": pair,
                             "side": side, "steps": budget_steps(lr, p.steps, p.lr_budget.get(opt, 0))})
    return RunSpec(model=model, data=data, train=train, seeds=tuple(seeds), per_copy=tuple(per_copy)), rows


def grid_jobs(spec: RunSpec, copies: list[dict], recipe: Recipe) -> list[Job]:
    """One job per (lr, lambda, pair): its two models, with their own per-copy settings and their cell's length
    (jobs of one length train as one ensemble)."""
    def train(steps: int):
        return replace(spec.train, steps=steps, save_every=max(steps // 4, 1))
    return [Job(replace(spec, seeds=spec.seeds[i : i + 2], per_copy=spec.per_copy[i : i + 2],
                        train=train(copies[i]["steps"])), recipe) for i in range(0, len(copies), 2)]


def train_and_align(grids: dict, recipe: Recipe, data, alphas, p, ctx) -> tuple[list[dict], list[pd.DataFrame], list]:
    """Dispatch every grid's jobs (each grid packs into ensembles), then align and interpolate every pair.
    grids: name -> (spec, copies). Returns pair rows, curve tables and one runs row per grid."""
    jobs = {name: grid_jobs(spec, copies, recipe) for name, (spec, copies) in grids.items()}
    done = iter(dispatch([j for js in jobs.values() for j in js], ctx.store.root, p.executor, ctx.device, p.progress,
                         slurm=p.slurm))
    rows, curves, runs = [], [], []
    for name, (spec, copies) in grids.items():
        mine = [next(done) for _ in jobs[name]]
        diverged = {2 * n + c for n, r in enumerate(mine) for c in r.diverged}
        runs.append({"optimizer": name, "copies": spec.k, "trained_now": any(r.trained_now for r in mine),
                     "diverged": len(diverged), "store": mine[0].path, "runs": [r.path for r in mine]})
        r, c = align_pairs(spec, stack_states([r.state for r in mine]), copies, diverged, data, alphas, p, ctx.device)
        rows += r
        curves.append(c)
    return rows, curves, runs


def align_pairs(spec: RunSpec, state, copies: list[dict], diverged: set, data, alphas, p, device):
    """Per pair: matching, the four paths on the test split, diagnostics (classifier_pair; sparsity and entropy of
    A's hidden units, disagreement of A with B and with the aligned midpoint); diverged pairs are gaps."""
    fam, cfg = family_of(spec.model), spec.model
    test = fam.eval_examples(cfg, data["test"])
    hid = fam.hidden_units(cfg, state, test["x"])  # [K, N, h] per layer
    with torch.no_grad():
        preds = fam.model_from_state(cfg, state).eval()(test["x"][None]).argmax(-1).numpy()  # [K, N]
    spars, ent, rows, curves = sparsity(hid), activation_entropy(hid), [], []
    for i in range(0, len(copies), 2):
        ident = {k: copies[i][k] for k in ("optimizer", "width", "lr", "fisher", "pair", "steps")}
        if i in diverged or i + 1 in diverged:
            rows.append({**ident, "diverged": True, "collapsed": False})
            continue
        # matching seeded by the pair, so a pair gets the same alignment in the grid and in the width sweep
        row, cd, mid = classifier_pair(fam, cfg, copy_state(state, i), copy_state(state, i + 1),
                                       data["train"]["x"][: p.match_examples], test, alphas, int(copies[i]["pair"]),
                                       p.wm_restarts, p.definition, device)
        curves.append(cd.assign(**ident)[[*ident, *cd.columns]])
        tail = ("cos_before", "cos_after_wm", "wm_sweeps", "wm_seconds")  # the table's last columns, as before
        rows.append({**ident, "diverged": False, **{k: v for k, v in row.items() if k not in tail},
                     "sparsity_a": float(spars[i]), "sparsity_b": float(spars[i + 1]), "entropy_a": float(ent[i]),
                     "disagree_ab": disagreement(preds[i], preds[i + 1]),
                     "disagree_a_mid": disagreement(preds[i], mid.numpy()), **{k: row[k] for k in tail}})
    return rows, pd.concat(curves, ignore_index=True) if curves else pd.DataFrame()


def width_sweep(table: pd.DataFrame, recipe: Recipe, data, alphas, p, ctx, data_cfg, shape
                ) -> tuple[pd.DataFrame, list]:
    """The width sweep at each width optimizer's trained lambda = 0 lr with the lowest mean barrier after weight
    matching on the table's definition (it selects runs: unchanged since they were trained; the narrowest width
    repeats grid jobs): its pair rows and the runs rows of grids trained now."""
    sweeps = {}
    for opt in p.width_optimizers:
        lr = lowest_lr(table, opt, "barrier_wm")
        for w in p.widths if lr is not None else []:
            sweeps[f"{opt} width {w}"] = mlp_spec_of(p, data_cfg, opt, *shape, settings=[(lr, 0.0)],
                                                     hidden=(w,) * len(p.hidden), pairs=p.width_pairs)
    if not sweeps:
        return pd.DataFrame(), []
    rows, _, runs = train_and_align(sweeps, recipe, data, alphas, p, ctx)
    return pd.DataFrame(rows), [r for r in runs if r["trained_now"]]


