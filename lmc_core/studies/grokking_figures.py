"""Figures and the summary of notebook 06 (lmc_core.studies.grokking)."""
from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.stats import spearmanr

from ..publish.plotting import COLORS, plt

GROK_PCT = 95


def accuracy_figure(curves: pd.DataFrame, grok: pd.DataFrame, p: dict):
    """Train (dashed) and test (solid) accuracy vs step for every setting of the grid (first seed)."""
    wds, lams = p["weight_decay"], p["fisher"]
    fig, axes = plt.subplots(len(lams), len(wds), figsize=(2.6 * len(wds), 1.9 * len(lams)), squeeze=False,
                             sharex=True, sharey=True)
    for i, lam in enumerate(lams):
        for j, wd in enumerate(wds):
            ax = axes[i][j]
            g = curves[(curves.weight_decay == wd) & (curves.fisher == lam) & (curves.seed == 1)].sort_values("step")
            ax.plot(g.step, g.train_acc, "--", color=COLORS[0], lw=1, label="train")
            ax.plot(g.step, g.test_acc, "-", color=COLORS[1], lw=1.3, label="test")
            r = grok[(grok.weight_decay == wd) & (grok.fisher == lam) & (grok.seed == 1)]
            s = r.grok_step.iloc[0] if len(r) else np.nan
            if np.isfinite(s):
                ax.axvline(s, color="k", ls=":", lw=1)
            ax.set_title(f"wd {wd:g}, λ {lam:g}" + ("" if np.isfinite(s) else " (no grok)"), fontsize=7)
            ax.grid(alpha=0.3)
            ax.tick_params(labelsize=6)
            if i == len(lams) - 1:
                ax.set_xlabel("step", fontsize=7)
            if j == 0:
                ax.set_ylabel("accuracy", fontsize=7)
    axes[0][0].legend(fontsize=6)
    fig.suptitle(f"Modular addition (p = {p['p']}, {100 * p['train_frac']:g} % train): accuracy during training; dotted: "
                 f"first step with test accuracy ≥ {GROK_PCT} % ({p['profile']} profile)", fontsize=9)
    fig.tight_layout()
    return fig, curves[curves.seed == 1][["weight_decay", "fisher", "step", "train_acc", "test_acc"]]


def grok_heatmap(grok: pd.DataFrame, p: dict):
    """Steps to grok over the grid ("—": memorised but did not grok within the run; "no fit": never fit the
    training set)."""
    seed1 = grok[grok.seed == 1]
    g = seed1.pivot_table(index="fisher", columns="weight_decay", values="grok_step", aggfunc="first", dropna=False)
    g = g.reindex(index=sorted(p["fisher"], reverse=True), columns=sorted(p["weight_decay"]))
    fit = (seed1.assign(fit=np.isfinite(seed1.memorised_step) | np.isfinite(seed1.grok_step))
           .pivot_table(index="fisher", columns="weight_decay", values="fit", aggfunc="first")
           .reindex(index=g.index, columns=g.columns).fillna(False).astype(bool))
    fig, ax = plt.subplots(figsize=(1.2 * len(g.columns) + 2, 0.8 * len(g.index) + 1.5))
    im = ax.imshow(g.values, cmap="viridis_r", aspect="auto")
    for i in range(g.shape[0]):
        for j in range(g.shape[1]):
            v = g.values[i, j]
            word = f"{int(v)}" if np.isfinite(v) else ("—" if fit.values[i, j] else "no fit")
            ax.text(j, i, word, ha="center", va="center", fontsize=8, color="w" if np.isfinite(v) else "k")
    ax.set_xticks(range(g.shape[1]), [f"{c:g}" for c in g.columns])
    ax.set_yticks(range(g.shape[0]), [f"{r:g}" for r in g.index])
    ax.set_xlabel("weight decay")
    ax.set_ylabel("Fisher penalty λ (sampled labels)")
    fig.colorbar(im, ax=ax, label=f"first step with test accuracy ≥ {GROK_PCT} %")
    ax.set_title(f"Steps to grok (—: memorised, no grok within {p['steps']} steps; no fit: train accuracy never "
                 f"≥ {GROK_PCT} %; {p['profile']} profile)", fontsize=8)
    fig.tight_layout()
    out = g.reset_index().melt(id_vars="fisher", var_name="weight_decay", value_name="grok_step")
    fits = fit.reset_index().melt(id_vars="fisher", var_name="weight_decay", value_name="fits_training_set")
    return fig, out.merge(fits, on=["fisher", "weight_decay"])


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
    axes[1].set_ylabel("Fisher trace estimate (sampled labels)")
    axes[1].set_yscale("log")
    for ax in axes:
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=6, ncol=2)
    fig.suptitle(f"Weight norm and Fisher trace during training ({p['profile']} profile)", fontsize=10)
    fig.tight_layout()
    return fig, pd.DataFrame(rows)


