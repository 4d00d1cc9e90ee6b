"""The summary of notebook 04 (lmc_core.studies.alignment): its findings in words, from the run's numbers, through
the verdict layer (intervals over pairs, convex paths tagged, "inconclusive" where the data are)."""
from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.stats import spearmanr

from ..analysis.verdict import compare, interval, is_convex
from . import alignment_lm as LM
from .alignment_figures import THEUS_COLUMNS
from .alignment_mlp import argmin_lr, fisher_effect
from .reference import THEUS_GPT2_SHAKESPEARE_BARRIER_NATS as THEUS

SWEET = {"interior": "a sweet spot (the minimum lies inside the trained range in every 95 % resample)",
         "edge": "no sweet spot: the minimum lies at the edge of the trained range",
         "inconclusive": "inconclusive (resamples put the minimum both inside and at an edge)",
         "too few": "cannot be located (fewer than 3 trained learning rates or 2 pairs)"}


def describe(table: pd.DataFrame, width: pd.DataFrame | None, lm: pd.DataFrame | None, floor: pd.DataFrame | None,
             p: dict) -> tuple[str, dict]:
    """The findings in words (Markdown) from this run's numbers, and the numbers as data."""
    lines, numbers = mlp_lines(table, p)
    if width is not None and len(width):
        w_lines, numbers["width"] = width_lines(width, p)
        lines += [""] + w_lines
    headline = numbers.pop("headline")
    if lm is not None and len(lm):
        l_lines, numbers["lm"] = lm_lines(lm, floor, p)
        lines += [""] + l_lines
        headline += "; " + numbers["lm"].pop("headline")
    numbers["headline"] = headline
    return "\n".join(lines), numbers


def _iv(values, digits: int = 3, unit: str = "") -> str:
    """'m [lo, hi]' (mean and 95 % bootstrap interval over pairs; the header says so) or 'm (one pair)'."""
    return short(interval(np.asarray(values, dtype=float)), digits, unit)


def short(iv, digits: int = 3, unit: str = "") -> str:
    """An Interval as 'm unit [lo, hi]' (Interval.text without what was resampled: the heading says it)."""
    return iv.text(digits, unit, over=False)


def raw_midpoint(ran: pd.DataFrame, pairs: int) -> dict:
    """Study 5's sweet-spot measure per optimizer (λ = 0): where the raw test loss at the midpoint of the aligned
    path is lowest, where the endpoints' loss is, and their Spearman ρ over learning rates. Study 5 read it off
    the whole grid, so every cell whose `pairs` pairs all ran enters, trained or not; optimizers with fewer than 3
    such learning rates are left out."""
    out = {}
    whole = ran.groupby(["optimizer", "lr", "fisher"]).filter(lambda c: len(c) == pairs)
    for opt, g in whole[whole.fisher == 0].groupby("optimizer", sort=False):
        m = g.groupby("lr")[["midpoint_wm", "endpoint_loss"]].mean()
        if len(m) >= 3:
            out[opt] = {"lr": float(m.midpoint_wm.idxmin()), "endpoint_lr": float(m.endpoint_loss.idxmin()),
                        "rho_endpoint_loss": float(spearmanr(m.midpoint_wm, m.endpoint_loss).statistic),
                        "same_argmin": bool(m.midpoint_wm.idxmin() == m.endpoint_loss.idxmin()), "lrs": int(len(m))}
    return out


