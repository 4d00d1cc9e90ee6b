"""Figures of notebook 04 (lmc_core.studies.alignment): each returns (figure, the plotted numbers)."""
from __future__ import annotations

import numpy as np
import pandas as pd

from ..analysis.verdict import interval
from ..publish.plotting import COLORS, plt
from . import alignment_lm as LM
from .alignment_mlp import KINDS
from .reference import THEUS_GPT2_SHAKESPEARE_BARRIER_NATS as THEUS

# our LM kinds next to the columns of Theus et al.'s row (the reference's keys)
THEUS_COLUMNS = {"unaligned": "unaligned", "activation matching": "activation matching",
                 "weight matching": "weight matching", "orthogonal (weights)": "permutations + orthogonal residual map"}


def empty_figure(title: str, why: str):
    """A figure that says why it has nothing to show (so every figure the notebook displays exists)."""
    fig, ax = plt.subplots(figsize=(7, 1.6))
    ax.axis("off")
    ax.text(0.5, 0.5, why, ha="center", va="center", fontsize=9)
    fig.suptitle(title, fontsize=10)
    return fig, pd.DataFrame({"note": [why]})


def _spread(g: pd.DataFrame, column: str) -> pd.DataFrame:
    return g.groupby("lr")[column].agg(["mean", "min", "max"])


def barrier_vs_lr_figure(table: pd.DataFrame, definition: str, margin_pp: float, profile: str):
    """Per optimizer (columns), against the learning rate: (1) the test-loss barrier after weight matching
    (solid), activation matching (dash-dot) and unaligned (dashed), mean over pairs with the pairs' range; (2) the
    barrier after weight matching relative to the endpoints' loss; (3) the endpoints' test loss (dotted) and study
    5's own measure, the raw test loss at the midpoint of the aligned path (thin); (4) the endpoints' test error
    with each optimizer's 'trained' limit. A colour per Fisher weight; filled markers: trained cells, hollow:
    cells whose endpoints did not train (left out of every claim); gaps: diverged."""
    opts = list(dict.fromkeys(table.optimizer))
    fig, axes = plt.subplots(4, len(opts), figsize=(4.6 * len(opts), 10.5), squeeze=False, sharex="col",
                             gridspec_kw={"height_ratios": [2, 1.2, 1.2, 1.2]})
    rows = []
    ran = table[~table.diverged.astype(bool)] if "barrier_wm" in table else table.iloc[0:0]
    for j, opt in enumerate(opts):
        grid = sorted(table[table.optimizer == opt].lr.unique())
        for c, lam in enumerate(sorted(table.fisher.unique())):
            col = COLORS[c % len(COLORS)]
            g = ran[(ran.optimizer == opt) & (ran.fisher == lam)]
            if not len(g):
                continue
            trained = g.groupby("lr").trained.all().reindex(grid).fillna(False).astype(bool)
            for k, (column, style, name) in enumerate((("barrier_wm", "-", "weight matching"),
                                                       ("barrier_am", "-.", "activation matching"),
                                                       ("barrier_unaligned", "--", "unaligned"))):
                s = _spread(g, column).reindex(grid)
                axes[0][j].plot(s.index, s["mean"], style, lw=1.4 if k == 0 else 1, color=col,
                                label=f"λ = {lam:g}, {name}")
                if k == 0:
                    axes[0][j].fill_between(s.index, s["min"], s["max"], color=col, alpha=0.15, lw=0)
                    _marks(axes[0][j], s["mean"], trained, col)
                rows += [{"optimizer": opt, "fisher": lam, "lr": lr, "quantity": column, "mean": v["mean"],
                          "min": v["min"], "max": v["max"], "trained": bool(trained[lr])} for lr, v in s.iterrows()]
            rel = _spread(g, "rel_barrier_wm_pct").reindex(grid)
            axes[1][j].plot(rel.index, rel["mean"], "-", color=col)
            _marks(axes[1][j], rel["mean"], trained, col)
            ends = _spread(g, "endpoint_loss").reindex(grid)
            mid = _spread(g, "midpoint_wm").reindex(grid)
            axes[2][j].plot(ends.index, ends["mean"], ":", color=col, label=f"λ = {lam:g}, endpoints")
            axes[2][j].plot(mid.index, mid["mean"], "-", lw=0.8, color=col, label=f"λ = {lam:g}, raw midpoint (study 5)")
            err = _spread(g, "endpoint_error").reindex(grid)
            axes[3][j].plot(err.index, 100 * err["mean"], ":", color=col)
            _marks(axes[3][j], 100 * err["mean"], trained, col)
            rows += [{"optimizer": opt, "fisher": lam, "lr": lr, "quantity": q, "mean": v}
                     for q, s in (("rel_barrier_wm_pct", rel), ("endpoint_loss", ends), ("midpoint_wm", mid),
                                  ("endpoint_error", err)) for lr, v in s["mean"].items()]
        ok = ran[(ran.optimizer == opt) & ~ran.collapsed.astype(bool)]
        if len(ok):
            best = 100 * ok.groupby(["lr", "fisher"]).endpoint_error.mean().min()
            axes[3][j].axhline(best + margin_pp, color="k", ls="--", lw=0.8, label=f"trained: ≤ best + {margin_pp:g} points")
        axes[0][j].set_title(opt, fontsize=10)
        axes[0][j].set_ylabel(f"test-loss barrier '{definition}' (nats)")
        axes[1][j].set_ylabel("barrier after w.m.\n(% of endpoints' loss)")
        axes[2][j].set_ylabel("test loss (nats)")
        axes[3][j].set_ylabel("endpoints' test error (%)")
        axes[3][j].set_xlabel("learning rate (log axis; gaps: diverged)")
        for ax in axes[:, j]:
            ax.set_xscale("log")
            ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=6)
    axes[2][0].legend(fontsize=6)
    axes[3][0].legend(fontsize=6)
    fig.suptitle(f"MLP on MNIST-1D: barrier between independently initialised models before and after alignment "
                 f"(mean and range over pairs; hollow: endpoints not trained; {profile} profile)", fontsize=10)
    fig.tight_layout()
    return fig, pd.DataFrame(rows)


