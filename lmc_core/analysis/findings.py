"""The findings layer: what a set of measurements may claim, in one vocabulary, with one set of rules.

A `Finding` holds the question, the metric and its unit, the estimate with its interval (or the range over the
units when they are too few for an interval that holds its coverage), the number of independent units and of
pairs, the test and p-value where the question is a null, the verdict word, and the smallest effect the design
could have detected. Every verdict word a study prints comes from a rule here:

- `threshold`  — a barrier against a Criterion (Frankle's 2 points, ...): stable / unstable / inconclusive,
                 no barrier (every path convex), not finite, too few units;
- `paired`     — the sign of paired differences (exact sign-flip test): higher / lower / inconclusive;
- `arms`       — two independent arms (exact permutation test, Welch-studentized interval);
- `shared_pairs` — a threshold for pairs that share models (all pairs among m models: jackknife over models);
- `onset`      — the location of k* from per-k threshold findings (a bracket, not a resampled interval);
- `argmin`     — where a paired measure is lowest along a grid: interior / edge / inconclusive;
- `trend`      — neighbouring-cell comparisons: supported / contradicted / mixed / inconclusive;
- `structure`  — an observed statistic against a permutation null: above chance / not above chance;
- `estimate`   — a number with its interval (or range) and no verdict.

Rules (DESIGN.md, "What a finding may rest on"): pairs are summarised within their independent unit first; the
interval is the studentized bootstrap over the units' values (`stats.py`; its coverage is simulated by the test
suite), printed only from MIN_UNITS units on — below, the range and no verdict; no verdict from a convex path or a
non-finite value; every "inconclusive" states the smallest effect the design could detect at 80 % power.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import Sequence

import numpy as np
from scipy import stats as sps

from ..config import check_int, check_real
from . import stats as S
from .criteria import CONVEX_TOL, Criterion

# ------------------------------------------------------------------------------------------- the vocabulary
STABLE, UNSTABLE, INCONCLUSIVE = "stable", "unstable", "inconclusive"
NO_BARRIER, NOT_FINITE, TOO_FEW = "no barrier", "not finite", "too few units"
HIGHER, LOWER = "higher", "lower"
SUPPORTED, CONTRADICTED, MIXED = "supported", "contradicted", "mixed"
BRACKETED, NOT_REACHED, NOT_TESTABLE = "bracketed", "not reached", "not testable"
INTERIOR, EDGE = "interior", "edge"
ABOVE_CHANCE, NOT_ABOVE_CHANCE = "above chance", "not above chance"
VERDICTS = {
    STABLE: "the interval lies below the criterion's threshold",
    UNSTABLE: "the interval lies at or above the threshold",
    INCONCLUSIVE: "the data cannot decide (an interval contains the threshold or 0; a test does not reject)",
    NO_BARRIER: "every path is convex: its `mean` value is the endpoints' difference, not a barrier",
    NOT_FINITE: "a value is not finite (a diverged or overflowing model): no finding",
    TOO_FEW: f"fewer than {S.MIN_UNITS} independent units: the range is reported and no verdict drawn",
    HIGHER: "an exact test rejects equality in favour of the first being higher",
    LOWER: "an exact test rejects equality in favour of the first being lower",
    SUPPORTED: "most neighbouring comparisons are decisive and all decisive ones go the claimed way",
    CONTRADICTED: "most neighbouring comparisons are decisive and all decisive ones go against the claim",
    MIXED: "decisive comparisons go both ways",
    BRACKETED: "the onset lies after the last point judged unstable and by the first from which all are stable",
    NOT_REACHED: "no point from which every later point is judged stable",
    NOT_TESTABLE: "the precondition of the question is not met",
    INTERIOR: "every learning rate not worse than the best lies strictly inside the grid",
    EDGE: "the only learning rates not worse than the best lie at one end of the grid",
    ABOVE_CHANCE: "the statistic exceeds its permutation null (p <= 0.05)",
    NOT_ABOVE_CHANCE: "the statistic does not exceed its permutation null",
}
NO_VERDICT = (TOO_FEW, NOT_FINITE, NOT_TESTABLE)
_no_pairs = "nothing was measured (no pairs): nothing to judge"  # the reason of a finding over no values
INTERVAL_NAME = {"bootstrap-t": "smoothed studentized-bootstrap interval", "welch bootstrap-t": "smoothed "
                 "Welch-studentized bootstrap interval", "models bootstrap-t": "model-resampling bootstrap-t interval"}


def is_convex(chord_instability: float, tol: float = CONVEX_TOL) -> bool:
    """True if a path's chord barrier (in instability units) is at most `tol` (a finite number >= 0): no barrier."""
    if tol != CONVEX_TOL:
        check_real("tol", tol, 0, None)
    return bool(np.isfinite(chord_instability) and chord_instability <= tol)


