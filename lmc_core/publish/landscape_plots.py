"""Figures of many models at once: a bimodal score with its two-component mixture, an all-pairs matrix ordered by
two labellings, the loss/accuracy/ECE plane through three models, and labels of models over training steps.
Each returns (figure, the plotted numbers) as lmc_core.publish.outputs saves them."""
from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.stats import norm

from .plotting import COLORS, plt

MODE_NAMES = ("mode 0 (lower OOD accuracy)", "mode 1 (higher OOD accuracy)")


def bimodality_figure(models: pd.DataFrame, modes, title: str, chance: float = 0.5):
    """Histogram of models.ood_accuracy with the two components of `modes` (analysis.modes.Bimodality), and
    in- against out-of-distribution accuracy coloured by mode (models.mode); `chance`: the heuristic's score."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.9))
    x = models.ood_accuracy.to_numpy()
    bins = np.linspace(min(chance - 0.1, x.min() - 0.02), 1.0, 31)
    axes[0].hist(x, bins=bins, color=COLORS[0], alpha=0.8)
    if modes.verdict != "constant":
        grid = np.linspace(bins[0], 1.0, 300)
        for c in range(2):
            dens = modes.weights[c] * norm.pdf(grid, modes.means[c], max(modes.sds[c], 1e-3)) * len(x) * (bins[1] - bins[0])
            axes[0].plot(grid, dens, color=COLORS[c + 1], lw=1.5, label=f"component {c}: mean {modes.means[c]:.2f}")
    axes[0].axvline(chance, color="k", ls=":", lw=1, label=f"bag of words ({100 * chance:g} %)")
    axes[0].set(xlabel="out-of-distribution accuracy (HANS-like set)", ylabel="fine-tunes")
    axes[0].legend(fontsize=7)
    axes[0].set_title(f"dip p = {modes.dip_p:.2g}, ΔBIC = {modes.delta_bic:+.1f}: {modes.verdict}", fontsize=9)
    for c in range(2):
        g = models[models["mode"] == c]
        axes[1].plot(g.id_accuracy, g.ood_accuracy, "o", color=COLORS[c + 1], label=MODE_NAMES[c], ms=5)
    axes[1].set(xlabel="in-distribution test accuracy", ylabel="out-of-distribution accuracy")
    axes[1].grid(alpha=0.3)
    axes[1].legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig, models[["model", "id_accuracy", "ood_accuracy", "mode"]]


def ordered_matrix_figure(mat: np.ndarray, first: np.ndarray, second: np.ndarray, colorbar: str, title: str):
    """A symmetric matrix [M, M] ordered by the labels `first` (boundaries drawn in cyan), then `second`, with
    both labellings as coloured squares beside it."""
    order = np.lexsort((second, first))
    m, n = mat[np.ix_(order, order)], len(order)
    fig, ax = plt.subplots(figsize=(6.8, 5.6))
    im = ax.imshow(m, cmap="magma_r")
    for b in np.flatnonzero(np.diff(first[order])) + 0.5:
        ax.axhline(b, color="c", lw=1.2)
        ax.axvline(b, color="c", lw=1.2)
    for x, col in ((n + 0.2, [COLORS[1 + first[i]] for i in order]), (n + 1.2, [COLORS[4 + second[i]] for i in order])):
        ax.scatter(np.full(n, x), range(n), c=col, marker="s", s=14, clip_on=False)
    ax.set_xlim(-0.5, n + 1.7)
    ax.set_xticks(range(n), order, fontsize=5, rotation=90)
    ax.set_yticks(range(n), order, fontsize=5)
    ax.set_xlabel("model (ordered by strategy mode, then cluster); right: mode | cluster (k = 2)")
    fig.colorbar(im, ax=ax, label=colorbar)
    ax.set_title(title, fontsize=8)
    fig.tight_layout()
    return fig, pd.DataFrame(m, index=order, columns=order).reset_index()


def plane_figure(planes: dict, three: list[int], modes: np.ndarray, title: str):
    """Loss, accuracy and ECE on the plane through three models (analysis.landscape.plane), one row per split."""
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
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig, pd.DataFrame(rows)


def labels_over_steps_figure(dyn: pd.DataFrame, xlabel: str, title: str):
    """Every model's out-of-distribution accuracy over training steps (coloured by its final mode) and its cluster
    at each step (dyn: step, model, ood_accuracy, mode, cluster)."""
    final = dyn[dyn.step == dyn.step.max()].set_index("model")["mode"]
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.9))
    for m, g in dyn.groupby("model"):
        axes[0].plot(g.step, g.ood_accuracy, "-o", ms=3, lw=0.8, color=COLORS[1 + int(final[m])], alpha=0.7)
    axes[0].set(xlabel="fine-tuning step", ylabel="out-of-distribution accuracy")
    axes[0].grid(alpha=0.3)
    t = dyn.pivot_table(index="model", columns="step", values="cluster")
    t = t.sort_values(list(t.columns)[::-1])
    axes[1].imshow(t.values, aspect="auto", cmap=plt.matplotlib.colors.ListedColormap(COLORS[4:6]), vmin=-0.5,
                   vmax=1.5)
    axes[1].set_xticks(range(t.shape[1]), [str(c) for c in t.columns])
    axes[1].set_yticks(range(t.shape[0]), t.index, fontsize=5)
    axes[1].set(xlabel=xlabel, ylabel="model")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig, dyn


def spectral_figure(cl, nulls: list, stab: dict, title: str):
    """Spectral clustering diagnostics: the normalised Laplacian's spectrum of `cl` (analysis.cluster.Clustering),
    the largest eigengap for k >= 2 against each null in `nulls` [(name, findings.structure Finding, the null's
    EigengapTest, label)], and the stability (adjusted Rand index per subsample) of every k >= 2 in `stab`."""
    from .plotting import null_panel

    fig, axes = plt.subplots(1, 2 + len(nulls), figsize=(4.5 * (2 + len(nulls)), 3.8))
    ev = np.sort(cl.eigenvalues)[: (max(stab) if stab else 2) + 2]
    axes[0].plot(range(1, len(ev) + 1), ev, "o-", color=COLORS[0])
    axes[0].axvline(cl.k + 0.5, color="k", ls=":", label=f"largest gap: k = {cl.k}")
    axes[0].set(xlabel="index", ylabel="eigenvalue of the normalised Laplacian")
    axes[0].legend(fontsize=8)
    axes[0].grid(alpha=0.3)
    for ax, (_, found, test, label) in zip(axes[1:], nulls):
        null_panel(ax, found, test.null, f"largest eigengap for k ≥ 2 (at k = {test.k})", label)
    ks = sorted(stab)
    axes[-1].boxplot([stab[k] for k in ks], positions=ks, widths=0.5)
    axes[-1].set(xlabel="k (clusters)", ylabel="adjusted Rand index, 80 % subsample vs all", ylim=(-0.3, 1.05))
    axes[-1].grid(alpha=0.3)
    axes[-1].set_title("stability (none exists for k = 1)", fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    rows = ([{"kind": "eigenvalue", "index": i + 1, "value": v} for i, v in enumerate(ev)]
            + [{"kind": f"{name}_gap", "index": i, "value": v} for name, _, t, _ in nulls for i, v in enumerate(t.null)]
            + [{"kind": f"ari_k{k}", "index": i, "value": v} for k in ks for i, v in enumerate(stab[k])])
    return fig, pd.DataFrame(rows)


def by_mode_figure(models: pd.DataFrame, column: str, xlabel: str, title: str):
    """A per-model score (models[column]) against out-of-distribution accuracy, coloured by mode."""
    fig, ax = plt.subplots(figsize=(6.4, 4))
    for c in range(2):
        g = models[models["mode"] == c]
        ax.plot(g[column], g.ood_accuracy, "o", color=COLORS[c + 1], label=MODE_NAMES[c])
    ax.set_xlabel(xlabel, fontsize=8)
    ax.set_ylabel("out-of-distribution accuracy")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig, models[["model", "mode", column, "ood_accuracy"]]
