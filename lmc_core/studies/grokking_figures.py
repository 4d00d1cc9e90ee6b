"""Figures of notebook 06 (lmc_core.studies.grokking); each returns (figure, the plotted numbers)."""
from __future__ import annotations

import itertools

import numpy as np
import pandas as pd

from ..align.methods import UNALIGNED, WEIGHT
from ..analysis.criteria import CONVEX_TOL, GROK_ACCURACY
from ..analysis.grok import grok_range
from ..analysis.residual_methods import METHODS
from ..publish.heatmaps import marked_heatmap, text_heatmap
from ..publish.plotting import COLORS, plt

GROK_PCT = f"{100 * GROK_ACCURACY:g}"
CONTROL_X = -0.2  # where the overlap figure draws the control pairs (no key frequencies); methods side by side
OFF_SCALE = 100  # the loss panel of the overlap figure ends at this many times the median barrier (off_scale)


def accuracy_figure(curves: pd.DataFrame, grok: pd.DataFrame, p):
    """Test accuracy (solid, one colour per seed) and train accuracy (dashed, grey) vs step for every setting of the
    grid; dotted: each seed's sustained grok step (from which test accuracy holds GROK_ACCURACY)."""
    wds, lams = p.weight_decay, p.fisher
    fig, axes = plt.subplots(len(lams), len(wds), figsize=(2.6 * len(wds), 1.9 * len(lams)), squeeze=False,
                             sharex=True, sharey=True)
    for (i, lam), (j, wd) in itertools.product(enumerate(lams), enumerate(wds)):
        ax, r = axes[i][j], grok[(grok.weight_decay == wd) & (grok.fisher == lam)].sort_values("seed")
        for c, (seed, g) in enumerate(curves[(curves.weight_decay == wd) & (curves.fisher == lam)].groupby("seed")):
            g, color = g.sort_values("step"), COLORS[c % len(COLORS)]
            ax.plot(g.step, g.train_acc, "--", color="0.6", lw=0.6, label="train" if c == 0 else None)
            ax.plot(g.step, g.test_acc, "-", color=color, lw=0.9, label=f"test, seed {seed}")
            for s_ in r[r.seed == seed].grok_step.dropna():
                ax.axvline(s_, color=color, ls=":", lw=1)
        ax.set_title(f"wd {wd:g}, λ {lam:g}: {int(np.isfinite(r.grok_step).sum())}/{len(r)} grokked", fontsize=7)
        ax.grid(alpha=0.3)
        ax.tick_params(labelsize=6)
        ax.set_xlabel("step" if i == len(lams) - 1 else "", fontsize=7)
        ax.set_ylabel("accuracy" if j == 0 else "", fontsize=7)
    # the legend where every seed is drawn: the panel with the most seeds (the connectivity setting's)
    max((a for row in axes for a in row), key=lambda a: len(a.get_lines())).legend(fontsize=5)
    fig.suptitle(f"Modular addition (p = {p.p}, {100 * p.train_frac:g} % train): accuracy during training; dotted: "
                 f"each seed's sustained grok (test accuracy ≥ {GROK_PCT} % from there for "
                 + (f"{p.grok_evals} evaluations" if p.grok_evals else "the rest of the run") + f"; {p.profile} "
                 "profile)", fontsize=9)
    fig.tight_layout()
    return fig, curves[["weight_decay", "fisher", "seed", "step", "train_acc", "test_acc"]]


def grok_heatmap(cells: pd.DataFrame, p):
    """Median sustained grok step over the grid, with its range over seeds and how many seeds grokked ("no fit":
    no seed fit the training set; "—": fit but the median seed did not grok within the run)."""
    c = cells.set_index(["fisher", "weight_decay"])
    words = c.apply(lambda r: "no fit" if r.no_fit else grok_range(r, "\n", "—")
                    + f"\n{int(r.grokked)}/{int(r.seeds)} grokked", axis=1)
    grid = dict(index=sorted(p.fisher, reverse=True), columns=sorted(p.weight_decay))
    fig, ax = text_heatmap(c.median_grok_step.unstack().reindex(**grid), words.unstack().reindex(**grid),
                           "weight decay", "Fisher penalty λ (sampled labels)", f"median sustained grok step (≥ "
                           f"{GROK_PCT} % test accuracy held)", vmin=0, vmax=p.steps)  # absolute steps
    fig.suptitle(f"Sustained grok: median [range] over seeds ({p.profile} profile)\n∞: a seed did not grok in {p.steps} "
                 "steps" + (f", holding it for {p.grok_evals * p.eval_every}" if p.grok_evals else "") + "; no fit: no "
                 f"seed reached {GROK_PCT} % train accuracy", fontsize=9)
    fig.tight_layout()
    return fig, cells


