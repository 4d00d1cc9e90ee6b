"""Figures and the summary of notebook 05 (lmc_core.studies.generalization)."""
from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.stats import mannwhitneyu, pearsonr, spearmanr

from ..analysis import barrier as B
from ..analysis.metrics import fmt_spread, mean_se
from ..publish.plotting import COLORS, plt


def matrix_figure(mat: np.ndarray, cl, p: dict):
    """The barrier matrix ordered by cluster, with cluster boundaries."""
    order = np.argsort(cl.labels, kind="stable")
    m = mat[np.ix_(order, order)]
    fig, ax = plt.subplots(figsize=(6.2, 5.2))
    im = ax.imshow(m, cmap="magma_r")
    bounds = np.cumsum(np.bincount(cl.labels, minlength=cl.k))[:-1] - 0.5
    for b in bounds:
        ax.axhline(b, color="c", lw=1.2)
        ax.axvline(b, color="c", lw=1.2)
    ax.set_xticks(range(len(order)), order, fontsize=5, rotation=90)
    ax.set_yticks(range(len(order)), order, fontsize=5)
    ax.set_xlabel("model (ordered by cluster)")
    fig.colorbar(im, ax=ax, label=f"test-loss barrier '{p['definition']}' (nats)")
    ax.set_title(f"All-pairs barriers of {len(mat)} fine-tuned models; {cl.k} cluster(s) of sizes "
                 f"{np.bincount(cl.labels).tolist()} ({p['profile']} profile)", fontsize=9)
    fig.tight_layout()
    return fig, pd.DataFrame(m, index=order, columns=order).reset_index()