def interval_words(units: str) -> str:
    """What an error bar drawn from a Finding shows, for a figure's caption."""
    return (f"{100 * S.CONFIDENCE:g} % interval over {units} (their range when fewer than {S.MIN_UNITS}, and no "
            "verdict)")


@dataclass(frozen=True)
class Finding:
    """One claim's measurement and verdict (module docstring). Numbers are in `unit`; low/high are the interval's
    ends when `interval` names a method, the range over the units when it is "range", NaN otherwise."""

    question: str
    metric: str
    unit: str
    estimate: float
    verdict: str = ""
    low: float = float("nan")
    high: float = float("nan")
    interval: str = ""  # "bootstrap-t" | "welch bootstrap-t" | "jackknife t" | "range" | ""
    n_units: int = 0
    unit_name: str = "pair"
    n_pairs: int = 0
    criterion: str = ""
    source: str = ""
    test: str = ""
    p_value: float = float("nan")
    min_p: float = float("nan")
    detectable: float = float("nan")  # smallest effect detectable at 80 % power (in unit)
    convex_pairs: int = 0
    reason: str = ""  # why no verdict, or what the verdict rests on
    reference: str = ""  # the seed study's number on the same scale, with its setting
    digits: int = 2

    # ---------------------------------------------------------------------------------------------- words
    def value(self, over: bool = True) -> str:
        """'2.85 points [2.61, 3.13] (95 % smoothed studentized-bootstrap interval over 5 initialisations, 30 pairs)'."""
        d, u = self.digits, (f" {self.unit}" if self.unit else "")
        if not np.isfinite(self.estimate):
            return "no value (no pairs)" if self.reason == _no_pairs else "not finite"
        est = f"({self.low:.{d}f}, {self.high:.{d}f}]{u}" if self.verdict == BRACKETED else f"{self.estimate:.{d}f}{u}"
        units = plural(self.n_units, self.unit_name) + (f", {self.n_pairs} pairs" if self.n_pairs > self.n_units else "")
        if self.interval == "range" and self.n_units > 1:
            return f"{est} (range {self.low:.{d}f} to {self.high:.{d}f} over {units})"
        if self.interval in INTERVAL_NAME and np.isfinite(self.low):
            conf = f" ({100 * S.CONFIDENCE:g} % {INTERVAL_NAME[self.interval]} over {units})" if over else ""
            return f"{est} [{self.low:.{d}f}, {self.high:.{d}f}]{conf}"
        return f"{est} ({units})" if over else est

    def short(self) -> str:
        """A table cell's value: '2.85 [2.61, 3.13]', '2.85 (range 2.1–3.8)', '(0, 250]' (an onset's bracket), '2.85'."""
        d = self.digits
        if not np.isfinite(self.estimate):
            return "–" if self.verdict != NOT_FINITE else "not finite"
        if self.verdict == BRACKETED:  # k* lies after the last k judged unstable, at or before the first stable one
            return f"({self.low:.{d}f}, {self.high:.{d}f}]"
        est = f"{self.estimate:.{d}f}"
        if self.interval == "range" and self.n_units > 1:
            return f"{est} (range {self.low:.{d}f} to {self.high:.{d}f})"
        if self.interval in INTERVAL_NAME and np.isfinite(self.low):
            return f"{est} [{self.low:.{d}f}, {self.high:.{d}f}]"
        return est

    def clause(self) -> str:
        """The verdict in words: what it is and what it rests on."""
        v, why = self.verdict, (f": {self.reason}" if self.reason else "")
        test = self.test_words()
        if v in (STABLE, UNSTABLE):
            side = "below" if v == STABLE else "at or above"
            return f"{v}: {side} {self.criterion} ({self.source})" + _convex(self)
        if v in (HIGHER, LOWER):
            return f"{v}{why}" + (f" ({test})" if test else "")
        by = f" ({self.source})" if self.source else ""
        if v == INCONCLUSIVE:
            return f"{v}{why}{by}" + (f" ({test})" if test else "") + self.power_words() + _convex(self)
        if v == TOO_FEW:
            crit = f" by {self.criterion}{by}" if self.criterion else ""
            cov = f"{100 * S.CONFIDENCE:g} % interval holds its coverage{f' ({test})' if test else ''}{_convex(self)}"
            return f"no verdict{crit}: {plural(self.n_units, self.unit_name)}, fewer than the {S.MIN_UNITS} at which a {cov}"
        if v == NO_BARRIER:
            every = "the path is" if self.n_pairs == 1 else f"all {self.n_pairs} paths are"
            return (f"no barrier: {every} convex (no bump above the chord: chord ≤ {CONVEX_TOL:g}), so the value "
                    "is half the endpoints' difference" + (f"; nothing to judge by {self.criterion}{by}"
                                                             if self.criterion else ""))
        if v == NOT_FINITE:
            return "no finding: a value is not finite (a diverged or overflowing model)"
        if v in (ABOVE_CHANCE, NOT_ABOVE_CHANCE):
            return (f"{v} ({test}; {self.reason})" + ("" if v == ABOVE_CHANCE else
                    f"; a value of at least {self.detectable:.{self.digits}f} would have been called {ABOVE_CHANCE}"))
        return f"{v}{why}" + (f" ({test})" if test else "")

    def test_words(self) -> str:
        """'exact sign-flip test, one-sided, p = 0.031; the smallest p this design can reach is 0.031'."""
        if not self.test:
            return ""
        out = self.test + (f", p = {self.p_value:.3g}" if np.isfinite(self.p_value) else "")
        if np.isfinite(self.min_p):
            out += f"; the smallest p this design can reach is {self.min_p:.3g}"
        return out

    def power_words(self) -> str:
        """'; the design detects 0.80 points at 80 % power' (or that it can detect nothing)."""
        if np.isfinite(self.min_p) and self.min_p > S.ALPHA:
            return f"; no effect of any size could reach p ≤ {S.ALPHA:g} with {plural(self.n_units, self.unit_name)}"
        if np.isnan(self.detectable):
            return ""
        if not np.isfinite(self.detectable):
            return f"; the design can detect no effect of any size at {100 * S.POWER:g} % power"
        return (f"; the smallest effect this design detects at {100 * S.POWER:g} % power is "
                f"{self.detectable:.{self.digits}f}{' ' + self.unit if self.unit else ''}")

    def text(self) -> str:
        """One sentence: question and metric, the value, the verdict."""
        head = f"{self.question} ({self.metric})" if self.metric else self.question
        ref = f"; {self.reference}" if self.reference else ""
        if not np.isfinite(self.estimate) and self.verdict and self.verdict != NOT_FINITE:
            return f"{head}: {self.clause()}{ref}."  # nothing to estimate (e.g. an onset not located)
        return f"{head}: {self.value()}" + (f" — {self.clause()}" if self.verdict else "") + f"{ref}."

    @property
    def decided(self) -> bool:
        """True if the verdict is a finding (not too few units, not finite, not testable)."""
        return bool(self.verdict) and self.verdict not in NO_VERDICT

    def as_dict(self) -> dict:
        """Every field, plus the sentence (for the summary's JSON and tables)."""
        return {**asdict(self), "text": self.text()}


