"""Notebook 04's findings (lmc_core.analysis.findings). Every finding reads the test-loss barrier `chord` (a convex
path has none) and summarises pairs within their independent unit: in the MLP grid pair i has the same seeds in every
cell and width, so the pair index is the unit; the LM pairs are disjoint models. The headline is the MLP's paired
test that weight matching lowers the barrier: it carries a verdict, where the LM's remaining fraction is an estimate
(no criterion of ours decides it) on another model and scale, reported beside Theus et al.'s row instead."""
from __future__ import annotations

import numpy as np
import pandas as pd

from ..align.methods import ACTIVATION, CONTROL, LEARNED, ORTHOGONAL_WEIGHTS, UNALIGNED, WEIGHT, WEIGHT_RMS
from ..analysis import findings as F
from ..analysis.criteria import CONVEX_NATS
from ..analysis.lr_grid import fisher_differences, lr_matrix, raw_midpoint
from ..config import model_preset
from .alignment_figures import THEUS_COLUMNS
from .alignment_lm import KINDS as LM_KINDS
from .base import Summary
from .reference import THEUS_GPT2_SHAKESPEARE_BARRIER_NATS as THEUS, THEUS_LM

CHORD = "test-loss barrier `chord`"
STUDY5_WM = ("study 5 (MNIST, 3×512 MLP) reports the direction only on another measure and data set: weight matching "
             "lowers its raw midpoint test loss from 1.34–1.66 to 0.066–0.67 nats across its SGD learning rates (the "
             "block we read as its λ = 1 one; a midpoint loss on MNIST, not a barrier on MNIST-1D)")
STUDY5_FISHER = ("study 5, Adam, on another measure and data set (the raw midpoint loss on MNIST, not a barrier; the "
                 "penalty on every step): its lowest after weight matching 0.0645 (λ = 0), 0.0560 (λ = 0.5), 0.0545 "
                 "(λ = 1) nats, a direction only")


def describe(p, data: dict) -> Summary:
    """The run's findings, the headline (the MLP's paired test) and the numbers for the JSON."""
    grid = data["mlp"][data["mlp"].width == p.hidden[0]]
    ok = grid[grid.trained]
    head = F.paired((ok.chord_wm - ok.chord_unaligned).to_numpy(), ok.pair.to_numpy(), question="Weight matching "
                    "against no alignment, the MLP's barrier between independent models (claimed: lower)",
                    metric=f"{CHORD}, weight matching − unaligned, trained cells averaged within each pair", unit="nats",
                    expected=F.LOWER, digits=3, reference=STUDY5_WM)
    body, numbers = mlp_body(grid, p)
    body.insert(2, head)
    body += width_body(data["width"]) if len(data["width"]) else []
    if p.run_lm:
        lines, numbers["lm"] = lm_body(data["lm"], data["lm_floor"], p)
        body += lines
    setting = (f"Profile `{p.profile}`: MLP {'-'.join(map(str, p.hidden))} on MNIST-1D, {steps_text(grid, p)}, {p.pairs} pairs "
               "of independently initialised models per (optimizer, lr, λ); pair i has the same seeds in every cell and "
               "width, so the pairs are the independent units. Every finding reads the test-loss barrier `chord` (a "
               f"path at most {CONVEX_NATS:g} nats above its chord is convex: no barrier)"
               + ("." if p.definition == "chord" else f"; tables and MLP figures show `{p.definition}`."))
    return Summary(setting, body, head, numbers)


def steps_text(grid: pd.DataFrame, p) -> str:
    """How long the cells trained: `steps`, and where lr_budget lengthened the low rates, each optimizer's budget
    and range of steps; where the lambda > 0 cells are."""
    out = f"{p.steps} steps"
    longer = {o: g for o, g in grid.groupby("optimizer", sort=False) if "steps" in g and g.steps.max() > p.steps}
    if longer:
        out += (" (a cell whose lr × steps falls short of its optimizer's budget trains budget / lr steps, so that "
                "low rates are trained too: " + "; ".join(f"{o} {p.lr_budget[o]:g}, {g.steps.min()}–{g.steps.max()} "
                                                         "steps" for o, g in longer.items()) + ")")
    penal = grid[grid.fisher > 0].groupby("optimizer", sort=False).lr.unique()
    if p.fisher_lrs and len(penal):
        out += " (λ > 0 only at " + "; ".join(f"{o} lr {', '.join(f'{x:.3g}' for x in v)}" for o, v in penal.items()) + ")"
    return out


