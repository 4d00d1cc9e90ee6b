"""Notebook 02's tables, figures and words: instability against the spawn step and the onset of stability k*."""
from __future__ import annotations

import numpy as np
import pandas as pd

from ..analysis import barrier as B
from ..analysis.metrics import LABELS, unit_of, verdict
from ..analysis.verdict import CONFIDENCE, CONVEX_TOL, N_RESAMPLES, interval
from ..publish.plotting import COLORS, plt, threshold_line
from .lm_setup import DEFINITION_WORDS

ONSET_ON = (("test", "error"), ("train", "error"), ("test", "loss"), ("train", "loss"), ("test", "ppl"))
NEVER = "never (not within this grid)"


def schedule_words(tc) -> str:
    """The learning-rate schedule in words."""
    if tc.schedule == "cosine":
        return f"SGD lr {tc.lr:g} constant to step {tc.hold_steps}, cosine to 0 at {tc.steps}"
    return f"SGD lr {tc.lr:g}, StepLR x{tc.gamma:g} per epoch"


def per_k_table(barriers: pd.DataFrame, definition: str) -> pd.DataFrame:
    """Per (k, split, metric): the instability's interval over parents then pairs under `definition`, the verdict
    and the number of convex paths."""
    rows = []
    for (k, split, metric), g in barriers[barriers.definition == definition].groupby(["k", "split", "metric"]):
        v = verdict(barriers[barriers.k == k], split, metric, definition, "parent", "parent")
        rows.append({"k": k, "k_frac": g.k_frac.iloc[0], "split": split, "metric": metric, "definition": definition,
                     "estimate": v.interval.estimate, "low": v.interval.low, "high": v.interval.high,
                     "pairs": len(g), "parents": g.parent.nunique(), "convex_pairs": int(g.convex.sum()),
                     "verdict": v.status, "unit": unit_of(metric)})
    return pd.DataFrame(rows)


def _onset(ks, means, threshold) -> float:
    """The first k from which every value stays below the threshold (inf if none)."""
    out = np.inf
    for k, m in sorted(zip(ks, means), reverse=True):
        if np.isfinite(m) and m < threshold:
            out = k
        else:
            break
    return out


def onset_table(barriers: pd.DataFrame, T: int, threshold: float = B.STABILITY_THRESHOLD_PCT,
                seed: int = 0) -> pd.DataFrame:
    """k* on the `chord` barrier (a convex path counts 0): the first spawn step from which the 95 % interval of
    every later point lies below the threshold; and the onset of the *mean* with its bootstrap interval, from
    resampling parents and then pairs at every k (the same resampled parents for every k)."""
    chord = barriers[barriers.definition == "chord"]
    rows = []
    rng = np.random.default_rng(seed)
    for split, metric in ONSET_ON:
        d = chord[(chord.split == split) & (chord.metric == metric)]
        if d.empty:
            continue
        ks = sorted(int(k) for k in d.k.unique())
        parents = sorted(d.parent.unique())
        highs = [interval(d[d.k == k].instability, d[d.k == k].parent, "parent").high for k in ks]
        k_star = _onset(ks, highs, threshold)
        means = [d[d.k == k].groupby("parent").instability.mean().mean() for k in ks]
        point = _onset(ks, means, threshold)
        cells = {(p, k): d[(d.parent == p) & (d.k == k)].instability.to_numpy(float) for p in parents for k in ks}
        dist = np.empty(N_RESAMPLES)
        for r in range(N_RESAMPLES):
            chosen = rng.integers(0, len(parents), len(parents))
            m = []
            for k in ks:
                per_parent = []
                for i in chosen:
                    v = cells[(parents[i], k)]
                    per_parent.append(v[rng.integers(0, len(v), len(v))].mean())
                m.append(np.mean(per_parent))
            dist[r] = _onset(ks, m, threshold)
        lo, hi = np.quantile(dist, [(1 - CONFIDENCE) / 2, (1 + CONFIDENCE) / 2], method="inverted_cdf")
        rows.append({"split": split, "metric": metric, "definition": "chord", "k_star": k_star,
                     "k_star_frac": k_star / T if np.isfinite(k_star) else np.inf, "onset_of_mean": point,
                     "onset_low": lo, "onset_high": hi, "share_at_onset": float(np.mean(dist == point)),
                     "share_never": float(np.mean(~np.isfinite(dist))), "parents": len(parents),
                     "pairs_per_k": int(len(d) / len(ks)), "unit": unit_of(metric)})
    return pd.DataFrame(rows)


