"""The convex tag and the older Interval/Verdict names, on top of the findings layer (`findings.py`).

Everything here delegates to `findings` and `stats`: an interval is the studentized bootstrap over the units'
means from stats.MIN_UNITS units on, and the range over the units below (no verdict then); a verdict is
`findings.threshold`'s. New code uses `findings` directly.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import findings as F
from . import stats as S
from .criteria import CONVEX_TOL, FRANKLE as FRANKLE_CRITERION, PERCENT, POINTS, Criterion

CONFIDENCE = S.CONFIDENCE
FRANKLE = FRANKLE_CRITERION.source
STATUS = {F.NO_BARRIER: "convex", F.TOO_FEW: "too few"}  # the older status names of two verdicts


def is_convex(chord_instability: float, tol: float = CONVEX_TOL) -> bool:
    """True if a path's chord barrier (in instability units) is at most `tol`: no barrier."""
    return bool(np.isfinite(chord_instability) and chord_instability <= tol)


@dataclass(frozen=True)
class Interval:
    """A point estimate with its interval over the independent units (`method` "bootstrap-t"), or the range
    over the units when they are fewer than stats.MIN_UNITS (`method` "range": not an interval)."""

    estimate: float
    low: float
    high: float
    n_units: int
    n_pairs: int
    unit: str = "pair"
    confidence: float = CONFIDENCE
    method: str = ""

    @property
    def bounded(self) -> bool:
        """True if this is an interval that holds its coverage (enough units), with finite ends."""
        return bool(self.method not in ("", "range") and np.isfinite(self.low) and np.isfinite(self.high))

    def finding(self, unit: str = "", digits: int = 2) -> F.Finding:
        """The same numbers as a Finding without a verdict."""
        return F.Finding("", "", unit, self.estimate, low=self.low, high=self.high, interval=self.method,
                         n_units=self.n_units, unit_name=self.unit, n_pairs=self.n_pairs, digits=digits)

    def text(self, digits: int = 2, unit: str = "", over: bool = True) -> str:
        """'1.23 unit [0.98, 1.51] (95 % ... over 5 initialisations, 20 pairs)', or the range below MIN_UNITS."""
        return self.finding(unit, digits).value(over)

    def overlaps(self, other: "Interval") -> bool:
        """True if the two intervals share a point."""
        return bool(self.low <= other.high and other.low <= self.high)


def interval(values, units=None, unit: str = "pair") -> Interval:
    """Mean of the units' means of `values` with its interval (findings.estimate)."""
    f = F.estimate(values, units, question="", metric="", unit="", unit_name=unit)
    return Interval(f.estimate, f.low, f.high, f.n_units, f.n_pairs, unit, CONFIDENCE, f.interval)


@dataclass(frozen=True)
class Verdict:
    """findings.threshold's Finding under the older names (status, interval, text)."""

    finding: F.Finding
    what: str
    unit: str
    threshold: float

    @property
    def status(self) -> str:
        """stable | unstable | inconclusive | convex | not finite | too few."""
        return STATUS.get(self.finding.verdict, self.finding.verdict)

    @property
    def interval(self) -> Interval:
        f = self.finding
        return Interval(f.estimate, f.low, f.high, f.n_units, f.n_pairs, f.unit_name, CONFIDENCE, f.interval)

    @property
    def convex_pairs(self) -> int:
        return self.finding.convex_pairs

    def text(self) -> str:
        """One sentence (findings.Finding.text)."""
        return self.finding.text()


def judge(values, chord_values, what: str, unit: str, units=None, unit_name: str = "pair",
          threshold: float = FRANKLE_CRITERION.threshold, criterion: str = "", seed: int = 0) -> Verdict:
    """The verdict of per-pair instabilities `values` (and their chord instabilities, for the convex tag)."""
    v, c = np.asarray(values, dtype=float), np.asarray(chord_values, dtype=float)
    if v.shape != c.shape:
        raise ValueError("values and chord_values must have one entry per pair")
    crit = Criterion("the barrier", threshold, POINTS if unit.startswith("percentage") else
                     PERCENT if unit.startswith("%") else unit, criterion or "")
    f = F.threshold(v, c, units, criterion=crit, question=what, metric="", unit_name=unit_name)
    return Verdict(f, what, unit, threshold)


# ---------------------------------------------------------------------------------- interim (studies not yet moved)
N_RESAMPLES = S.N_BOOT


def difference(a, b) -> Interval:
    """mean(a) - mean(b) of two independent arms (findings.arms' interval; the range below MIN_UNITS per arm)."""
    f = F.arms(a, b, question="", metric="", unit="")
    return Interval(f.estimate, f.low, f.high, 2, f.n_pairs, "arm", CONFIDENCE, f.interval)


def compare(a: Interval, b: Interval, name_a: str, name_b: str, what: str) -> str:
    """'<what> is higher for A than for B' only when both are intervals and they do not overlap."""
    if not (a.bounded and b.bounded):
        return f"{what}: {F.INCONCLUSIVE} (an arm has too few units for an interval)"
    if a.overlaps(b):
        return f"{what}: {F.INCONCLUSIVE} ({name_a} and {name_b} intervals overlap)"
    hi, lo = (name_a, name_b) if a.estimate > b.estimate else (name_b, name_a)
    return f"{what} is higher for {hi} than for {lo} (the intervals do not overlap)"


def unit_bootstrap(groups, statistic, n_resamples: int = N_RESAMPLES, seed: int = 0, within: bool = True
                   ) -> np.ndarray:
    """Bootstrap distribution of statistic(resampled groups) (units, then items within them)."""
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


def share(distribution, value) -> float:
    """Fraction of a bootstrap distribution equal to `value`."""
    d = np.asarray(distribution)
    return float(np.mean(d == value)) if d.size else float("nan")