def plural(n: int, name: str) -> str:
    """'3 initialisations', '1 pair', '4 pairs (one pretraining run)': a count and its unit, in words."""
    head, sep, tail = name.partition(" (")
    return f"{n} {head}{'' if n == 1 or head.endswith('s') else 's'}{sep}{tail}"


def _convex(f: Finding) -> str:
    return f"; {f.convex_pairs} of {f.n_pairs} paths are convex (no barrier)" if f.convex_pairs else ""


# ----------------------------------------------------------------------------------------------- the rules
_summary, _spread, _sd = S.unit_summary, S.spread, S.sd  # numbers in, numbers out (stats.py)


def estimate(values, units=None, *, question: str, metric: str, unit: str, unit_name: str = "pair",
             digits: int = 2, reference: str = "") -> Finding:
    """A number with its interval over the units (or their range below MIN_UNITS), and no verdict. ConfigError (as
    every function here: stats.check_args) for digits out of its domain or units without one label per value."""
    S.check_args(digits)
    means, n_pairs, finite = _summary(values, units)
    est = float(means.mean()) if finite else float("nan")
    lo, hi, how = _spread(means) if finite else (float("nan"), float("nan"), "")
    return Finding(question, metric, unit, est, "" if finite or not n_pairs else NOT_FINITE, lo, hi, how,
                   int(means.size), unit_name, n_pairs, digits=digits, reference=reference)


