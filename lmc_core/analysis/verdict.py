"""What a set of barriers may claim: convex paths are no barrier, every derived number has an interval over the
independent units, and a claim whose interval crosses the threshold (or overlaps the other arm's) is
inconclusive. Every notebook's headline goes through here.

Conventions (DESIGN.md, "What a finding may rest on"):

- A path is **convex** (no barrier) when its `chord` barrier is at most CONVEX_TOL (in the instability's unit:
  % of the endpoints' mean, or percentage points of error). Under `mean`, such a path's "barrier" is half the
  difference between its endpoints; no verdict is drawn from it.
- Pairs that share an initialisation, a parent or a pretraining run are not independent. Intervals resample
  the independent **units** first and the pairs inside each unit second (the two-stage bootstrap of
  hierarchical data; Davison & Hinkley 1997, *Bootstrap Methods and their Application*); when every pair is its
  own unit this is the ordinary percentile bootstrap of `scipy.stats.bootstrap`.
- **Instability verdicts** use Frankle et al.'s (2020) criterion: the error barrier in absolute percentage
  points against the 2-point threshold; loss and perplexity barriers are reported beside it.
- A verdict is **stable** when the interval's upper end is below the threshold, **unstable** when its lower
  end is at or above it, and **inconclusive** otherwise; with fewer than MIN_PAIRS pairs nothing is bounded.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
from scipy.stats import bootstrap

from .barrier import STABILITY_THRESHOLD_PCT

CONVEX_TOL = 0.1  # a chord barrier at most this (instability units) is no barrier
CONFIDENCE = 0.95
N_RESAMPLES = 4999
MIN_PAIRS = 2  # fewer pairs cannot bound anything


def is_convex(chord_instability: float, tol: float = CONVEX_TOL) -> bool:
    """True if a path's chord barrier (in instability units) is at most `tol`: no barrier."""
    return bool(np.isfinite(chord_instability) and chord_instability <= tol)


@dataclass(frozen=True)
class Interval:
    """A point estimate with its bootstrap interval over the independent units."""

    estimate: float
    low: float
    high: float
    n_units: int
    n_pairs: int
    unit: str = "pair"  # what was resampled first ("initialisation", "parent", "pair", ...)
    confidence: float = CONFIDENCE

    @property
    def bounded(self) -> bool:
        """True if the interval is finite (enough pairs to bound the estimate)."""
        return bool(np.isfinite(self.low) and np.isfinite(self.high))

    def text(self, digits: int = 2, unit: str = "", over: bool = True) -> str:
        """'1.23 unit [0.98, 1.51] (95 % interval over 3 initialisations × 4 pairs)'; over=False leaves out what
        was resampled (for tables and lists whose heading says it once)."""
        u = f" {unit}" if unit else ""
        if not np.isfinite(self.estimate):
            return "not finite"
        if not self.bounded:
            return f"{self.estimate:.{digits}f}{u} (no interval: {self.n_pairs} pair{'s' * (self.n_pairs != 1)})"
        return (f"{self.estimate:.{digits}f}{u} [{self.low:.{digits}f}, {self.high:.{digits}f}]"
                + (f" ({100 * self.confidence:g} % interval over {self.over()})" if over else ""))

    def over(self) -> str:
        """What the interval resamples, in words."""
        units = f"{self.n_units} {self.unit}{'s' * (self.n_units != 1)}"
        if self.unit == "pair":
            return units
        return f"{units}, {self.n_pairs} pairs in all"

    def overlaps(self, other: "Interval") -> bool:
        """True if the two intervals share a point (a difference between them is inconclusive)."""
        return bool(self.low <= other.high and other.low <= self.high)


def _groups(values, units) -> list[np.ndarray]:
    v = np.asarray(values, dtype=float)
    if units is None:
        return [np.array([x]) for x in v]
    u = np.asarray(units)
    if u.shape != v.shape:
        raise ValueError(f"units has shape {u.shape}, values {v.shape}: give one unit label per value")
    return [v[u == key] for key in dict.fromkeys(u.tolist())]


