"""Tables of barriers and instability computed from interpolation curves, and verdicts from them."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from . import barrier as B

METRICS = ("loss", "ppl", "error")
# error is a rate: its instability is in percentage points (Frankle et al.); the others are relative
METRIC_SCALE = {"loss": "relative", "ppl": "relative", "error": "absolute", "accuracy": "absolute"}
UNITS = {"relative": "% of endpoints' mean", "absolute": "percentage points"}
LABELS = {"loss": "cross-entropy (nats/token)", "ppl": "perplexity", "error": "next-token error",
          "accuracy": "accuracy"}


def unit_of(metric: str) -> str:
    """The unit in which the instability of `metric` is reported."""
    return UNITS[METRIC_SCALE[metric]]


def barrier_table(curves: pd.DataFrame, by: tuple[str, ...] = ("pair",),
                  metrics: tuple[str, ...] = METRICS) -> pd.DataFrame:
    """One row per (*by, split, metric, definition): barrier height, instability and its unit, and
    whether it is below the 2 threshold (None when the barrier is not finite)."""
    rows = []
    for key, d in curves.groupby([*by, "split"]):
        d = d.sort_values("alpha")
        ident = dict(zip([*by, "split"], key))
        for metric in metrics:
            scale = METRIC_SCALE[metric]
            ends = 0.5 * (d[metric].iloc[0] + d[metric].iloc[-1])
            for definition in B.DEFINITIONS:
                inst = B.instability(d.alpha, d[metric], definition, scale)
                rows.append({**ident, "metric": metric, "definition": definition, "endpoint_mean": ends,
                             "max_on_path": float(d[metric].max()),
                             "barrier": B.barrier(d.alpha, d[metric], definition),
                             "instability": inst, "unit": UNITS[scale], "stable": B.is_stable(inst)})
    return pd.DataFrame(rows)


def threshold_words(unit: str, threshold: float = B.STABILITY_THRESHOLD_PCT) -> str:
    """'2 % threshold' or '2-point threshold', as fits the unit."""
    return f"{threshold:g} % threshold" if unit.startswith("%") else f"{threshold:g}-point threshold"


def mean_se(values) -> tuple[float, float, int]:
    """(mean, standard error of the mean, n) of the finite values; se is NaN for fewer than 2."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return float("nan"), float("nan"), 0
    se = float(v.std(ddof=1) / math.sqrt(v.size)) if v.size > 1 else float("nan")
    return float(v.mean()), se, int(v.size)


def fmt_spread(mean: float, se: float, digits: int = 1) -> str:
    """'m ± se' (or just 'm' when there is no spread)."""
    if not np.isfinite(mean):
        return "not finite"
    return f"{mean:.{digits}f}" + ("" if not np.isfinite(se) else f" ± {se:.{digits}f}")


@dataclass
class Verdict:
    """What the pairs' barriers say under one definition, in words that agree with the curve."""

    status: str  # "stable" | "unstable" | "convex" | "not finite"
    split: str
    metric: str
    definition: str
    mean: float
    se: float
    n: int
    n_pairs: int
    unit: str

    @property
    def value(self) -> str:
        """'mean ± se unit'."""
        return f"{fmt_spread(self.mean, self.se)} {self.unit}"

    def text(self) -> str:
        """One sentence."""
        what = f"{LABELS.get(self.metric, self.metric)} ({self.split}), barrier `{self.definition}`"
        if self.status == "not finite":
            return (f"{what}: no finding — {self.n_pairs - self.n} of {self.n_pairs} pairs have a non-finite "
                    "barrier (a diverged or overflowing model), so nothing is concluded.")
        spread = f"{self.value} (mean ± s.e. over {self.n} pairs)" if self.n > 1 else f"{self.value} (one pair)"
        if self.status == "convex":
            return (f"{what}: {spread}, but no barrier (convex path): the curve never rises above the chord "
                    "between its endpoints for any pair, so what remains is the difference between the endpoints.")
        word = "stable (below" if self.status == "stable" else "unstable (at or above"
        return f"{what}: {spread} — {word} the {threshold_words(self.unit)})."


def verdict(barriers: pd.DataFrame, split: str, metric: str, definition: str = B.DEFAULT,
            threshold: float = B.STABILITY_THRESHOLD_PCT) -> Verdict:
    """The verdict of a barrier table for one split and metric: not finite if any pair's barrier is not
    finite; 'convex' (no barrier) if the chord barrier is 0 for every pair; else stable/unstable by
    the mean instability over pairs under `definition`."""
    sel = barriers[(barriers.split == split) & (barriers.metric == metric)]
    rows = sel[sel.definition == definition]
    if rows.empty:
        raise ValueError(f"no barriers for split={split!r}, metric={metric!r}, definition={definition!r}")
    vals = rows.instability.to_numpy(dtype=float)
    mean, se, n = mean_se(vals)
    unit = rows.unit.iloc[0]
    if n < len(vals):
        status = "not finite"
    elif np.all(sel[sel.definition == "chord"].barrier.to_numpy(dtype=float) <= 1e-12):
        status = "convex"
    else:
        status = "stable" if mean < threshold else "unstable"
    return Verdict(status, split, metric, definition, mean, se, n, len(vals), unit)


def onset_of_stability(steps, instability, threshold: float = B.STABILITY_THRESHOLD_PCT, convex=None):
    """The first step from which every point is stable: instability below the threshold, or a convex
    path (no barrier; `convex` flags per step). None if never, or if a value from there on is not finite."""
    s = np.asarray(steps)
    v = np.asarray(instability, dtype=float)
    c = np.zeros(len(s), bool) if convex is None else np.asarray(convex, dtype=bool)
    order = np.argsort(s)
    s, v, c = s[order], v[order], c[order]
    onset = None
    for i in range(len(s) - 1, -1, -1):
        if np.isfinite(v[i]) and (v[i] < threshold or c[i]):
            onset = s[i]
        else:
            break
    return None if onset is None else int(onset)
