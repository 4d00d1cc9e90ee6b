"""Notebook 02: instability during training — copies spawned from a parent at step k.

A parent is trained with its own seeds; at every spawn step k its full training state
(weights, optimizer buffers, step count, hence learning rate and data position) is copied
into 2*pairs children that finish training to the same T with their own data and dropout
seeds. Each pair of children spawned at the same k is interpolated; instability vs k shows
when the network becomes stable to SGD noise (Frankle et al. 2020).
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd

from ..analysis import barrier as B
from ..config import ConfigError, RunSpec, Seeds, config_hash
from ..ensemble import copy_state
from ..analysis.interpolate import alpha_grid, interpolation_curve
from ..analysis.metrics import LABELS, METRICS, barrier_table, fmt_spread, mean_se, onset_of_stability, unit_of, verdict
from ..publish.plotting import COLORS, plt, threshold_line
from ..publish.paths import shown
from ..runs.layout import parent_identity, tensorboard_dir
from ..runs.spawn import child_history, parent_checkpoint, parent_dir, spawn_children
from ..publish.tb import command as tb_command
from ..publish.tb import write_history
from .common import StudyResult, prepare
from .instability_init import (DEFINITION_WORDS, STUDY_DEFAULTS, build_spec, check_params, load_study_corpus,
                               pair_seeds)

PREFIX = "02"

PROFILES = {
    "smoke": {**STUDY_DEFAULTS, "model_overrides": {"d_model": 32, "d_ff": 32}, "vocab_cap": 2000, "steps": 40,
              "epochs": 0, "spawn": [0.0, 0.25, 0.5], "pairs": 2, "alphas": 5, "eval_tokens": 3000,
              "parent_seed": 100},
    # the quick profile of notebook 01 (character level, d=64), spawned at 0 .. 30 % of training,
    # four pairs per spawn point (a spread across pairs at every point)
    "quick": {**STUDY_DEFAULTS, "level": "char", "model_overrides": {"d_model": 64, "d_ff": 64}, "steps": 2500,
              "epochs": 0, "spawn": [0.0, 0.01, 0.03, 0.1, 0.3], "pairs": 4, "alphas": 25,
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


def check_spawn(p: dict) -> None:
    """The spawn grid is a non-empty list of fractions or steps (checked against T once it is known)."""
    spawn = p["spawn"]
    if not isinstance(spawn, (list, tuple)) or not spawn:
        raise ConfigError(f"spawn={spawn!r}: give a non-empty list of spawn points, e.g. [0.0, 0.05, 0.2]")
    for s in spawn:
        if isinstance(s, bool) or not isinstance(s, (int, float)) or s < 0:
            raise ConfigError(f"spawn point {s!r} must be a step (int >= 0) or a fraction of training in [0, 1)")


def run(params: dict | None = None) -> StudyResult:
    """Train the parent and the spawned pairs, interpolate, write figures, CSVs and the summary."""
    p, fig_dir, store, cache_dir, device = prepare(PROFILES, params, check_params, check_spawn)
    corpus, T = load_study_corpus(p, cache_dir)
    ks, spec, children = sweep(p, len(corpus.vocab), T)
    states = spawn_children(store, spec, ks, children, corpus.train, device, p["progress"])

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
                                       "spawn_steps": ks, "pairs_per_k": p["pairs"],
                                       "copies": len(ks) * len(children), "device": str(device),
                                       "vocab": len(corpus.vocab), "eval_tokens": int(curves.tokens.iloc[0])}])
    if p["tensorboard"]:  # the parent's and every spawn point's loss logs, from the store
        tb_dir = tensorboard_dir(parent_dir(store, spec))
        parent_log = parent_checkpoint(store, spec, max(ks)).log
        write_history(tb_dir / "parent", pd.DataFrame(parent_log, columns=["step", "copy", "loss", "lr"]))
        for k in ks:
            write_history(tb_dir / f"spawn-k{k}", child_history(store, spec, k, tuple(
                replace(c, init=spec.seeds[0].init) for c in children)))
        res.tables["run"]["tensorboard"] = shown(tb_dir)
        res.tensorboard = tb_command(tb_dir)
    fig1, d1 = instability_vs_k_figure(by_k, onset, p["definition"], p["profile"], T)
    res.add_figure(f"{PREFIX}_instability_vs_k", fig1, d1)
    fig2, d2 = curves_by_k_figure(curves, ks, T, p["profile"])
    res.add_figure(f"{PREFIX}_loss_vs_alpha_by_k", fig2, d2)
    fig3, d3 = definitions_figure(barriers, T, p["profile"])
    res.add_figure(f"{PREFIX}_instability_by_definition", fig3, d3)
    res.add_csv(f"{PREFIX}_barriers", barriers)
    res.add_csv(f"{PREFIX}_curves", curves)  # every barrier in 02_barriers.csv can be recomputed from it
    res.publish(fig_dir, PREFIX, describe(by_k, onset, barriers, p["definition"], T, onset_all, p["profile"]))
    return res


def per_k_table(barriers: pd.DataFrame, definition: str) -> pd.DataFrame:
    """Mean, standard error and count over pairs of the instability at each (k, split, metric)."""
    d = barriers[barriers.definition == definition]
    chord = barriers[barriers.definition == "chord"].set_index(["k", "split", "metric", "pair"]).barrier.sort_index()
    rows = []
    for (k, k_frac, split, metric), g in d.groupby(["k", "k_frac", "split", "metric"]):
        m, se, n = mean_se(g.instability)
        convex = bool((chord.loc[(k, split, metric)] <= 1e-12).all())  # no barrier for any pair
        rows.append({"k": k, "k_frac": k_frac, "split": split, "metric": metric, "instability_mean": m,
                     "instability_se": se, "pairs": n, "pairs_not_finite": len(g) - n, "convex": convex,
                     "unit": unit_of(metric)})
    return pd.DataFrame(rows)


def onset_table(by_k: pd.DataFrame) -> pd.DataFrame:
    """k*: the first spawn step from which the copies stay stable: mean instability below 2, or no barrier
    at all (a convex path); with a word when never."""
    rows = []
    for (split, metric), g in by_k.groupby(["split", "metric"]):
        vals = g.instability_mean.where(g.pairs_not_finite == 0)  # a point with a non-finite pair is no finding
        k = onset_of_stability(g.k, vals, convex=g.convex)
        frac = None if k is None else float(g[g.k == k].k_frac.iloc[0])
        text = ("never stable in this grid" if k is None else f"{k} ({100 * frac:.1f} % of T)")
        rows.append({"split": split, "metric": metric, "k_star": k, "k_star_frac": frac, "k_star_text": text})
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
    train and test, error bars = standard error across pairs, 2 line and the onset of stability k*."""
    fracs, floor = _k_axis(by_k.k_frac)
    fig, axes = plt.subplots(1, len(METRICS), figsize=(5 * len(METRICS), 3.8), squeeze=False)
    rows = []
    for ax, metric in zip(axes[0], METRICS):
        for j, split in enumerate(("train", "test")):
            g = by_k[(by_k.split == split) & (by_k.metric == metric)].sort_values("k")
            x = _xpos(g.k_frac.to_numpy(), floor)
            ax.errorbar(x, g.instability_mean, yerr=g.instability_se.fillna(0), fmt="-o", ms=4,
                        capsize=3, color=COLORS[j], label=split)
            o = onset[(onset.split == split) & (onset.metric == metric)].iloc[0]
            if o.k_star is not None and not pd.isna(o.k_star):
                ax.axvline(_xpos(np.array([o.k_star_frac]), floor)[0], color=COLORS[j], ls=":", lw=1.2,
                           label=f"k* ({split}) = {int(o.k_star)} ({100 * o.k_star_frac:.1f} %)")
            else:
                ax.plot([], [], " ", label=f"k* ({split}): never stable in this grid")
            rows += [{"metric": metric, "split": split, "k": int(r.k), "k_frac": r.k_frac,
                      "instability_mean": r.instability_mean, "instability_se": r.instability_se,
                      "pairs": r.pairs, "unit": r.unit} for r in g.itertuples()]
        unit = unit_of(metric)
        threshold_line(ax, unit="%" if unit.startswith("%") else "points")
        _style_k_axis(ax, fracs, floor)
        ax.set_xlabel(f"spawn step k (% of T = {T} steps; log axis, k = 0 at left)")
        ax.set_ylabel(f"instability, {LABELS[metric]}\n({unit})")
        ax.legend(fontsize=7)
    fig.suptitle(f"Instability of copies spawned at step k, barrier '{definition}' "
                 f"({profile} profile; mean ± s.e. over pairs)", fontsize=11)
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
                 .groupby(["k", "k_frac"]).instability.mean().reset_index())
            ax.plot(_xpos(g.k_frac.to_numpy(), floor), g.instability, "-o", ms=4, color=COLORS[i], label=d)
            rows += [{"split": split, "definition": d, "k": int(r.k), "k_frac": r.k_frac,
                      "instability_mean": r.instability, "unit": unit_of(metric)} for r in g.itertuples()]
        threshold_line(ax)
        ax.axhline(0, color="grey", lw=0.8)
        _style_k_axis(ax, fracs, floor)
        ax.set_title(split, fontsize=10)
        ax.set_xlabel(f"spawn step k (% of T = {T} steps; log axis)")
    axes[0][0].set_ylabel(f"instability, {LABELS[metric]} ({unit_of(metric)})")
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