def unit_bootstrap(groups: Sequence, statistic: Callable[[list], float], n_resamples: int = N_RESAMPLES,
                   seed: int = 0, within: bool = True) -> np.ndarray:
    """Bootstrap distribution [n_resamples] of statistic(list of resampled groups).

    Each resample draws len(groups) groups with replacement and, with `within` and a group of several items,
    the items inside each drawn group with replacement (two-stage). A group is any sequence (values, rows).
    With one item per group this is the ordinary bootstrap (use `interval`, which calls scipy for it).
    """
    rng = np.random.default_rng(seed)
    n = len(groups)
    out = np.empty(n_resamples)
    for r in range(n_resamples):
        chosen = []
        for g in rng.integers(0, n, n):
            grp = groups[g]
            if within and len(grp) > 1:
                idx = rng.integers(0, len(grp), len(grp))
                grp = [grp[i] for i in idx] if not isinstance(grp, np.ndarray) else grp[idx]
            chosen.append(grp)
        out[r] = statistic(chosen)
    return out


def interval(values, units=None, unit: str = "pair", confidence: float = CONFIDENCE, n_resamples: int = N_RESAMPLES,
             seed: int = 0) -> Interval:
    """Mean of `values` (one per pair) with its bootstrap interval: the mean of the units' means, resampling
    units then pairs within them (`units`: one label per value; None: every pair is its own unit, and
    scipy.stats.bootstrap's percentile interval is used). Not finite values make the estimate not finite."""
    v = np.asarray(values, dtype=float)
    if v.size == 0 or not np.all(np.isfinite(v)):
        return Interval(float("nan"), float("nan"), float("nan"), 0, int(v.size), unit, confidence)
    groups = _groups(v, units)
    est = float(np.mean([g.mean() for g in groups]))
    if v.size < MIN_PAIRS:
        return Interval(est, float("nan"), float("nan"), len(groups), int(v.size), unit, confidence)
    if len(groups) == v.size:  # independent pairs: the ordinary bootstrap
        if np.all(v == v[0]):
            return Interval(est, est, est, len(groups), int(v.size), unit, confidence)
        res = bootstrap((v,), np.mean, confidence_level=confidence, n_resamples=n_resamples, method="percentile",
                        random_state=np.random.default_rng(seed))
        lo, hi = float(res.confidence_interval.low), float(res.confidence_interval.high)
    else:
        dist = unit_bootstrap(groups, lambda gs: float(np.mean([g.mean() for g in gs])), n_resamples, seed)
        lo, hi = (float(x) for x in np.quantile(dist, [(1 - confidence) / 2, (1 + confidence) / 2]))
    return Interval(est, lo, hi, len(groups), int(v.size), unit, confidence)