def _clip(f: Finding, bounds) -> Finding:
    """The interval cut to the values the quantity can take (its true mean lies there: coverage is kept)."""
    if bounds is None or f.interval in ("", "range") or not np.isfinite(f.low):
        return f
    lo, hi = bounds
    return replace(f, low=max(f.low, lo) if lo is not None else f.low, high=min(f.high, hi) if hi is not None else f.high)


def threshold(values, chord=None, units=None, *, criterion: Criterion, question: str, metric: str,
              unit_name: str = "pair", digits: int = 2, reference: str = "", convex_tol: float = CONVEX_TOL,
              bounds: tuple | None = None) -> Finding:
    """The verdict of per-pair barriers `values` (in criterion.unit) against criterion.threshold; `chord`: the
    pairs' chord barriers in the same unit, for the convex tag (a pair with chord <= convex_tol has no barrier);
    `bounds`: (low, high) the quantity can take (e.g. (0, 100) for an error barrier `mean` in points; None: any).
    No values: not testable, saying nothing was measured. ConfigError (a ValueError) for digits, convex_tol or bounds
    out of their domain, or units without one label per value."""
    S.check_args(digits, convex_tol, bounds)
    f = _clip(estimate(values, units, question=question, metric=metric, unit=criterion.unit, unit_name=unit_name,
                       digits=digits, reference=reference), bounds)
    c = np.asarray(values if chord is None else chord, dtype=float).ravel()
    convex = int(np.sum(np.isfinite(c) & (c <= convex_tol))) if chord is not None else 0
    f = replace(f, criterion=criterion.words(), source=criterion.source, convex_pairs=convex)
    means, _, finite = _summary(values, units)
    if f.n_pairs == 0:
        return replace(f, verdict=NOT_TESTABLE, reason=_no_pairs)
    if not finite or not np.all(np.isfinite(c)):
        return replace(f, verdict=NOT_FINITE)
    # of one lone path (linear_path) "no barrier" says it is convex; of several pairs it is a claim about their kind
    # and needs the units like any verdict (from 4 units it flipped on a rebuild on another CPU)
    if convex == f.n_pairs and (f.n_pairs == 1 or means.size >= S.MIN_UNITS):
        return replace(f, verdict=NO_BARRIER)
    if means.size < S.MIN_UNITS:
        return replace(f, verdict=TOO_FEW)
    if f.high < criterion.threshold:
        return replace(f, verdict=criterion.below, reason=f"below {criterion.words()} ({criterion.source})")
    if f.low >= criterion.threshold:
        return replace(f, verdict=criterion.above, reason=f"at or above {criterion.words()} ({criterion.source})")
    return replace(f, verdict=INCONCLUSIVE, reason=f"the interval contains {criterion.words()}",
                   detectable=S.detectable_effect(_sd(means), int(means.size)))