def mlp_body(grid: pd.DataFrame, p) -> tuple[list, dict]:
    """Control, trained cells, where the aligned barrier is lowest, study 5's raw midpoint measure, the Fisher
    penalty on common cells, disagreement with the aligned midpoint."""
    ok, ran = grid[grid.trained], grid[~grid.diverged.astype(bool)]
    cells = grid.groupby(["optimizer", "lr", "fisher"]).trained.all()
    best = ran[~ran.collapsed.astype(bool)].groupby(["optimizer", "lr", "fisher"]).endpoint_error.mean() \
        .groupby("optimizer").min()
    worse = int((ok.chord_wm > ok.chord_unaligned).sum())
    numbers = {"definition": "chord", "trained_cells": int(cells.sum()), "cells": int(len(cells)),
               "control_max_abs": float(ran.barrier_control.abs().max()) if len(ran) else float("nan"),
               "wm_worse_than_unaligned": worse, "optimizers": {}}
    body = [f"- Control: a model against a random permutation of itself, matched back: barrier at most "
            f"{numbers['control_max_abs']:.1e} nats over {len(ran)} pairs.",
            f"- Trained cells: {int(cells.sum())} of {len(cells)} (optimizer, lr, λ) cells have no diverged or collapsed "
            f"pair and a mean test error within {p.trained_margin_pp:g} points of their optimizer's best ("
            + ", ".join(f"{o} {100 * e:.1f} %" for o, e in best.items()) + f"); {int(grid.diverged.astype(bool).sum())} "
            f"pairs diverged, {int(grid.collapsed.astype(bool).sum())} did not learn. Only trained cells enter the "
            "findings.",
            f"- Weight matching (best objective of {p.wm_restarts} runs) left a higher barrier than unaligned in "
            f"{worse} of {len(ok)} trained pairs (none is dropped for its barrier)."]
    for opt in dict.fromkeys(grid.optimizer):
        lines, numbers["optimizers"][opt] = optimizer_lines(grid, opt)
        body += lines
    raw = raw_midpoint(ran, p.pairs)
    if raw:
        body.append("- Study 5's own measure, the raw test loss at the midpoint of the aligned path (λ = 0, every cell "
                    "whose pairs all ran, as study 5 read it), contains the endpoints' own loss: " + "; ".join(
                        f"{o}: lowest at lr {r['lr']:.3g}, the endpoints' loss at lr {r['endpoint_lr']:.3g}, Spearman ρ "
                        f"= {r['rho_endpoint_loss']:.2f} over {r['lrs']} learning rates" for o, r in raw.items())
                    + " (descriptive: where the two minima coincide it marks where the models are best).")
        numbers["raw_midpoint"] = raw
    body += fisher_findings(grid, p.fisher_every)
    if len(ok):
        body.append(F.estimate(ok.disagree_a_mid, ok.pair, question="Test-set disagreement between A and the midpoint "
                               f"of its aligned path (A against B: {ok.disagree_ab.mean():.3f})", metric="fraction of "
                               "test examples, trained pairs averaged within each pair", unit="", digits=3))
    return body, numbers


