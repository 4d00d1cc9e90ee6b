"""Notebook 02's tables, figures and words: instability against the spawn step and the onset of stability k*."""
from __future__ import annotations

import numpy as np
import pandas as pd

from ..analysis import barrier as B
from ..analysis import findings as F
from ..analysis.criteria import FRANKLE
from ..analysis.metrics import LABELS, judge_barriers, unit_of
from ..analysis.stats import MIN_UNITS
from ..publish.plotting import COLORS, plt, threshold_line
from .base import Summary
from .lm_setup import DEFINITION_WORDS

ONSET_ON = (("test", "error"), ("train", "error"), ("test", "loss"), ("train", "loss"), ("test", "ppl"))


def per_k_table(barriers: pd.DataFrame, definition: str) -> pd.DataFrame:
    """Per (k, split, metric): the threshold finding over parents (pairs averaged within each) under
    `definition`."""
    rows = []
    for (k, split, metric), g in barriers[barriers.definition == definition].groupby(["k", "split", "metric"]):
        f = judge_barriers(barriers[barriers.k == k], split, metric, definition, "parent", "parent")
        rows.append({"k": k, "k_frac": g.k_frac.iloc[0], "split": split, "metric": metric, "definition": definition,
                     "estimate": f.estimate, "low": f.low, "high": f.high, "interval": f.interval,
                     "pairs": len(g), "parents": g.parent.nunique(), "convex_pairs": f.convex_pairs,
                     "verdict": f.verdict, "unit": unit_of(metric)})
    return pd.DataFrame(rows)


def onset_findings(barriers: pd.DataFrame) -> dict[tuple[str, str], F.Finding]:
    """k* per (split, metric) on the `chord` barrier (findings.onset over the per-k threshold findings)."""
    out = {}
    for split, metric in ONSET_ON:
        d = barriers[(barriers.split == split) & (barriers.metric == metric)]
        if d.empty:
            continue
        ks = sorted(int(k) for k in d.k.unique())
        per_k = [judge_barriers(d[d.k == k], split, metric, "chord", "parent", "parent") for k in ks]
        out[(split, metric)] = F.onset(ks, per_k, question=f"Onset of stability k*, {split} {LABELS[metric]}",
                                       metric="barrier `chord`")
    return out


def onset_table(barriers: pd.DataFrame, T: int) -> pd.DataFrame:
    """One row per (split, metric): the onset's verdict, its bracket (steps and fractions of T) and why."""
    rows = []
    for (split, metric), f in onset_findings(barriers).items():
        rows.append({"split": split, "metric": metric, "definition": "chord", "verdict": f.verdict,
                     "k_star": f.estimate, "k_low": f.low, "k_high": f.high, "k_star_frac": f.estimate / T,
                     "parents": f.n_units, "reason": f.reason, "text": f.text()})
    return pd.DataFrame(rows)


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
    ax.set_xlim(left=0)  # steps are never negative: no mirrored ticks of the symlog axis
    ax.set_xlabel("training step (dotted: spawn points)")
    ax.set_ylabel("training loss (nats/token;\nrunning mean of 5 logged values)", fontsize=9)
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
                iv = F.estimate(gk.instability, gk.parent, question="", metric="", unit="", unit_name="parent")
                est.append(iv.estimate), lo.append(iv.low), hi.append(iv.high)
                x.append(_xpos(np.array([gk.k_frac.iloc[0]]), floor)[0])
                ax.plot([x[-1]] * len(gk), gk.instability, ".", color=COLORS[j], ms=3, alpha=0.4)
                rows.append({"metric": metric, "split": split, "k": int(k), "estimate": iv.estimate,
                             "low": iv.low, "high": iv.high, "pairs": len(gk), "unit": unit_of(metric)})
            ax.plot(x, est, "-o", ms=4, color=COLORS[j], label=split)
            ax.fill_between(x, lo, hi, color=COLORS[j], alpha=0.2)
            o = onsets[(onsets.split == split) & (onsets.metric == metric) & (onsets.verdict == F.BRACKETED)]
            if not o.empty:  # k* is a bracket, not a point: shade it (train hatched, so both stay visible)
                x0, x1 = _xpos(np.array([o.k_low.iloc[0], o.k_high.iloc[0]]) / T, floor)
                ax.axvspan(x0, x1, color=COLORS[j], alpha=0.08, hatch="//" if split == "train" else None, lw=0,
                           label=f"k* ({split}) in ({int(o.k_low.iloc[0])}, {int(o.k_high.iloc[0])}]")
        threshold_line(ax, unit="points" if metric == "error" else "%")
        _style_k_axis(ax, fracs, floor, T)
        ax.set_ylabel(f"`chord` instability,\n{LABELS[metric]} ({unit_of(metric)})", fontsize=9)
        ax.legend(fontsize=7)
    fig.suptitle(f"Instability of copies spawned at step k, barrier `chord` ({profile} profile; line and band: "
                 f"estimate and {F.interval_words('parents')}; dots: pairs)", fontsize=10)
    fig.tight_layout()
    return fig, pd.DataFrame(rows)


