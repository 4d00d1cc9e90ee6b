"""The summary of notebook 06 (lmc_core.studies.grokking), through the findings layer: neighbouring cells where
every seed fit by findings.arms on the ranks of the seeds' grok steps (never grokked: infinitely late; with 3 seeds
per cell p reaches 0.05 only when the ranges separate), those by findings.trend; connectivity by findings.shared_pairs
over the seeds on the test-error barrier against Frankle et al.'s criterion; loss barriers and the relation to the
key frequencies (Spearman ρ over pairs that share seeds) described, not judged.
"""
from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
from scipy.stats import spearmanr

from ..align.methods import UNALIGNED, WEIGHT
from ..analysis import findings as F
from ..analysis.criteria import CONVEX_TOL, FRANKLE
from ..analysis.metrics import bounds_of
from ..analysis.grok import grok_range, grokked_seeds
from ..analysis.residual_methods import METHODS
from .base import Summary
from .grokking_figures import GROK_PCT as PCT
VARIABLES = (("weight_decay", "fisher", "weight decay", "wd", "λ"), ("fisher", "weight_decay", "Fisher penalty λ",
                                                                   "λ", "wd"))


def comparisons(grok: pd.DataFrame, cells: pd.DataFrame, var: str, other: str, name: str, short: str,
                other_short: str, accuracy: bool = False) -> list[F.Finding]:
    """Along every slice of the grid (`other` held fixed), neighbouring cells of the fitting part (every seed fit):
    the seeds' grok steps of the cell with more `var` against the other's (findings.arms on ranks, one-sided:
    the claim is that the former is lower, i.e. sooner); accuracy=True: their final test accuracy instead (the
    claim: higher, i.e. a flatter minimum generalises better)."""
    col = "final_test_acc" if accuracy else "grok_step"
    vals = {k: (100 * g[col] if accuracy else g[col].fillna(np.inf)) for k, g in grok.groupby(["weight_decay", "fisher"])}
    out = []
    for val, h in cells[cells.fits].groupby(other):
        for lo, hi in itertools.pairwise(h.sort_values(var).itertuples()):
            a, b = vals[hi.weight_decay, hi.fisher], vals[lo.weight_decay, lo.fisher]
            metric = (f"final test accuracy, range over seeds: {a.min():.0f}–{a.max():.0f} % vs {b.min():.0f}–"
                      f"{b.max():.0f} %" if accuracy else f"sustained grok step, median [range] over seeds: "
                      f"{grok_range(hi)} vs {grok_range(lo)}")
            out.append(F.arms(a, b, question=f"{'Higher final test accuracy' if accuracy else 'Sooner'} with more "
                              f"{name}? ({other_short} {val:g})", metric=metric, unit="points" if accuracy else "steps",
                              names=(f"{short} {getattr(hi, var):g}", f"{short} {getattr(lo, var):g}"),
                              expected=F.HIGHER if accuracy else F.LOWER, unit_name="seed", ranks=True,
                              digits=1 if accuracy else 0))
    return out


def describe(grok: pd.DataFrame, cells: pd.DataFrame, pairs: pd.DataFrame, trajectory: pd.DataFrame, p) -> Summary:
    """The findings (findings layer) from this run's numbers; the headline is the weight-decay trend."""
    hold = (f"for {p.grok_evals} consecutive evaluations ({p.grok_evals * p.eval_every} steps; a crossing later than "
            f"step {p.steps - (p.grok_evals - 1) * p.eval_every} cannot be held that long and is not counted)"
            if p.grok_evals else "to the end of the run")
    setting = (f"Profile `{p.profile}`: p = {p.p}, {100 * p.train_frac:g} % of the pairs for training, {p.steps} "
               f"full-batch AdamW steps (lr {p.lr:g}), {p.seeds} seeds per cell ({max(p.seeds, p.connect_seeds)} at wd "
               f"{p.connect_setting[0]:g}, λ {p.connect_setting[1]:g}); grokked = test accuracy ≥ {PCT} % from some "
               f"logged step on, {hold} (a transient spike does not count); grok steps as median [range] over seeds.")
    body, numbers, trends = grok_lines(grok, cells), {}, {}
    for var, other, name, short, other_short in VARIABLES:
        comps = comparisons(grok, cells, var, other, name, short, other_short)
        trends[var] = F.trend(comps, question=f"Sustained grok sooner with more {name} (study 5's claim; neighbouring "
                              "cells where every seed fit, the other variable fixed)", claimed=F.LOWER)
        body += [*comps, trends[var]]
    comps = comparisons(grok, cells, *VARIABLES[1], accuracy=True)  # the penalty's aim: a flatter, better minimum
    trends["accuracy"] = F.trend(comps, question="Higher final test accuracy with more Fisher penalty λ (neighbouring "
                                 "cells where every seed fit, weight decay fixed)", claimed=F.HIGHER)
    body += [*comps, trends["accuracy"]]
    if len(pairs):
        body += ["", *connect_lines(pairs, trajectory, grok, p, numbers)]
    numbers.update(cells=len(cells), fitting=int(cells.fits.sum()), no_fit=int(cells.no_fit.sum()),
                   grokked_copies=int(np.isfinite(grok.grok_step).sum()), copies=int((~grok.diverged).sum()))
    return Summary(setting, body, trends["weight_decay"], numbers)


