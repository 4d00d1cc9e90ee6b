"""Figures of many pairs' paths grouped by comparison (notebook 03, usable by any table of barrier rows with
columns model, comparison, pair, split, metric, definition, instability, chord_instability, convex, unit and the
endpoints' distances): mean curves, barriers per comparison, distance against barrier, and forgetting along a path
(lmc_core.analysis.forgetting)."""
from __future__ import annotations

import textwrap
from typing import Callable

import numpy as np
import pandas as pd
from matplotlib import ticker

from ..analysis import findings as F
from ..analysis.barrier import STABILITY_THRESHOLD_PCT
from ..analysis.forgetting import forgetting_summary
from ..analysis.metrics import threshold_words
from .plotting import COLORS, plt


def _color(i: int) -> str:
    return COLORS[i % len(COLORS)]


def mean_paths_figure(curves: pd.DataFrame, ylabels: dict, title: str, metrics=("loss", "error")):
    """Each metric against alpha per comparison, mean over pairs (one colour per comparison; a split other than
    "test" dashed, read with its own classifier). Returns (figure, plotted numbers)."""
    comps, splits = list(dict.fromkeys(curves.comparison)), list(dict.fromkeys(curves.split))
    fig, axes = plt.subplots(len(metrics), 1, figsize=(7.5, 3.2 * len(metrics)), squeeze=False, sharex=True)
    rows = []
    for ax, metric in zip(axes[:, 0], metrics):
        for j, comp in enumerate(comps):
            for s_i, split in enumerate(splits):
                g = curves[(curves.comparison == comp) & (curves.split == split)]
                if g.empty:
                    continue
                m = g.groupby("alpha")[metric].mean()
                label = comp + ("" if split == "test" else f" ({split}, its own classifier)")
                ax.plot(m.index, m.values, "-o" if s_i == 0 else "--s", ms=3, color=_color(j), label=label)
                rows += [{"comparison": comp, "split": split, "metric": metric, "alpha": a, "mean_over_pairs": v}
                         for a, v in m.items()]
        ax.set_ylabel(f"test {ylabels.get(metric, metric)}")
        ax.grid(alpha=0.3)
    axes[-1][0].set_xlabel(r"interpolation weight $\alpha$ (0 = endpoint A, 1 = endpoint B)")
    axes[0][0].legend(fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig, pd.DataFrame(rows)


def barrier_panels_figure(table: pd.DataFrame, definition: str, panels: list[tuple[str, str, str, str]],
                          units_of: Callable, title: str):
    """One panel per (model, metric, panel title, x label): each comparison's test instability under `definition`
    as a bar (estimate) with error bars (findings.estimate over the units that `units_of(model, comparison,
    n_pairs)` -> (labels or None, unit name) gives: the interval, or the range below stats.MIN_UNITS), its pairs as
    dots (hollow: a convex path), the bar hatched when every path is convex (no barrier), and the threshold line."""
    fig, axes = plt.subplots(1, len(panels), figsize=(4.6 * len(panels), 4.8), squeeze=False)
    rows = []
    for ax, (model, metric, panel, xlabel) in zip(axes[0], panels):
        d = table[(table.model == model) & (table.metric == metric) & (table.definition == definition)
                  & (table.split == "test")]
        comps = list(dict.fromkeys(d.comparison))
        for i, comp in enumerate(comps):
            g = d[d.comparison == comp]
            units, name = units_of(model, comp, len(g))
            iv = F.estimate(g.instability, units, question="", metric="", unit="", unit_name=name)
            flat = bool(g.convex.all())  # every path convex: the value is half the endpoints' gap, not a barrier
            ax.barh(i, iv.estimate, xerr=[[iv.estimate - iv.low], [iv.high - iv.estimate]] if iv.interval else None,
                    color="none" if flat else _color(i), alpha=0.6, edgecolor=_color(i), hatch="//" if flat else None,
                    capsize=3)
            ax.scatter(g.instability, [i] * len(g), s=14, edgecolors="k",
                       facecolors=["none" if c else "k" for c in g.convex])
            rows.append({"model": model, "metric": metric, "comparison": comp, "estimate": iv.estimate,
                         "low": iv.low, "high": iv.high, "interval": iv.interval, "units": iv.n_units,
                         "pairs": len(g), "convex_pairs": int(g.convex.sum()), "unit": g.unit.iloc[0]})
        ax.axvline(STABILITY_THRESHOLD_PCT, color="k", ls="--", lw=1, label=threshold_words(d.unit.iloc[0]))
        ax.axvline(0, color="grey", lw=0.8)
        ax.set_yticks(range(len(comps)), comps, fontsize=7)
        ax.invert_yaxis()
        ax.set_xlabel(xlabel, fontsize=8)
        ax.set_title(panel, fontsize=8)
        ax.legend(fontsize=7)
        ax.grid(axis="x", alpha=0.3)
    fig.suptitle(title, fontsize=9, wrap=True)
    fig.tight_layout()
    return fig, pd.DataFrame(rows)


def distance_figure(table: pd.DataFrame, definition: str, panels: list[tuple[str, str, str]], title: str):
    """One panel per (model, panel title, y label): each pair's RMS distance per compared parameter (log axis)
    against its test loss instability under `definition`, one colour per comparison."""
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4), squeeze=False)
    rows = []
    for ax, (model, panel, ylabel) in zip(axes[0], panels):
        d = table[(table.model == model) & (table.metric == "loss") & (table.definition == definition)
                  & (table.split == "test")]
        for i, comp in enumerate(dict.fromkeys(d.comparison)):
            g = d[d.comparison == comp]
            ax.plot(g.rms, g.instability, "o", color=_color(i), label=comp)
            rows += [{"model": model, "comparison": comp, "pair": r.pair, "rms": r.rms, "l2": r.l2,
                      "relative_to_travel": r.relative_to_travel, "params_compared": r.params_compared,
                      "instability": r.instability, "unit": r.unit} for r in g.itertuples()]
        if not d.empty:
            ax.axhline(STABILITY_THRESHOLD_PCT, color="k", ls="--", lw=1)
            ax.set_xscale("log")
            ax.xaxis.set_major_locator(ticker.LogLocator(base=10, subs=(1.0, 2.0, 5.0)))  # 1-2-5: labels apart
            ax.xaxis.set_major_formatter(ticker.FormatStrFormatter("%g"))
            ax.xaxis.set_minor_formatter(ticker.NullFormatter())
            ax.set_ylabel(f"{ylabel}\n({d.unit.iloc[0]})", fontsize=8)
            ax.legend(fontsize=6)
        ax.set_xlabel("RMS distance per compared parameter (log axis)")
        ax.set_title(panel, fontsize=9)
        ax.grid(alpha=0.3)
    fig.suptitle(textwrap.fill(title, 120), fontsize=9)
    fig.tight_layout(rect=(0, 0, 1, 0.93))
    return fig, pd.DataFrame(rows)