def cluster_figure(cl, stab: np.ndarray, p: dict):
    """Laplacian spectrum (eigengap) and cluster stability under resampling."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
    ev = np.sort(cl.eigenvalues)[: p["kmax"] + 2]
    axes[0].plot(range(1, len(ev) + 1), ev, "o-", color=COLORS[0])
    axes[0].axvline(cl.k + 0.5, color="k", ls=":", label=f"k = {cl.k}")
    axes[0].set_xlabel("index")
    axes[0].set_ylabel("eigenvalue of the normalised Laplacian")
    axes[0].legend(fontsize=8)
    axes[0].grid(alpha=0.3)
    axes[1].hist(stab, bins=np.linspace(-0.2, 1, 25), color=COLORS[2])
    axes[1].set_xlabel("adjusted Rand index, subsample vs full clustering")
    axes[1].set_ylabel("resamples")
    axes[1].grid(alpha=0.3)
    fig.suptitle(f"Clusters: eigengap and stability (affinity scale δ = {cl.delta:.3g} nats; {p['profile']} profile)",
                 fontsize=10)
    fig.tight_layout()
    ev_rows = [{"kind": "eigenvalue", "index": i + 1, "value": v} for i, v in enumerate(ev)]
    return fig, pd.DataFrame(ev_rows + [{"kind": "ari", "index": i, "value": v} for i, v in enumerate(stab)])


def generalization_figure(models: pd.DataFrame, p: dict):
    """Out-of-distribution vs in-distribution loss per model, coloured by cluster; per-cluster means."""
    fig, axes = plt.subplots(1, 2, figsize=(10.5, 3.8))
    for c, g in models.groupby("cluster"):
        axes[0].plot(g.id_loss, g.ood_loss, "o", color=COLORS[c % len(COLORS)], label=f"cluster {c} (n = {len(g)})")
    axes[0].set_xlabel("in-distribution test loss (unseen text of the fine-tuning plays)")
    axes[0].set_ylabel("out-of-distribution test loss (other plays)")
    axes[0].legend(fontsize=8)
    axes[0].grid(alpha=0.3)
    rows = []
    for j, (col, label) in enumerate((("id_loss", "in distribution"), ("ood_loss", "out of distribution"))):
        for c, g in models.groupby("cluster"):
            m, se, n = mean_se(g[col])
            axes[1].bar(c + 0.4 * (j - 0.5), m, 0.38, yerr=0 if np.isnan(se) else se, capsize=3,
                        color=COLORS[j], alpha=0.75, label=label if c == 0 else None)
            rows.append({"cluster": c, "split": col, "mean": m, "se": se, "n": n})
    axes[1].set_xlabel("cluster")
    axes[1].set_ylabel("test loss (nats/char), mean ± s.e.")
    lo = min(models.id_loss.min(), models.ood_loss.min())
    axes[1].set_ylim(lo * 0.98, None)
    axes[1].legend(fontsize=8)
    axes[1].grid(axis="y", alpha=0.3)
    fig.suptitle(f"Do the clusters generalise differently? ({p['profile']} profile)", fontsize=10)
    fig.tight_layout()
    return fig, pd.DataFrame(rows)


def plane_figure(pl: dict, three: list[int], labels: np.ndarray, p: dict):
    """Loss, accuracy and ECE on the plane through three models (equal units on both axes)."""
    fig, axes = plt.subplots(1, 3, figsize=(14, 4.2))
    x, y = np.meshgrid(pl["x"], pl["y"])
    rows = []
    for ax, key, label in zip(axes, ("loss", "accuracy", "ece"), ("test loss (nats)", "test accuracy", "ECE (10 bins)")):
        cs = ax.contourf(x, y, pl[key], levels=15, cmap="viridis_r" if key != "accuracy" else "viridis")
        fig.colorbar(cs, ax=ax, label=label)
        for (name, (mx, my)), idx in zip(pl["models"].items(), three):
            ax.plot(mx, my, "w*", ms=11, mec="k")
            ax.annotate(f"{name}: model {idx} (cluster {labels[idx]})", (mx, my), textcoords="offset points",
                        xytext=(4, 4), fontsize=7, color="w")
        ax.set_aspect("equal")
        ax.set_xlabel(f"along B − A (units of |B − A| = {pl['unit']:.3g})")
        rows += [{"metric": key, "x": float(a), "y": float(b), "value": float(v)}
                 for a, b, v in zip(x.ravel(), y.ravel(), pl[key].ravel())]
    axes[0].set_ylabel("orthogonal direction towards C (same units)")
    fig.suptitle(f"The plane through three fine-tuned models ({p['profile']} profile)", fontsize=10)
    fig.tight_layout()
    return fig, pd.DataFrame(rows)


def sharpness_figure(models: pd.DataFrame, p: dict):
    """epsilon-sharpness of each model against its out-of-distribution loss, coloured by cluster."""
    fig, ax = plt.subplots(figsize=(6, 4))
    for c, g in models.groupby("cluster"):
        ax.plot(g.sharpness, g.ood_loss, "o", color=COLORS[c % len(COLORS)], label=f"cluster {c}")
    ax.set_xlabel(f"ε-sharpness (ε = {p['sharpness_eps']:g}; 100 (L_max − L_0)/(1 + L_0))")
    ax.set_ylabel("out-of-distribution test loss")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.suptitle(f"Sharpness and generalisation ({p['profile']} profile)", fontsize=10)
    fig.tight_layout()
    return fig, models[["model", "cluster", "sharpness", "ood_loss"]]


def dynamics_figure(dyn: pd.DataFrame, p: dict):
    """Cluster membership of every model at each fine-tuning checkpoint."""
    t = dyn.pivot_table(index="model", columns="step", values="cluster")
    t = t.sort_values(list(t.columns)[::-1])
    fig, ax = plt.subplots(figsize=(1.2 * t.shape[1] + 3, 0.22 * t.shape[0] + 1.5))
    k = int(dyn.cluster.max()) + 1
    cmap = plt.matplotlib.colors.ListedColormap(COLORS[: max(k, 1)])
    ax.imshow(t.values, aspect="auto", cmap=cmap, vmin=-0.5, vmax=max(k, 1) - 0.5)
    ax.set_xticks(range(t.shape[1]), [str(c) for c in t.columns])
    ax.set_yticks(range(t.shape[0]), t.index, fontsize=6)
    ax.set_xlabel("fine-tuning step")
    ax.set_ylabel("model")
    for c in range(k):
        ax.plot([], [], "s", color=COLORS[c], label=f"cluster {c}")
    ax.legend(fontsize=7, bbox_to_anchor=(1.02, 1), loc="upper left")
    ax.set_title(f"Cluster membership during fine-tuning ({p['profile']} profile)", fontsize=9)
    fig.tight_layout()
    return fig, dyn


def describe(models: pd.DataFrame, cl, stab: np.ndarray, dyn: pd.DataFrame, pl: dict, p: dict,
             mat: np.ndarray) -> tuple[str, dict]:
    """The findings in words (Markdown) from this run's numbers, and the numbers as data."""
    sizes = np.bincount(cl.labels, minlength=cl.k).tolist()
    how = "chosen by the eigengap" if p["clusters"] is None else "given"
    lines = [f"**Profile `{p['profile']}`: {len(models)} copies of the pretrained LM fine-tuned for {p['finetune_steps']} "
             f"steps with different SGD noise; barrier `{p['definition']}` (Juneja's mod_BH) on the first "
             f"{p['eval_tokens']} in-distribution test tokens, {p['alphas']} α points.**", ""]
    off = mat[np.triu_indices(len(mat), 1)]
    lines.append(f"- Barriers between the {len(off)} pairs: mean {off.mean():.4f} nats, standard deviation {off.std():.4f}, "
                 f"from {off.min():.4f} to {off.max():.4f}" + ("; every path is convex (no bump above any chord)."
                                                              if off.max() <= 1e-12 else "."))
    iu = np.triu_indices(len(mat), 1)
    ends = 0.5 * (models.id_loss.to_numpy()[iu[0]] + models.id_loss.to_numpy()[iu[1]])
    rel = 100 * off / ends  # the same examples as the matrix: the first eval_tokens in-distribution test tokens
    above = int((rel >= B.STABILITY_THRESHOLD_PCT).sum())
    lines.append(f"- Relative to the endpoints' mean loss: {rel.min():.2f} to {rel.max():.2f} % (median {np.median(rel):.2f} %); "
                 + (f"every pair is below the {B.STABILITY_THRESHOLD_PCT:g} % threshold: all {len(models)} fine-tunes "
                    "are linearly connected to each other." if above == 0 else
                    f"{above} of {len(off)} pairs at or above the {B.STABILITY_THRESHOLD_PCT:g} % threshold."))
    numbers_rel = {"barrier_rel_median": float(np.median(rel)), "pairs_above_threshold": above}
    s_m, s_se, _ = mean_se(stab)
    lines.append(f"- Clusters: k = {cl.k} ({how}), sizes {sizes} (Juneja et al.: 12 of 100 BERTs in the small cluster "
                 f"for MNLI and QQP); stability under resampling 80 % of the models: adjusted Rand index "
                 f"{fmt_spread(s_m, s_se, 2)} over {len(stab)} resamples.")
    numbers = {"k": cl.k, "sizes": sizes, "ari_mean": s_m, "ari_se": s_se, "delta": cl.delta, "models": len(models),
               "barrier_mean": float(off.mean()), "barrier_sd": float(off.std()), **numbers_rel}
    if cl.k > 1:
        a, b = models[models.cluster == 0].ood_loss, models[models.cluster == 1].ood_loss
        pval = float(mannwhitneyu(a, b).pvalue) if len(a) and len(b) else float("nan")
        ma, sa, _ = mean_se(a)
        mb, sb, _ = mean_se(b)
        lines.append(f"- Out-of-distribution test loss: cluster 0 {fmt_spread(ma, sa, 3)}, cluster 1 {fmt_spread(mb, sb, 3)} "
                     f"nats (Mann-Whitney p = {pval:.2g}) — "
                     + ("the clusters generalise differently." if pval < 0.05 else
                        "no significant difference in how the clusters generalise in this run."))
        if "centroid_coordinate" in models:
            r, pr = pearsonr(models.centroid_coordinate, models.ood_loss)
            lines.append(f"- Position in the spectral embedding (distance to centroid 1 minus to centroid 0) vs OOD loss: "
                         f"Pearson r = {r:.2f} (p = {pr:.2g}).")
            numbers["centroid_r"] = float(r)
        numbers["ood_p"] = pval
    else:
        lines.append("- With a single cluster every pair of models is about equally well connected: the fine-tuned "
                     "copies do not split into generalisation strategies in this run.")
    rho, prho = spearmanr(models.sharpness, models.ood_loss)
    lines.append(f"- ε-sharpness {fmt_spread(*mean_se(models.sharpness)[:2], 3)} (mean ± s.e.); Spearman ρ with the OOD "
                 f"loss {rho:.2f} (p = {prho:.2g}).")
    lines.append(f"- In-distribution ECE {fmt_spread(*mean_se(models.id_ece)[:2], 3)}, out of distribution "
                 f"{fmt_spread(*mean_se(models.ood_ece)[:2], 3)}; on the plane through three models the ECE ranges from "
                 f"{np.nanmin(pl['ece']):.3f} to {np.nanmax(pl['ece']):.3f}.")
    steps = sorted(dyn.step.unique())
    if len(steps) > 1:
        piv = dyn.pivot_table(index="model", columns="step", values="cluster")
        changed = [(piv[steps[i]] != piv[steps[i + 1]]).mean() for i in range(len(steps) - 1)]
        lines.append("- Cluster dynamics: share of models whose cluster changes between consecutive checkpoints "
                     + ", ".join(f"{int(a)}→{int(b)}: {100 * c:.0f} %" for a, b, c in zip(steps, steps[1:], changed)) + ".")
        numbers["changed"] = [float(c) for c in changed]
    numbers["sharpness_rho"] = float(rho)
    numbers["headline"] = f"{cl.k} cluster(s) of sizes {sizes} among {len(models)} fine-tunes (ARI {s_m:.2f})"
    return "\n".join(lines), numbers
