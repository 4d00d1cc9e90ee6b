"""Figures of notebook 06 (lmc_core.studies.grokking); each returns (figure, the plotted numbers)."""
from __future__ import annotations

import numpy as np
import pandas as pd

from ..publish.plotting import COLORS, plt

GROK_PCT = 95
CONTROL_X = -0.2  # where the overlap figure draws the control pairs (they have no key frequencies)


def accuracy_figure(curves: pd.DataFrame, grok: pd.DataFrame, p: dict):
    """Test accuracy (solid, one colour per seed) and train accuracy (dashed, grey) vs step for every setting of the
    grid; dotted: each seed's sustained grok step (from which test accuracy stays >= 95 %)."""
    wds, lams = p["weight_decay"], p["fisher"]
    fig, axes = plt.subplots(len(lams), len(wds), figsize=(2.6 * len(wds), 1.9 * len(lams)), squeeze=False,
                             sharex=True, sharey=True)
    for i, lam in enumerate(lams):
        for j, wd in enumerate(wds):
            ax = axes[i][j]
            cell = curves[(curves.weight_decay == wd) & (curves.fisher == lam)]
            for c, (seed, g) in enumerate(cell.groupby("seed")):
                g = g.sort_values("step")
                ax.plot(g.step, g.train_acc, "--", color="0.6", lw=0.6, label="train" if c == 0 else None)
                ax.plot(g.step, g.test_acc, "-", color=COLORS[c % len(COLORS)], lw=0.9, label=f"test, seed {seed}")
            r = grok[(grok.weight_decay == wd) & (grok.fisher == lam)].sort_values("seed")
            for c, s_ in enumerate(r.grok_step):
                if np.isfinite(s_):
                    ax.axvline(s_, color=COLORS[c % len(COLORS)], ls=":", lw=1)
            n = int(np.isfinite(r.grok_step).sum())
            ax.set_title(f"wd {wd:g}, λ {lam:g}: {n}/{len(r)} grokked", fontsize=7)
            ax.grid(alpha=0.3)
            ax.tick_params(labelsize=6)
            if i == len(lams) - 1:
                ax.set_xlabel("step", fontsize=7)
            if j == 0:
                ax.set_ylabel("accuracy", fontsize=7)
    axes[0][0].legend(fontsize=5)
    fig.suptitle(f"Modular addition (p = {p['p']}, {100 * p['train_frac']:g} % train): accuracy during training; dotted: "
                 f"each seed's sustained grok (test accuracy ≥ {GROK_PCT} % from there for "
                 + (f"{p['grok_evals']} evaluations" if p['grok_evals'] else "the rest of the run") + f"; {p['profile']} "
                 "profile)", fontsize=9)
    fig.tight_layout()
    return fig, curves[["weight_decay", "fisher", "seed", "step", "train_acc", "test_acc"]]


def grok_heatmap(cells: pd.DataFrame, p: dict):
    """Median sustained grok step over the grid, with its range over seeds and how many seeds grokked ("no fit":
    no seed fit the training set; "—": fit but the median seed did not grok within the run)."""
    g = cells.pivot_table(index="fisher", columns="weight_decay", values="median_grok_step", aggfunc="first")
    g = g.reindex(index=sorted(p["fisher"], reverse=True), columns=sorted(p["weight_decay"]))
    fig, ax = plt.subplots(figsize=(1.6 * len(g.columns) + 2, 0.9 * len(g.index) + 1.5))
    shown = g.where(np.isfinite(g))
    im = ax.imshow(shown.values, cmap="viridis_r", aspect="auto", vmin=0, vmax=p["steps"])  # absolute steps
    for i, lam in enumerate(g.index):
        for j, wd in enumerate(g.columns):
            c = cells[(cells.weight_decay == wd) & (cells.fisher == lam)].iloc[0]
            if c.no_fit:
                word = "no fit"
            else:
                rng_ = "–".join("∞" if not np.isfinite(x) else f"{int(x)}" for x in (c.min_grok_step, c.max_grok_step))
                word = (f"{int(c.median_grok_step)}" if np.isfinite(c.median_grok_step) else "—") + f"\n[{rng_}]\n" \
                    f"{int(c.grokked)}/{int(c.seeds)} grokked"
            ax.text(j, i, word, ha="center", va="center", fontsize=6.5,
                    color="w" if np.isfinite(c.median_grok_step) else "k")
    ax.set_xticks(range(g.shape[1]), [f"{c:g}" for c in g.columns])
    ax.set_yticks(range(g.shape[0]), [f"{r:g}" for r in g.index])
    ax.set_xlabel("weight decay")
    ax.set_ylabel("Fisher penalty λ (sampled labels)")
    fig.colorbar(im, ax=ax, label=f"median sustained grok step (≥ {GROK_PCT} % test accuracy held)")
    ax.set_title(f"Sustained grok: median [range] over seeds (∞: a seed did not grok in {p['steps']} steps"
                 + (f", holding it for {p['grok_evals'] * p['eval_every']}" if p['grok_evals'] else "") + "; no fit: no "
                 f"seed reached {GROK_PCT} % train accuracy; {p['profile']} profile)", fontsize=8)
    fig.tight_layout()
    return fig, cells


