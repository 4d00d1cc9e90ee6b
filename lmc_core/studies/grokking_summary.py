"""The summary of notebook 06 (lmc_core.studies.grokking): its findings in words, from the run's numbers.

Rules (DESIGN.md, "What a finding may rest on"): a grok is sustained; cells where no seed fit the training set
are left out of the claims; a comparison of two cells reads "inconclusive" when their seeds' ranges of grok steps
overlap; barriers between seeds carry intervals that resample seeds (pairs share them); a convex path is no
barrier; connectivity is judged on the test-error barrier against Frankle et al.'s 2-point criterion.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.stats import spearmanr

from ..analysis.verdict import CONVEX_TOL, is_convex
from .grokking_connect import KINDS, seed_bootstrap

GROK_PCT = 95
THRESHOLD_PP = 2.0


def _steps(x: float) -> str:
    return "∞" if not np.isfinite(x) else f"{int(x)}"


def compare_cells(lo: pd.Series, hi: pd.Series) -> str:
    """'sooner' / 'later' / 'inconclusive': does the cell with the larger value grok sooner than the one with the
    smaller, judged by the seeds' ranges of grok steps (a seed that did not grok counts as infinitely late)?"""
    if hi.max_grok_step < lo.min_grok_step:
        return "sooner"
    if hi.min_grok_step > lo.max_grok_step:
        return "later"
    return "inconclusive"


def claim(cells: pd.DataFrame, var: str, other: str) -> dict:
    """Along every slice of the grid (`other` held fixed), neighbouring cells of the fitting part compared. The
    verdict is "inconclusive" unless most (more than half) of the comparisons are decisive; then "supported" (all
    decisive ones sooner), "contradicted" (all later) or "mixed"."""
    out = {"sooner": 0, "later": 0, "inconclusive": 0, "comparisons": []}
    fit = cells[cells.fits]  # cells where every seed fit the training set (a cell half of whose seeds fit is left out)
    for val, h in fit.groupby(other):
        h = h.sort_values(var)
        for (_, a), (_, b) in zip(h.iloc[:-1].iterrows(), h.iloc[1:].iterrows()):
            word = compare_cells(a, b)
            out[word] += 1
            out["comparisons"].append({other: float(val), f"{var}_from": float(a[var]), f"{var}_to": float(b[var]),
                                       "result": word})
    decisive, total = out["sooner"] + out["later"], out["sooner"] + out["later"] + out["inconclusive"]
    if not total or 2 * decisive <= total:
        out["verdict"] = "inconclusive"  # most neighbouring cells cannot be told apart
    elif out["sooner"] and not out["later"]:
        out["verdict"] = "supported"
    elif out["later"] and not out["sooner"]:
        out["verdict"] = "contradicted"
    else:
        out["verdict"] = "mixed"
    return out