def _directional(test, sign: float, expected: str | None) -> tuple[str, float, float, str]:
    """(verdict, p, smallest reachable p, how the test was sided) of test(alternative) -> (p, min_p). Two-sided
    without a claimed direction; with one, one-sided in the claimed direction, and — only if that does not reject —
    an effect the other way when its two-sided p is at most ALPHA (a direction nobody claimed needs two sides)."""
    if expected is None:
        p, min_p = test("two-sided")
        word = (HIGHER if sign > 0 else LOWER) if np.isfinite(p) and p <= S.ALPHA else INCONCLUSIVE
        return word, p, min_p, "two-sided"
    p, min_p = test(_alternative(expected))
    if np.isfinite(p) and p <= S.ALPHA:
        return expected, p, min_p, "one-sided in the claimed direction"
    other = LOWER if expected == HIGHER else HIGHER
    q, _ = test(_alternative(other))
    if np.isfinite(q) and 2 * q <= S.ALPHA:
        return other, 2 * q, 2 * min_p, f"two-sided, against the claimed direction (in it: p = {p:.3g})"
    return INCONCLUSIVE, p, min_p, "one-sided in the claimed direction"


def _alternative(expected: str | None) -> str:
    return {None: "two-sided", HIGHER: "greater", LOWER: "less"}[expected]


def paired(differences, units=None, *, question: str, metric: str, unit: str, expected: str | None = None,
           unit_name: str = "pair", digits: int = 2, reference: str = "") -> Finding:
    """The sign of paired differences (first minus second), summarised per unit, by an exact sign-flip test —
    one-sided when the claim names a direction (`expected`: "higher" | "lower"), else two-sided. ConfigError for
    digits or expected out of their domain or units without one label per value."""
    S.check_args(digits, expected=expected)
    f = estimate(differences, units, question=question, metric=metric, unit=unit, unit_name=unit_name,
                 digits=digits, reference=reference)
    if f.n_pairs == 0:
        return replace(f, verdict=NOT_TESTABLE, reason=_no_pairs)
    if f.verdict == NOT_FINITE or f.n_units == 0:
        return replace(f, verdict=NOT_FINITE)
    means, _, _ = _summary(differences, units)
    verdict, p, min_p, sided = _directional(lambda alt: S.sign_flip_test(means, alt), f.estimate, expected)
    f = replace(f, test=f"exact sign-flip test over {plural(f.n_units, unit_name)}, {sided}", p_value=p,
                min_p=min_p, verdict=verdict)
    if means.size < S.MIN_UNITS:  # below 1/2^5 no test reaches p <= ALPHA one-sided: the range, no verdict
        return replace(f, verdict=TOO_FEW)
    if verdict == INCONCLUSIVE:
        f = replace(f, detectable=S.detectable_effect(_sd(means), int(means.size), _alternative(expected)))
    return f