def forgetting_figure(f: pd.DataFrame, title: str):
    """Left: per pair, the fraction of passages right at both endpoints that the path forgets vs the random-direction
    control on the same passages.
    Right: their confidence during training (mean probability of the true label), forgotten vs kept. `f`: rows of
    analysis.forgetting.forgetting_rows. Returns (figure, the per-pair summary)."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    s = forgetting_summary(f)
    x = np.arange(len(s))
    axes[0].bar(x - 0.18, 100 * s.forgotten_path, 0.36, color=COLORS[3], label="along the path A → B")
    axes[0].bar(x + 0.18, 100 * s.forgotten_random, 0.36, color=COLORS[7], label="A → A + r, random r, |r| = |B − A|")
    axes[0].set_xticks(x, [f"pair {p}" for p in s.pair])
    axes[0].set_ylabel("passages right at A and B,\nwrong inside the path (%)")
    axes[0].legend(fontsize=7)
    axes[0].grid(axis="y", alpha=0.3)
    if "confidence" in f:
        right = f[f.correct_a & f.correct_b]
        for flag, col, label in ((True, COLORS[3], "forgotten along the path"), (False, COLORS[0], "kept")):
            v = right[right.forgotten == flag].confidence
            if len(v):
                axes[1].hist(v, bins=np.linspace(0, 1, 21), alpha=0.6, color=col, density=True,
                             label=f"{label} (n = {len(v)})")
        axes[1].set_xlabel("confidence during training (mean probability of the true label)")
        axes[1].set_ylabel("density")
        axes[1].legend(fontsize=8)
        axes[1].grid(alpha=0.3)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig, s
