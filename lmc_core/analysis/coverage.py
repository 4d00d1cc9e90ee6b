"""Measured coverage of every interval the findings layer prints (the check behind its "95 %").

`coverage(kind, dist, n)` simulates `reps` designs with a known mean and returns the share of the layer's
intervals that contain it. The simulated data: the unit values are "normal" (N(0, 1)) or "skewed" (gamma with
shape 2, centred: skewness 1.4, the skew of a positive barrier whose spread is of the order of its mean); within a
unit, pairs add N(0, 0.5²) noise. Kinds:

- "mean":       one value per unit, the smoothed studentized-bootstrap interval (stats.studentized_interval);
- "two-stage":  3 pairs per unit summarised by the unit's mean, then the same interval (findings.estimate);
- "difference": two independent arms of n units each, the Welch-studentized interval;
- "shared":     all pairs among n models, value = a_i + a_j + noise, the model-resampling bootstrap-t.

`python bench/coverage.py` prints the whole table; `tests/unit/test_coverage.py` asserts >= 93 % wherever the
layer prints an interval (n >= stats.MIN_UNITS) and that it prints the range below.
"""
from __future__ import annotations

import itertools

import numpy as np

from . import stats as S

KINDS = ("mean", "two-stage", "difference", "shared")
DISTS = ("normal", "skewed")
SIZES = (2, 3, 4, 6, 10)


def draw(dist: str, shape, rng) -> np.ndarray:
    """Centred draws (true mean 0) of the named distribution."""
    if dist == "normal":
        return rng.normal(0.0, 1.0, shape)
    if dist == "skewed":
        return rng.gamma(2.0, 1.0, shape) - 2.0
    raise ValueError(f"dist={dist!r}; choose one of {DISTS}")


def shared_design(dist: str, pairs: np.ndarray, rng) -> np.ndarray:
    """One simulated value per pair of models [P]: a_i + a_j + N(0, 0.5²), the model effects a drawn from `dist`."""
    eff = draw(dist, int(pairs.max()) + 1, rng)
    return eff[pairs[:, 0]] + eff[pairs[:, 1]] + rng.normal(0.0, 0.5, len(pairs))


def coverage(kind: str, dist: str, n: int, reps: int = 4000, seed: int = 0, chunk: int = 500) -> float:
    """Share of `reps` simulated designs (n units) whose interval contains the true mean (0)."""
    rng = np.random.default_rng(seed)
    hits = 0
    if kind == "shared":
        pairs = np.array(list(itertools.combinations(range(n), 2)))
        for r in range(reps):
            v = shared_design(dist, pairs, rng)
            lo, hi, _ = S.shared_pairs_interval(v, pairs[:, 0], pairs[:, 1], seed=r)
            hits += bool(lo <= 0.0 <= hi)
        return hits / reps
    for start in range(0, reps, chunk):
        m = min(chunk, reps - start)
        if kind == "mean":
            lo, hi = S.studentized_interval(draw(dist, (m, n), rng))
        elif kind == "two-stage":
            pairs = draw(dist, (m, n, 1), rng) + rng.normal(0.0, 0.5, (m, n, 3))
            lo, hi = S.studentized_interval(pairs.mean(-1))  # the unit's mean, as stats.unit_means takes it
        elif kind == "difference":
            lo, hi = S.studentized_difference(draw(dist, (m, n), rng), draw(dist, (m, n), rng))
        else:
            raise ValueError(f"kind={kind!r}; choose one of {KINDS}")
        hits += int(np.sum((lo <= 0.0) & (0.0 <= hi)))
    return hits / reps


def table(reps: int = 4000, sizes=SIZES) -> list[dict]:
    """Every (kind, dist, n) with its measured coverage and whether the layer prints an interval at that n."""
    out = []
    for kind, dist, n in itertools.product(KINDS, DISTS, sizes):
        if kind == "shared" and n < 3:
            continue
        out.append({"kind": kind, "dist": dist, "n": n, "coverage": coverage(kind, dist, n, reps),
                    "printed": n >= S.MIN_UNITS})
    return out


def far(kind: str, dist: str, n: int, reps: int = 2000, seed: int = 0) -> float:
    """Share of the layer's intervals over `reps` simulated designs (n units; kinds "mean" and "shared" as in
    `coverage`) that reach more than half the data's range beyond the data: the erratic intervals a plain bootstrap-t
    draws at small n (a resample with a near-zero standard error). For "shared" the data are the pair values."""
    rng = np.random.default_rng(seed)
    if kind == "mean":
        x = draw(dist, (reps, n), rng)
        lo, hi = S.studentized_interval(x)
        reach = 0.5 * (x.max(1) - x.min(1))
        return float(np.mean((lo < x.min(1) - reach) | (hi > x.max(1) + reach)))
    if kind != "shared":
        raise ValueError(f"kind={kind!r}; choose 'mean' or 'shared'")
    pairs, hits = np.array(list(itertools.combinations(range(n), 2))), 0
    for r in range(reps):
        v = shared_design(dist, pairs, rng)
        lo, hi, _ = S.shared_pairs_interval(v, pairs[:, 0], pairs[:, 1], seed=r)
        reach = 0.5 * (v.max() - v.min())
        hits += bool(lo < v.min() - reach or hi > v.max() + reach)
    return hits / reps