def grok_lines(grok: pd.DataFrame, cells: pd.DataFrame) -> list[str]:
    """The precondition (which cells fit the training set) and how many copies grokked, and how."""
    nofit, mixed, fitting = cells[cells.no_fit], cells[~cells.no_fit & ~cells.fits], cells[cells.fits]
    out = [f"- Precondition: {len(fitting)} of {len(cells)} cells fit the training set (train accuracy ≥ {PCT} %) "
           "with every seed" + (f"; {len(mixed)} with some seeds only (" + "; ".join(
               f"wd {r.weight_decay:g}, λ {r.fisher:g}: {r.fit}/{r.seeds}" for r in mixed.itertuples()) + ")"
               if len(mixed) else "")
           + (f"; in {len(nofit)} no seed did (over-regularised at this learning rate: " + "; ".join(
               f"wd {r.weight_decay:g}, λ {r.fisher:g}" for r in nofit.itertuples()) + ")" if len(nofit) else "")
           + ". Only cells where every seed fit are compared."]
    g = grok[~grok.diverged.astype(bool)]
    hit, grokked, late = np.isfinite(g.first_hit_step), np.isfinite(g.grok_step), np.isfinite(g.late_step)
    out.append(f"- {int(grokked.sum())} of {len(g)} copies grokked (sustained). {int((hit & ~grokked & ~late).sum())} "
               f"reached {PCT} % test accuracy but never held it for the window"
               + (f"; {int(late.sum())} held it from a step too late in the run to complete the window, to the end "
                  "(counted as not grokked within the run)" if late.any() else "")
               + f"; {int((hit & grokked & (g.grok_step > g.first_hit_step)).sum())} crossed it, fell back, and "
               "grokked for good only later — a first-crossing definition would count the first kind as grokked and "
               "the last grokked earlier.")
    return out


def connect_lines(pairs: pd.DataFrame, trajectory: pd.DataFrame, grok: pd.DataFrame, p, numbers: dict) -> list:
    """Are grokked seeds linearly connected after each alignment (shared_pairs over seeds), and what do the pairs
    that share their key frequencies show (described)?"""
    (wd, lam), (cw, cl) = p.connect_setting, p.control_setting
    cell, gp, ctrl = grok[(grok.weight_decay == wd) & (grok.fisher == lam)], *(pairs[pairs.role == r] for r in (
        "grokked", "control"))
    out = [f"**Connectivity** (wd {wd:g}, λ {lam:g}: {len(grokked_seeds(grok, wd, lam))} of {len(cell)} seeds "
           f"grokked and end at ≥ {PCT} % test accuracy, so {len(gp)} pairs, which share seeds (the units); test-error "
           f"barrier `{p.definition}`, convex paths tagged from its chord; loss barriers: median and range over pairs):"]
    if not len(gp):
        return out + ["- Fewer than two seeds grokked: no pair to interpolate."]
    found = {}
    for m in METHODS:
        found[m] = F.shared_pairs(gp[f"error_barrier_pp:{m}"], gp.seed_a, gp.seed_b, gp[f"error_chord_pp:{m}"],
                                  criterion=FRANKLE, question=f"Grokked seeds linearly connected ({m})?",
                                  metric=f"test error, barrier `{p.definition}`", unit_name="seed", digits=1,
                                  bounds=bounds_of("error", p.definition))
        lv, up = gp[f"loss_barrier:{m}"].to_numpy(float), gp[f"loss_barrier:{m}"] > gp[f"loss_barrier:{UNALIGNED}"]
        out += [found[m], f"  - loss barrier median {np.nanmedian(lv):.3g} nats (pairs {np.nanmin(lv):.3g}–"
                f"{np.nanmax(lv):.3g})" + ("" if m == UNALIGNED else f"; above the unaligned one in {up.sum()} of "
                                           f"{len(gp)} pairs") + "."]
    if len(ctrl):
        ec, convex = ({m: ctrl[f"error_chord_pp:{m}"].mean() for m in (UNALIGNED, WEIGHT)},
                      (ctrl[f"chord_pct:{UNALIGNED}"] <= CONVEX_TOL).sum())
        out.append(f"- Control (wd {cw:g}, λ {cl:g}, memorised, never grokked): {convex} of {len(ctrl)} unaligned "
                   f"test-loss paths convex (chord ≤ {CONVEX_TOL:g} % of "
                   f"the endpoints' loss: no barrier), yet the test error rises {ec[UNALIGNED]:.1f} points above the "
                   f"chord on average (after weight matching {ec[WEIGHT]:.1f}): two memorisers guess differently on "
                   "unseen pairs.")
    t = trajectory[trajectory.kind == WEIGHT]
    before, after = (t[t.step < cell.grok_step.min()].error_barrier_pp,
                     t[t.step >= cell.grok_step.max()].error_barrier_pp)
    if len(before) and len(after):
        out.append(f"- During training (weight matching, mean over pairs): {before.mean():.1f} points before the first "
                   f"seed grokked, {after.mean():.1f} after the last did (only the pairs {', '.join(sorted(set(t.pair)))}, "
                   "hence not the mean above): the endpoints' test error falls as they grok, so an "
                   "error barrier has more room to rise.")
    return out + frequency_lines(gp, found, numbers, p.key_factor)


