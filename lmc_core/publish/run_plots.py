"""Figures of a set of runs drawn one panel per run: the training loss against the step, and the loss and error
along the linear paths between pairs of copies (thin lines: pairs, thick: their mean; colour: the split)."""
from __future__ import annotations

import numpy as np
import pandas as pd

from .plotting import COLORS, plt


def loss_by_run(histories: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Training loss per logged step, mean over copies, for every run (columns run, step, loss)."""
    out = [h.groupby("step").loss.mean().reset_index().assign(run=run)[["run", "step", "loss"]]
           for run, h in histories.items() if h is not None and not h.empty]
    return pd.concat(out, ignore_index=True) if out else pd.DataFrame(columns=["run", "step", "loss"])


def training_panels(training: pd.DataFrame, panels: list[tuple[str, str, float]], line_label: str, title: str):
    """One panel per (run, panel title, reference level): the run's mean training loss against the step, with
    the reference level dashed (e.g. the unigram entropy of its training text)."""
    fig, axes = plt.subplots(1, len(panels), figsize=(3.3 * len(panels), 3.4), squeeze=False)
    for ax, (run, name, level) in zip(axes[0], panels):
        g = training[training.run == run]
        ax.plot(g.step, g.loss, color=COLORS[0], lw=1)
        ax.axhline(level, color="k", ls="--", lw=1, label=line_label)
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    axes[0, 0].set_ylabel("training loss (nats/token, mean over copies)")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def paths_by_group(curves: pd.DataFrame, group: str, panels: list[tuple[str, str]], colors: dict[str, str],
                   ylabels: dict[str, str], title: str, metrics: tuple[str, ...] = ("loss", "error")):
    """One column per (group value, title), one row per metric: every pair's path (thin) and their mean (thick)
    against alpha, one colour per split (`colors`). Returns the figure and the plotted means."""
    fig, axes = plt.subplots(len(metrics), len(panels), figsize=(3.3 * len(panels), 2.8 * len(metrics)),
                             squeeze=False)
    rows = []
    for col, (key, name) in enumerate(panels):
        c = curves[curves[group] == key]
        for row, metric in enumerate(metrics):
            ax = axes[row, col]
            for split, color in colors.items():
                g = c[c.split == split]
                for _, pair in g.groupby("pair"):
                    ax.plot(pair.alpha, pair[metric], color=color, lw=0.7, alpha=0.45)
                m = g.groupby("alpha")[metric].mean()
                ax.plot(m.index, m.values, color=color, lw=2, label=split)
                rows += [{group: key, "split": split, "metric": metric, "alpha": a, "mean_over_pairs": v}
                         for a, v in m.items()]
            ax.set_xlabel("α")
            ax.grid(alpha=0.3)
            ax.set_ylabel(ylabels.get(metric, metric) if col == 0 else "")
        axes[0, col].set_title(name, fontsize=9)
        axes[0, col].legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig, pd.DataFrame(rows)


def interval_bars(df: pd.DataFrame, key: str) -> np.ndarray:
    """Error bars [2, N] for matplotlib from columns <key>_estimate, <key>_low, <key>_high (an interval or a range;
    NaN ends drawn as no bar)."""
    y, lo, hi = (df[f"{key}_{c}"].to_numpy(float) for c in ("estimate", "low", "high"))
    return np.nan_to_num(np.abs(np.vstack([y - lo, hi - y])))