def k_words(k, T: int) -> str:
    """'25 (1.7 % of T)' or 'never'."""
    return NEVER if not np.isfinite(k) else f"{int(k)} ({100 * k / T:.2g} % of T)"


def _xpos(frac: np.ndarray, floor: float) -> np.ndarray:
    return np.where(frac > 0, frac, floor)


def _k_axis(k_fracs) -> tuple[np.ndarray, float]:
    """Sorted spawn fractions and where k = 0 is drawn on the log axis (left of the smallest k > 0)."""
    fracs = np.sort(np.unique(k_fracs))
    nonzero = fracs[fracs > 0]
    return fracs, (nonzero.min() / 3) if len(nonzero) else 1e-3


def _style_k_axis(ax, fracs: np.ndarray, floor: float, T: int) -> None:
    ax.set_xscale("log")
    ax.set_xticks(_xpos(fracs, floor), [("0" if f == 0 else f"{round(f * T)}") for f in fracs], rotation=45,
                  fontsize=8)
    ax.minorticks_off()
    ax.grid(alpha=0.3)
    ax.set_xlabel(f"spawn step k (of T = {T}; log axis, k = 0 at the left)")


def parents_figure(logs: list[list[dict]], ks: list[int], schedule: str, profile: str):
    """The precondition of a spawn sweep: each parent's training loss up to the last spawn point, spawn points
    marked."""
    fig, ax = plt.subplots(figsize=(6.5, 3.6))
    rows = []
    for j, log in enumerate(logs):
        h = pd.DataFrame(log)
        h = h[h.get("diverged", 0) == 0].sort_values("step")
        ax.plot(h.step, h.loss.rolling(5, min_periods=1).mean(), color=COLORS[j], label=f"parent {j}")
        rows += [{"parent": j, "step": int(s), "loss": float(v)} for s, v in zip(h.step, h.loss)]
    for k in ks:
        ax.axvline(k, color="grey", lw=0.6, ls=":")
    ax.set_xscale("symlog", linthresh=10)
    ax.set_xlabel("training step (dotted: spawn points)")
    ax.set_ylabel("training loss (nats/token)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(f"Parents up to the last spawn point ({profile} profile; {schedule})", fontsize=9)
    fig.tight_layout()
    return fig, pd.DataFrame(rows)


def instability_vs_k_figure(barriers: pd.DataFrame, onsets: pd.DataFrame, T: int, profile: str):
    """The `chord` instability against k with its 95 % interval (parents, then pairs), for the error (points,
    Frankle et al.'s criterion) and the loss (%), train and test; k* and the onset's interval marked."""
    chord = barriers[barriers.definition == "chord"]
    fracs, floor = _k_axis(chord.k_frac)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), squeeze=False)
    rows = []
    for ax, metric in zip(axes[0], ("error", "loss")):
        for j, split in enumerate(("train", "test")):
            g = chord[(chord.split == split) & (chord.metric == metric)]
            est, lo, hi, x = [], [], [], []
            for k, gk in g.groupby("k"):
                iv = interval(gk.instability, gk.parent, "parent")
                est.append(iv.estimate), lo.append(iv.low), hi.append(iv.high)
                x.append(_xpos(np.array([gk.k_frac.iloc[0]]), floor)[0])
                ax.plot([x[-1]] * len(gk), gk.instability, ".", color=COLORS[j], ms=3, alpha=0.4)
                rows.append({"metric": metric, "split": split, "k": int(k), "estimate": iv.estimate,
                             "low": iv.low, "high": iv.high, "pairs": len(gk), "unit": unit_of(metric)})
            ax.plot(x, est, "-o", ms=4, color=COLORS[j], label=split)
            ax.fill_between(x, lo, hi, color=COLORS[j], alpha=0.2)
            o = onsets[(onsets.split == split) & (onsets.metric == metric)]
            if not o.empty and np.isfinite(o.k_star.iloc[0]):
                ax.axvline(_xpos(np.array([o.k_star.iloc[0] / T]), floor)[0], color=COLORS[j], ls=":", lw=1.2,
                           label=f"k* ({split}) = {int(o.k_star.iloc[0])}")
        threshold_line(ax, unit="points" if metric == "error" else "%")
        _style_k_axis(ax, fracs, floor, T)
        ax.set_ylabel(f"`chord` instability, {LABELS[metric]}\n({unit_of(metric)})")
        ax.legend(fontsize=7)
    fig.suptitle(f"Instability of copies spawned at step k, barrier `chord` ({profile} profile; line and band: "
                 "estimate and 95 % interval over parents, then pairs; dots: pairs)", fontsize=10)
    fig.tight_layout()
    return fig, pd.DataFrame(rows)