def trajectory_figure(trajectory: pd.DataFrame, grok: pd.DataFrame, p):
    """Test-loss and test-error barriers between grokked seeds of the connectivity setting at the kept checkpoints,
    unaligned (dashed) and after weight matching (solid); mean over pairs with their range, and the seeds' grok
    steps (dotted)."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    wd, lam = p.connect_setting
    rows = []
    for (c, (kind, ls)), (ax, col) in itertools.product(enumerate(((UNALIGNED, "--"), (WEIGHT, "-"))),
                                                        zip(axes, ("loss_barrier", "error_barrier_pp"))):
        m = trajectory[trajectory.kind == kind].groupby("step")[col].agg(["mean", "min", "max"])
        ax.plot(m.index, m["mean"], ls + "o", ms=3, color=COLORS[c], label=kind)
        ax.fill_between(m.index, m["min"], m["max"], color=COLORS[c], alpha=0.15, lw=0)
        rows += [{"kind": kind, "quantity": col, "step": s, **v} for s, v in m.to_dict("index").items()]
    for ax, label in zip(axes, (f"test-loss barrier '{p.definition}' (nats)", "test-error barrier (points)")):
        for s in grok[(grok.weight_decay == wd) & (grok.fisher == lam)].grok_step.dropna():
            ax.axvline(s, color="k", ls=":", lw=0.8)
        ax.set(xlabel="training step (dotted: each seed's sustained grok)", ylabel=label)
        ax.grid(alpha=0.3)
        if not len(trajectory):  # fewer than two seeds grokked: nothing to follow during training
            ax.text(0.5, 0.5, "fewer than two grokked seeds", ha="center", va="center", transform=ax.transAxes)
    axes[0].legend(fontsize=7)
    fig.suptitle(f"Barrier between grokked seeds (wd {wd:g}, λ {lam:g}) during training: mean and range over pairs "
                 f"({p.profile} profile)", fontsize=10)
    fig.tight_layout()
    return fig, pd.DataFrame(rows)


def overlap_figure(pairs: pd.DataFrame, p):
    """The test-error barrier (left) and test-loss barrier (right, log axis) of every pair after each alignment against
    the overlap (Jaccard index) of the two seeds' key Fourier frequencies; circles: pairs of grokked seeds, crosses
    (left of 0): the weight-decay-0 control (memorised, not grokked, no key frequencies); hollow circles and plus
    signs: a convex path of that quantity (chord ≤ CONVEX_TOL: no barrier)."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    rows = []
    for (c, kind), (role, marker) in itertools.product(enumerate(METHODS), (("grokked", "o"), ("control", "x"))):
        g = pairs[pairs.role == role]
        if not len(g):
            continue
        x = (g.overlap if role == "grokked" else pd.Series(CONTROL_X, index=g.index)) + (c - 2) * 0.008
        for ax, col, chord in zip(axes, ("error_barrier_pp", "loss_barrier"), ("error_chord_pp", "chord_pct")):
            y, convex = g[f"{col}:{kind}"], g[f"{chord}:{kind}"] <= CONVEX_TOL
            ax.scatter(x[~convex], y[~convex], marker=marker, color=COLORS[c], s=22,
                       label=f"{kind} ({role})" if ax is axes[0] else None)
            ax.scatter(x[convex], y[convex], s=22, **({"marker": "o", "facecolors": "none", "edgecolors": COLORS[c]}
                                                      if marker == "o" else {"marker": "+", "color": COLORS[c]}))
        rows += [{"kind": kind, "role": role, "pair": pr, "overlap": o, "error_barrier_pp": e, "loss_barrier": lo}
                 for pr, o, e, lo in zip(g.pair, g.overlap, g[f"error_barrier_pp:{kind}"], g[f"loss_barrier:{kind}"])]
    axes[0].set_ylabel(f"test-error barrier '{p.definition}' (percentage points)")
    off_scale(axes[1], pd.DataFrame(rows))
    axes[1].set(ylabel=f"test-loss barrier '{p.definition}' (nats, log axis)", yscale="log")
    for ax in axes:
        ax.set_xlabel("overlap of the two seeds' key frequencies (Jaccard index)")
        ax.set_xticks([CONTROL_X, 0, 0.25, 0.5, 0.75, 1], ["control", "0", "0.25", "0.5", "0.75", "1"])
        ax.grid(alpha=0.3)
    fig.legend(*axes[0].get_legend_handles_labels(), fontsize=6, loc="lower center", ncol=5, frameon=False)
    fig.suptitle(f"What grokked seeds share: barrier after each alignment vs key-frequency overlap (grokked: wd "
                 f"{p.connect_setting[0]:g}, λ {p.connect_setting[1]:g}; control: wd {p.control_setting[0]:g}, λ "
                 f"{p.control_setting[1]:g}; hollow: convex path; {p.profile} profile)", fontsize=9)
    fig.tight_layout(rect=(0, 0.1, 1, 1))  # room for the legend below the panels
    return fig, pd.DataFrame(rows)