def mlp_lines(table: pd.DataFrame, p: dict) -> tuple[list[str], dict]:
    """The MLP grid: which cells trained, where the aligned barrier is lowest (bootstrapped), study 5's raw
    midpoint measure for what it is, the Fisher penalty on common cells, disagreement with the aligned midpoint."""
    d = p["definition"]
    grid = table[table.width == p["hidden"][0]] if "width" in table else table
    ok = grid[grid.trained]
    lines = [f"**Profile `{p['profile']}`: MLP {'-'.join(str(h) for h in p['hidden'])} on MNIST-1D, {p['steps']} "
             f"steps; {p['pairs']} pairs of independently initialised models per (optimizer, lr, λ) (the same seeds in "
             f"every cell); test-loss barrier `{d}` in nats, mean [95 % bootstrap interval over pairs].**", ""]
    numbers: dict = {"definition": d, "optimizers": {}}
    ran = grid[~grid.diverged.astype(bool)]
    ctrl = float(ran.barrier_control.abs().max()) if len(ran) else float("nan")
    lines.append(f"- Control: a model against a random permutation of itself, matched back: barrier at most {ctrl:.1e} "
                 f"nats over {len(ran)} pairs (weight matching recovers the permutation).")
    numbers["control_max_abs"] = ctrl
    cells = grid.groupby(["optimizer", "lr", "fisher"]).trained.all()
    best_err = ran[~ran.collapsed.astype(bool)].groupby(["optimizer", "lr", "fisher"]).endpoint_error.mean() \
        .groupby("optimizer").min()
    lines.append(f"- Trained cells: {int(cells.sum())} of {len(cells)} (optimizer, lr, λ) cells have endpoints whose mean "
                 f"test error is within {p['trained_margin_pp']:g} points of their optimizer's best cell ("
                 + ", ".join(f"{o} {100 * e:.1f} %" for o, e in best_err.items())
                 + f") and no diverged or collapsed pair; {int(grid.diverged.astype(bool).sum())} pairs diverged and "
                 f"{int(grid.collapsed.astype(bool).sum())} did not learn. Only trained cells enter the claims below "
                 "(the others are hollow in the figure).")
    numbers["trained_cells"], numbers["cells"] = int(cells.sum()), int(len(cells))
    worse = ok[ok.barrier_wm > ok.barrier_unaligned]
    lines.append(f"- Weight matching (best objective of {p['wm_restarts']} sweep orders) raised the barrier above the "
                 f"unaligned one in {len(worse)} of {len(ok)} trained pairs"
                 + (": " + "; ".join(f"{r.optimizer} lr {r.lr:.3g} λ {r.fisher:g} pair {r.pair}: {r.barrier_wm:.3f} vs "
                                     f"{r.barrier_unaligned:.3f} (activation matching {r.barrier_am:.3f})"
                                     for r in worse.itertuples()) + " — a local optimum of the matching's objective, kept in the means "
                    "below (no pair is dropped for its barrier)" if len(worse) else "") + ".")
    numbers["wm_worse_than_unaligned"] = int(len(worse))
    sweet = {}
    for opt in dict.fromkeys(grid.optimizer):
        g = ok[ok.optimizer == opt]
        am = argmin_lr(grid, opt, 0.0)
        sweet[opt] = am["verdict"]
        entry = {"argmin": {k: v for k, v in am.items() if k != "share"}, "share": {str(k): v for k, v in am["share"].items()}}
        if np.isfinite(am["lr"]):
            at = g[(g.lr == am["lr"]) & (g.fisher == 0)]
            share = am["share"].get(am["lr"], float("nan"))
            lines.append(f"- **{opt}** (λ = 0, {len(am['trained_lrs'])} trained learning rates "
                         f"{', '.join(f'{x:.3g}' for x in am['trained_lrs'])}): the barrier after weight matching is "
                         f"lowest at lr {am['lr']:.3g}: {_iv(at.barrier_wm)} nats ({_iv(at.rel_barrier_wm_pct, 1, '%')} of "
                         f"the endpoints' loss), against {_iv(at.barrier_unaligned)} unaligned"
                         + (f"; the bootstrap over pairs puts the minimum there in {100 * share:.0f} % of resamples (95 % "
                            f"range of the argmin {am['low']:.3g}–{am['high']:.3g})" if am["share"] else "")
                         + f" — {SWEET[am['verdict']]}.")
            entry.update(barrier_wm=float(at.barrier_wm.mean()), barrier_unaligned=float(at.barrier_unaligned.mean()),
                         rel_barrier_wm_pct=float(at.rel_barrier_wm_pct.mean()))
        else:
            lines.append(f"- **{opt}** (λ = 0): no trained cell, so nothing is claimed.")
        numbers["optimizers"][opt] = entry
    counts = {v: sum(1 for x in sweet.values() if x == v) for v in SWEET}
    lines += ["", "Sweet spot of the **aligned barrier** (λ = 0, trained cells): " + "; ".join(
        f"{o}: {v}" for o, v in sweet.items()) + ". Study 5 reported a sweet spot for SGD and Adam."]
    numbers["sweet_spot"] = sweet
    raw, follows = [], []
    for opt, r in raw_midpoint(ran, p["pairs"]).items():
        follows.append(r["rho_endpoint_loss"] >= 0.8 - 1e-9)  # 0.8 is a reachable value (4 learning rates)
        raw.append(f"{opt}: lowest at lr {r['lr']:.3g}, the endpoints' loss at lr {r['endpoint_lr']:.3g}, Spearman "
                   f"ρ = {r['rho_endpoint_loss']:.2f} over {r['lrs']} learning rates")
        numbers["optimizers"][opt]["raw_midpoint"] = r
    if raw:
        n_follow, n_same = sum(follows), sum(v["raw_midpoint"]["same_argmin"] for v in numbers["optimizers"].values()
                                              if "raw_midpoint" in v)
        lines.append("Study 5's own measure, the raw test loss at the midpoint of the aligned path, is a different "
                     "quantity: it contains the endpoints' own loss. Over every learning rate whose pairs all ran "
                     "(trained or not, as study 5 read it; λ = 0): " + "; ".join(raw) + f". Its minimum falls where the "
                     f"endpoints are best for {n_same} of {len(raw)} optimizers (ρ ≥ 0.8 for {n_follow}): "
                     + ("where it does, a minimum of this measure marks where the models are best, not where they "
                        "connect best (descriptive: ρ over 4–5 learning rates tests nothing)."
                        if n_same else "here it does not simply follow the endpoints' loss."))
        numbers["raw_midpoint_same_argmin"] = f"{n_same}/{len(raw)}"
    fl = []
    for opt in dict.fromkeys(grid.optimizer):
        for lam in sorted(x for x in grid.fisher.unique() if x > 0):
            fe = fisher_effect(grid, opt, lam)
            iv = fe["interval"]
            if not fe["common_lrs"]:
                fl.append(f"{opt}, λ = {lam:g}: no learning rate at which every λ trained")
                continue
            word = ("inconclusive" if not iv.bounded or iv.low <= 0 <= iv.high else
                    "lower" if iv.high < 0 else "higher")
            fl.append(f"{opt}, λ = {lam:g} − 0: {short(iv, 3, 'nats')} over {len(fe['common_lrs'])} common lr(s) → {word}")
            numbers["optimizers"][opt][f"fisher_{lam:g}_minus_0"] = {"estimate": iv.estimate, "low": iv.low,
                                                                     "high": iv.high, "common_lrs": fe["common_lrs"]}
    lines.append("Fisher penalty, on the learning rates at which every λ trained (paired by pair): change of the "
                 "aligned barrier " + "; ".join(fl) + ".")
    if len(ok):
        lines.append(f"Disagreement on the test set between A and the midpoint of the aligned path: {_iv(ok.disagree_a_mid, 3, '')}"
                     f" (A against B: {_iv(ok.disagree_ab, 3, '')}), over all trained pairs.")
    numbers["headline"] = ("MLP aligned-barrier sweet spot: " + ", ".join(f"{o} {v}" for o, v in sweet.items())
                           + (f" ({counts['interior']} of {len(sweet)} interior)" if sweet else ""))
    return lines, numbers