def describe(grok: pd.DataFrame, cells: pd.DataFrame, pairs: pd.DataFrame, trajectory: pd.DataFrame, p: dict
             ) -> tuple[str, dict]:
    """The findings in words (Markdown) from this run's numbers, and the numbers as data."""
    hold = (f"for {p['grok_evals']} consecutive evaluations ({p['grok_evals'] * p['eval_every']} steps; a crossing "
            f"later than step {p['steps'] - (p['grok_evals'] - 1) * p['eval_every']} cannot be held that long and is not "
            "counted)" if p.get("grok_evals") else "to the end of the run")
    lines = [f"**Profile `{p['profile']}`: p = {p['p']}, {100 * p['train_frac']:g} % of the pairs for training, "
             f"{p['steps']} full-batch AdamW steps (lr {p['lr']:g}), {p['seeds']} seeds per cell ("
             f"{max(p['seeds'], p['connect_seeds'])} at wd {p['connect_setting'][0]:g}, λ {p['connect_setting'][1]:g}); "
             "grokked = test accuracy "
             f"≥ {GROK_PCT} % from some logged step on, {hold} (a transient spike does not count); grok steps as median "
             "[range] over seeds.**", ""]
    numbers: dict = {}
    nofit = cells[cells.no_fit]
    mixed = cells[~cells.no_fit & ~cells.fits]
    fitting = cells[cells.fits]
    lines.append(f"- Precondition: {len(fitting)} of {len(cells)} cells fit the training set (train accuracy ≥ "
                 f"{GROK_PCT} %) with every seed"
                 + (f"; {len(mixed)} with some seeds only (" + "; ".join(f"wd {r.weight_decay:g}, λ {r.fisher:g}: "
                                                                       f"{r.fit}/{r.seeds}" for r in mixed.itertuples()) + ")"
                    if len(mixed) else "")
                 + (f"; in {len(nofit)} no seed did (over-regularised at this learning rate: "
                    + "; ".join(f"wd {r.weight_decay:g}, λ {r.fisher:g}" for r in nofit.itertuples())
                    + ") — those cannot grok and are left out of the claims" if len(nofit) else "") + ".")
    g = grok[~grok.diverged.astype(bool)]
    hit, grokked = np.isfinite(g.first_hit_step), np.isfinite(g.grok_step)
    late = np.isfinite(g.late_step) if "late_step" in g else np.zeros(len(g), bool)  # held to the end, window cut short
    transient = int((hit & ~grokked & ~late).sum())
    unheld = int(late.sum())
    later = int((hit & grokked & (g.grok_step > g.first_hit_step)).sum())
    lines.append(f"- {int(grokked.sum())} of {len(g)} copies grokked (sustained). {transient} reached "
                 f"{GROK_PCT} % test accuracy but never held it for the window"
                 + (f"; {unheld} held it from a step too late in the run to complete the window, to the end (counted as not "
                    "grokked within the run)"
                    if unheld else "")
                 + f"; {later} crossed it, fell back, and grokked for good only later — a first-crossing definition "
                 "would count the first kind as grokked and the last grokked earlier.")
    numbers.update(cells=len(cells), fitting=len(fitting), no_fit=len(nofit), transient_only=transient, unheld=unheld,
                   grokked_copies=int(np.isfinite(g.grok_step).sum()), copies=len(g))
    claims = {}
    for var, other, name in (("weight_decay", "fisher", "weight decay"), ("fisher", "weight_decay", "Fisher weight λ")):
        c = claim(cells, var, other)
        claims[var] = {k: v for k, v in c.items() if k != "comparisons"}
        lines.append(f"- More {name} → grokked sooner? Of {c['sooner'] + c['later'] + c['inconclusive']} neighbouring "
                     f"cells (the other variable fixed; fitting cells only): {c['sooner']} sooner, {c['later']} later, "
                     f"{c['inconclusive']} inconclusive (the seeds' ranges overlap) → {c['verdict']}.")
    numbers["claims"] = claims
    lines.append(f"Study 5's claim that more weight decay and more Fisher penalty grok sooner: weight decay "
                 f"{claims['weight_decay']['verdict']}, Fisher penalty {claims['fisher']['verdict']}, in this run.")
    if len(pairs):
        lines += [""] + connect_lines(pairs, trajectory, grok, p, numbers)
    numbers["headline"] = (f"{len(fitting)} of {len(cells)} cells fit; sustained grokking sooner with more weight decay: "
                           f"{claims['weight_decay']['verdict']}, with more Fisher penalty: {claims['fisher']['verdict']}"
                           + (f"; grokked seeds {numbers['connected']}" if "connected" in numbers else ""))
    return "\n".join(lines), numbers