def trajectory_figure(trajectory: pd.DataFrame, grok: pd.DataFrame, p: dict):
    """Test-loss and test-error barriers between grokked seeds of the connectivity setting at the kept checkpoints,
    unaligned (dashed) and after permutation (solid); mean over pairs with their range, and the seeds' grok steps."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    wd, lam = p["connect_setting"]
    rows = []
    for c, (kind, ls) in enumerate((("unaligned", "--"), ("permutation", "-"))):
        h = trajectory[trajectory.kind == kind]
        if not len(h):
            continue
        for ax, col in zip(axes, ("loss_barrier", "error_barrier_pp")):
            m = h.groupby("step")[col].agg(["mean", "min", "max"])
            ax.plot(m.index, m["mean"], ls + "o", ms=3, color=COLORS[c], label=kind)
            ax.fill_between(m.index, m["min"], m["max"], color=COLORS[c], alpha=0.15, lw=0)
            rows += [{"kind": kind, "quantity": col, "step": s, **v} for s, v in m.to_dict("index").items()]
    seeds = grok[(grok.weight_decay == wd) & (grok.fisher == lam)].grok_step.dropna()
    for s in seeds:
        for ax in axes:
            ax.axvline(s, color="k", ls=":", lw=0.8)
    axes[0].set_ylabel(f"test-loss barrier '{p['definition']}' (nats)")
    axes[1].set_ylabel("test-error barrier (percentage points)")
    for ax in axes:
        ax.set_xlabel("training step (dotted: each seed's sustained grok)")
        ax.grid(alpha=0.3)
    if len(trajectory):
        axes[0].legend(fontsize=7)
    else:  # fewer than two seeds grokked: nothing to follow during training
        for ax in axes:
            ax.text(0.5, 0.5, "fewer than two grokked seeds", ha="center", va="center", transform=ax.transAxes)
    fig.suptitle(f"Barrier between grokked seeds (wd {wd:g}, λ {lam:g}) during training: mean and range over pairs "
                 f"({p['profile']} profile)", fontsize=10)
    fig.tight_layout()
    return fig, pd.DataFrame(rows)


def overlap_figure(pairs: pd.DataFrame, p: dict):
    """The test-error barrier (left) and test-loss barrier (right, log axis) of every pair after each alignment against
    the overlap (Jaccard index) of the two seeds' key Fourier frequencies; circles: pairs of grokked seeds, crosses
    (left of 0): the weight-decay-0 control (memorised, not grokked, no key frequencies); hollow circles and plus
    signs: a convex path of that quantity (no barrier)."""
    from .grokking_connect import KINDS

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    rows = []
    for c, kind in enumerate(KINDS):
        for role, marker in (("grokked", "o"), ("control", "x")):
            g = pairs[pairs.role == role]
            if not len(g) or f"chord_pct:{kind}" not in g:
                continue
            jitter = (c - 2) * 0.008
            # the control has no key frequencies (no overlap to speak of): drawn left of 0
            x = (g.overlap if role == "grokked" else pd.Series(CONTROL_X, index=g.index)) + jitter
            for ax, col, chord in zip(axes, (f"error_barrier_pp:{kind}", f"loss_barrier:{kind}"),
                                      (f"error_chord_pp:{kind}", f"chord_pct:{kind}")):
                convex = g[chord] <= 0.1 if chord in g else pd.Series(False, index=g.index)
                ax.scatter(x[~convex], g[col][~convex], marker=marker, color=COLORS[c],
                           label=f"{kind} ({role})" if ax is axes[0] else None, s=22)
                if convex.any():
                    ax.scatter(x[convex], g[col][convex], marker="o" if marker == "o" else "+", s=22,
                               **({"facecolors": "none", "edgecolors": COLORS[c]} if marker == "o" else
                                  {"color": COLORS[c]}))
            rows += [{"kind": kind, "role": role, "pair": f"{a}-{b}", "overlap": o, "error_barrier_pp": e,
                      "loss_barrier": lo}
                     for a, b, o, e, lo in zip(g.seed_a, g.seed_b, g.overlap, g[f"error_barrier_pp:{kind}"],
                                               g[f"loss_barrier:{kind}"])]
    axes[0].set_ylabel(f"test-error barrier '{p['definition']}' (percentage points)")
    axes[1].set_ylabel(f"test-loss barrier '{p['definition']}' (nats, log axis)")
    axes[1].set_yscale("log")
    for ax in axes:
        ax.set_xlabel("overlap of the two seeds' key frequencies (Jaccard index)")
        ax.set_xticks([CONTROL_X, 0, 0.25, 0.5, 0.75, 1], ["control", "0", "0.25", "0.5", "0.75", "1"])
        ax.grid(alpha=0.3)
    fig.legend(*axes[0].get_legend_handles_labels(), fontsize=6, loc="lower center", ncol=5, frameon=False)
    wd, lam = p["connect_setting"]
    fig.suptitle(f"What grokked seeds share: barrier after each alignment vs key-frequency overlap (grokked: wd {wd:g}, "
                 f"λ {lam:g}; control: wd {p['control_setting'][0]:g}, λ {p['control_setting'][1]:g}; hollow: convex "
                 f"path; {p['profile']} profile)", fontsize=9)
    fig.tight_layout(rect=(0, 0.1, 1, 1))  # room for the legend below the panels
    return fig, pd.DataFrame(rows)


def frequency_figure(freqs: pd.DataFrame, p: dict):
    """Share of each seed's token-embedding Fourier energy per frequency k (connectivity and control settings), key
    frequencies outlined."""
    sel = []
    for role, (wd, lam) in (("grokked", p["connect_setting"]), ("control", p["control_setting"])):
        sel.append(freqs[(freqs.weight_decay == wd) & (freqs.fisher == lam)].assign(role=role))
    f = pd.concat(sel, ignore_index=True)
    m = f.pivot_table(index=["role", "seed"], columns="frequency", values="share", aggfunc="first")
    m = m.reindex(sorted(m.index, key=lambda x: (x[0] != "grokked", x[1])))
    fig, ax = plt.subplots(figsize=(0.35 * m.shape[1] + 3, 0.35 * m.shape[0] + 1.6))
    im = ax.imshow(m.values, cmap="magma", aspect="auto")
    key = f.pivot_table(index=["role", "seed"], columns="frequency", values="key", aggfunc="first").reindex(m.index)
    for i in range(m.shape[0]):
        for j in range(m.shape[1]):
            if bool(key.values[i, j]):
                ax.add_patch(plt.Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, edgecolor="c", lw=1.2))
    ax.set_xticks(range(m.shape[1]), [str(c) for c in m.columns], fontsize=6)
    ax.set_yticks(range(m.shape[0]), [f"{r} seed {s}" for r, s in m.index], fontsize=7)
    ax.set_xlabel("frequency k (cos/sin of 2πka/p)")
    fig.colorbar(im, ax=ax, label="share of embedding Fourier energy")
    ax.set_title(f"Key frequencies (outlined: share ≥ {p['key_factor']:g}× uniform) of each seed's token embedding "
                 f"({p['profile']} profile)", fontsize=8)
    fig.tight_layout()
    return fig, f


def norm_fisher_figure(curves: pd.DataFrame, fisher: pd.DataFrame, p: dict):
    """Weight norm (left) and the Fisher trace estimate ||grad of the batch loss under sampled labels||^2
    (right, smoothed) over training; colour: weight decay, line style: lambda."""
    styles = ["-", "--", "-.", ":"]
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    rows = []
    for j, wd in enumerate(p["weight_decay"]):
        for i, lam in enumerate(p["fisher"]):
            g = curves[(curves.weight_decay == wd) & (curves.fisher == lam) & (curves.seed == 1)].sort_values("step")
            axes[0].plot(g.step, g.weight_norm, styles[i % 4], color=COLORS[j % len(COLORS)], lw=1,
                         label=f"wd {wd:g}" if i == 0 else None)
            f = fisher[(fisher.weight_decay == wd) & (fisher.fisher == lam) & (fisher.seed == 1)
                       & (fisher.penalty > 0)].sort_values("step")  # the steps on which the penalty was computed
            if len(f):
                sm = f.penalty.rolling(max(len(f) // 50, 1), min_periods=1).mean()
                axes[1].plot(f.step, sm, styles[i % 4], color=COLORS[j % len(COLORS)], lw=1)
                rows += [{"weight_decay": wd, "fisher": lam, "step": s, "fisher_trace": v}
                         for s, v in zip(f.step.iloc[:: max(len(f) // 200, 1)], sm.iloc[:: max(len(f) // 200, 1)])]
    for i, lam in enumerate(p["fisher"]):
        axes[0].plot([], [], styles[i % 4], color="grey", label=f"λ {lam:g}")
    axes[0].set_ylabel("weight norm ‖θ‖")
    axes[1].set_ylabel("Fisher trace estimate (sampled labels)\nonly λ > 0 copies (computed for the penalty)", fontsize=8)
    axes[1].set_yscale("log")
    for ax in axes:
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=6, ncol=2)
    fig.suptitle(f"Weight norm and Fisher trace during training ({p['profile']} profile)", fontsize=10)
    fig.tight_layout()
    return fig, pd.DataFrame(rows)
