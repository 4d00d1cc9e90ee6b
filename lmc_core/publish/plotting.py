"""Figures: consistent style (saved as PNG + PDF + CSV of the plotted numbers by lmc_core.publish.outputs)."""
from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd

from ..analysis.barrier import STABILITY_THRESHOLD_PCT

COLORS = plt.rcParams["axes.prop_cycle"].by_key()["color"]


def threshold_line(ax, value: float = STABILITY_THRESHOLD_PCT, label: str | None = None, unit: str = "%") -> None:
    """Horizontal line for the 2 % (or 2-point) stability threshold."""
    ax.axhline(value, color="k", ls="--", lw=1, label=label or f"{value:g} {unit} stability threshold")


def curves_figure(curves: pd.DataFrame, metrics: tuple[str, ...], splits: tuple[str, ...],
                  group: str = "pair", title: str = "", ylabels: dict | None = None):
    """Grid of metric-vs-alpha panels (rows: metrics, columns: splits), one line per group,
    with each group's endpoint mean as a dashed line of the same colour."""
    ylabels = ylabels or {}
    fig, axes = plt.subplots(len(metrics), len(splits), figsize=(4.6 * len(splits), 3.3 * len(metrics)),
                             squeeze=False, sharex=True)
    for i, metric in enumerate(metrics):
        for j, split in enumerate(splits):
            ax = axes[i][j]
            sub = curves[curves.split == split]
            for c, (g, d) in enumerate(sub.groupby(group)):
                d = d.sort_values("alpha")
                col = COLORS[c % len(COLORS)]
                ax.plot(d.alpha, d[metric], "-o", ms=2.5, color=col, label=f"{group} {g}")
                ends = 0.5 * (d[metric].iloc[0] + d[metric].iloc[-1])
                ax.axhline(ends, color=col, ls=":", lw=1)
            ax.set_title(f"{split}", fontsize=10)
            ax.set_ylabel(ylabels.get(metric, metric))
            ax.grid(alpha=0.3)
            if i == len(metrics) - 1:
                ax.set_xlabel(r"interpolation weight $\alpha$ (0 = copy A, 1 = copy B)")
    axes[0][0].plot([], [], "k:", lw=1, label="endpoints' mean")
    axes[0][0].legend(fontsize=8)
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    return fig