def _marks(ax, values: pd.Series, trained: pd.Series, col) -> None:
    ok = trained.reindex(values.index).fillna(False).astype(bool)
    ax.plot(values.index[ok], values[ok], "o", ms=4, color=col)
    ax.plot(values.index[~ok], values[~ok], "o", ms=4, mfc="none", color=col)


def sparsity_figure(table: pd.DataFrame, profile: str):
    """Activation sparsity (fraction of ReLU outputs at zero, mean over layers, model A, test set) vs lr, trained
    cells."""
    opts = list(dict.fromkeys(table.optimizer))
    fig, axes = plt.subplots(1, len(opts), figsize=(4.6 * len(opts), 3.4), squeeze=False, sharey=True)
    rows = []
    ok = table[table.trained]
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
    fig.suptitle(f"Activation sparsity of the MLP vs learning rate (trained cells, mean over pairs; {profile} profile)",
                 fontsize=10)
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


def width_figure(table: pd.DataFrame, definition: str, profile: str):
    """Barrier (unaligned, after weight and activation matching) and endpoint error against the MLP's width, one
    point per pair and the mean, per optimizer (lambda = 0, at the learning rate named in each title)."""
    opts = list(dict.fromkeys(table.optimizer))
    fig, axes = plt.subplots(2, len(opts), figsize=(4.6 * len(opts), 5.4), squeeze=False, sharex=True)
    rows = []
    for j, opt in enumerate(opts):
        g = table[(table.optimizer == opt) & ~table.diverged.astype(bool)]
        for c, (column, name) in enumerate((("barrier_unaligned", "unaligned"), ("barrier_wm", "weight matching"),
                                            ("barrier_am", "activation matching"))):
            m = g.groupby("width")[column].mean()
            axes[0][j].plot(m.index, m.values, "-o", ms=4, color=COLORS[c], label=name)
            axes[0][j].plot(g.width, g[column], ".", color=COLORS[c], alpha=0.5)
            rows += [{"optimizer": opt, "width": w, "quantity": column, "mean": v} for w, v in m.items()]
        e = g.groupby("width").endpoint_error.mean()
        axes[1][j].plot(e.index, 100 * e.values, ":o", ms=4, color="k")
        rows += [{"optimizer": opt, "width": w, "quantity": "endpoint_error", "mean": v} for w, v in e.items()]
        lr = g.lr.iloc[0] if len(g) else float("nan")
        axes[0][j].set_title(f"{opt}, lr {lr:.3g}, λ = 0", fontsize=10)
        axes[0][j].set_ylabel(f"test-loss barrier '{definition}' (nats)")
        axes[1][j].set_ylabel("endpoints' test error (%)")
        axes[1][j].set_xlabel("hidden units per layer (3 layers; log axis)")
        for ax in axes[:, j]:
            ax.set_xscale("log", base=2)
            ax.set_xticks(sorted(g.width.unique()), [str(w) for w in sorted(g.width.unique())])
            ax.minorticks_off()
            ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    fig.suptitle(f"Width sweep (Git Re-Basin's main variable): barrier vs width, dots: pairs ({profile} profile)",
                 fontsize=10)
    fig.tight_layout()
    return fig, pd.DataFrame(rows)


