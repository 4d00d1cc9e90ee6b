"""Figures of a learning-rate x regulariser grid of classifier pairs (a table of
lmc_core.analysis.pair_alignment.classifier_pair rows with columns optimizer, width, lr, fisher, pair, diverged,
collapsed, trained; notebook 04): the barrier before and after alignment against the learning rate, one column per
optimizer and a colour per regulariser weight (filled markers: trained cells, hollow: cells whose endpoints did not
train); activation sparsity against the learning rate; the barrier against the width. Each returns (figure, the
plotted numbers)."""
from __future__ import annotations

import pandas as pd

from ..analysis.criteria import CONVEX_NATS
from .plotting import COLORS, empty_figure, plt


def _spread(g: pd.DataFrame, column: str, grid) -> pd.DataFrame:
    return g.groupby("lr")[column].agg(["mean", "min", "max"]).reindex(grid)


def _marks(ax, values: pd.Series, trained: pd.Series, col) -> None:
    ok = trained.reindex(values.index).fillna(False).astype(bool)
    ax.plot(values.index[ok], values[ok], "o", ms=4, color=col)
    ax.plot(values.index[~ok], values[~ok], "o", ms=4, mfc="none", color=col)


def _lr_column(axes, g: pd.DataFrame, grid, lam: float, col) -> list[dict]:
    """One optimizer's four panels for one Fisher weight; the plotted numbers."""
    opt, rows = g.optimizer.iloc[0], []
    trained = g.groupby("lr").trained.all().reindex(grid).fillna(False).astype(bool)
    lone = g.lr.nunique() == 1  # a cell alone draws no line: markers (filled: trained; + and x for the others)
    for k, (column, style, name) in enumerate((("barrier_wm", "-", "weight matching"),
                                               ("barrier_am", "-.", "activation matching"),
                                               ("barrier_unaligned", "--", "unaligned"))):
        s = _spread(g, column, grid)
        axes[0].plot(s.index, s["mean"], style, lw=1.4 if k == 0 else 1, color=col, label=f"λ = {lam:g}, {name}",
                     **({"marker": "o+x"[k], "ms": 4} if lone and k else {}))
        if k == 0:
            axes[0].fill_between(s.index, s["min"], s["max"], color=col, alpha=0.15, lw=0)
            _marks(axes[0], s["mean"], trained, col)
            if "chord_wm" in g:  # how many of the cell's aligned paths are convex (chord: no barrier)
                convex = g.groupby("lr").chord_wm.agg(lambda x: f"{int((x <= CONVEX_NATS).sum())}/{len(x)}")
                for lr, text in convex.items():
                    if not text.startswith("0/"):
                        axes[0].annotate(f"{text} convex", (lr, s["mean"][lr]), xytext=(0, 5), fontsize=6,
                                         textcoords="offset points", ha="center", color=col)
        rows += [{"optimizer": opt, "fisher": lam, "lr": lr, "quantity": column, "mean": v["mean"], "min": v["min"],
                  "max": v["max"], "trained": bool(trained[lr])} for lr, v in s.iterrows()]
    rel, ends, mid, err = (_spread(g, c, grid)["mean"] for c in ("rel_barrier_wm_pct", "endpoint_loss", "midpoint_wm",
                                                                  "endpoint_error"))
    axes[1].plot(rel.index, rel, "-", color=col)
    axes[2].plot(ends.index, ends, ":", color=col, label=f"λ = {lam:g}, endpoints", **({"marker": "o", "ms": 3}
                                                                                         if lone else {}))
    axes[2].plot(mid.index, mid, "-", lw=0.8, color=col, label=f"λ = {lam:g}, raw midpoint (study 5)",
                 **({"marker": "d", "ms": 4} if lone else {}))
    axes[3].plot(err.index, 100 * err, ":", color=col)
    for ax, v in ((axes[1], rel), (axes[3], 100 * err)):
        _marks(ax, v, trained, col)
    return rows + [{"optimizer": opt, "fisher": lam, "lr": lr, "quantity": q, "mean": v} for q, s in
                   (("rel_barrier_wm_pct", rel), ("endpoint_loss", ends), ("midpoint_wm", mid), ("endpoint_error", err))
                   for lr, v in s.items()]


