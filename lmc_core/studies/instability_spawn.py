"""Notebook 02: instability during training — copies spawned from a parent at step k.

A parent is trained with its own seeds; at every spawn step k its full training state
(weights, optimizer buffers, step count, hence learning rate and data position) is copied
into 2*pairs children that finish training to the same T with their own data and dropout
seeds. Each pair of children spawned at the same k is interpolated; instability vs k shows
when the network becomes stable to SGD noise (Frankle et al. 2020).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from .. import barrier as B
from ..config import RunSpec, Seeds, config_hash
from ..ensemble import copy_state
from ..interpolate import alpha_grid, interpolation_curve
from ..metrics import METRICS, barrier_table, onset_of_stability
from ..plotting import COLORS, plt, save_figure, threshold_line
from ..runs import RunStore
from ..spawn import parent_identity, spawn_children
from ..train import resolve_device
from .common import StudyResult, check_positive, out_dirs, resolve_params
from .instability_init import STUDY_DEFAULTS, LABELS, build_spec, load_study_corpus, pair_seeds

PREFIX = "02"

PROFILES = {
    "smoke": {**STUDY_DEFAULTS, "model_overrides": {"d_model": 32, "d_ff": 32}, "vocab_cap": 2000, "steps": 40,
              "epochs": 0, "spawn": [0.0, 0.25, 0.5], "pairs": 1, "alphas": 5, "eval_tokens": 3000,
              "parent_seed": 100},
    # the quick profile of notebook 01 (character level, d=64), spawned at 0 .. 30 % of training
    "quick": {**STUDY_DEFAULTS, "level": "char", "model_overrides": {"d_model": 64, "d_ff": 64}, "steps": 3000,
              "epochs": 0, "spawn": [0.0, 0.01, 0.03, 0.1, 0.3], "pairs": 2, "alphas": 31,
              "eval_tokens": 10000, "parent_seed": 100},
    # the PTB study's word-level d=200 model, 4 epochs, 9 spawn points, 3 pairs each (GPU)
    "paper": {**STUDY_DEFAULTS, "steps": 0, "epochs": 4, "spawn": [0.0, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5],
              "pairs": 3, "alphas": 31, "eval_tokens": 200000, "parent_seed": 100},
}


def spawn_steps(spawn: list, total: int) -> list[int]:
    """Spawn points as steps: floats in [0, 1) are fractions of training, ints are steps."""
    out = []
    for s in spawn:
        if isinstance(s, bool) or not isinstance(s, (int, float)):
            raise ValueError(f"spawn point {s!r} must be a step (int) or a fraction of training (float)")
        k = int(round(s * total)) if isinstance(s, float) else int(s)
        if not 0 <= k < total:
            raise ValueError(f"spawn point {s!r} -> step {k} lies outside [0, T={total}); "
                             "use fractions in [0, 1) or steps below T")
        out.append(k)
    return sorted(set(out))


def sweep(p: dict, vocab_size: int, T: int) -> tuple[list[int], RunSpec, list[Seeds]]:
    """(spawn steps, the parent's spec, the children's seeds) of a resolved parameter set."""
    parent = Seeds(init=p["init_seed"], data=p["parent_seed"], dropout=p["parent_seed"])
    spec = build_spec(p, vocab_size, T, seeds=(parent,))
    return spawn_steps(list(p["spawn"]), T), spec, list(pair_seeds(p))


def run(params: dict | None = None) -> StudyResult:
    """Train the parent and the spawned pairs, interpolate, write figures and CSVs."""
    p = resolve_params(PROFILES, params)
    check_positive(p, "pairs", "alphas", "batch_size", "eval_batch")
    if p["definition"] not in B.DEFINITIONS:
        raise ValueError(f"definition={p['definition']!r}; choose one of {list(B.DEFINITIONS)}")
    if not p["spawn"]:
        raise ValueError("spawn is empty: give spawn points, e.g. [0.0, 0.05, 0.2]")
    fig_dir, store_dir, cache_dir = out_dirs(p)
    device = resolve_device(p["device"])
    corpus, T = load_study_corpus(p, cache_dir)
    ks, spec, children = sweep(p, len(corpus.vocab), T)
    states = spawn_children(RunStore(store_dir), spec, ks, children, corpus.train, str(device), p["progress"])

    alphas = alpha_grid(p["alphas"])
    splits = {"train": corpus.train, "test": corpus.test}
    curves = []
    for k in ks:
        for pair in range(p["pairs"]):
            a, b = copy_state(states[k], 2 * pair), copy_state(states[k], 2 * pair + 1)
            c = interpolation_curve(spec.model, a, b, splits, alphas, p["eval_tokens"], p["eval_batch"], device)
            c.insert(0, "pair", pair)
            c.insert(0, "k", k)
            curves.append(c)
    curves = pd.concat(curves, ignore_index=True)
    curves.insert(1, "k_frac", curves.k / T)
    barriers = barrier_table(curves, ("k", "k_frac", "pair"), METRICS)
    by_k = per_k_table(barriers, p["definition"])
    onset = onset_table(by_k)
    onset_all = pd.concat([onset_table(per_k_table(barriers, d)).assign(definition=d) for d in B.DEFINITIONS],
                          ignore_index=True)

    res = StudyResult(params=p, tables={"barriers": barriers, "by_k": by_k, "onset": onset,
                                        "onset_by_definition": onset_all, "curves": curves})
    res.tables["run"] = pd.DataFrame([{"parent": config_hash(parent_identity(spec)), "T": T,
                                       "spawn_steps": ks, "copies": len(ks) * len(children),
                                       "device": str(device), "vocab": len(corpus.vocab),
                                       "eval_tokens": int(curves.tokens.iloc[0])}])
    fig1, d1 = instability_vs_k_figure(by_k, onset, p["definition"], p["profile"], T)
    res.figures[f"{PREFIX}_instability_vs_k"] = fig1
    res.files += save_figure(fig1, d1, fig_dir, f"{PREFIX}_instability_vs_k")
    fig2, d2 = curves_by_k_figure(curves, ks, T, p["profile"])
    res.figures[f"{PREFIX}_loss_vs_alpha_by_k"] = fig2
    res.files += save_figure(fig2, d2, fig_dir, f"{PREFIX}_loss_vs_alpha_by_k")
    fig3, d3 = definitions_figure(barriers, T, p["profile"])
    res.figures[f"{PREFIX}_instability_by_definition"] = fig3
    res.files += save_figure(fig3, d3, fig_dir, f"{PREFIX}_instability_by_definition")
    res.files.append(fig_dir / f"{PREFIX}_barriers.csv")
    barriers.to_csv(res.files[-1], index=False)
    res.summary = describe(by_k, onset, p["definition"], T, onset_all)
    return res


def per_k_table(barriers: pd.DataFrame, definition: str) -> pd.DataFrame:
    """Mean, std and count over pairs of the instability at each (k, split, metric)."""
    d = barriers[barriers.definition == definition]
    g = d.groupby(["k", "k_frac", "split", "metric"]).instability_pct
    out = g.agg(["mean", "std", "count"]).reset_index()
    return out.rename(columns={"mean": "instability_pct_mean", "std": "instability_pct_std", "count": "pairs"})


def onset_table(by_k: pd.DataFrame) -> pd.DataFrame:
    """k*: the first spawn step from which the mean instability stays below 2 %."""
    rows = []
    for (split, metric), g in by_k.groupby(["split", "metric"]):
        k = onset_of_stability(g.k, g.instability_pct_mean)
        frac = None if k is None else float(g[g.k == k].k_frac.iloc[0])
        rows.append({"split": split, "metric": metric, "k_star": k, "k_star_frac": frac})
    return pd.DataFrame(rows)


def _xpos(frac: np.ndarray, floor: float) -> np.ndarray:
    return np.where(frac > 0, frac, floor)


def _k_axis(k_fracs) -> tuple[np.ndarray, float]:
    """Sorted spawn fractions and where k = 0 is drawn on the log axis (left of the smallest k > 0)."""
    fracs = np.sort(np.unique(k_fracs))
    nonzero = fracs[fracs > 0]
    return fracs, (nonzero.min() / 3) if len(nonzero) else 1e-3


def _style_k_axis(ax, fracs: np.ndarray, floor: float) -> None:
    """Log x axis labelled in % of training, with k = 0 at the left edge."""
    ax.set_xscale("log")
    ax.set_xticks(_xpos(fracs, floor), [("0" if f == 0 else f"{100 * f:g} %") for f in fracs], rotation=45,
                  fontsize=8)
    ax.minorticks_off()
    ax.grid(alpha=0.3)


def instability_vs_k_figure(by_k: pd.DataFrame, onset: pd.DataFrame, definition: str, profile: str, T: int):
    """Instability vs spawn step (fraction of training, log axis; k=0 drawn at the left edge),
    train and test, error bars across pairs, 2 % line and the onset of stability k*."""
    fracs, floor = _k_axis(by_k.k_frac)
    fig, axes = plt.subplots(1, len(METRICS), figsize=(5 * len(METRICS), 3.8), squeeze=False)
    rows = []
    for ax, metric in zip(axes[0], METRICS):
        for j, split in enumerate(("train", "test")):
            g = by_k[(by_k.split == split) & (by_k.metric == metric)].sort_values("k")
            x = _xpos(g.k_frac.to_numpy(), floor)
            ax.errorbar(x, g.instability_pct_mean, yerr=g.instability_pct_std.fillna(0), fmt="-o", ms=4,
                        capsize=3, color=COLORS[j], label=split)
            o = onset[(onset.split == split) & (onset.metric == metric)].iloc[0]
            if o.k_star is not None and not pd.isna(o.k_star):
                ax.axvline(_xpos(np.array([o.k_star_frac]), floor)[0], color=COLORS[j], ls=":", lw=1.2,
                           label=f"k* ({split}) = {int(o.k_star)} ({100 * o.k_star_frac:.1f} %)")
            rows += [{"metric": metric, "split": split, "k": int(r.k), "k_frac": r.k_frac,
                      "instability_pct_mean": r.instability_pct_mean, "instability_pct_std": r.instability_pct_std}
                     for r in g.itertuples()]
        threshold_line(ax)
        _style_k_axis(ax, fracs, floor)
        ax.set_xlabel(f"spawn step k (% of T = {T} steps; log axis, k = 0 at left)")
        ax.set_ylabel(f"instability, {LABELS[metric]} (%)")
        ax.legend(fontsize=7)
    fig.suptitle(f"Instability of copies spawned at step k, barrier '{definition}' "
                 f"({profile} profile; error bars: std over pairs)", fontsize=11)
    fig.tight_layout()
    return fig, pd.DataFrame(rows)


def definitions_figure(barriers: pd.DataFrame, T: int, profile: str, metric: str = "ppl"):
    """Test and train instability vs k under every barrier definition (mean over pairs)."""
    fracs, floor = _k_axis(barriers.k_frac)
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), squeeze=False, sharey=True)
    rows = []
    for ax, split in zip(axes[0], ("train", "test")):
        for i, d in enumerate(B.DEFINITIONS):
            g = (barriers[(barriers.split == split) & (barriers.metric == metric) & (barriers.definition == d)]
                 .groupby(["k", "k_frac"]).instability_pct.mean().reset_index())
            ax.plot(_xpos(g.k_frac.to_numpy(), floor), g.instability_pct, "-o", ms=4, color=COLORS[i], label=d)
            rows += [{"split": split, "definition": d, "k": int(r.k), "k_frac": r.k_frac,
                      "instability_pct_mean": r.instability_pct} for r in g.itertuples()]
        threshold_line(ax)
        ax.axhline(0, color="grey", lw=0.8)
        _style_k_axis(ax, fracs, floor)
        ax.set_title(split, fontsize=10)
        ax.set_xlabel(f"spawn step k (% of T = {T} steps; log axis)")
    axes[0][0].set_ylabel(f"instability, {LABELS[metric]} (%)")
    axes[0][0].legend(fontsize=8, title="barrier definition", title_fontsize=8)
    fig.suptitle(f"Perplexity instability vs k under each barrier definition ({profile} profile; mean over pairs)",
                 fontsize=11)
    fig.tight_layout()
    return fig, pd.DataFrame(rows)


def curves_by_k_figure(curves: pd.DataFrame, ks: list[int], T: int, profile: str, n_show: int = 4):
    """Loss vs alpha (mean over pairs) for a few spawn steps, train and test."""
    idx = np.unique(np.linspace(0, len(ks) - 1, min(n_show, len(ks))).round().astype(int))
    chosen = [ks[i] for i in idx]
    cmap = plt.get_cmap("viridis")
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), squeeze=False)
    rows = []
    for ax, split in zip(axes[0], ("train", "test")):
        for i, k in enumerate(chosen):
            d = curves[(curves.k == k) & (curves.split == split)].groupby("alpha").loss.mean().reset_index()
            ax.plot(d.alpha, d.loss, "-o", ms=2.5, color=cmap(i / max(len(chosen) - 1, 1)),
                    label=f"k = {k} ({100 * k / T:g} % of T)")
            rows += [{"split": split, "k": k, "alpha": a, "loss_mean_over_pairs": v} for a, v in zip(d.alpha, d.loss)]
        ax.set_title(split, fontsize=10)
        ax.set_xlabel(r"interpolation weight $\alpha$")
        ax.set_ylabel("cross-entropy (nats/token), mean over pairs")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"Loss along the path between two copies spawned at step k ({profile} profile)", fontsize=11)
    fig.tight_layout()
    return fig, pd.DataFrame(rows)


def describe(by_k: pd.DataFrame, onset: pd.DataFrame, definition: str, T: int,
             onset_all: pd.DataFrame | None = None) -> str:
    """A paragraph stating the measured finding."""
    def inst(k, split="test", metric="ppl"):
        g = by_k[(by_k.k == k) & (by_k.split == split) & (by_k.metric == metric)]
        return float(g.instability_pct_mean.iloc[0])

    ks = sorted(by_k.k.unique())
    o = onset[(onset.split == "test") & (onset.metric == "ppl")].iloc[0]
    first, last = ks[0], ks[-1]
    text = (f"Barrier '{definition}', test perplexity: instability {inst(first):.1f} % for copies spawned at "
            f"k = {first} and {inst(last):.1f} % at k = {last} ({100 * last / T:g} % of training). ")
    if o.k_star is None or pd.isna(o.k_star):
        text += "No spawn point in this grid stays below the 2 % threshold: the network did not become stable."
    else:
        text += (f"Stability (below 2 % from then on) begins at k* = {int(o.k_star)} steps, "
                 f"{100 * o.k_star_frac:.1f} % of training.")
    if onset_all is not None:
        parts = []
        for d in onset_all.definition.unique():
            if d == definition:
                continue
            r = onset_all[(onset_all.definition == d) & (onset_all.split == "test") & (onset_all.metric == "ppl")]
            k = r.k_star.iloc[0]
            parts.append(f"{d}: " + ("never" if k is None or pd.isna(k) else
                                     f"k* = {int(k)} ({100 * r.k_star_frac.iloc[0]:.1f} %)"))
        text += " Under the other definitions (test perplexity): " + "; ".join(parts) + "."
    return text