def difference(a, b, confidence: float = CONFIDENCE, n_resamples: int = N_RESAMPLES, seed: int = 0) -> Interval:
    """mean(a) - mean(b) of two independent arms with scipy.stats.bootstrap's percentile interval (each arm's
    pairs resampled within the arm; the interval's text reads "over 2 arms, N pairs in all")."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    est = float(a.mean() - b.mean()) if a.size and b.size else float("nan")
    if a.size < MIN_PAIRS or b.size < MIN_PAIRS or not np.isfinite(est):
        return Interval(est, float("nan"), float("nan"), 2, int(a.size + b.size), "arm", confidence)
    if np.all(a == a[0]) and np.all(b == b[0]):
        return Interval(est, est, est, 2, int(a.size + b.size), "arm", confidence)
    res = bootstrap((a, b), lambda x, y, axis=-1: x.mean(axis) - y.mean(axis), confidence_level=confidence,
                    n_resamples=n_resamples, method="percentile", random_state=np.random.default_rng(seed))
    return Interval(est, float(res.confidence_interval.low), float(res.confidence_interval.high), 2,
                    int(a.size + b.size), "arm", confidence)


def compare(a: Interval, b: Interval, name_a: str, name_b: str, what: str) -> str:
    """'<what> is higher for A than for B' only when the intervals do not overlap; else 'inconclusive'."""
    if not (a.bounded and b.bounded):
        return f"{what}: inconclusive (an arm has too few pairs to bound it)"
    if a.overlaps(b):
        return f"{what}: inconclusive ({name_a} and {name_b} intervals overlap)"
    hi, lo = (name_a, name_b) if a.estimate > b.estimate else (name_b, name_a)
    return f"{what} is higher for {hi} than for {lo} (the intervals do not overlap)"


@dataclass(frozen=True)
class Verdict:
    """What the pairs' barriers say, in words that agree with the curves.

    status: "stable" | "unstable" | "inconclusive" | "convex" (no barrier on any pair) | "not finite" |
    "too few" (pairs to bound the estimate).
    """

    status: str
    what: str  # e.g. "test error, barrier `mean`"
    interval: Interval
    unit: str  # e.g. "percentage points"
    threshold: float
    convex_pairs: int
    criterion: str = ""

    def text(self) -> str:
        """One sentence."""
        iv, n = self.interval, self.interval.n_pairs
        value = iv.text(2, self.unit)
        if self.status == "not finite":
            return f"{self.what}: no finding — a pair has a non-finite barrier (a diverged or overflowing model)."
        if self.status == "convex":
            return (f"{self.what}: no barrier — every path is convex (chord barrier ≤ {CONVEX_TOL:g} {self.unit} on "
                    f"all {n} pairs); the `mean` value {value} is the difference between the endpoints, not a barrier.")
        if self.status == "too few":
            return f"{self.what}: {value} — too few pairs to bound it, so no verdict."
        convex = (f"; {self.convex_pairs} of {n} paths are convex (no barrier)" if self.convex_pairs else "")
        thr = f"{self.threshold:g}{' %' if self.unit.startswith('%') else '-point'} threshold"
        crit = f" ({self.criterion})" if self.criterion else ""
        if self.status == "inconclusive":
            return f"{self.what}: {value} — inconclusive: the interval contains the {thr}{crit}{convex}."
        word = "stable: below" if self.status == "stable" else "unstable: at or above"
        return f"{self.what}: {value} — {word} the {thr}{crit}{convex}."


def judge(values, chord_values, what: str, unit: str, units=None, unit_name: str = "pair",
          threshold: float = STABILITY_THRESHOLD_PCT, criterion: str = "", seed: int = 0) -> Verdict:
    """The verdict of per-pair instabilities `values` (and their chord instabilities, for the convex tag).

    units: one label per pair naming its independent unit (initialisation, parent, ...), or None.
    """
    v = np.asarray(values, dtype=float)
    c = np.asarray(chord_values, dtype=float)
    if v.shape != c.shape:
        raise ValueError("values and chord_values must have one entry per pair")
    iv = interval(v, units, unit_name, seed=seed)
    convex = int(sum(is_convex(x) for x in c))
    if v.size == 0 or not np.all(np.isfinite(v)) or not np.all(np.isfinite(c)):
        status = "not finite"
    elif convex == v.size:
        status = "convex"
    elif not iv.bounded:
        status = "too few"
    elif iv.high < threshold:
        status = "stable"
    elif iv.low >= threshold:
        status = "unstable"
    else:
        status = "inconclusive"
    return Verdict(status, what, iv, unit, threshold, convex, criterion)


FRANKLE = "Frankle et al. 2020: the error barrier in absolute points"


def share(distribution, value) -> float:
    """Fraction of a bootstrap distribution equal to `value` (e.g. how often k* = 25 across resamples)."""
    d = np.asarray(distribution)
    return float(np.mean(d == value)) if d.size else float("nan")