def lm_floor_figure(floor: pd.DataFrame, profile: str):
    """Test loss during training of the LM pairs (mean over copies, with their range) and the final test loss of
    runs trained for a fraction of the steps, each with its own full learning-rate schedule."""
    fig, ax = plt.subplots(figsize=(7, 3.8))
    during = floor[floor.source == "during training"].groupby("steps").test_loss.agg(["mean", "min", "max"])
    if len(during):
        ax.plot(during.index, during["mean"], "-", color=COLORS[0], label="during the main run (mean over copies)")
        ax.fill_between(during.index, during["min"], during["max"], color=COLORS[0], alpha=0.2, lw=0)
    final = floor[floor.source == "final"].groupby("steps").test_loss.agg(["mean", "min", "max"])
    ax.errorbar(final.index, final["mean"], yerr=[final["mean"] - final["min"], final["max"] - final["mean"]],
                fmt="s", color=COLORS[1], capsize=3, label="end of a run of that length (own schedule; pair 0)")
    ax.set_xlabel("training steps")
    ax.set_ylabel("test cross-entropy (nats/char)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.suptitle(f"Has the LM's endpoint loss flattened? A run of each length ends at the orange mark "
                 f"(cosine-decaying learning rate; {profile} profile)", fontsize=10)
    fig.tight_layout()
    return fig, pd.concat([during.assign(source="during training"), final.assign(source="final")]).reset_index()


def lm_curves_figure(curves: pd.DataFrame, profile: str):
    """Test loss vs alpha of the LM pairs for every alignment (mean over pairs)."""
    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    for c, kind in enumerate(LM.KINDS):
        g = curves[curves.kind == kind].groupby("alpha").loss.mean()
        ax.plot(g.index, g.values, "-o" if kind in LM.FOLDED else "--o", ms=3, color=COLORS[c % len(COLORS)],
                label=kind + (" (RMSNorm form)" if kind in LM.FOLDED[1:] else ""))
    ax.set_xlabel(r"interpolation weight $\alpha$ (0 = A, 1 = T(B))")
    ax.set_ylabel("test cross-entropy (nats/char), mean over pairs")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.suptitle(f"Independently initialised Shakespeare LMs: the path before and after each alignment ({profile} "
                 "profile)", fontsize=10)
    fig.tight_layout()
    return fig, curves.groupby(["kind", "alpha"]).loss.mean().reset_index()


def lm_barrier_figure(lm: pd.DataFrame, definition: str, profile: str):
    """The test-loss barrier of every alignment as a percentage of the unaligned one (ours per pair, mean with its
    95 % bootstrap interval, pairs as dots) beside Theus et al.'s GPT-2 row where they report that column: their
    barriers are in nats per subword token, ours per character, so only fractions compare. The CSV keeps nats."""
    kinds = [k for k in LM.KINDS if f"{definition}:{k}" in lm]
    fig, ax = plt.subplots(figsize=(9, 4))
    rows = []
    x = np.arange(len(kinds))
    base = lm[f"{definition}:unaligned"].to_numpy(float)
    t0 = THEUS.get(THEUS_COLUMNS.get("unaligned", ""), np.nan)
    for i, kind in enumerate(kinds):
        nats = lm[f"{definition}:{kind}"].to_numpy(float)
        iv, pct = interval(nats), interval(100 * nats / base)
        ax.bar(i - 0.2, pct.estimate, 0.4, color=COLORS[0],
               label="ours (mean over pairs of barrier / unaligned, 95 % interval)" if i == 0 else None)
        if pct.bounded:
            ax.errorbar(i - 0.2, pct.estimate, yerr=[[pct.estimate - pct.low], [pct.high - pct.estimate]], color="k",
                        capsize=3)
        ax.plot(np.full(len(lm), i - 0.2), 100 * nats / base, ".", color="k", alpha=0.5)
        theus = THEUS.get(THEUS_COLUMNS.get(kind, ""), np.nan)
        if np.isfinite(theus):
            ax.bar(i + 0.2, 100 * theus / t0, 0.4, color=COLORS[1],
                   label="Theus et al. 2025, GPT-2 on Tiny Shakespeare" if kind == "unaligned" else None)
            ax.text(i + 0.2, 100 * theus / t0, f"{theus:g} nats" + ("\n(perm. + orth.)" if "orthogonal" in kind else ""),
                    ha="center", va="bottom", fontsize=6)
        ax.text(i - 0.2, 2, f"{iv.estimate:.2f}", ha="center", va="bottom", fontsize=6, color="white")
        rows.append({"kind": kind, "estimate": iv.estimate, "low": iv.low, "high": iv.high, "pairs": iv.n_pairs,
                     "pct_of_unaligned": pct.estimate, "pct_low": pct.low, "pct_high": pct.high, "theus": theus,
                     "theus_pct_of_unaligned": 100 * theus / t0 if np.isfinite(theus) else np.nan})
    ax.set_xticks(x, [k.replace(", ", ",\n").replace(" (", "\n(") for k in kinds], fontsize=7)
    ax.set_ylabel("test-loss barrier, % of the unaligned one")
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=8)
    fig.suptitle(f"Barrier `{definition}` after each alignment as a fraction of the unaligned barrier: ours (character-level "
                 f"LMs, nats/char; white: mean in nats) beside Theus et al.'s GPT-2 row (nats/token) ({profile} profile)",
                 fontsize=9)
    fig.tight_layout()
    return fig, pd.DataFrame(rows)
