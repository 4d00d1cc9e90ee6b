"""Figures of notebook 05 (lmc_core.studies.generalization); each returns (figure, the plotted numbers)."""
from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.stats import norm

from ..analysis import barrier as B
from ..publish.plotting import COLORS, plt

MODE_NAMES = ("mode 0 (lower OOD accuracy)", "mode 1 (higher OOD accuracy)")


def _what(p: dict) -> str:
    enc = "our masked-LM-pretrained encoder" if p["encoder"] == "pretrained" else "MiniLM"
    return f"{p['models']} fine-tunes of {enc}, ε = {p['epsilon']:g}, {p['profile']} profile"


def precondition_figure(models: pd.DataFrame, modes, p: dict):
    """Histogram of out-of-distribution accuracy with the two-component mixture, and ID vs OOD accuracy."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.9))
    x = models.ood_accuracy.to_numpy()
    bins = np.linspace(min(0.4, x.min() - 0.02), 1.0, 31)
    axes[0].hist(x, bins=bins, color=COLORS[0], alpha=0.8)
    if modes.verdict != "constant":
        grid = np.linspace(bins[0], 1.0, 300)
        width = bins[1] - bins[0]
        for c in range(2):
            dens = modes.weights[c] * norm.pdf(grid, modes.means[c], max(modes.sds[c], 1e-3)) * len(x) * width
            axes[0].plot(grid, dens, color=COLORS[c + 1], lw=1.5, label=f"component {c}: mean {modes.means[c]:.2f}")
    axes[0].axvline(0.5, color="k", ls=":", lw=1, label="bag of words (50 %)")
    axes[0].set_xlabel("out-of-distribution accuracy (HANS-like set)")
    axes[0].set_ylabel("fine-tunes")
    axes[0].legend(fontsize=7)
    axes[0].set_title(f"dip p = {modes.dip_p:.2g}, ΔBIC = {modes.delta_bic:+.1f}: {modes.verdict}", fontsize=9)
    for c in range(2):
        g = models[models["mode"] == c]
        axes[1].plot(g.id_accuracy, g.ood_accuracy, "o", color=COLORS[c + 1], label=MODE_NAMES[c], ms=5)
    axes[1].set_xlabel("in-distribution test accuracy")
    axes[1].set_ylabel("out-of-distribution accuracy")
    axes[1].grid(alpha=0.3)
    axes[1].legend(fontsize=7)
    fig.suptitle(f"Precondition: two generalisation strategies? ({_what(p)})", fontsize=10)
    fig.tight_layout()
    return fig, models[["model", "id_accuracy", "ood_accuracy", "mode"]]


def matrix_figure(mat: np.ndarray, cl2, modes: np.ndarray, p: dict):
    """The barrier matrix ordered by strategy mode (then by k = 2 cluster), with both labels beside it."""
    order = np.lexsort((cl2.labels, modes))
    m = mat[np.ix_(order, order)]
    fig, ax = plt.subplots(figsize=(6.8, 5.6))
    im = ax.imshow(m, cmap="magma_r")
    cuts = np.flatnonzero(np.diff(modes[order])) + 0.5
    for b in cuts:
        ax.axhline(b, color="c", lw=1.2)
        ax.axvline(b, color="c", lw=1.2)
    n = len(order)
    ax.scatter(np.full(n, n + 0.2), range(n), c=[COLORS[1 + modes[i]] for i in order], marker="s", s=14, clip_on=False)
    ax.scatter(np.full(n, n + 1.2), range(n), c=[COLORS[4 + cl2.labels[i]] for i in order], marker="s", s=14,
               clip_on=False)
    ax.set_xlim(-0.5, n + 1.7)
    ax.set_xticks(range(n), order, fontsize=5, rotation=90)
    ax.set_yticks(range(n), order, fontsize=5)
    ax.set_xlabel("model (ordered by strategy mode, then cluster); right: mode | cluster (k = 2)")
    fig.colorbar(im, ax=ax, label=f"in-distribution test-loss barrier '{p['definition']}' (nats)")
    ax.set_title(f"All-pairs barriers (cyan: mode boundary)\n{_what(p)}", fontsize=8)
    fig.tight_layout()
    return fig, pd.DataFrame(m, index=order, columns=order).reset_index()


def cluster_figure(cl, null, stab: dict, p: dict):
    """Laplacian spectrum, the eigengap against its permutation null, and cluster stability for every k >= 2."""
    fig, axes = plt.subplots(1, 3, figsize=(14, 3.7))
    kmax = max(stab) if stab else 2
    ev = np.sort(cl.eigenvalues)[: kmax + 2]
    axes[0].plot(range(1, len(ev) + 1), ev, "o-", color=COLORS[0])
    axes[0].axvline(cl.k + 0.5, color="k", ls=":", label=f"largest gap: k = {cl.k}")
    axes[0].set_xlabel("index")
    axes[0].set_ylabel("eigenvalue of the normalised Laplacian")
    axes[0].legend(fontsize=8)
    axes[0].grid(alpha=0.3)
    axes[1].hist(null.null, bins=30, color=COLORS[3], alpha=0.8, label="barriers at random places")
    axes[1].axvline(null.gap, color="k", lw=1.5, label=f"observed (k = {null.k}), p = {null.p:.3f}")
    axes[1].set_xlabel("largest eigengap for k ≥ 2")
    axes[1].set_ylabel("permuted matrices")
    axes[1].legend(fontsize=7)
    ks = sorted(stab)
    axes[2].boxplot([stab[k] for k in ks], positions=ks, widths=0.5)
    axes[2].set_xlabel("k (clusters)")
    axes[2].set_ylabel("adjusted Rand index, 80 % subsample vs all")
    axes[2].set_ylim(-0.3, 1.05)
    axes[2].grid(alpha=0.3)
    axes[2].set_title("stability (none exists for k = 1)", fontsize=8)
    fig.suptitle(f"How many clusters? (affinity scale δ = {cl.delta:.3g} nats; {_what(p)})", fontsize=10)
    fig.tight_layout()
    rows = ([{"kind": "eigenvalue", "index": i + 1, "value": v} for i, v in enumerate(ev)]
            + [{"kind": "null_gap", "index": i, "value": v} for i, v in enumerate(null.null)]
            + [{"kind": f"ari_k{k}", "index": i, "value": v} for k in ks for i, v in enumerate(stab[k])])
    return fig, pd.DataFrame(rows)


def agreement_figure(models: pd.DataFrame, groups, agree: dict, p: dict):
    """Clusters (k = 2) against strategy modes, and the barriers within and across the modes."""
    fig, axes = plt.subplots(1, 2, figsize=(10.5, 3.8))
    tab = pd.crosstab(models["mode"], models["cluster_k2"]).reindex(index=[0, 1], columns=[0, 1], fill_value=0)
    axes[0].imshow(tab.values, cmap="Blues")
    for (r, c), v in np.ndenumerate(tab.values):
        axes[0].text(c, r, str(v), ha="center", va="center", fontsize=11)
    axes[0].set_xticks([0, 1], ["cluster 0", "cluster 1"])
    axes[0].set_yticks([0, 1], ["mode 0", "mode 1"])
    iv = agree["k2"]
    axes[0].set_title(f"adjusted Rand index {iv.text(2)}", fontsize=7)
    t = groups.table
    x = np.arange(len(t))
    yerr = np.array([t.mean_barrier - t.low, t.high - t.mean_barrier])
    axes[1].bar(x, t.mean_barrier, color=[COLORS[1], COLORS[2], COLORS[0]], alpha=0.8,
                yerr=np.nan_to_num(yerr), capsize=4)
    axes[1].set_xticks(x, [f"{g}\n({n} pairs)" for g, n in zip(t.group, t.pairs)], fontsize=8)
    axes[1].set_ylabel(f"mean barrier '{p['definition']}' (nats), 95 % interval")
    axes[1].grid(axis="y", alpha=0.3)
    fig.suptitle(f"Do the clusters follow the strategies? ({_what(p)})", fontsize=10)
    fig.tight_layout()
    return fig, pd.concat([tab.reset_index().assign(kind="crosstab"), t.assign(kind="groups")], ignore_index=True)


def plane_figure(planes: dict, three: list[int], modes: np.ndarray, p: dict):
    """Loss, accuracy and ECE on the plane through three models, in and out of distribution."""
    fig, axes = plt.subplots(2, 3, figsize=(14, 8))
    rows = []
    for r, (split, pl) in enumerate(planes.items()):
        x, y = np.meshgrid(pl["x"], pl["y"])
        for ax, key, label in zip(axes[r], ("loss", "accuracy", "ece"), ("loss (nats)", "accuracy", "ECE (10 bins)")):
            cs = ax.contourf(x, y, pl[key], levels=15, cmap="viridis_r" if key != "accuracy" else "viridis")
            fig.colorbar(cs, ax=ax, label=f"{'in' if split == 'id' else 'out of'} distribution {label}")
            for (name, (mx, my)), idx in zip(pl["models"].items(), three):
                ax.plot(mx, my, "w*", ms=11, mec="k")
                ax.annotate(f"{name}: model {idx} (mode {modes[idx]})", (mx, my), textcoords="offset points",
                            xytext=(4, 4), fontsize=7, color="w")
            ax.set_aspect("equal")
            ax.set_xlabel(f"along B − A (units of |B − A| = {pl['unit']:.3g})")
            rows += [{"split": split, "metric": key, "x": float(a), "y": float(b), "value": float(v)}
                     for a, b, v in zip(x.ravel(), y.ravel(), pl[key].ravel())]
        axes[r][0].set_ylabel("orthogonal direction towards C (same units)")
    fig.suptitle(f"The plane through models of both modes ({_what(p)})", fontsize=10)
    fig.tight_layout()
    return fig, pd.DataFrame(rows)


def sharpness_figure(models: pd.DataFrame, p: dict):
    """epsilon-sharpness of each model against its out-of-distribution accuracy, coloured by mode."""
    fig, ax = plt.subplots(figsize=(6.4, 4))
    for c in range(2):
        g = models[models["mode"] == c]
        ax.plot(g.sharpness, g.ood_accuracy, "o", color=COLORS[c + 1], label=MODE_NAMES[c])
    ax.set_xlabel(f"ε-sharpness, projected ascent up to {p['sharpness_passes']} passes (ε = {p['sharpness_eps']:g}; "
                  "100 (L_max − L_0)/(1 + L_0))", fontsize=8)
    ax.set_ylabel("out-of-distribution accuracy")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.suptitle(f"Sharpness and strategy ({_what(p)})", fontsize=10)
    fig.tight_layout()
    return fig, models[["model", "mode", "sharpness", "ood_accuracy"]]


def dynamics_figure(dyn: pd.DataFrame, p: dict):
    """Out-of-distribution accuracy of every model during fine-tuning (coloured by its final mode) and its
    cluster (k = 2) at each step."""
    last = dyn.step.max()
    final = dyn[dyn.step == last].set_index("model")["mode"]
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.9))
    for m, g in dyn.groupby("model"):
        axes[0].plot(g.step, g.ood_accuracy, "-o", ms=3, lw=0.8, color=COLORS[1 + int(final[m])], alpha=0.7)
    axes[0].set_xlabel("fine-tuning step")
    axes[0].set_ylabel("out-of-distribution accuracy")
    axes[0].grid(alpha=0.3)
    t = dyn.pivot_table(index="model", columns="step", values="cluster")
    t = t.sort_values(list(t.columns)[::-1])
    cmap = plt.matplotlib.colors.ListedColormap(COLORS[4:6])
    axes[1].imshow(t.values, aspect="auto", cmap=cmap, vmin=-0.5, vmax=1.5)
    axes[1].set_xticks(range(t.shape[1]), [str(c) for c in t.columns])
    axes[1].set_yticks(range(t.shape[0]), t.index, fontsize=5)
    axes[1].set_xlabel(f"fine-tuning step (barriers on {p['dynamics_examples']} examples before the end)")
    axes[1].set_ylabel("model")
    fig.suptitle(f"Strategies and clusters during fine-tuning ({_what(p)})", fontsize=10)
    fig.tight_layout()
    return fig, dyn


def control_figure(ctrl: dict, p: dict):
    """The control (LM continuation): relative barriers against the 2 % line and the eigengap null."""
    fig, axes = plt.subplots(1, 2, figsize=(10.5, 3.6))
    axes[0].hist(ctrl["relative"], bins=20, color=COLORS[0], alpha=0.8)
    axes[0].axvline(B.STABILITY_THRESHOLD_PCT, color="r", ls="--", label="2 % threshold")
    axes[0].set_xlabel(f"barrier '{p['definition']}' relative to the endpoints' loss (%)")
    axes[0].set_ylabel("pairs")
    axes[0].legend(fontsize=8)
    t = ctrl["test"]
    axes[1].hist(t.null, bins=30, color=COLORS[3], alpha=0.8, label="barriers at random places")
    axes[1].axvline(t.gap, color="k", label=f"observed, p = {t.p:.3f}")
    axes[1].set_xlabel("largest eigengap for k ≥ 2")
    axes[1].legend(fontsize=8)
    fig.suptitle(f"Control: {ctrl['models']} fine-tunes of the pretrained character LM on more Shakespeare "
                 f"({p['profile']} profile)", fontsize=10)
    fig.tight_layout()
    return fig, ctrl["pairs"]