def both_grokked(grok: pd.DataFrame, wd: float, lam: float) -> float:
    """The step by which every seed of the setting (weight decay, lambda) has grokked; NaN unless all of them did."""
    steps = grok[(grok.weight_decay == wd) & (grok.fisher == lam)].grok_step.to_numpy(dtype=float)
    return float(steps.max()) if len(steps) and np.isfinite(steps).all() else float("nan")


def barrier_figure(barriers: pd.DataFrame, grok: pd.DataFrame, p: dict):
    """Test-loss barrier between two seeds of a setting at checkpoints, unaligned and after weight matching,
    with each setting's grok step."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    for c, ((wd, lam), g) in enumerate(barriers.groupby(["weight_decay", "fisher"])):
        col = COLORS[c % len(COLORS)]
        for kind, ls in (("unaligned", "--"), ("weight matching", "-")):
            h = g[g.kind == kind].sort_values("step")
            axes[0].plot(h.step, h.loss_barrier, ls + "o", ms=3, color=col, label=f"wd {wd:g}, λ {lam:g}, {kind}")
            axes[1].plot(h.step, h.error_barrier_pp, ls + "o", ms=3, color=col)
        s = both_grokked(grok, wd, lam)
        for ax in axes:
            if np.isfinite(s):
                ax.axvline(s, color=col, ls=":", lw=1)
    axes[0].set_ylabel(f"test-loss barrier '{p['definition']}' (nats)")
    axes[1].set_ylabel("test-error barrier (percentage points)")
    for ax in axes:
        ax.set_xlabel("training step (dotted: grokked, both seeds)")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=6)
    fig.suptitle(f"Are two grokked solutions linearly connected? ({p['profile']} profile)", fontsize=10)
    fig.tight_layout()
    return fig, barriers


def describe(grok: pd.DataFrame, barriers: pd.DataFrame, p: dict) -> tuple[str, dict]:
    """The findings in words (Markdown) from this run's numbers, and the numbers as data."""
    g = grok[grok.seed == 1]
    n, ok = len(g), int(np.isfinite(g.grok_step).sum())
    lines = [f"**Profile `{p['profile']}`: p = {p['p']}, {100 * p['train_frac']:g} % of the pairs for training, "
             f"{p['steps']} full-batch AdamW steps (lr {p['lr']:g}); grokked = test accuracy ≥ {GROK_PCT} %.**", "",
             f"- {ok} of {n} settings grokked within the run" + (f"; {int(g.diverged.sum())} diverged" if g.diverged.any()
                                                                  else "") + "."]
    numbers: dict = {"grokked": ok, "settings": n}
    # Grokking presupposes memorising: a setting that never fits the training set (train accuracy < 95 %) is
    # over-regularised for this learning rate, a different failure, and is left out of the claim's test.
    fits = g[np.isfinite(g.memorised_step) | np.isfinite(g.grok_step)]
    unfit = g[~g.index.isin(fits.index)]
    if len(unfit):
        lines.append(f"- {len(unfit)} setting(s) never fit the training set (train accuracy < {GROK_PCT} %; over-"
                     "regularised at this learning rate): " + "; ".join(f"wd {r.weight_decay:g}, λ {r.fisher:g}"
                                                                          for r in unfit.itertuples())
                     + ". They cannot grok and are left out of the test of the claim below.")
    numbers["unfit"] = len(unfit)
    # the claim: more weight decay / more Fisher penalty groks sooner. Not grokking counts as slowest.
    big = 10 * p["steps"]
    steps = fits.grok_step.fillna(big)
    checks = {}
    for var, other in (("weight_decay", "fisher"), ("fisher", "weight_decay")):
        agree, total, rhos = 0, 0, []
        for _, h in fits.assign(s=steps).groupby(other):
            h = h.sort_values(var)
            if h.s.nunique() < 2:
                continue
            rho = spearmanr(h[var], h.s).statistic
            rhos.append(rho)
            total += 1
            agree += int(rho < 0)
        checks[var] = {"rho_mean": float(np.nanmean(rhos)) if rhos else float("nan"), "agree": agree, "slices": total}
        name = "weight decay" if var == "weight_decay" else "Fisher weight λ"
        lines.append(f"- More {name} → sooner? In {agree} of {total} slices of the grid (the other variable held fixed) "
                     f"steps-to-grok falls as {name} grows (mean Spearman ρ = {checks[var]['rho_mean']:.2f}; a setting "
                     "that never grokked counts as the slowest).")
    numbers["claims"] = checks
    wd_holds = checks["weight_decay"]["slices"] and checks["weight_decay"]["agree"] > checks["weight_decay"]["slices"] / 2
    f_holds = checks["fisher"]["slices"] and checks["fisher"]["agree"] > checks["fisher"]["slices"] / 2
    lines.append("")
    def word(holds, var):
        return "cannot be judged (no slice has a spread of steps-to-grok)" if not checks[var]["slices"] else (
            "holds" if holds else "does not hold")

    lines.append("Study 5's claim that more weight decay and more Fisher penalty grok sooner: for weight decay it "
                 + word(wd_holds, "weight_decay") + ", for the Fisher penalty it " + word(f_holds, "fisher")
                 + " in this run (by the majority of slices above).")
    if len(barriers):
        lines.append("")
        for (wd, lam), b in barriers.groupby(["weight_decay", "fisher"]):
            s = both_grokked(grok, wd, lam)
            wm = b[b.kind == "weight matching"].sort_values("step")
            un = b[b.kind == "unaligned"].sort_values("step")
            if not np.isfinite(s):
                seeds = grok[(grok.weight_decay == wd) & (grok.fisher == lam)].sort_values("seed")
                done = seeds[np.isfinite(seeds.grok_step)]
                which = ("neither seed grokked" if done.empty else
                         "only " + ", ".join(f"seed {int(r.seed)} grokked (step {int(r.grok_step)})"
                                             for r in done.itertuples())
                         + "; the other ended at " + ", ".join(f"{100 * r.final_test_acc:.1f} %" for r in seeds.itertuples()
                                                               if not np.isfinite(r.grok_step))
                         + " test accuracy, so this is not a pair of grokked solutions")
                lines.append(f"- wd {wd:g}, λ {lam:g}: {which}; test-loss barrier at the end "
                             f"{un.loss_barrier.iloc[-1]:.3f} nats unaligned, {wm.loss_barrier.iloc[-1]:.3f} after weight "
                             "matching.")
                continue
            before, after = wm[wm.step < s], wm[wm.step >= s]
            lines.append(f"- wd {wd:g}, λ {lam:g} (both seeds grokked by step {int(s)}): after weight matching the "
                         f"test-loss barrier is {before.loss_barrier.mean():.3f} nats before grokking and "
                         f"{after.loss_barrier.mean():.3f} after (unaligned {un[un.step < s].loss_barrier.mean():.3f} → "
                         f"{un[un.step >= s].loss_barrier.mean():.3f}); test-error barrier after grokking "
                         f"{after.error_barrier_pp.mean():.1f} points — the grokked solutions are "
                         + ("linearly connected once aligned." if after.error_barrier_pp.mean() < 2 else
                            "not linearly connected even after alignment."))
    cw, cf = checks["weight_decay"], checks["fisher"]
    numbers["headline"] = (f"{ok} of {n} settings grokked; more weight decay groks sooner in {cw['agree']} of "
                           f"{cw['slices']} slices of the grid, more Fisher penalty in {cf['agree']} of {cf['slices']}")
    return "\n".join(lines), numbers