def barrier_vs_lr_figure(table: pd.DataFrame, definition: str, margin_pp: float, profile: str):
    """Per optimizer (columns), against the learning rate: (1) the test-loss barrier after weight matching
    (solid), activation matching (dash-dot) and unaligned (dashed), mean over pairs with the pairs' range; (2) the
    barrier after weight matching relative to the endpoints' loss; (3) the endpoints' test loss (dotted) and study
    5's own measure, the raw test loss at the midpoint of the aligned path (thin); (4) the endpoints' test error
    with each optimizer's 'trained' limit. A colour per Fisher weight; filled markers: trained cells, hollow:
    cells whose endpoints did not train (left out of every finding); gaps: diverged; "k/n convex": k of the cell's
    n aligned paths have no barrier. A Fisher weight trained at one rate only is drawn as markers."""
    opts = list(dict.fromkeys(table.optimizer))
    fig, axes = plt.subplots(4, len(opts), figsize=(4.6 * len(opts), 10.5), squeeze=False, sharex="col",
                             gridspec_kw={"height_ratios": [2, 1.2, 1.2, 1.2]})
    rows = []
    ran = table[~table.diverged.astype(bool)] if "barrier_wm" in table else table.iloc[0:0]
    for j, opt in enumerate(opts):
        grid = sorted(table[table.optimizer == opt].lr.unique())
        for c, lam in enumerate(sorted(table.fisher.unique())):
            g = ran[(ran.optimizer == opt) & (ran.fisher == lam)]
            rows += _lr_column(axes[:, j], g, grid, lam, COLORS[c % len(COLORS)]) if len(g) else []
        ok = ran[(ran.optimizer == opt) & ~ran.collapsed.astype(bool)]
        if len(ok):
            best = 100 * ok.groupby(["lr", "fisher"]).endpoint_error.mean().min()
            axes[3][j].axhline(best + margin_pp, color="k", ls="--", lw=0.8,
                               label=f"trained: ≤ best + {margin_pp:g} points")
        axes[0][j].set_title(opt, fontsize=10)
        for ax, y in zip(axes[:, j], (f"test-loss barrier '{definition}' (nats)", "barrier after w.m.\n(% of endpoints' "
                                      "loss)", "test loss (nats)", "endpoints' test error (%)")):
            ax.set(ylabel=y, xscale="log")
            ax.grid(alpha=0.3)
        axes[3][j].set_xlabel("learning rate (log axis; gaps: diverged)")
    for row in (0, 2):  # the column that drew the most Fisher weights names them all
        ax = max(axes[row], key=lambda a: len(a.get_legend_handles_labels()[1]))
        ax.legend(fontsize=6)
    axes[3][0].legend(fontsize=6)
    fig.suptitle(f"MLP on MNIST-1D: barrier between independently initialised models before and after alignment "
                 f"(mean and range over pairs; hollow: endpoints not trained; {profile} profile)", fontsize=10)
    fig.tight_layout()
    return fig, pd.DataFrame(rows)


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
            ax.plot(g.index, g.values, "-o", ms=3, color=COLORS[c], label=f"λ = {lam:g}" if g.notna().any() else None)
            rows += [{"optimizer": opt, "fisher": lam, "lr": lr, "sparsity": v} for lr, v in g.items()]
        ax.set_xscale("log")
        ax.set_title(opt, fontsize=10)
        ax.set_xlabel("learning rate (log axis)")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("fraction of ReLU outputs at 0")
    max(axes[0], key=lambda a: len(a.get_legend_handles_labels()[1])).legend(fontsize=8)
    fig.suptitle(f"Activation sparsity of the MLP vs learning rate (trained cells, mean over pairs; {profile} profile)",
                 fontsize=10)
    fig.tight_layout()
    return fig, pd.DataFrame(rows)


def width_figure(table: pd.DataFrame, definition: str, profile: str):
    """Barrier (unaligned, after weight and activation matching) and endpoint error against the MLP's width, one
    point per pair and the mean, per optimizer (lambda = 0, at the learning rate named in each title)."""
    if not len(table):
        return empty_figure("Width sweep", "no width sweep: no λ = 0 cell of the width optimizers trained")
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