def definitions_figure(barriers: pd.DataFrame, T: int, profile: str, metric: str = "loss"):
    """Test and train loss instability against k under every barrier definition (estimate over pairs)."""
    fracs, floor = _k_axis(barriers.k_frac)
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), squeeze=False, sharey=True)
    rows = []
    for ax, split in zip(axes[0], ("train", "test")):
        for i, d in enumerate(B.DEFINITIONS):
            g = (barriers[(barriers.split == split) & (barriers.metric == metric) & (barriers.definition == d)]
                 .groupby(["k", "k_frac"]).instability.mean().reset_index())
            ax.plot(_xpos(g.k_frac.to_numpy(), floor), g.instability, "-o", ms=4, color=COLORS[i], label=d)
            rows += [{"split": split, "definition": d, "k": int(r.k), "instability_mean": r.instability,
                      "unit": unit_of(metric)} for r in g.itertuples()]
        threshold_line(ax)
        ax.axhline(0, color="grey", lw=0.8)
        _style_k_axis(ax, fracs, floor, T)
        ax.set_title(split, fontsize=10)
    axes[0][0].set_ylabel(f"instability, {LABELS[metric]} ({unit_of(metric)})")
    axes[0][0].legend(fontsize=8, title="barrier definition", title_fontsize=8)
    fig.suptitle(f"Loss instability against k under each barrier definition ({profile} profile; mean over pairs). "
                 "`mean` reads half the endpoints' difference as a barrier where the path has none.", fontsize=9)
    fig.tight_layout()
    return fig, pd.DataFrame(rows)


def curves_by_k_figure(curves: pd.DataFrame, ks: list[int], T: int, profile: str, n_show: int = 4):
    """Loss against alpha (mean over pairs) for a few spawn steps, train and test."""
    idx = np.unique(np.linspace(0, len(ks) - 1, min(n_show, len(ks))).round().astype(int))
    chosen = [ks[i] for i in idx]
    cmap = plt.get_cmap("viridis")
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), squeeze=False)
    rows = []
    for ax, split in zip(axes[0], ("train", "test")):
        for i, k in enumerate(chosen):
            d = curves[(curves.k == k) & (curves.split == split)].groupby("alpha").loss.mean().reset_index()
            ax.plot(d.alpha, d.loss, "-o", ms=2.5, color=cmap(i / max(len(chosen) - 1, 1)),
                    label=f"k = {k} ({100 * k / T:.2g} % of T)")
            rows += [{"split": split, "k": k, "alpha": a, "loss_mean_over_pairs": v} for a, v in zip(d.alpha, d.loss)]
        ax.set_title(split, fontsize=10)
        ax.set_xlabel(r"interpolation weight $\alpha$")
        ax.set_ylabel("cross-entropy (nats/token), mean over pairs")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"Loss along the path between two copies spawned at step k ({profile} profile)", fontsize=11)
    fig.tight_layout()
    return fig, pd.DataFrame(rows)