def arms(a, b, *, question: str, metric: str, unit: str, names: tuple[str, str] = ("A", "B"),
         expected: str | None = None, unit_name: str = "unit", ranks: bool = False, digits: int = 2,
         reference: str = "", convex_tol: float | None = None) -> Finding:
    """mean(a) - mean(b) of two independent arms (one value per independent unit in each), judged by an exact
    permutation test (on ranks with ranks=True, e.g. for grok steps that may be inf) — one-sided when `expected`
    names the claimed direction of a relative to b. The interval is Welch-studentized from MIN_UNITS per arm.
    convex_tol: the values are barriers, and one at most this is a convex path's, so 0 (no barrier): bumps within
    the tolerance, which a rebuild on another CPU may move, never decide the test."""
    S.check_args(digits, convex_tol, expected=expected)
    x, y = np.asarray(a, dtype=float).ravel(), np.asarray(b, dtype=float).ravel()
    if convex_tol is not None:
        x, y = (np.where(np.isfinite(v) & (v <= convex_tol), 0.0, v) for v in (x, y))
    n = int(x.size + y.size)
    q = f"{question} ({names[0]} − {names[1]})"
    if x.size == 0 or y.size == 0:
        return Finding(q, metric, unit, float("nan"), NOT_TESTABLE, n_units=n, unit_name=unit_name, n_pairs=n,
                       reason=f"nothing was measured in arm {names[0] if x.size == 0 else names[1]}: nothing to judge")
    if x.size == 0 or y.size == 0 or (not ranks and not (np.all(np.isfinite(x)) and np.all(np.isfinite(y)))):
        return Finding(q, metric, unit, float("nan"), NOT_FINITE, n_units=n, unit_name=unit_name, n_pairs=n)
    if ranks and not (np.isfinite(x).any() or np.isfinite(y).any()):
        return Finding(q, metric, unit, float("nan"), NOT_TESTABLE, n_units=n, unit_name=unit_name, n_pairs=n,
                       reason="no unit of either arm reached a value")
    with np.errstate(invalid="ignore"):  # two arms that never reached a value (inf - inf): no estimate
        est = float(np.median(x) - np.median(y)) if ranks else float(x.mean() - y.mean())
    if ranks:
        r = sps.rankdata(np.concatenate([x, y]))
        sign = float(r[: x.size].mean() - r[x.size:].mean())
    else:
        sign = est
    if ranks:
        lo, hi, how = float("nan"), float("nan"), ""
    elif min(x.size, y.size) >= S.MIN_UNITS:
        lo, hi = (float(t) for t in S.studentized_difference(x, y))
        how = "welch bootstrap-t"
    else:
        lo, hi, how = float(x.min() - y.max()), float(x.max() - y.min()), "range"
    verdict, p, min_p, sided = _directional(lambda alt: S.two_sample_test(x, y, alt, ranks=ranks), sign, expected)
    kind = "exact permutation test of mean ranks" if ranks else "exact permutation test"
    f = Finding(q, metric, unit, est, verdict, lo, hi, how, n, unit_name, n, test=f"{kind}, {x.size} vs {y.size}, "
                f"{sided}", p_value=p, min_p=min_p, digits=digits, reference=reference)
    if verdict == INCONCLUSIVE and not ranks:
        pooled = math.sqrt(((x.size - 1) * np.var(x, ddof=1) + (y.size - 1) * np.var(y, ddof=1)) / max(n - 2, 1)) \
            if min(x.size, y.size) > 1 else float("nan")
        f = replace(f, detectable=S.detectable_effect(pooled, int(x.size), _alternative(expected), int(y.size)))
    return f


def shared_pairs(values, model_a, model_b, chord=None, *, criterion: Criterion | None, question: str,
                 metric: str, unit: str = "", unit_name: str = "model", digits: int = 2, bounds: tuple | None = None
                 ) -> Finding:
    """Pairs that share models (e.g. all pairs among m seeds): the mean over pairs with its bootstrap-t interval over
    models (stats.shared_pairs_interval), judged against `criterion` when given; the units are the models. The
    detectable effect uses the spread of the models' mean barriers (an approximation: they are not independent).
    ConfigError for digits or bounds out of their domain, or model_a and model_b of different lengths."""
    S.check_args(digits, bounds=bounds)
    v = np.asarray(values, dtype=float).ravel()
    unit = criterion.unit if criterion is not None else unit
    m = len(set(np.asarray(model_a).tolist()) | set(np.asarray(model_b).tolist()))
    f = Finding(question, metric, unit, float(v.mean()) if v.size else float("nan"), n_units=m,
                unit_name=unit_name, n_pairs=int(v.size), digits=digits)
    if criterion is not None:
        f = replace(f, criterion=criterion.words(), source=criterion.source)
    if v.size == 0:
        return replace(f, verdict=NOT_TESTABLE, reason=_no_pairs)
    if not np.all(np.isfinite(v)):
        return replace(f, verdict=NOT_FINITE)
    c = None if chord is None else np.asarray(chord, dtype=float).ravel()
    convex = int(np.sum(c <= CONVEX_TOL)) if c is not None else 0
    f = replace(f, convex_pairs=convex)
    if m < S.MIN_UNITS:
        return replace(f, low=float(v.min()), high=float(v.max()), interval="range",
                       verdict=TOO_FEW if criterion is not None else "")
    lo, hi, _ = S.shared_pairs_interval(v, model_a, model_b)
    f = _clip(replace(f, low=lo, high=hi, interval="models bootstrap-t"), bounds)
    if criterion is None:
        return f
    if c is not None and convex == v.size:
        return replace(f, verdict=NO_BARRIER)
    if hi < criterion.threshold:
        return replace(f, verdict=criterion.below)
    if lo >= criterion.threshold:
        return replace(f, verdict=criterion.above)
    W, _ = S.pair_matrix(v, model_a, model_b)
    return replace(f, verdict=INCONCLUSIVE, reason=f"the interval contains {criterion.words()}",
                   detectable=S.detectable_effect(_sd(np.nanmean(W, 1)), m))