def optimizer_lines(grid: pd.DataFrame, opt: str) -> tuple[list, dict]:
    """Where the barrier after weight matching is lowest (lambda = 0, findings.argmin over the trained learning
    rates, paired by pair) and that barrier with its convex paths counted."""
    m = lr_matrix(grid, opt, 0.0, "chord_wm")
    if not m.shape[0] or not m.shape[1]:
        return [f"- **{opt}** (λ = 0): no trained cell, so nothing is claimed."], {}
    lrs = [float(x) for x in m.columns]
    f = F.argmin(lrs, m.to_numpy(), question=f"**{opt}**: the learning rate with the lowest barrier after weight "
                 f"matching (λ = 0; trained learning rates {', '.join(f'{x:.3g}' for x in lrs)})", metric=CHORD, unit="",
                 digits=int(2 - np.floor(np.log10(min(lrs)))))  # three significant digits of the smallest lr
    at = grid[grid.trained & (grid.optimizer == opt) & (grid.fisher == 0) & (grid.lr == f.estimate)]
    convex = int((at.chord_wm <= CONVEX_NATS).sum())
    cells = grid[grid.trained & (grid.optimizer == opt) & (grid.fisher == 0)].groupby("lr").endpoint_error.mean()
    there = F.estimate(at.chord_wm, at.pair, question=f"{opt}: the barrier after weight matching at lr {f.estimate:.3g} "
                       f"({convex} of {len(at)} paths convex, no barrier; unaligned {at.chord_unaligned.mean():.3f} "
                       f"nats; the endpoints' test error there {100 * at.endpoint_error.mean():.1f} %, lowest "
                       f"{100 * cells.min():.1f} % at lr {cells.idxmin():.3g}" + (": the barrier is lowest where the "
                       "endpoints' error is, so this minimum may mark the best-trained models rather than a sweet spot "
                       "of the rate itself" if cells.idxmin() == f.estimate else "") + ")",
                       metric=CHORD, unit="nats", digits=3)
    return [f, there], {"argmin": f.as_dict(), "at_argmin": there.as_dict(), "convex_at_argmin": convex}


def fisher_findings(grid: pd.DataFrame, every: int = 1) -> list:
    """Per optimizer and lambda > 0: the change of the aligned barrier on the learning rates at which every lambda
    trained (findings.paired by pair, the claimed direction: lower)."""
    out = []
    for opt in dict.fromkeys(grid.optimizer):
        for lam in sorted(x for x in grid[grid.optimizer == opt].fisher.unique() if x > 0):
            common, diff = fisher_differences(grid, opt, lam, "chord_wm")
            out.append(F.paired(diff.to_numpy(), question=f"{opt}: Fisher penalty λ = {lam:g} against none, barrier "
                                f"after weight matching (claimed: lower; the penalty once every {every} step(s); mean over the "
                                f"{len(common)} learning rate(s) at which every λ trained)", metric=CHORD, unit="nats", expected=F.LOWER, digits=3,
                                reference=STUDY5_FISHER) if common else
                       f"- {opt}, λ = {lam:g}: no learning rate at which every λ trained, so no comparison.")
            if common:  # the penalty changes the endpoints too: a barrier difference is not the penalty's alone
                e = {x: grid[(grid.optimizer == opt) & grid.lr.isin(common) & (grid.fisher == x)] for x in (0, lam)}
                out.append(f"  - The endpoints differ too (mean over those pairs, λ = 0 → {lam:g}): test error "
                           f"{100 * e[0].endpoint_error.mean():.1f} → {100 * e[lam].endpoint_error.mean():.1f} %, test "
                           f"loss {e[0].endpoint_loss.mean():.3f} → {e[lam].endpoint_loss.mean():.3f} nats: the penalty "
                           "moves the models it connects, so a change of the barrier cannot be told from a change of "
                           "the endpoints (the confound).")
    return out


