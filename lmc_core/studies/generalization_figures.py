"""Figures of notebook 05 (lmc_core.studies.generalization): (name, figure, the plotted numbers) in reading order."""
from __future__ import annotations

import numpy as np
import pandas as pd

from ..analysis.barrier import STABILITY_THRESHOLD_PCT
from ..analysis.findings import interval_words
from ..publish import landscape_plots as L
from ..publish.plotting import COLORS, null_panel, plt
from .generalization_report import structures


def _what(p) -> str:
    enc = "our masked-LM-pretrained encoder" if p.encoder == "pretrained" else "MiniLM"
    return f"{p.models} fine-tunes of {enc}, task ε = {p.epsilon:g}, {p.profile} profile"


def figures(p, d: dict):
    """Every figure of the notebook, in its order."""
    found = structures(p, d)
    modes = d["modes"].labels
    yield "precondition", *L.bimodality_figure(d["models"], d["modes"], f"Precondition: two generalisation "
                                               f"strategies? ({_what(p)})")
    yield "barrier_matrix", *L.ordered_matrix_figure(d["mat"], modes, d["cl2"].labels, f"in-distribution test-loss "
                                                     f"barrier '{p.definition}' (nats)", "All-pairs barriers (cyan: "
                                                     f"mode boundary)\n{_what(p)}")
    yield "clusters", *L.spectral_figure(d["cl"], [("null", found["eigengap"], d["eigengap"], "the barriers at random "
                                         "places"), ("row_null", found["row_null"], d["row_null"], "each model's row "
                                         "effect kept")], d["stab"], f"How many clusters? (affinity scale δ = "
                                         f"{d['cl'].delta:.3g} nats; {_what(p)})")
    yield "agreement", *agreement_figure(d, found, p)
    yield "plane", *L.plane_figure(d["planes"], d["three"], modes, f"The plane through models of both modes "
                                   f"({_what(p)})")
    yield "sharpness", *L.by_mode_figure(d["models"], "sharpness", f"ε-sharpness, projected ascent up to "
                                         f"{p.sharpness_passes} passes (ε = {p.sharpness_eps:g}; 100 (L_max − L_0)/"
                                         "(1 + L_0))", f"Sharpness and strategy ({_what(p)})")
    yield "cluster_dynamics", *L.labels_over_steps_figure(d["dynamics"], f"fine-tuning step (barriers on the "
                                                          f"same {p.dynamics_examples} passages at every step)",
                                                          f"Strategies and clusters during fine-tuning ({_what(p)})")
    if "ctrl" in d:
        yield "control", *control_figure(d["ctrl"], found["control"], p)


def agreement_figure(d: dict, found: dict, p):
    """Clusters (k = 2) against strategy modes, the agreement against its label-permutation null, and the mean
    barriers within and across the modes."""
    models, t = d["models"], d["groups"]
    fig, axes = plt.subplots(1, 3, figsize=(15, 3.9))
    tab = pd.crosstab(models["mode"], models["cluster_k2"]).reindex(index=[0, 1], columns=[0, 1], fill_value=0)
    axes[0].imshow(tab.values, cmap="Blues")
    for (r, c), v in np.ndenumerate(tab.values):
        axes[0].text(c, r, str(v), ha="center", va="center", fontsize=11,
                     color="w" if v > tab.values.mean() else "k")  # white on the darker cells
    axes[0].set_xticks([0, 1], ["cluster 0", "cluster 1"])
    axes[0].set_yticks([0, 1], ["mode 0", "mode 1"])
    axes[0].set_title(f"adjusted Rand index {found['ari_k2'].estimate:.3f}", fontsize=8)
    null_panel(axes[1], found["ari_k2"], d["ari"]["k2"][1], "adjusted Rand index (clusters k = 2 vs modes)",
               "mode labels permuted among the models")
    yerr = np.array([t.mean_barrier - t.low, t.high - t.mean_barrier])
    axes[2].bar(np.arange(len(t)), t.mean_barrier, color=COLORS[: len(t)], alpha=0.8, yerr=np.nan_to_num(yerr), capsize=4)
    axes[2].set_xticks(np.arange(len(t)), [f"{g}\n({n} pairs)" for g, n in zip(t.group, t.pairs)], fontsize=8)
    axes[2].set_ylabel(f"mean barrier '{p.definition}' (nats)")
    axes[2].set_title(interval_words("models"), fontsize=7)
    axes[2].grid(axis="y", alpha=0.3)
    fig.suptitle(f"Do the clusters follow the strategies? ({_what(p)})", fontsize=10)
    fig.tight_layout()
    return fig, pd.concat([tab.reset_index().assign(kind="crosstab"), t.assign(kind="groups")], ignore_index=True)


def control_figure(ctrl: dict, found, p):
    """The control (LM continuation): relative barriers against the 2 % line and the eigengap null."""
    fig, axes = plt.subplots(1, 2, figsize=(10.5, 3.6))
    axes[0].hist(ctrl["relative"], bins=20, color=COLORS[0], alpha=0.8)
    axes[0].axvline(STABILITY_THRESHOLD_PCT, color="r", ls="--", label=f"{STABILITY_THRESHOLD_PCT:g} % threshold")
    axes[0].set(xlabel=f"barrier '{p.definition}' relative to the endpoints' loss (%)", ylabel="pairs")
    axes[0].legend(fontsize=8)
    null_panel(axes[1], found, ctrl["test"].null, "largest eigengap for k ≥ 2", "the barriers at random places")
    fig.suptitle(f"Control: {ctrl['models']} fine-tunes of the pretrained character LM on more Shakespeare "
                 f"({p.profile} profile)", fontsize=10)
    fig.tight_layout()
    return fig, ctrl["pairs"]