def onset(ks: Sequence, per_k: Sequence[Finding], *, question: str, metric: str, unit: str = "steps") -> Finding:
    """k*, the onset of stability, from one threshold Finding per spawn point k (sorted by k): bracketed by the last
    k judged unstable and the first k from which every k is judged stable (or has no barrier). Not testable when
    the first k is not judged unstable (no instability to lose); too few units when a k has too few."""
    ks, per_k = list(ks), list(per_k)
    if not per_k or len(ks) != len(per_k):
        raise ValueError(f"onset: give one finding per spawn point; got {len(ks)} ks, {len(per_k)} findings")
    base = Finding(question, metric, unit, float("nan"), n_units=min(f.n_units for f in per_k),
                   unit_name=per_k[0].unit_name, n_pairs=per_k[0].n_pairs, criterion=per_k[0].criterion,
                   source=per_k[0].source, digits=0)
    if any(f.verdict == NOT_FINITE for f in per_k):
        return replace(base, verdict=NOT_FINITE)
    if any(f.verdict == TOO_FEW for f in per_k):
        return replace(base, verdict=TOO_FEW)
    if per_k[0].verdict != UNSTABLE:
        return replace(base, verdict=NOT_TESTABLE, reason=f"at the first spawn point (k = {ks[0]}) the copies are "
                       f"not judged unstable ({per_k[0].verdict}), so there is no instability to lose")
    settled = [f.verdict in (STABLE, NO_BARRIER) for f in per_k]
    first = next((i for i in range(len(ks)) if all(settled[i:])), None)
    if first is None:
        return replace(base, verdict=NOT_REACHED, reason=f"no spawn point up to k = {ks[-1]} is followed only by "
                       "points judged stable")
    last_unstable = max(i for i in range(first) if per_k[i].verdict == UNSTABLE)
    return replace(base, estimate=float(ks[first]), low=float(ks[last_unstable]), high=float(ks[first]),
                   verdict=BRACKETED, reason=f"judged unstable at k = {ks[last_unstable]}, stable at every k from "
                   f"{ks[first]} on" + (" (the points between are inconclusive)" if first - last_unstable > 1 else ""))


