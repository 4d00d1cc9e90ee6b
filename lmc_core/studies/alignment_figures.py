"""Figures of notebook 04 (lmc_core.studies.alignment): each returns (figure, the plotted numbers)."""
from __future__ import annotations

import numpy as np
import pandas as pd

from ..align.methods import ACTIVATION, LEARNED, UNALIGNED, WEIGHT
from ..analysis import findings as F
from ..analysis.lr_grid import median_pair
from ..analysis.pair_alignment import PERMUTATION_METHODS as KINDS
from ..analysis.pair_alignment import RESIDUAL_METHODS
from ..publish.plotting import COLORS, empty_figure, plt
from .alignment_lm import KINDS as LM_KINDS
from .reference import THEUS_GPT2_SHAKESPEARE_BARRIER_NATS as THEUS

# our LM methods next to the columns of Theus et al.'s row (the reference's keys)
THEUS_COLUMNS = {UNALIGNED: "unaligned", ACTIVATION: "activation matching", WEIGHT: "weight matching",
                 LEARNED: "learned permutations + orthogonal map"}


def median_pair_figure(table: pd.DataFrame, curves: pd.DataFrame, profile: str):
    """Test loss and error vs alpha for the median trained pair (barrier after weight matching): unaligned, after
    weight / activation matching, control."""
    med = median_pair(table)
    if med is None:
        return empty_figure("MLP: one pair before and after alignment", "no cell trained in this run")
    sel = curves[(curves.optimizer == med.optimizer) & (curves.lr == med.lr) & (curves.fisher == med.fisher)
                 & (curves.pair == med.pair)]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for ax, metric in zip(axes, ("loss", "error")):
        for c, kind in enumerate(KINDS):
            g = sel[sel.kind == kind].sort_values("alpha")
            ax.plot(g.alpha, g[metric], "-o", ms=3, color=COLORS[c], label=kind)
        ax.set_xlabel(r"interpolation weight $\alpha$ (0 = A, 1 = B or π(B))")
        ax.set_ylabel("test cross-entropy (nats)" if metric == "loss" else "test error")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(f"MLP, {med.optimizer} lr {med.lr:.3g}, λ = {med.fisher:g}, pair {int(med.pair)}: the median of the "
                 f"trained pairs' barriers after weight matching ({profile} profile)", fontsize=10)
    fig.tight_layout()
    return fig, sel


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
    for c, kind in enumerate(LM_KINDS):
        g = curves[curves.kind == kind].groupby("alpha").loss.mean()
        ax.plot(g.index, g.values, "-o" if kind in RESIDUAL_METHODS else "--o", ms=3, color=COLORS[c % len(COLORS)],
                label=kind + (" (RMSNorm form)" if kind in RESIDUAL_METHODS[1:] else ""))
    ax.set_xlabel(r"interpolation weight $\alpha$ (0 = A, 1 = T(B))")
    ax.set_ylabel("test cross-entropy (nats/char), mean over pairs")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.suptitle(f"Independently initialised Shakespeare LMs: the path before and after each alignment ({profile} "
                 "profile)", fontsize=10)
    fig.tight_layout()
    return fig, curves.groupby(["kind", "alpha"]).loss.mean().reset_index()


def lm_barrier_figure(lm: pd.DataFrame, profile: str):
    """The `chord` test-loss barrier of every alignment as a percentage of the unaligned one (per pair: estimate and
    its interval over pairs, or their range, findings.estimate; pairs as dots) beside Theus et al.'s GPT-2 row where
    they report that column: their barriers are in nats per subword token, ours per character, so only fractions
    compare. The CSV keeps nats."""
    kinds = [k for k in LM_KINDS if f"chord:{k}" in lm]
    fig, ax = plt.subplots(figsize=(9, 4))
    rows = []
    base = lm[f"chord:{UNALIGNED}"].to_numpy(float)
    t0 = THEUS["unaligned"]
    for i, kind in enumerate(kinds):
        nats = lm[f"chord:{kind}"].to_numpy(float)
        iv, pct = (F.estimate(v, question="", metric="", unit="") for v in (nats, 100 * nats / base))
        ax.bar(i - 0.2, pct.estimate, 0.4, color=COLORS[0], label="ours: barrier / unaligned, mean over pairs"
               if i == 0 else None)
        ax.errorbar(i - 0.2, pct.estimate, yerr=[[pct.estimate - pct.low], [pct.high - pct.estimate]], color="k",
                    capsize=3)
        ax.plot(np.full(len(lm), i - 0.2), 100 * nats / base, ".", color="k", alpha=0.5)
        theus = THEUS.get(THEUS_COLUMNS.get(kind, ""), np.nan)
        if np.isfinite(theus):
            ax.bar(i + 0.2, 100 * theus / t0, 0.4, color=COLORS[1],
                   label="Theus et al. 2025, GPT-2-style LM on Tiny Shakespeare (the learned bar: their learned "
                   "permutations + orthogonal map)" if kind == UNALIGNED else None)
            ax.text(i + 0.2, 100 * theus / t0, f"{theus:g} nats", ha="center", va="bottom", fontsize=6)
        ax.text(i - 0.2, 2, f"{iv.estimate:.2f}", ha="center", va="bottom", fontsize=6, color="white")
        rows.append({"kind": kind, "estimate": iv.estimate, "low": iv.low, "high": iv.high, "pairs": iv.n_units,
                     "interval": iv.interval, "pct_of_unaligned": pct.estimate, "pct_low": pct.low,
                     "pct_high": pct.high, "theus": theus,
                     "theus_pct_of_unaligned": 100 * theus / t0 if np.isfinite(theus) else np.nan})
    ax.set_xticks(np.arange(len(kinds)), [k.replace(", ", ",\n").replace(" (", "\n(") for k in kinds], fontsize=7,
                  rotation=25, ha="right", rotation_mode="anchor")
    ax.set_ylabel("test-loss barrier, % of the unaligned one")
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=8)
    fig.suptitle(f"Barrier `chord` after each alignment as a fraction of the unaligned barrier ({profile} profile)\n"
                 f"ours: character-level LMs (white: mean in nats/char; error bars: {F.interval_words('pairs')}); "
                 "Theus et al.'s row in nats per subword token", fontsize=9)
    fig.tight_layout()
    return fig, pd.DataFrame(rows)