def width_body(width: pd.DataFrame) -> list:
    """The width sweep per optimizer: the aligned barrier per width and narrowest vs widest (findings.paired: the
    same pair seeds at every width)."""
    out = ["", "**Width** (Git Re-Basin's main variable; 3 hidden layers of each width, the same pair seeds at every "
           "width):"]
    for opt, g in width[~width.diverged.astype(bool)].groupby("optimizer", sort=False):
        per = g.pivot_table(index="pair", columns="width", values="chord_wm", aggfunc="first").dropna()
        ws, err = list(per.columns), 100 * g.groupby("width").endpoint_error.mean()
        out.append(f"- {opt} at lr {g.lr.iloc[0]:.3g}, λ = 0: barrier after weight matching (`chord`, mean over pairs) "
                   + "; ".join(f"{w} units {v:.3f} nats" for w, v in per.mean().items()) + f". The endpoints' test "
                   f"error changes with width too ({err.iloc[0]:.1f} % at {err.index[0]}, {err.iloc[-1]:.1f} % at "
                   f"{err.index[-1]}): width and endpoint quality are not separated here.")
        if len(ws) > 1:
            out.append(F.paired((per[ws[0]] - per[ws[-1]]).to_numpy(), question=f"{opt}: the narrowest width "
                                f"({ws[0]}) against the widest ({ws[-1]}), barrier after weight matching (claimed: "
                                "higher)",
                                metric=f"{CHORD}, narrowest − widest, paired by pair", unit="nats", expected=F.HIGHER,
                                digits=3, reference="Ainsworth et al. 2023: the barrier after weight matching falls "
                                "with width"))
    return out


def floor_lines(floor: pd.DataFrame, p) -> list[str]:
    """The precondition: has the endpoints' test loss flattened at this length (pair 0's runs of each length)?"""
    fin = floor[floor.source == "final"].groupby("steps").test_loss.mean()
    if len(fin) <= 1:
        return []
    drop = float(fin.iloc[-2] - fin.iloc[-1])
    return ["- Endpoints (precondition): the final test loss of runs of " + ", ".join(
        f"{s} steps {v:.3f}" for s, v in fin.items()) + f" nats (pair 0, each run with its own schedule): from "
        f"{fin.index[-2]} to {fin.index[-1]} steps it falls by {drop:.3f} nats, "
        + (f"less than lm_floor_tol = {p.lm_floor_tol:g}: the loss has flattened at this length." if drop
           < p.lm_floor_tol else f"more than lm_floor_tol = {p.lm_floor_tol:g}: the endpoints are still improving, "
           "so the barriers below are those of models not at their floor.")]


def lm_body(lm: pd.DataFrame, floor: pd.DataFrame, p) -> tuple[list, dict]:
    """Every alignment's remaining fraction of the unaligned barrier beside Theus et al.'s row, the two paired
    comparisons their row makes, the residual streams' fit, what differs from their setting."""
    n, unit = len(lm), f"nats/{'char' if p.lm_level == 'char' else 'token'}"
    un = lm[f"chord:{UNALIGNED}"].to_numpy(float)
    t0 = THEUS["unaligned"]
    body = ["", f"**Transformer** ({n} pairs of independently initialised {p.lm_level}-level pre-norm LMs, "
            f"{p.lm_steps} steps with a cosine-decaying learning rate; test-loss barrier `chord` in {unit}):",
            *floor_lines(floor, p),
            F.estimate(un, question="The unaligned barrier", metric=CHORD, unit=unit, digits=3,
                       reference=f"Theus et al. 2025 (their GPT-2-style LM on Tiny Shakespeare): {t0:g} nats per "
                       "subword token, another scale than ours, so only the fractions below are compared")]
    remain = {}
    for kind in LM_KINDS[1:-1]:
        convex, theus = int((lm[f"chord:{kind}"] <= CONVEX_NATS).sum()), THEUS.get(THEUS_COLUMNS.get(kind, ""))
        remain[kind] = F.estimate(100 * lm[f"chord:{kind}"].to_numpy(float) / un, question=f"What remains of the "
                                  f"unaligned barrier after {kind}" + (f" ({convex} of {n} paths convex)" if convex
                                                                        else ""), metric="per pair", unit="%",
                                  digits=1, reference=(f"Theus et al.: {theus:g} of {t0:g} nats, {100 * theus / t0:.0f} %"
                                                       + (f" (their learned permutations + orthogonal map; learned "
                                                          f"permutations alone: {THEUS['learned permutations']:g}, "
                                                          f"{100 * THEUS['learned permutations'] / t0:.0f} %)"
                                                          if kind == LEARNED else "")) if theus is not None else "")
    body += list(remain.values())
    body.append(f"- Control: A against a random permutation of itself, matched back: barrier at most "
                f"{lm[f'chord:{CONTROL}'].abs().max():.1e} {unit}.")
    pair = lambda x, y: (lm[f"chord:{x}"] - lm[f"chord:{y}"]).to_numpy(float)  # noqa: E731
    body += [F.paired(pair(WEIGHT, ACTIVATION), question="Weight matching against activation matching",
                      metric=f"{CHORD}, weight − activation matching", unit=unit, digits=3, reference=f"Theus et al.: "
                      f"weight matching {THEUS['weight matching']:g}, activation matching {THEUS['activation matching']:g}"),
             F.paired(pair(ORTHOGONAL_WEIGHTS, WEIGHT_RMS), question="The orthogonal residual map against the same "
                      "permutations in the same RMSNorm form (claimed: lower)", metric=f"{CHORD}, orthogonal (weights) "
                      "− weight matching (RMSNorm form)", unit=unit, expected=F.LOWER, digits=3,
                      reference=f"Theus et al. have no closed-form orthogonal row; weight matching "
                      f"{THEUS['weight matching']:g} nats, their learned permutations + orthogonal map "
                      f"{THEUS['learned permutations + orthogonal map']:g}")]
    body += residual_lines(lm, p)
    best = min(remain, key=lambda k: remain[k].estimate)
    return body, {"pairs": n, "best": best, "remaining_pct": {k: f.as_dict() for k, f in remain.items()}}