def describe(barriers: pd.DataFrame, by_k: pd.DataFrame, onsets: pd.DataFrame, runs: pd.DataFrame, T: int,
             p: dict) -> tuple[str, dict]:
    """The finding in words (Markdown) from this run's numbers, and the numbers as data."""
    ks = sorted(int(k) for k in barriers.k.unique())
    r = runs.iloc[0]
    lines = [f"**Profile `{p['profile']}`: {len(runs)} parents, T = {T} steps ({r.schedule}), spawn points k = "
             + ", ".join(str(k) for k in ks) + f"; {r.children_per_k} copies per parent and k, every pair scored "
             f"({r.pairs_per_k} pairs per k). Intervals: 95 % bootstrap over parents, then pairs.**", ""]
    lines += ["| k | test error, `chord` (points) | test loss, `chord` (%) | test loss, "
              f"`{p['definition']}` (%) |", "|---|---|---|---|"]
    numbers: dict = {"T": T, "spawn_steps": ks, "parents": len(runs), "pairs_per_k": int(r.pairs_per_k), "by_k": [],
                     "k_star": {}}
    for k in ks:
        sub = barriers[barriers.k == k]
        cells = []
        for split, metric, d in (("test", "error", "chord"), ("test", "loss", "chord"), ("test", "loss", p["definition"])):
            v = verdict(sub, split, metric, d, "parent", "parent")
            iv = v.interval
            cells.append(f"{iv.estimate:.2f} [{iv.low:.2f}, {iv.high:.2f}]" + (" convex" if v.status == "convex" else ""))
            numbers["by_k"].append({"k": k, "split": split, "metric": metric, "definition": d, "status": v.status,
                                    "estimate": iv.estimate, "low": iv.low, "high": iv.high})
        lines.append(f"| {k} | " + " | ".join(cells) + " |")
    lines.append("")
    for o in onsets.itertuples():
        lines.append(f"- k* ({o.split} {LABELS[o.metric]}, `chord`, the whole interval below the 2"
                     f"{'-point' if o.metric == 'error' else ' %'} threshold from here on): {k_words(o.k_star, T)}; "
                     f"the onset of the mean is {k_words(o.onset_of_mean, T)}, with 95 % interval "
                     f"[{k_words(o.onset_low, T)}, {k_words(o.onset_high, T)}] over resampled parents and pairs "
                     f"({100 * o.share_at_onset:.0f} % of resamples give the point value, {100 * o.share_never:.0f} % "
                     "never).")
        numbers["k_star"][f"{o.split}/{o.metric}"] = {"k_star": o.k_star, "onset_of_mean": o.onset_of_mean,
                                                      "low": o.onset_low, "high": o.onset_high}
    head = onsets[(onsets.split == "test") & (onsets.metric == "error")].iloc[0]
    first = by_k[(by_k.k == ks[0]) & (by_k.split == "test") & (by_k.metric == "error")].iloc[0]
    lines.append("")
    if not np.isfinite(head.k_star):
        verdict_words = ("no spawn point of this grid is followed only by points whose interval lies below 2 points "
                         "of test error: stability to SGD noise is not reached within the grid, or the data cannot "
                         "bound it")
    elif head.k_star == ks[0]:
        verdict_words = (f"the copies are stable to SGD noise from the first spawn point (k = {ks[0]}) on, by Frankle "
                         "et al.'s error criterion")
    else:
        verdict_words = (f"copies spawned from k* = {int(head.k_star)} steps on are stable to SGD noise by Frankle et "
                         f"al.'s error criterion; the onset of the mean lies in [{k_words(head.onset_low, T)}, "
                         f"{k_words(head.onset_high, T)}]")
    if first.verdict == "inconclusive":
        verdict_words += f"; at k = {ks[0]} the test-error interval contains the threshold"
    lines.append(f"Finding (test error, `chord`, Frankle et al.'s 2-point criterion): {verdict_words}. A convex path "
                 f"(chord ≤ {CONVEX_TOL:g}) counts as no barrier. `mean` ({DEFINITION_WORDS['mean']}) is listed for "
                 "the loss beside `chord`: where it is larger, the endpoints differ more than the path bulges.")
    numbers["headline"] = ((f"stable to SGD noise from k* = {int(head.k_star)} steps ({100 * head.k_star / T:.2g} % of "
                            f"T); onset of the mean in [{k_words(head.onset_low, T)}, {k_words(head.onset_high, T)}]")
                           if np.isfinite(head.k_star) else "not stable within the grid") + \
        f" (test error, `chord`, {len(runs)} parents, {int(r.pairs_per_k)} pairs per k)"
    numbers["verdict_k_star"] = None if not np.isfinite(head.k_star) else int(head.k_star)
    return "\n".join(lines), numbers