def definitions_figure(barriers: pd.DataFrame, T: int, profile: str, metric: str = "loss"):
    """Test and train loss instability against k under every barrier definition (estimate over pairs)."""
    fracs, floor = _k_axis(barriers.k_frac)
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.2), squeeze=False, sharey=True)
    rows = []
    for ax, split in zip(axes[0], ("train", "test")):
        for i, d in enumerate(B.DEFINITIONS):  # markers and dashes of their own: lines that coincide stay visible
            g = (barriers[(barriers.split == split) & (barriers.metric == metric) & (barriers.definition == d)]
                 .groupby(["k", "k_frac"]).instability.mean().reset_index())
            ax.plot(_xpos(g.k_frac.to_numpy(), floor), g.instability, ("-", "--", ":", "-.")[i % 4],
                    marker="osD^"[i % 4], ms=7 - 1.5 * i, mfc="none", color=COLORS[i], label=d)
            rows += [{"split": split, "definition": d, "k": int(r.k), "instability_mean": r.instability,
                      "unit": unit_of(metric)} for r in g.itertuples()]
        threshold_line(ax)
        ax.axhline(0, color="grey", lw=0.8)
        _style_k_axis(ax, fracs, floor, T)
        ax.set_title(split, fontsize=10)
    table = pd.DataFrame(rows)
    spread = table.groupby(["split", "k"]).instability_mean.agg(lambda v: v.max() - v.min()).max()
    axes[0][0].set_ylabel(f"instability, loss\n({unit_of(metric)})")
    axes[0][0].legend(fontsize=8, title="barrier definition", title_fontsize=8)
    fig.suptitle(f"Loss instability against k under each barrier definition ({profile} profile; mean over pairs): "
                 + (f"the definitions differ by at most {spread:.2g} {unit_of(metric)} at any k here" if spread > 0
                    else "the definitions coincide at every k here") + "\n(`mean` would "
                 "read half the endpoints' difference as a barrier on a convex path; `chord` and `subchord` would not)",
                 fontsize=9)
    fig.tight_layout()
    return fig, table


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


def agreement_line(found: dict) -> str:
    """Whether the metrics' onsets agree: one k* is named only when every metric brackets the same one."""
    got = {f"{split} {metric}": f for (split, metric), f in found.items() if f.verdict == F.BRACKETED}
    if not got:
        return "- No metric brackets an onset of stability, so no k* is named."
    stars = {int(f.estimate) for f in got.values()}
    words = "; ".join(f"{name}: k* in ({f.low:.0f}, {f.high:.0f}]" for name, f in got.items())
    if len(stars) == 1 and len(got) == len(found):
        return f"- Every metric brackets the same onset ({words})."
    return (f"- The metrics do not agree on one k* ({words}; {len(found) - len(got)} of {len(found)} metrics bracket "
            "none), so no single k* is named: each is the onset of its own metric.")


def describe(barriers: pd.DataFrame, onsets: pd.DataFrame, runs: pd.DataFrame, T: int, p) -> Summary:
    """The findings (findings layer): the per-k table, k* per split and metric, the headline on the test error."""
    ks = sorted(int(k) for k in barriers.k.unique())
    r = runs.iloc[0]
    cells = (("test", "error", "chord"), ("test", "loss", "chord"), ("test", "loss", p.definition))
    body = [f"| k | test error, `chord` (points) | test loss, `chord` (%) | test loss, `{p.definition}` (%) |",
            "|---|---|---|---|"]
    for k in ks:
        sub = barriers[barriers.k == k]
        row = [judge_barriers(sub, s, m, d, "parent", "parent") for s, m, d in cells]
        body.append(f"| {k} | " + " | ".join(f"{f.short()} {f.verdict}" for f in row) + " |")
    found = onset_findings(barriers)
    first = judge_barriers(barriers[barriers.k == ks[0]], *cells[0], "parent", "parent")
    body += ["", f"- Precondition: copies spawned at k = {ks[0]} (test error, `chord`): {first.short()}, "
             f"{first.verdict}; an onset of stability can be sought only if they are judged {FRANKLE.above}.",
             *found.values(), agreement_line(found)]
    if len(runs) < MIN_UNITS:
        body.append(f"- What this run cannot decide: with {len(runs)} parents no k* can be judged (an interval over "
                    f"parents needs {MIN_UNITS}), and a k* needs copies spawned at k = 0 that are judged "
                    f"{FRANKLE.above} at this T (notebook 01 measures copies of one initialisation of this model at "
                    "its main T and its shorter `lengths`); the table above is descriptive. The `paper` profile (5 parents) is the design "
                    "that can.")
    setting = (f"Profile `{p.profile}`: {len(runs)} parents, T = {T} steps ({r.schedule}), spawn points k = "
               + ", ".join(str(k) for k in ks) + f"; {r.children_per_k} copies per parent and k, every pair scored "
               f"({r.pairs_per_k} pairs per k), pairs averaged within their parent. Table cells: estimate [95 % "
               f"interval over parents] from {MIN_UNITS} parents on, else the range over them, and the verdict; "
               f"`{p.definition}` = "
               f"{DEFINITION_WORDS[p.definition]}.")
    head = found[("test", "error")]
    return Summary(setting, body, head, {"T": T, "spawn_steps": ks, "parents": len(runs),
                                         "pairs_per_k": int(r.pairs_per_k), "verdict_k_star": head.verdict})
