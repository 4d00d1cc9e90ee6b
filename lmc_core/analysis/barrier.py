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

import numbers

import numpy as np

from ..config import ConfigError, check_choice, check_real
from ..domains import MAX_ALPHAS  # the bound of linear_path, alpha_grid, interpolate_states and the studies

DEFINITIONS = ("mean", "chord", "subchord", "midpoint")
DEFAULT = "mean"
STABILITY_THRESHOLD_PCT = 2.0


def alpha_values(alphas, min_n: int = 1, flatten: bool = False) -> np.ndarray:
    """alphas as float64 [n]: ConfigError (a ValueError) naming `alphas` unless they are a 1-D sequence (any shape
    with flatten=True) of min_n to MAX_ALPHAS finite numbers (not strings or ragged lists). The one check under
    every alpha grid (check_alphas, interpolate.path_alphas / check_alpha_list, the alignment studies' paths)."""
    try:
        raw = np.asarray(alphas)
    except (TypeError, ValueError):  # ragged nested lists
        raw = np.asarray([object()])
    if raw.dtype.kind not in "iuf":
        raise ConfigError(f"alphas={alphas!r:.80} must be numbers, got {raw.dtype} values")
    a = raw.astype(np.float64).reshape(-1) if flatten else raw.astype(np.float64)
    if a.ndim != 1 or not np.all(np.isfinite(a)):
        raise ConfigError(f"alphas={a.ravel().tolist()[:8]!r:.80} must be a 1-D sequence of finite numbers")
    if not min_n <= a.size <= MAX_ALPHAS:
        raise ConfigError(f"alphas={a.tolist()[:4]!r:.60}... holds {a.size} points; give {min_n} to MAX_ALPHAS = "
                          f"{MAX_ALPHAS}")
    return a


def check_alphas(alphas) -> np.ndarray:
    """The alphas of a stored curve as float64 [n]; ValueError unless they are 2 to MAX_ALPHAS finite numbers that
    increase strictly from 0 to 1 (endpoints included, to float tolerance)."""
    a = alpha_values(alphas, 2)
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
    """Barrier height of the curve values(alphas) under one definition (NaN where a value is not finite).
    ValueError for a grid that does not increase from 0 to 1 or has more than MAX_ALPHAS points, ConfigError for an
    unknown definition."""
    check_choice("definition", definition, DEFINITIONS)
    a, v = _curve(alphas, values)
    return height(a, v, definition)


def subchord(a: np.ndarray, v: np.ndarray) -> float:
    """`subchord` of a checked, finite curve in O(n^2) time and memory (n <= MAX_ALPHAS: 8 MB arrays at most):
    max(0, max over i < k < j of v[k] - chord_ij(a[k])).

    For fixed k and i < k the lowest chord (i, j), j > k, at a[k] is the one of least slope from i, so
    min_j chord_ij(a[k]) = v[i] + (a[k] - a[i]) * min_{j > k} slope(i, j): a suffix minimum over j of the slope
    matrix, then a minimum over i. The winning triple of every k is then measured by the definition's own formula,
    v[k] - ((1 - w) v[i] + w v[j]) with w = (a[k] - a[i]) / (a[j] - a[i]), so the value is that of the O(n^3)
    search over every triple (the test suite compares them on random curves)."""
    n = a.size
    if n < 3:
        return 0.0
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        slope = (v[None, :] - v[:, None]) / (a[None, :] - a[:, None])  # [i, j]: slope of the chord (i, j)
        slope[np.tril_indices(n)] = np.inf  # only j > i
        least = np.full((n, n), np.inf)  # [i, k]: min over j > k of slope(i, j)
        least[:, :-1] = np.minimum.accumulate(slope[:, :0:-1], axis=1)[:, ::-1]
        low = v[:, None] + (a[None, :] - a[:, None]) * least  # [i, k]: the lowest chord from i at a[k]
    low[np.tril_indices(n)] = np.inf  # only i < k
    k = np.arange(1, n - 1)
    i = np.argmin(low[:, k], axis=0)
    rows = slope[i]  # [len(k), n]: slopes from each k's i
    rows[np.arange(n)[None, :] <= k[:, None]] = np.inf  # only j > k
    j = np.argmin(rows, axis=1)
    w = (a[k] - a[i]) / (a[j] - a[i])
    return float(max(0.0, np.max(v[k] - ((1 - w) * v[i] + w * v[j]))))


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
        return subchord(a, v)
    raise ValueError(f"unknown barrier definition {definition!r}; choose one of {list(DEFINITIONS)}")


def all_barriers(alphas, values) -> dict[str, float]:
    """Every definition at once."""
    a, v = _curve(alphas, values)
    return {d: height(a, v, d) for d in DEFINITIONS}


SCALES = ("relative", "absolute")


def instability(alphas, values, definition: str = DEFAULT, scale: str = "relative") -> float:
    """Barrier relative to the endpoints' mean in percent (scale "relative"), or in percentage points
    of a rate such as the error (scale "absolute": 100 x barrier)."""
    check_choice("scale", scale, SCALES)
    b = barrier(alphas, values, definition)
    if scale == "absolute":
        return 100.0 * b
    _, v = _curve(alphas, values)
    ends = 0.5 * (v[0] + v[-1])
    if ends == 0:
        raise ValueError("endpoint mean is 0; instability (relative barrier) is undefined")
    return 100.0 * b / ends


def is_stable(instability_value: float, threshold: float = STABILITY_THRESHOLD_PCT) -> bool | None:
    """Frankle et al.'s criterion: instability below the threshold (2); None if it is not finite. ConfigError
    unless threshold is a finite number > 0."""
    check_threshold(threshold)
    if instability_value is None or not np.isfinite(instability_value):
        return None
    return bool(instability_value < threshold)


def check_threshold(threshold) -> float:
    """The stability threshold as a float; ConfigError unless it is a real number (not a bool or a string), finite
    and > 0 (in the instability's unit: % of the endpoints' mean for a loss, percentage points for the error)."""
    if isinstance(threshold, (bool, str, bytes)) or not isinstance(threshold, numbers.Real):
        raise ConfigError(f"threshold={threshold!r} must be a finite number > 0, in the instability's unit (% of the "
                          "endpoints' mean for a loss, percentage points for the error; Frankle et al. 2020: 2)")
    return check_real("threshold", threshold, 0, None, lo_open=True)