def off_scale(ax, rows: pd.DataFrame) -> None:
    """Cap the loss axis at OFF_SCALE times the median positive barrier so that a method whose paths leave the
    function far behind (the least-squares invertible maps: 1e4-1e8 nats) does not flatten the others; the capped
    points sit on the top edge as triangles, their range written there (the CSV keeps every value)."""
    pos = rows.loss_barrier[rows.loss_barrier > 0]
    if not len(pos):
        return
    cap = OFF_SCALE * float(pos.median())
    over = rows[rows.loss_barrier > cap]
    if not len(over):
        return
    ax.set_yscale("log")
    ax.set_ylim(float(pos.min()) / 2, cap * 2)
    for c, kind in enumerate(METHODS):
        g = over[over.kind == kind]
        ax.scatter(g.overlap + (c - 2) * 0.008, [cap] * len(g), marker="^", color=COLORS[c], s=22, clip_on=False)
    ax.text(0.99, 0.03, f"▲ (top edge) off scale: {len(over)} pairs, {over.loss_barrier.min():.2g} to "
            f"{over.loss_barrier.max():.2g} nats ({', '.join(dict.fromkeys(over.kind))})", transform=ax.transAxes,
            ha="right", va="bottom", fontsize=6, bbox=dict(fc="white", ec="none", alpha=0.8))


def frequency_figure(freqs: pd.DataFrame, p):
    """Share of each seed's token-embedding Fourier energy per frequency k (connectivity and control settings), key
    frequencies outlined."""
    f = pd.concat([freqs[(freqs.weight_decay == wd) & (freqs.fisher == lam)].assign(role=role) for role, (wd, lam) in
                   (("grokked", p.connect_setting), ("control", p.control_setting))], ignore_index=True)
    f["label"] = [f"{r} seed {s}" for r, s in zip(f.role, f.seed)]  # grokked seeds first, then the control's
    m, key = (f.pivot_table(index="label", columns="frequency", values=v, aggfunc="first").reindex(
        list(dict.fromkeys(f.label))) for v in ("share", "key"))
    fig, ax = marked_heatmap(m, key.fillna(False), "frequency k (cos/sin of 2πka/p)", "share of Fourier energy")
    ax.set_title(f"Key frequencies (outlined: share ≥ {p.key_factor:g}× uniform) of each seed's token embedding "
                 f"({p.profile} profile)", fontsize=8)
    fig.tight_layout()
    return fig, f.drop(columns="label")


def norm_fisher_figure(curves: pd.DataFrame, fisher: pd.DataFrame, p):
    """Weight norm (left) and the Fisher trace estimate ||grad of the batch loss under sampled labels||^2
    (right, smoothed, on the steps where the penalty was computed) over training, first seed; colour: weight decay,
    line style: lambda."""
    styles = ["-", "--", "-.", ":"]
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    rows = []
    for (j, wd), (i, lam) in itertools.product(enumerate(p.weight_decay), enumerate(p.fisher)):
        style = {"fmt": styles[i % 4], "color": COLORS[j % len(COLORS)], "lw": 1}
        g = curves[(curves.weight_decay == wd) & (curves.fisher == lam) & (curves.seed == 1)].sort_values("step")
        axes[0].plot(g.step, g.weight_norm, style.pop("fmt"), **style, label=f"wd {wd:g}" if i == 0 else None)
        f = fisher[(fisher.weight_decay == wd) & (fisher.fisher == lam) & (fisher.seed == 1)
                   & (fisher.penalty > 0)].sort_values("step")
        sm, every = f.penalty.rolling(max(len(f) // 50, 1), min_periods=1).mean(), max(len(f) // 200, 1)
        axes[1].plot(f.step, sm, styles[i % 4], **style)
        rows += [{"weight_decay": wd, "fisher": lam, "step": s, "fisher_trace": v}
                 for s, v in zip(f.step.iloc[::every], sm.iloc[::every])]
    for i, lam in enumerate(p.fisher):
        axes[0].plot([], [], styles[i % 4], color="grey", label=f"λ {lam:g}")
    axes[0].set_ylabel("weight norm ‖θ‖")
    axes[1].set_ylabel("Fisher trace estimate (sampled labels)\nλ > 0 copies (computed for the penalty)", fontsize=8)
    axes[1].set_yscale("log")
    for ax in axes:
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=6, ncol=2)
    fig.suptitle(f"Weight norm and Fisher trace during training ({p.profile} profile)", fontsize=10)
    fig.tight_layout()
    return fig, pd.DataFrame(rows, columns=["weight_decay", "fisher", "step", "fisher_trace"])