def width_lines(width: pd.DataFrame, p: dict) -> tuple[list[str], dict]:
    """The width sweep: barrier after weight matching per width (interval over pairs), narrowest vs widest."""
    lines, out = [], {}
    for opt, g in width[~width.diverged.astype(bool)].groupby("optimizer", sort=False):
        per = {int(w): interval(h.barrier_wm.to_numpy()) for w, h in g.groupby("width")}
        un = {int(w): float(h.barrier_unaligned.mean()) for w, h in g.groupby("width")}
        ws = sorted(per)
        cmp = compare(per[ws[0]], per[ws[-1]], f"width {ws[0]}", f"width {ws[-1]}", "the aligned barrier") \
            if len(ws) > 1 else "one width only"
        err = {int(w): 100 * float(h.endpoint_error.mean()) for w, h in g.groupby("width")}
        lines.append(f"- Width sweep, {opt} at lr {g.lr.iloc[0]:.3g}, λ = 0: barrier after weight matching "
                     + "; ".join(f"{w} units {short(per[w], 3, 'nats')} (unaligned {un[w]:.3f})" for w in ws)
                     + f". {cmp[0].upper() + cmp[1:]} ({len(g) // max(len(ws), 1)} pairs per width; the endpoints' "
                     f"test error also changes with width, {err[ws[0]]:.1f} % at {ws[0]} and {err[ws[-1]]:.1f} % at "
                     f"{ws[-1]}, so width and endpoint quality are not separated here).")
        out[opt] = {str(w): {"barrier_wm": per[w].estimate, "low": per[w].low, "high": per[w].high,
                             "barrier_unaligned": un[w]} for w in ws}
    return (["**Width** (Git Re-Basin's main variable; 3 hidden layers of each width):"] + lines if lines else []), out