def argmin(grid: Sequence[float], matrix, *, question: str, metric: str, unit: str, unit_name: str = "pair",
           digits: int = 3) -> Finding:
    """Where a measure is lowest along a grid (e.g. learning rates), from `matrix` [units x cells] paired by unit: a
    cell is worse than the best when an exact one-sided sign-flip test of its paired differences to the best gives
    p <= ALPHA; the cells not worse are the argmin's confidence set. interior: it avoids both ends; edge: one end."""
    S.check_args(digits)
    m = np.asarray(matrix, dtype=float)
    grid = [float(g) for g in grid]
    n = int(m.shape[0]) if m.ndim == 2 else 0
    base = Finding(question, metric, unit, float("nan"), n_units=n, unit_name=unit_name, n_pairs=n, digits=digits)
    if m.ndim == 2 and m.shape[0] == 0:
        return replace(base, verdict=NOT_TESTABLE, reason=_no_pairs)
    if m.ndim != 2 or m.shape[1] != len(grid) or not np.all(np.isfinite(m)):
        return replace(base, verdict=NOT_FINITE)
    best = int(np.argmin(m.mean(0)))
    base = replace(base, estimate=grid[best])
    if len(grid) < 3 or n < S.MIN_UNITS:
        return replace(base, verdict=TOO_FEW, reason=f"{len(grid)} grid points, {plural(n, unit_name)}")
    keep = [j for j in range(len(grid)) if j == best or S.sign_flip_test(m[:, j] - m[:, best], "greater")[0] > S.ALPHA]
    base = replace(base, low=grid[min(keep)], high=grid[max(keep)], interval="", reason="not worse than the best ("
                   f"one-sided exact sign-flip test of each, p > {S.ALPHA:g}): " + ", ".join(f"{grid[j]:.3g}" for j in keep))
    if 0 not in keep and len(grid) - 1 not in keep:
        return replace(base, verdict=INTERIOR)
    if keep in ([0], [len(grid) - 1]):
        return replace(base, verdict=EDGE)
    return replace(base, verdict=INCONCLUSIVE)


def trend(comparisons: Sequence[Finding], *, question: str, claimed: str) -> Finding:
    """Neighbouring-cell comparisons (each a `paired` or `arms` Finding whose verdict is higher / lower /
    inconclusive), against the claimed direction: inconclusive unless more than half are decisive; then supported
    (every decisive one goes the claimed way), contradicted (every one the other way) or mixed."""
    words = [c.verdict for c in comparisons if c.verdict not in NO_VERDICT]
    agree, against = sum(w == claimed for w in words), sum(w in (HIGHER, LOWER) and w != claimed for w in words)
    total = len(words)
    reason = (f"of {total} neighbouring comparisons, {agree} decisive the claimed way, {against} decisive against it, "
              f"{total - agree - against} undecided" + (f"; {len(comparisons) - total} not testable"
                                                        if len(comparisons) > total else ""))
    f = Finding(question, "", "", float("nan"), n_units=total, unit_name="comparison", reason=reason, digits=0)
    if not total:
        why = ("no neighbouring cells to compare" if not comparisons else "the only neighbouring comparison could not "
               "be tested" if len(comparisons) == 1 else f"none of the {len(comparisons)} neighbouring comparisons could "
               "be tested")
        return replace(f, verdict=NOT_TESTABLE, reason=why)
    if 2 * (agree + against) <= total:
        return replace(f, verdict=INCONCLUSIVE)
    return replace(f, verdict=SUPPORTED if not against else CONTRADICTED if not agree else MIXED)


def structure(observed: float, null, *, question: str, metric: str, unit: str = "", n_units: int = 0,
              unit_name: str = "model", digits: int = 3, null_name: str = "relabellings") -> Finding:
    """An observed statistic against its permutation null [N]: above chance when p <= ALPHA. The smallest effect
    the design could detect is the null's (1 - ALPHA) quantile: an observed value at least that large would have
    been called above chance. ConfigError for digits out of its domain."""
    S.check_args(digits)
    check_int("n_units", n_units, 0)
    d = np.asarray(null, dtype=float)
    d = d[np.isfinite(d)]
    f = Finding(question, metric, unit, float(observed), n_units=n_units, unit_name=unit_name, n_pairs=n_units,
                digits=digits)
    if not np.isfinite(observed) or d.size == 0:
        return replace(f, verdict=NOT_FINITE)
    p = S.permutation_p(observed, d)
    crit = float(np.quantile(d, 1 - S.ALPHA))
    return replace(f, verdict=ABOVE_CHANCE if p <= S.ALPHA else NOT_ABOVE_CHANCE, p_value=p,
                   min_p=1 / (1 + d.size), test=f"permutation null of {d.size} {null_name}",
                   detectable=crit, reason=f"null median {np.median(d):.{digits}f}, {100 * (1 - S.ALPHA):g}th "
                   f"percentile {crit:.{digits}f}")
