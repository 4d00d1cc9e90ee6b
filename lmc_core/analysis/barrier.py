"""Barrier definitions on a curve L(alpha) and instability (pure functions, numpy in and out).

mean      (Frankle / Ainsworth): max_a L(a) - (L(0) + L(1)) / 2
chord     (Entezari):            max_a [L(a) - ((1 - a) L(0) + a L(1))]
subchord  (Juneja's mod_BH):     largest height of a curve point above the chord of any two
                                 curve points on either side of it
midpoint:                        L(1/2) - (L(0) + L(1)) / 2 (linearly interpolated if 1/2 is
                                 not on the grid)
instability, in one of two scales (Frankle et al. 2020 call a network stable below 2):
  relative  barrier / ((L(0) + L(1)) / 2) * 100, in % of the endpoints' mean (loss, perplexity);
  absolute  barrier * 100, in percentage points, for a quantity that is itself a rate (the error:
            Frankle et al.'s 2 % threshold on the error barrier is 2 points of error).
A barrier or instability that is not finite is never called stable or unstable (is_stable -> None).
"""
from __future__ import annotations

import functools

import numpy as np

DEFINITIONS = ("mean", "chord", "subchord", "midpoint")
DEFAULT = "mean"
STABILITY_THRESHOLD_PCT = 2.0
SUBCHORD_DENSE = 128  # up to this many points, `subchord` looks at all point triples in one array operation


def check_alphas(alphas) -> np.ndarray:
    """The alphas as float64 [n]; ValueError unless they increase strictly from 0 to 1 (n >= 2, endpoints
    included)."""
    a = np.asarray(alphas, dtype=np.float64)
    if a.ndim != 1 or a.size < 2 or not np.all(np.isfinite(a)):
        raise ValueError(f"alphas must be a 1-D grid of at least 2 finite points from 0 to 1, got {a.tolist()[:8]}")
    if not (np.all(np.diff(a) > 0) and np.isclose(a[0], 0.0) and np.isclose(a[-1], 1.0)):
        raise ValueError("alphas must increase strictly from 0 to 1 (endpoints included)")
    return a


def _curve(alphas, values) -> tuple[np.ndarray, np.ndarray]:
    a = check_alphas(alphas)
    v = np.asarray(values, dtype=np.float64)
    if a.shape != v.shape:
        raise ValueError("alphas and values must be 1-D of the same length >= 2")
    return a, v


def barrier(alphas, values, definition: str = DEFAULT) -> float:
    """Barrier height of the curve values(alphas) under one definition."""
    a, v = _curve(alphas, values)
    if definition not in DEFINITIONS:
        raise ValueError(f"unknown barrier definition {definition!r}; choose one of {list(DEFINITIONS)}")
    return height(a, v, definition)


@functools.lru_cache(maxsize=16)
def _triples(grid: bytes) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Every point triple i < k < j of a grid (its float64 bytes) and the weight w of k on the chord (i, j)."""
    a = np.frombuffer(grid, dtype=np.float64)
    i, k, j = np.ix_(np.arange(a.size), np.arange(a.size), np.arange(a.size))
    i, k, j = np.nonzero((i < k) & (k < j))
    return i, k, j, (a[k] - a[i]) / (a[j] - a[i])


def height(a: np.ndarray, v: np.ndarray, definition: str) -> float:
    """barrier() of a checked curve: alphas `a` and values `v`, float64 [n] each (as _curve returns them); every
    definition read off them without checking the grid again (NaN where a value is not finite)."""
    if not np.all(np.isfinite(v)):
        return float("nan")  # a diverged or overflowing model: no barrier can be read off the curve
    ends = 0.5 * (v[0] + v[-1])
    if definition == "mean":
        return float(v.max() - ends)
    if definition == "chord":
        return float(np.max(v - ((1 - a) * v[0] + a * v[-1])))
    if definition == "midpoint":
        return float(np.interp(0.5, a, v) - ends)
    if definition == "subchord":
        # the height of every point k above the chord of every pair (i, j) around it, i < k < j
        best = 0.0
        if a.size <= SUBCHORD_DENSE:  # every triple, in blocks whose arrays stay small (no page faults per call)
            i, k, j, w = _triples(a.tobytes())
            for s in range(0, i.size, 8192):
                b = slice(s, s + 8192)
                best = max(best, float(np.max(v[k[b]] - ((1 - w[b]) * v[i[b]] + w[b] * v[j[b]]), initial=best)))
            return best
        k, j = np.ix_(np.arange(a.size), np.arange(a.size))
        for i in range(a.size - 2):
            inside = (i < k) & (k < j)
            with np.errstate(divide="ignore", invalid="ignore"):
                w = (a[k] - a[i]) / (a[j] - a[i])
                height_ = v[k] - ((1 - w) * v[i] + w * v[j])
            best = max(best, float(np.max(np.where(inside, height_, -np.inf))))
        return best
    raise ValueError(f"unknown barrier definition {definition!r}; choose one of {list(DEFINITIONS)}")


def all_barriers(alphas, values) -> dict[str, float]:
    """Every definition at once."""
    a, v = _curve(alphas, values)
    return {d: height(a, v, d) for d in DEFINITIONS}


SCALES = ("relative", "absolute")


def instability(alphas, values, definition: str = DEFAULT, scale: str = "relative") -> float:
    """Barrier relative to the endpoints' mean in percent (scale "relative"), or in percentage points
    of a rate such as the error (scale "absolute": 100 x barrier)."""
    if scale not in SCALES:
        raise ValueError(f"scale={scale!r}; choose one of {list(SCALES)}")
    b = barrier(alphas, values, definition)
    if scale == "absolute":
        return 100.0 * b
    _, v = _curve(alphas, values)
    ends = 0.5 * (v[0] + v[-1])
    if ends == 0:
        raise ValueError("endpoint mean is 0; instability (relative barrier) is undefined")
    return 100.0 * b / ends


def is_stable(instability_value: float, threshold: float = STABILITY_THRESHOLD_PCT) -> bool | None:
    """Frankle et al.'s criterion: instability below the threshold (2); None if it is not finite."""
    if instability_value is None or not np.isfinite(instability_value):
        return None
    return bool(instability_value < threshold)