def lm_lines(lm: pd.DataFrame, floor: pd.DataFrame | None, p: dict) -> tuple[list[str], dict]:
    """The LM part: the endpoints' floor, every alignment's barrier beside Theus et al.'s row, the share of the
    unaligned barrier that remains, convex paths, and where our order or size differs from theirs."""
    d = p["definition"]
    n = len(lm)
    out: dict = {"pairs": n, "barriers": {}}
    lines = [f"**Transformer** ({n} pairs of independently initialised character-level pre-norm LMs, "
             f"{p['lm_steps']} steps with a cosine-decaying learning rate; test-loss barrier `{d}` in nats/char, mean "
             "[95 % interval over pairs]):"]
    if floor is not None and len(floor):
        fin = floor[floor.source == "final"].groupby("steps").test_loss.mean()
        if len(fin) > 1:
            last, prev = fin.iloc[-1], fin.iloc[-2]
            drop = prev - last
            flat = drop < p["lm_floor_tol"]
            lines.append("- Endpoints: the final test loss of runs of " + ", ".join(f"{s} steps {v:.3f}" for s, v in
                                                                                      fin.items())
                         + f" nats/char (pair 0, each run with its own schedule): doubling the length from {fin.index[-2]} "
                         f"to {fin.index[-1]} steps lowers it by {drop:.3f} nats, "
                         + (f"less than {p['lm_floor_tol']:g}: the loss has flattened at this length."
                            if flat else f"more than {p['lm_floor_tol']:g}: it is still falling, so the endpoints are "
                            "not at their floor and the barriers below are those of models still improving."))
            out["floor"] = {"steps": [int(s) for s in fin.index], "test_loss": [float(v) for v in fin.values],
                            "last_drop": float(drop), "flattened": bool(flat)}
    rows = []
    for kind in LM.KINDS:
        col = f"{d}:{kind}"
        if col not in lm:
            continue
        iv = interval(lm[col].to_numpy())
        convex = int(sum(is_convex(x) for x in lm[f"chord_pct:{kind}"]))
        theus = THEUS.get(THEUS_COLUMNS.get(kind, ""), None)
        rows.append(f"{kind}: {short(iv)}" + (f" (Theus et al.: {theus:g})" if theus is not None else "")
                    + (f", {convex} of {n} paths convex (no barrier)" if convex else ""))
        out["barriers"][kind] = {"estimate": iv.estimate, "low": iv.low, "high": iv.high, "convex_paths": convex}
    lines += [f"- {r}" for r in rows]
    un = lm[f"{d}:unaligned"].to_numpy()
    ratios = {k: lm[f"{d}:{k}"].to_numpy() / un for k in ("orthogonal (weights)", "orthogonal (activations)", "learned")
              if f"{d}:{k}" in lm}
    best = min(ratios, key=lambda k: np.mean(ratios[k]))
    rv = interval(100 * ratios[best])
    target = p["lm_target_pct"]
    met = rv.bounded and rv.high <= target
    lines.append(f"- What remains of the unaligned barrier after the best alignment ({best}): {short(rv, 1, '%')} per pair — "
                 + (f"below the {target:g} % target in every resample." if met else
                    f"the {target:g} % target is {'missed' if rv.bounded and rv.low > target else 'not established'}."))
    out.update(best=best, remaining_pct={"estimate": rv.estimate, "low": rv.low, "high": rv.high}, target_met=bool(met))
    if "residual_fit_orthogonal" in lm:
        fo, fw, fa = (float(lm[c].mean()) for c in ("residual_fit_orthogonal", "residual_fit_wm", "residual_fit_am"))
        lines.append(f"- Why a residual map matters here (measured): on the matching windows, B's residual stream after the "
                     f"Procrustes rotation explains {100 * fo:.0f} % of A's (1 − ‖X_B Q − X_A‖² / ‖X_A‖², mean over pairs), "
                     f"after the residual permutation of weight matching {100 * fw:.0f} % and of activation matching "
                     f"{100 * fa:.0f} % (on the windows the maps were fitted to; a permutation is itself an orthogonal map, so "
                     "the rotation cannot fit worse there — the size of the gap, not its sign, is the finding): the two "
                     "streams differ by a rotation that no permutation of coordinates undoes.")
        out["residual_fit"] = {"orthogonal": fo, "weight_matching": fw, "activation_matching": fa}
    lines.append("- Against Theus et al. (GPT-2, 124M parameters, on Tiny Shakespeare with GPT-2's subword tokenizer): "
                 + order_text(out["barriers"], lm_width(p)))
    rec = lm.learned_kept_start.astype(bool).sum() if "learned_kept_start" in lm else 0
    if rec:
        lines.append(f"- Learned alignment did not lower the midpoint loss on held-out training windows for {int(rec)} of "
                     f"{n} pairs; for those the closed-form start is reported as 'learned'.")
    out["headline"] = (f"LM barrier {out['barriers']['unaligned']['estimate']:.3f} unaligned → "
                       f"{out['barriers']['weight matching']['estimate']:.3f} weight matching → "
                       f"{out['barriers'][best]['estimate']:.3f} {best} ({rv.estimate:.0f} % of unaligned)")
    return lines, out