def frequency_lines(gp: pd.DataFrame, found: dict, numbers: dict, factor: float) -> list[str]:
    """The invertible maps' conditioning, the seeds' key frequencies and the barrier against their overlap."""
    cond, ov = gp.invertible_map_condition.to_numpy(float), gp.overlap.to_numpy(float)
    keys = sorted({f"seed {a}: {k}" for a, k in zip(gp.seed_a, gp.keys_a)}
                  | {f"seed {b}: {k}" for b, k in zip(gp.seed_b, gp.keys_b)})
    out = [f"- The least-squares invertible maps have condition numbers {np.nanmin(cond):.3g}–{np.nanmax(cond):.3g}: "
           "B's function is kept, but the path passes through weights far from both endpoints. Matching maximises "
           "weight or activation similarity, not the path's loss, so it can raise the loss barrier. Learned alignment "
           "started from " + ", ".join(f"the {k} ({v} pairs)" for k, v in gp.learned_start.value_counts().items())
           + " (the lower midpoint training loss).",
           f"- Key frequencies (Fourier energy of the token embedding ≥ {factor:g}× uniform): " + "; ".join(keys)
           + f". Overlap of two seeds' sets (Jaccard): {np.nanmin(ov):.2f}–{np.nanmax(ov):.2f}."]
    rhos = {m: float(spearmanr(ov, gp[f"error_barrier_pp:{m}"]).statistic) for m in METHODS[1:]
            if np.nanstd(ov) > 0 and np.nanstd(gp[f"error_barrier_pp:{m}"]) > 0}
    numbers.update(overlap_rho=rhos, invertible_map_condition=[float(np.nanmin(cond)), float(np.nanmax(cond))])
    best = min(METHODS[1:], key=lambda m: found[m].estimate)
    if not rhos:
        return out + ["- The seeds' key-frequency overlaps (or barriers) do not vary: their relation cannot be read."]
    out.append("- Barrier against overlap (Spearman ρ over pairs; pairs share seeds, so this describes these seeds "
               "rather than testing): " + "; ".join(f"{k} ρ = {v:.2f}" for k, v in rhos.items()) + ".")
    groups = "; ".join(f"{len(g)} pair(s) sharing {what} of their key frequencies: "
                       f"{g[f'error_barrier_pp:{best}'].mean():.1f} points"
                       for g, what in ((gp[gp.overlap == 1], "all"), (gp[gp.overlap == 0], "none")) if len(g))
    if best in rhos and rhos[best] < 0:
        out.append(f"So: after the alignment with the lowest mean error barrier ({best}), the barrier is lower where "
                   f"two seeds share more key frequencies (ρ = {rhos[best]:.2f}; {groups}). Why an alignment cannot make "
                   "two seeds' key frequencies the same (a proof about the sets, not about the barriers): every map "
                   "these methods use acts on the residual axis (heads, MLP units, the stream's basis), so the token "
                   "embedding W_E (residues × d) becomes W_E M; the Fourier transform over the residues acts on the "
                   "other side, F (W_E M) = (F W_E) M, so frequency k's row is multiplied by M. A permutation or "
                   "orthogonal M keeps every row's norm, hence each frequency's share of the energy and the "
                   "key-frequency set; an invertible M keeps only which frequencies are absent (a zero row stays "
                   "zero, no other row becomes zero).")
    return out