def residual_lines(lm: pd.DataFrame, p) -> list[str]:
    """Why a residual map matters (the streams' fit), the learned map's fallbacks, and what differs from Theus et al."""
    cfg = model_preset(p.lm_model, **p.lm_overrides)
    fo, fw, fa, fi = (float(lm[f"residual_fit_{c}"].mean()) for c in ("orthogonal", "wm", "am", "identity"))
    wm_left, orth_left = (float(np.nanmean(100 * lm[f"chord:{k}"] / lm[f"chord:{UNALIGNED}"]))
                          for k in (WEIGHT, ORTHOGONAL_WEIGHTS))
    kept = int(lm.learned_kept_start.astype(bool).sum())
    return [f"- Why a residual map matters (measured on the matching windows, mean over pairs; 1 − ‖X_B M − X_A‖² / "
            f"‖X_A‖²): B's residual stream explains {100 * fi:.0f} % of A's as it is (M the identity), {100 * fw:.0f} % "
            f"after the residual permutation of weight matching, {100 * fa:.0f} % after that of activation matching "
            f"and {100 * fo:.0f} % after the Procrustes rotation. Weight matching chooses its residual permutation "
            f"from the weights, not the streams, and it fits them {'worse' if fw < fi else 'better'} than no map at "
            f"all: consistent with {wm_left:.0f} % of the unaligned barrier remaining after weight matching, against "
            f"{orth_left:.0f} % after the orthogonal map of the weights (means over pairs).",
            *([f"- The learned map did not lower the held-out midpoint loss for {kept} of {len(lm)} pairs; their "
               "closed-form start is reported as 'learned'."] if kept else []),
            f"- Against Theus et al. (a GPT-2-style LM on Tiny Shakespeare: {THEUS_LM['n_layers']} layers, d = "
            f"{THEUS_LM['d_model']}, context {THEUS_LM['context']}): ours has {cfg.n_layers} layers, d = {cfg.d_model}, "
            f"context {cfg.context} (in Git Re-Basin the barrier left after permutations falls with width; not tested "
            f"on LMs here), and our barriers are per {'character' if p.lm_level == 'char' else 'token'}, so sizes "
            "compare only as fractions of the unaligned barrier; the `paper` profile trains their shape."]
