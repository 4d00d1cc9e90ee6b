"""Figures: consistent style (saved as PNG + PDF + CSV of the plotted numbers by lmc_core.publish.outputs)."""
from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd

from ..analysis.barrier import STABILITY_THRESHOLD_PCT
from ..analysis.stats import ALPHA

COLORS = plt.rcParams["axes.prop_cycle"].by_key()["color"]


def threshold_line(ax, value: float = STABILITY_THRESHOLD_PCT, label: str | None = None, unit: str = "%") -> None:
    """Horizontal line for the 2 % (or 2-point) stability threshold."""
    ax.axhline(value, color="k", ls="--", lw=1, label=label or f"{value:g} {unit} stability threshold")


def null_panel(ax, finding, null, xlabel: str, label: str = "permutation null", color=None) -> None:
    """Histogram of a permutation null [N] with the observed statistic of its `findings.structure` Finding and the
    smallest value the design would have called above chance (the null's 1 - ALPHA quantile) marked."""
    ax.hist(null, bins=30, color=color or COLORS[3], alpha=0.7, label=label)
    ax.axvline(finding.estimate, color="k", lw=1.5, label=f"observed {finding.estimate:.3g}, p = {finding.p_value:.3f}")
    ax.axvline(finding.detectable, color="r", ls=":", lw=1, label=f"{100 * (1 - ALPHA):g}th percentile of the null")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("permutations")
    ax.legend(fontsize=7)


def empty_figure(title: str, why: str):
    """(figure, plotted numbers) of a figure that says why it has nothing to show (so every figure a notebook
    displays exists)."""
    fig, ax = plt.subplots(figsize=(7, 1.6))
    ax.axis("off")
    ax.text(0.5, 0.5, why, ha="center", va="center", fontsize=9)
    fig.suptitle(title, fontsize=10)
    return fig, pd.DataFrame({"note": [why]})


def curves_with_band(curves: pd.DataFrame, by: str, levels, metrics: tuple[str, ...], ylabels: dict,
                     slots: tuple[int, ...] | None = None):
    """One panel per metric: for each level of column `by`, the metric against alpha as the mean over pairs with a
    band of ± 1 standard error (sample sd / sqrt(pairs)). `slots`: each level's colour slot (default its position;
    slot 0 is the unaligned path's colour and slot 1 weight matching's in every figure), so that a figure whose
    levels come in another order keeps those colours. Returns (figure, the plotted numbers)."""
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.8 * len(metrics), 3.4), squeeze=False)
    rows = []
    for ax, metric in zip(axes[0], metrics):
        for c, level in zip(slots or range(len(levels)), levels):
            sel = curves[curves[by] == level]
            g = sel.groupby("alpha")[metric]
            m, se = g.mean(), g.sem().fillna(0.0)
            ax.plot(m.index, m.values, "-o", ms=2.5, color=COLORS[(3, 0, 2, 1)[c % 4]],
                    label=f"{level} (one pair)" if sel.pair.nunique() == 1 else
                    f"{level} (mean of {sel.pair.nunique()} pairs)")
            ax.fill_between(m.index, m - se, m + se, color=COLORS[(3, 0, 2, 1)[c % 4]], alpha=0.2)
            rows += [{"metric": metric, by: level, "alpha": a, "mean": v, "se": s}
                     for a, v, s in zip(m.index, m.values, se.values)]
        ax.set_xlabel(r"interpolation weight $\alpha$ (0 = model A, 1 = model B)")
        ax.set_ylabel(ylabels.get(metric, metric))
        ax.grid(alpha=0.3)
    # below the panels, where no curve or band runs (lay the figure out with tight_layout(rect=(0, 0.1, 1, 1)))
    fig.legend(*axes[0][0].get_legend_handles_labels(), loc="lower center", ncol=len(levels), fontsize=8,
               frameon=False)
    return fig, pd.DataFrame(rows)


def points_and_means(table: pd.DataFrame, x: str, y: str, by: str, levels, panel: str, panels: dict, xlabel: str,
                     log_base: int | None = None, unit: str = "row"):
    """One panel per value of column `panel` (its y-label from `panels`): column y against column x for each level of
    column `by`, every row (a `unit`) a dot and the mean over rows at each x a line. Returns (figure, the plotted means with
    their row counts)."""
    fig, axes = plt.subplots(1, len(panels), figsize=(4.8 * len(panels), 3.6), squeeze=False)
    rows = []
    for ax, (name, ylabel) in zip(axes[0], panels.items()):
        for c, level in enumerate(levels):
            sel = table[(table[panel] == name) & (table[by] == level)]
            color = COLORS[(3, 0, 2, 1)[c % 4]]
            ax.scatter(sel[x], sel[y], s=12, alpha=0.5, color=color)
            g = sel.groupby(x)[y]
            m, n = g.mean(), g.size()
            ax.plot(m.index, m.values, "-o", color=color, label=f"{level} (mean; dots: each {unit})")
            rows += [{panel: name, by: level, x: k, "mean": float(v), "n": int(n[k])} for k, v in m.items()]
        ax.axhline(0.0, color="k", lw=0.6)
        if log_base:
            ax.set_xscale("log", base=log_base)
            ticks = sorted(table[x].unique())
            ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
            ax.minorticks_off()
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    return fig, pd.DataFrame(rows)