def lm_width(p: dict) -> int:
    """The LM's residual width (d_model) of this run."""
    from ..config import model_preset

    return model_preset(p["lm_model"], **p["lm_overrides"]).d_model


def order_text(b: dict, width: int = 0) -> str:
    """Where our order and sizes differ from Theus et al.'s row, in words (intervals decide "differs")."""
    t = {k: THEUS[v] for k, v in THEUS_COLUMNS.items() if v in THEUS}
    parts = []
    un, wm, am = b["unaligned"], b["weight matching"], b["activation matching"]
    if am["high"] < wm["low"]:
        parts.append("our activation matching ends below weight matching (theirs: weight matching "
                     f"{t['weight matching']:g} far below activation matching {t['activation matching']:g}) — the order "
                     "of the two permutation methods is reversed (why is not measured here)")
    elif wm["high"] < am["low"]:
        parts.append("weight matching ends below activation matching, as in theirs")
    else:
        parts.append("weight and activation matching cannot be told apart (their intervals overlap), where theirs "
                     "differ by a factor of four")
    red_wm = 100 * (1 - wm["estimate"] / un["estimate"])
    parts.append(f"weight matching removes {red_wm:.0f} % of our unaligned barrier against "
                 f"{100 * (1 - t['weight matching'] / t['unaligned']):.0f} % of theirs")
    orth = b.get("orthogonal (weights)")
    if orth:
        ours = 100 * (1 - orth["estimate"] / un["estimate"])
        parts.append(f"with the orthogonal residual map {ours:.0f} % against their "
                     f"{100 * (1 - t['orthogonal (weights)'] / t['unaligned']):.0f} %")
    fold = b.get("weight matching, RMSNorm form")
    if fold:
        parts.append(f"rewriting LayerNorm in RMSNorm form alone (same permutations) gives {fold['estimate']:.3f} against "
                     f"{wm['estimate']:.3f}, so the gain of the orthogonal map is measured against the former")
    if width:
        parts.append(f"our residual stream is {width} wide against GPT-2's 768, and in Git Re-Basin the barrier left "
                     "after permutations falls with width — a likely reason permutations remove less here (not tested "
                     "on LMs here; the MLP width sweep above is the test we ran)")
    parts.append("our barriers are in nats per character of a model with about a thousandth of GPT-2's parameters, "
                 "theirs in nats per subword token, so sizes are compared as fractions of the unaligned barrier")
    return "; ".join(parts) + "."