def connect_lines(pairs: pd.DataFrame, trajectory: pd.DataFrame, grok: pd.DataFrame, p: dict, numbers: dict
                  ) -> list[str]:
    """Are grokked seeds linearly connected after each alignment, and does it track their shared frequencies?"""
    wd, lam = p["connect_setting"]
    cell = grok[(grok.weight_decay == wd) & (grok.fisher == lam)]
    gp = pairs[pairs.role == "grokked"]
    n_g = int((np.isfinite(cell.grok_step) & (cell.final_test_acc >= 0.95)).sum())
    lines = [f"**Connectivity** (wd {wd:g}, λ {lam:g}: {n_g} of {len(cell)} seeds grokked and end at ≥ {GROK_PCT} % test "
             f"accuracy, so {len(gp)} pairs; test-error "
             f"barrier `{p['definition']}` in percentage points with a 95 % interval that resamples seeds; Frankle et "
             f"al.'s criterion: connected below {THRESHOLD_PP:g} points):"]
    out = {}
    if len(gp) < 3:
        lines.append(f"- Too few grokked pairs ({len(gp)}) for a claim: the setting did not grok reliably in this run.")
        numbers["connected"] = "not judged (too few grokked pairs)"
        return lines
    for kind in KINDS:
        est, lo, hi = seed_bootstrap(gp, f"error_barrier_pp:{kind}")
        lest, llo, lhi = seed_bootstrap(gp, f"loss_barrier:{kind}")
        convex = int(sum(is_convex(x) for x in gp[f"error_chord_pp:{kind}"]))  # the error path has no bump
        word = ("connected" if np.isfinite(hi) and hi < THRESHOLD_PP else
                "not connected" if np.isfinite(lo) and lo >= THRESHOLD_PP else "inconclusive")
        if convex == len(gp):
            word = "connected (every path convex: no barrier)"
        out[kind] = {"error_pp": est, "low": lo, "high": hi, "loss": lest, "loss_low": llo, "loss_high": lhi,
                     "convex": convex, "verdict": word}
        lv = gp[f"loss_barrier:{kind}"].to_numpy(float)
        raised = "" if kind == "unaligned" else (
            f"; the loss barrier above the unaligned one in {int((lv > gp['loss_barrier:unaligned'].to_numpy(float)).sum())} "
            f"of {len(gp)} pairs")
        lines.append(f"- {kind}: {est:.1f} [{lo:.1f}, {hi:.1f}] points; loss barrier median {np.nanmedian(lv):.3g} nats "
                     f"(pairs {np.nanmin(lv):.3g}–{np.nanmax(lv):.3g}){raised}"
                     + (f", {convex} of {len(gp)} error paths convex" if convex else "") + f" → {word}.")
    best = min(KINDS[1:], key=lambda k: out[k]["error_pp"])
    numbers["connectivity"] = out
    if "invertible_map_condition" in gp:
        cond = gp.invertible_map_condition.to_numpy(float)
        starts = gp.learned_start.value_counts().to_dict() if "learned_start" in gp else {}
        lines.append(f"- The least-squares invertible maps have condition numbers {np.nanmin(cond):.3g}–{np.nanmax(cond):.3g}: "
                     "B's function is kept exactly, but the reads get M⁻¹ and the writes M, so the straight path passes "
                     "through weights far from both endpoints (hence loss barriers far above the others: as an alignment "
                     "for linear paths this map fails here). Matching maximises weight or activation similarity, not the "
                     "path's loss, so an alignment can raise the loss barrier (counted per kind above). Learned "
                     "alignment started from " + ", ".join(f"the {k} ({v} pairs)" for k, v in starts.items())
                     + " — whichever had the lower training loss at the midpoint.")
        numbers["invertible_map_condition"] = [float(np.nanmin(cond)), float(np.nanmax(cond))]
    ov = gp.overlap.to_numpy(float)
    lines.append(f"- Key frequencies (Fourier energy of the token embedding ≥ {p['key_factor']:g}× uniform): "
                 + "; ".join(sorted({f"seed {a}: {ka}" for a, ka in zip(gp.seed_a, gp.keys_a)}
                                    | {f"seed {b}: {kb}" for b, kb in zip(gp.seed_b, gp.keys_b)}))
                 + f". Overlap of two seeds' sets (Jaccard): {np.nanmin(ov):.2f}–{np.nanmax(ov):.2f}.")
    rhos = {}
    for kind in KINDS[1:]:
        y = gp[f"error_barrier_pp:{kind}"].to_numpy(float)
        if np.nanstd(ov) > 0 and np.nanstd(y) > 0:
            rhos[kind] = float(spearmanr(ov, y).statistic)
    numbers["overlap_rho"] = rhos
    if rhos:
        lines.append("- Barrier against overlap (Spearman ρ over pairs; pairs share seeds, so this describes these "
                     "seeds rather than testing): " + "; ".join(f"{k} ρ = {v:.2f}" for k, v in rhos.items()) + ".")
    else:
        lines.append("- The seeds' key-frequency overlaps (or barriers) do not vary, so their relation cannot be read.")
    ctrl = pairs[pairs.role == "control"]
    if len(ctrl):
        cvx = int(sum(is_convex(x) for x in ctrl["chord_pct:unaligned"]))
        ech = ctrl["error_chord_pp:unaligned"].mean()
        lines.append(f"- Control (wd {p['control_setting'][0]:g}, λ {p['control_setting'][1]:g}, memorised without "
                     f"grokking): {cvx} of {len(ctrl)} unaligned test-loss paths are convex (chord ≤ {CONVEX_TOL:g} % of "
                     "the endpoints' loss: a valley between memorising endpoints, not a barrier), while their test error "
                     f"rises {ech:.1f} points above the chord on average (after permutation "
                     f"{ctrl['error_chord_pp:permutation'].mean():.1f}): interpolating two memorisers mixes two "
                     "different guesses on the unseen pairs.")
    if len(trajectory):
        s0, s1 = cell.grok_step.min(), cell.grok_step.max()
        t = trajectory[trajectory.kind == "permutation"]
        before, after = t[t.step < s0].error_barrier_pp, t[t.step >= s1].error_barrier_pp
        if len(before) and len(after):
            lines.append(f"- During training (permutation alignment, mean over pairs): {before.mean():.1f} points before "
                         f"the first seed grokked, {after.mean():.1f} after the last did — much of the rise is the "
                         f"endpoints' own test error falling (an error barrier is bounded by chance error, "
                         f"{100 * (1 - 1 / p['p']):.1f} %, minus the endpoints' error), not the path getting worse.")
    v = out[best]["verdict"]
    rho = rhos.get(best, float("nan"))
    varied = np.nanstd(ov) > 0
    if v.startswith("connected"):
        perm = out["permutation"]
        why = ("permutations alone already connect them" if perm["verdict"].startswith("connected") else
               f"permutations alone leave {perm['error_pp']:.1f} points, so what separates two grokked seeds is a map of "
               "the residual stream that no permutation of units undoes")
    elif varied and np.isfinite(rho) and rho <= -0.5:
        full, none = gp[gp.overlap == 1], gp[gp.overlap == 0]
        groups = "; ".join(f"{len(g)} pair(s) sharing {what} of their key frequencies: "
                           f"{g[f'error_barrier_pp:{best}'].mean():.1f} points" for g, what in ((full, "all"), (none, "none"))
                           if len(g))
        why = (f"in these {len(gp)} pairs of {len(set(gp.seed_a) | set(gp.seed_b))} seeds (not independent) the barrier "
               f"after {best} is lower where two seeds share more key frequencies (ρ = {rho:.2f}; {groups}). A likely "
               "reason, argued and not tested here: which frequencies a seed uses lives on the token axis, which the "
               "permutations and orthogonal maps of the residual stream leave alone, so seeds with different "
               "frequencies are not mapped onto each other" + ("; sharing them is not enough either in this run: no pair falls below the threshold"
                          if not (gp[f"error_barrier_pp:{best}"] < THRESHOLD_PP).any() else ""))
    elif not varied and np.nanmin(ov) == 1:
        why = ("every pair shares its key frequencies, so what separates the seeds (if anything) is not which "
               "frequencies they use")
    elif varied:
        why = (f"the barrier does not track the overlap of the key frequencies (ρ = {rho:.2f}), so this run does not say "
               "why")
    else:
        why = "the seeds' frequency sets do not vary, so this run does not say why"
    lines.append(f"So: after the best alignment ({best}) two grokked solutions are {v} here — {why}.")
    numbers["connected"] = f"{v} after {best}"
    return lines