def describe(by_k: pd.DataFrame, onset: pd.DataFrame, barriers: pd.DataFrame, definition: str, T: int,
             onset_all: pd.DataFrame, profile: str) -> tuple[str, dict]:
    """The finding in words (Markdown) from this run's numbers, and the numbers as data."""
    ks = sorted(int(k) for k in by_k.k.unique())
    pairs = int(by_k.pairs.max())
    lines = [f"**Profile `{profile}`: T = {T} steps, spawn points k = "
             + ", ".join(f"{k} ({100 * k / T:g} %)" for k in ks)
             + f"; {pairs} pairs per spawn point; barrier `{definition}` ({DEFINITION_WORDS[definition]}); "
               "mean ± standard error over pairs.**", ""]
    lines.append("| k | % of T | test perplexity | train perplexity | test error |")
    lines.append("|---|---|---|---|---|")
    numbers = {"T": T, "spawn_steps": ks, "pairs": pairs, "definition": definition, "by_k": [], "k_star": {}}
    for k in ks:
        cells = []
        for split, metric in (("test", "ppl"), ("train", "ppl"), ("test", "error")):
            sub = barriers[(barriers.k == k)]
            v = verdict(sub, split, metric, definition)
            cells.append(f"{v.value}" + (" (convex)" if v.status == "convex" else ""))
            numbers["by_k"].append({"k": k, "split": split, "metric": metric, "mean": v.mean, "se": v.se,
                                    "pairs": v.n, "unit": v.unit, "status": v.status})
        lines.append(f"| {k} | {100 * k / T:g} | " + " | ".join(cells) + " |")
    lines.append("")
    for split in ("test", "train"):
        parts = []
        for d in B.DEFINITIONS:
            r = onset_all[(onset_all.definition == d) & (onset_all.split == split) & (onset_all.metric == "ppl")]
            parts.append(f"`{d}` {r.k_star_text.iloc[0]}")
            numbers["k_star"][f"{split}/ppl/{d}"] = r.k_star.iloc[0]
        lines.append(f"- Onset of stability k* ({split} perplexity; first spawn step from which the mean "
                     f"instability stays below 2 % or the path has no barrier): " + "; ".join(parts) + ".")
    e = onset[(onset.split == "test") & (onset.metric == "error")].iloc[0]
    lines.append(f"- k* for the test error (2 points of error): {e.k_star_text}.")
    first = verdict(barriers[barriers.k == ks[0]], "test", "ppl", definition)
    last = verdict(barriers[barriers.k == ks[-1]], "test", "ppl", definition)
    o = onset[(onset.split == "test") & (onset.metric == "ppl")].iloc[0]
    lines.append("")
    if o.k_star is None or pd.isna(o.k_star):
        finding = ("no spawn point in this grid is followed only by stable points (below the 2 % threshold or "
                   "without a barrier): the copies did not become stable to SGD noise within the grid.")
    elif int(o.k_star) == ks[0]:
        finding = "the copies are stable from the first spawn point on."
    else:
        finding = (f"the instability falls from {fmt_spread(first.mean, first.se)} % at k = {ks[0]} to "
                   f"{fmt_spread(last.mean, last.se)} % at k = {ks[-1]}; copies become stable to SGD noise at "
                   f"k* = {int(o.k_star)} steps, {100 * o.k_star_frac:.1f} % of training.")
    lines.append(f"Finding (test perplexity, `{definition}`): " + finding)
    numbers["finding_k_star_test_ppl"] = o.k_star
    numbers["headline"] = ("never stable within the grid" if o.k_star is None or pd.isna(o.k_star) else
                           f"stable to SGD noise from k* = {int(o.k_star)} steps ({100 * o.k_star_frac:.1f} % of "
                           "training)") + (f" — test perplexity instability {fmt_spread(first.mean, first.se)} % at "
                                           f"k = {ks[0]}, {fmt_spread(last.mean, last.se)} % at k = {ks[-1]} "
                                           f"(`{definition}`, {pairs} pairs per k)")
    return "\n".join(lines), numbers
