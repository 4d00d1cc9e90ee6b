"""Small-sample statistics over independent units: intervals whose coverage holds at the sample sizes the studies
run, exact tests, permutation nulls and the smallest effect a design can detect. Numbers in, numbers out; the
words live in `findings.py`, the thresholds and their sources in `criteria.py`.

Why these methods (measured by `tests/unit/test_coverage.py`, which simulates every interval printed here at
n = 2, 3, 4, 6, 10 units on normal and on skewed (gamma, shape 2: skewness 1.4) data):

- a percentile bootstrap over 2-4 units covers the mean 50-80 % of the time, not 95 %; BCa is no better at
  that n (both use the bootstrap distribution of the mean, which is too narrow when n is small);
- Student's t holds for normal data at every n but falls to 91-92 % on the skewed data at n = 3-10;
- the **studentized (bootstrap-t) interval** (Efron & Tibshirani 1993, *An Introduction to the Bootstrap*,
  ch. 12.5; Davison & Hinkley 1997, §5.2.1) corrects for skewness: >= 93 % on both from n = 4 units. Below
  MIN_UNITS (5, a margin over 4) the findings layer prints the range over the units and draws no verdict.
- plain, at n = 5 it is erratic: a resample that repeats two or three close values has a standard error near 0
  and a huge t*, and 31-40 % of its intervals reached more than half the data's range beyond the data (e.g.
  [0.00, 4.77] for five barriers of 3.5-4.7 %). The resamples are therefore **smoothed** (each resampled value
  jittered by N(0, se²), se = s / sqrt(n); Silverman & Young 1987, Davison & Hinkley §3.4): coverage stays
  >= 93 % (measured: 0.930-0.961 at n = 5, 6, 10 on both kinds of data), under 1 % of the intervals reach that
  far, and the width is 1.02-1.14 times Student's t.
  scipy.stats.bootstrap offers percentile, basic and BCa only, and arch's studentized interval loops in Python
  (too slow for the simulation that checks it), so the bootstrap-t is written here, vectorised over designs.

Pairs that share an initialisation, a parent or a pretraining run are summarised within their unit first (the
unit's mean); pairs that share a *model* (all pairs among m models) are one U-statistic, whose interval is the
bootstrap-t over models studentized by the jackknife over models (`shared_pairs_interval`; the jackknife-t alone
covers 91-93 % on skewed model effects, measured).
"""
from __future__ import annotations

import math
import warnings
from typing import Callable, Sequence

import numpy as np
from scipy import stats as sps

from ..config import ConfigError, check_choice, check_int, check_real

CONFIDENCE = 0.95  # every interval printed
ALPHA = 0.05  # every test's level (an exact test rejects at p <= ALPHA)
POWER = 0.80  # the power at which the smallest detectable effect is stated
MIN_UNITS = 5  # fewer independent units: the range is printed and no verdict drawn (coverage: module docstring)
N_BOOT = 1999  # bootstrap-t resamples
N_PERM = 9999  # permutations of a Monte Carlo permutation test (exact enumeration below that many)
MAX_RESAMPLES = 1_000_000  # bootstrap resamples / permutations one call may ask for (memory: resamples x units)
ALTERNATIVES = ("two-sided", "greater", "less")


def _check(confidence: float | None = None, n_resamples: int | None = None, seed: int | None = None,
           alternative: str | None = None, name: str = "n_resamples") -> None:
    """ConfigError naming the parameter: confidence a number in (0, 1), n_resamples an integer from 1 to
    MAX_RESAMPLES, seed an integer >= 0, alternative one of ALTERNATIVES."""
    if confidence is not None:
        check_real("confidence", confidence, 0, 1, lo_open=True, hi_open=True)
    if n_resamples is not None:
        check_int(name, n_resamples, 1, MAX_RESAMPLES)
    if seed is not None:
        check_int("seed", seed, 0)
    if alternative is not None:
        check_choice("alternative", alternative, ALTERNATIVES)


def check_args(digits: int = 2, convex_tol=None, bounds=None, expected="") -> None:
    """The findings layer's arguments: ConfigError naming digits (an integer from 0 to 15), convex_tol (a finite
    number >= 0), bounds ((low, high), either None) or expected (None, "higher" or "lower") out of its domain."""
    check_int("digits", digits, 0, 15)
    if convex_tol is not None:
        check_real("convex_tol", convex_tol, 0, None)
    if bounds is not None:
        if not (isinstance(bounds, (tuple, list)) and len(bounds) == 2):
            raise ConfigError(f"bounds={bounds!r} must be a pair (low, high) of finite numbers, either None for no "
                              "bound")
        lo, hi = (None if b is None else check_real("bounds", b) for b in bounds)
        if lo is not None and hi is not None and lo > hi:
            raise ConfigError(f"bounds={bounds!r}: its low end must not exceed its high end; give (low, high)")
    if expected != "":
        check_choice("expected", expected, (None, "higher", "lower"))


def unit_means(values, units=None) -> tuple[np.ndarray, np.ndarray]:
    """(mean per unit [n_units], pairs per unit [n_units]) of `values` [n] grouped by `units` (one label per
    value, in first-appearance order); units=None: every value is its own unit. ConfigError (naming units) when
    there is not one label per value."""
    v = np.asarray(values, dtype=float).ravel()
    if units is None:
        return v, np.ones(v.size, dtype=int)
    u = np.asarray(units).ravel()
    if u.shape != v.shape:
        raise ConfigError(f"units has {u.size} labels for {v.size} values: give one unit label per value")
    keys = list(dict.fromkeys(u.tolist()))
    groups = [v[u == k] for k in keys]
    return np.array([g.mean() for g in groups]), np.array([g.size for g in groups])


def unit_summary(values, units) -> tuple[np.ndarray, int, bool]:
    """(the units' means, the number of values, whether there are values and all are finite); the values
    themselves when they are not."""
    v = np.asarray(values, dtype=float).ravel()
    finite = v.size > 0 and bool(np.all(np.isfinite(v)))
    means, _ = unit_means(v, units) if finite else (v, None)
    return means, int(v.size), finite


def spread(means: np.ndarray) -> tuple[float, float, str]:
    """(low, high, method): the studentized-bootstrap interval from MIN_UNITS units, else the range."""
    if means.size >= MIN_UNITS:
        lo, hi = studentized_interval(means)
        return float(lo), float(hi), "bootstrap-t"
    if means.size >= 1:
        return float(means.min()), float(means.max()), "range"
    return float("nan"), float("nan"), ""


def sd(x: np.ndarray) -> float:
    """The sample standard deviation (ddof 1; NaN below 2 values)."""
    return float(np.std(x, ddof=1)) if x.size > 1 else float("nan")


def units_of_pairs(model_a: Sequence, model_b: Sequence) -> np.ndarray:
    """One unit label per pair: pairs connected through a shared model are one unit (connected components of
    the graph whose edges are the pairs). Pairs of disjoint models are their own units. ConfigError (naming
    model_a and model_b) when they differ in length."""
    a, b = list(model_a), list(model_b)
    if len(a) != len(b):
        raise ConfigError(f"model_a ({len(a)} names) and model_b ({len(b)} names) must name the two models of every "
                          "pair: give lists of one length")
    parent: dict = {}

    def find(x):
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for x, y in zip(a, b):
        parent[find(x)] = find(y)
    roots = [find(x) for x in a]
    order = {r: i for i, r in enumerate(dict.fromkeys(roots))}
    return np.array([order[r] for r in roots])


def _resample_means(x: np.ndarray, n_resamples: int, rng) -> tuple[np.ndarray, np.ndarray]:
    """Smoothed-bootstrap means and standard errors [..., B] of x [..., n] (the same indices for every leading row):
    each resampled value is jittered by N(0, h²) with h = s / sqrt(n), the standard error of the mean (a smoothed
    bootstrap: Silverman & Young 1987; Davison & Hinkley 1997, §3.4). Without it, at n = 5 a resample that repeats
    two or three close values has a standard error near 0 and a huge t*, and 31-40 % of the intervals reach more
    than half the data's range beyond it (bench/coverage.py measures both)."""
    n = x.shape[-1]
    idx = rng.integers(0, n, (n_resamples, n))
    h = x.std(-1, ddof=1) / math.sqrt(n)
    xb = x[..., idx] + h[..., None, None] * rng.standard_normal((*x.shape[:-1], n_resamples, n))  # [..., B, n]
    return xb.mean(-1), xb.std(-1, ddof=1) / math.sqrt(n)


def _bootstrap_t(est, se, boot_est, boot_se, confidence: float) -> tuple[np.ndarray, np.ndarray]:
    with np.errstate(divide="ignore", invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # every resample flat: the caller returns [m, m]
        t = (boot_est - est[..., None]) / boot_se
        t = np.where(np.isfinite(t), t, np.nan)  # resamples of one repeated value carry no scale
        q_lo, q_hi = np.nanquantile(t, [(1 - confidence) / 2, (1 + confidence) / 2], axis=-1)
    return est - q_hi * se, est - q_lo * se


def studentized_interval(x, confidence: float = CONFIDENCE, n_resamples: int = N_BOOT, seed: int = 0
                         ) -> tuple[np.ndarray, np.ndarray]:
    """Bootstrap-t interval of the mean of x [..., n] along the last axis (Efron & Tibshirani 1993, eq. 12.22):
    [m - t*_(1-a/2) se, m - t*_(a/2) se] with t* = (m* - m) / se* over resamples. Returns (low, high) [...];
    NaN for n < 2; [m, m] when every value is equal (nothing varies). Deterministic for a given seed. ConfigError
    for confidence outside (0, 1), n_resamples outside [1, MAX_RESAMPLES] or a negative seed."""
    _check(confidence, n_resamples, seed)
    x = np.asarray(x, dtype=float)
    n = x.shape[-1]
    est = x.mean(-1)
    if n < 2:
        return np.full(est.shape, np.nan), np.full(est.shape, np.nan)
    se = x.std(-1, ddof=1) / math.sqrt(n)
    bm, bs = _resample_means(x, n_resamples, np.random.default_rng(seed))
    lo, hi = _bootstrap_t(est, se, bm, bs, confidence)
    flat = se == 0
    return np.where(flat, est, lo), np.where(flat, est, hi)


def studentized_difference(a, b, confidence: float = CONFIDENCE, n_resamples: int = N_BOOT, seed: int = 0
                           ) -> tuple[np.ndarray, np.ndarray]:
    """Bootstrap-t interval of mean(a) - mean(b) of two independent arms a [..., n_a], b [..., n_b], studentized by
    Welch's standard error (each arm resampled on its own; Davison & Hinkley 1997, §3.9). NaN if an arm has fewer
    than 2 values. ConfigError as studentized_interval."""
    _check(confidence, n_resamples, seed)
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    est = a.mean(-1) - b.mean(-1)
    if a.shape[-1] < 2 or b.shape[-1] < 2:
        return np.full(np.shape(est), np.nan), np.full(np.shape(est), np.nan)
    rng = np.random.default_rng(seed)
    ma, sa = _resample_means(a, n_resamples, rng)
    mb, sb = _resample_means(b, n_resamples, rng)
    se = np.sqrt(a.var(-1, ddof=1) / a.shape[-1] + b.var(-1, ddof=1) / b.shape[-1])
    lo, hi = _bootstrap_t(est, se, ma - mb, np.sqrt(sa ** 2 + sb ** 2), confidence)
    flat = se == 0
    return np.where(flat, est, lo), np.where(flat, est, hi)


def _u_and_se(W: np.ndarray, excluded: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean over the pairs i < j of W [..., m, m] (NaN: no pair; `excluded` [..., m, m]: a model with itself) and
    its jackknife standard error over the m positions (leave one position and all its pairs out)."""
    m = W.shape[-1]
    M = np.where(excluded, np.nan, W)
    iu = np.triu_indices(m, 1)
    vals = M[..., iu[0], iu[1]]
    with np.errstate(divide="ignore", invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a resample of one repeated model has no pair
        total, count = np.nansum(vals, -1), np.sum(np.isfinite(vals), -1)
        u = total / count
        loo = (total[..., None] - np.nansum(M, -1)) / (count[..., None] - np.sum(np.isfinite(M), -1))
        centred = loo - np.nanmean(loo, -1, keepdims=True)
        se = np.sqrt((m - 1) / m * np.nansum(centred ** 2, -1))
    return u, se


def pair_matrix(values, model_a, model_b) -> tuple[np.ndarray, list]:
    """The symmetric [m, m] matrix of pair values (NaN where two models were not compared) and the models' ids.
    ConfigError (naming values, model_a and model_b) unless they have one length: one value per pair."""
    v = np.asarray(values, dtype=float).ravel()
    a, b = np.asarray(model_a).ravel(), np.asarray(model_b).ravel()
    if not v.size == a.size == b.size:
        raise ConfigError(f"values ({v.size}), model_a ({a.size}) and model_b ({b.size}) must have one length: one "
                          "value and the two models' names per pair")
    models = list(dict.fromkeys([*a.tolist(), *b.tolist()]))
    index = {k: i for i, k in enumerate(models)}
    W = np.full((len(models), len(models)), np.nan)
    for x, y, val in zip(a.tolist(), b.tolist(), v):
        W[index[x], index[y]] = W[index[y], index[x]] = val
    return W, models


def shared_pairs_interval(values, model_a, model_b, confidence: float = CONFIDENCE, n_resamples: int = N_BOOT,
                          seed: int = 0) -> tuple[float, float, int]:
    """Interval of the mean over pairs that share models (e.g. all pairs among m models): a U-statistic of order 2.
    Bootstrap-t over models: resample the m models with replacement, take the mean over the pairs of distinct
    draws, studentize by the jackknife standard error over models (Arvesen 1969, *Ann. Math. Stat.* 40:2076).
    Returns (low, high, m); NaN below 3 models. ConfigError as studentized_interval, and (pair_matrix) when values,
    model_a and model_b differ in length."""
    _check(confidence, n_resamples, seed)
    W, models = pair_matrix(values, model_a, model_b)
    m = len(models)
    if m < 3 or np.sum(np.isfinite(W)) < 4:
        return float("nan"), float("nan"), m
    u, se = _u_and_se(W, np.eye(m, dtype=bool))
    if se == 0:
        return float(u), float(u), m
    d = np.random.default_rng(seed).integers(0, m, (n_resamples, m))
    ub, seb = _u_and_se(W[d[:, :, None], d[:, None, :]], d[:, :, None] == d[:, None, :])
    with np.errstate(divide="ignore", invalid="ignore"):
        t = (ub - u) / seb
    t = t[np.isfinite(t)]
    q_lo, q_hi = np.quantile(t, [(1 - confidence) / 2, (1 + confidence) / 2])
    return float(u - q_hi * se), float(u - q_lo * se), m


def sign_flip_test(differences, alternative: str = "two-sided", seed: int = 0) -> tuple[float, float]:
    """Exact sign-flip permutation test that paired differences [n] are symmetric about 0 (Fisher 1935; via
    scipy.stats.permutation_test, exact while 2^n <= N_PERM). Returns (p, the smallest p this n can reach).
    ConfigError for an unknown alternative or a negative seed."""
    _check(seed=seed, alternative=alternative)
    d = np.asarray(differences, dtype=float)
    if d.size == 0:
        return float("nan"), float("nan")
    if d.size == 1:  # two sign patterns; scipy wants two observations
        x = float(d[0])
        p = {"two-sided": 1.0, "greater": 0.5 if x > 0 else 1.0, "less": 0.5 if x < 0 else 1.0}[alternative]
        return p, min_p_sign_flip(1, alternative)
    res = sps.permutation_test((d,), np.mean, permutation_type="samples", alternative=alternative,
                               n_resamples=N_PERM, random_state=np.random.default_rng(seed))
    return float(res.pvalue), min_p_sign_flip(d.size, alternative)


def min_p_sign_flip(n: int, alternative: str = "two-sided") -> float:
    """The smallest p an exact sign-flip test of n differences can give: 1/2^n one-sided, 2/2^n two-sided."""
    check_int("n", n, 0)
    _check(alternative=alternative)
    return min(1.0, (2.0 if alternative == "two-sided" else 1.0) / 2 ** n)


def two_sample_test(a, b, alternative: str = "two-sided", seed: int = 0, ranks: bool = False
                    ) -> tuple[float, float]:
    """Permutation test of mean(a) - mean(b) for two independent arms (exact while the relabellings fit N_PERM;
    scipy.stats.permutation_test). ranks=True tests the mean ranks instead (Mann-Whitney; values may be inf, e.g.
    a grok step never reached). alternative: "greater" means a above b. Returns (p, smallest reachable p).
    ConfigError for an unknown alternative or a negative seed."""
    _check(seed=seed, alternative=alternative)
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.size == 0 or b.size == 0:
        return float("nan"), float("nan")
    if ranks:
        r = sps.rankdata(np.concatenate([a, b]))
        a, b = r[: a.size], r[a.size:]
    if min(a.size, b.size) < 2:  # scipy wants two values per arm: enumerate the relabellings (exact)
        return _exact_two_sample(a, b, alternative), min_p_two_sample(a.size, b.size, alternative)
    res = sps.permutation_test((a, b), lambda x, y, axis=-1: x.mean(axis) - y.mean(axis), alternative=alternative,
                               permutation_type="independent", n_resamples=N_PERM,
                               random_state=np.random.default_rng(seed))
    return float(res.pvalue), min_p_two_sample(a.size, b.size, alternative)


def _exact_two_sample(a: np.ndarray, b: np.ndarray, alternative: str) -> float:
    """p of mean(a) - mean(b) over every split of the pooled values into arms of a's and b's sizes."""
    import itertools

    pooled, n = np.concatenate([a, b]), a.size
    obs = a.mean() - b.mean()
    diffs = []
    for idx in itertools.combinations(range(pooled.size), n):
        mask = np.zeros(pooled.size, bool)
        mask[list(idx)] = True
        diffs.append(pooled[mask].mean() - pooled[~mask].mean())
    d, eps = np.array(diffs), 1e-12 * max(1.0, abs(obs))
    if alternative == "greater":
        return float(np.mean(d >= obs - eps))
    if alternative == "less":
        return float(np.mean(d <= obs + eps))
    return float(np.mean(np.abs(d) >= abs(obs) - eps))


def min_p_two_sample(n_a: int, n_b: int, alternative: str = "two-sided") -> float:
    """The smallest p an exact two-sample permutation test can give: 1 / C(n_a + n_b, n_a) one-sided (twice that
    two-sided)."""
    check_int("n_a", n_a, 0)
    check_int("n_b", n_b, 0)
    _check(alternative=alternative)
    return min(1.0, (2.0 if alternative == "two-sided" else 1.0) / math.comb(n_a + n_b, n_a))


def permutation_p(observed: float, null, alternative: str = "greater") -> float:
    """p of an observed statistic against a Monte Carlo permutation null [N]: (1 + #{null >= observed}) / (1 + N)
    (Phipson & Smyth 2010, never 0); "less" counts null <= observed."""
    check_choice("alternative", alternative, ("greater", "less"))
    d = np.asarray(null, dtype=float)
    d = d[np.isfinite(d)]
    if not np.isfinite(observed) or d.size == 0:
        return float("nan")
    hits = np.sum(d >= observed) if alternative == "greater" else np.sum(d <= observed)
    return float((1 + hits) / (1 + d.size))


def label_permutation_null(statistic: Callable[[np.ndarray], float], labels, n_permutations: int = 999,
                           seed: int = 0) -> np.ndarray:
    """statistic(permuted labels) for n_permutations random permutations of `labels` [m] (the null of no
    association between the labels and whatever `statistic` compares them with). ConfigError for n_permutations
    outside [1, MAX_RESAMPLES] or a negative seed."""
    _check(n_resamples=n_permutations, seed=seed, name="n_permutations")
    lab = np.asarray(labels)
    rng = np.random.default_rng(seed)
    return np.array([statistic(rng.permutation(lab)) for _ in range(n_permutations)])


def detectable_effect(sd: float, n: int, alternative: str = "two-sided", n_b: int | None = None) -> float:
    """The smallest true effect (in the units of `sd`, the unit-level standard deviation) that a t-test over n
    units (or two arms of n and n_b) detects with probability POWER at level ALPHA (statsmodels' TTestPower /
    TTestIndPower, Cohen 1988). inf with fewer than 2 units per arm or no spread to scale by. ConfigError for an
    unknown alternative or a count that is not an integer >= 0."""
    check_int("n", n, 0)
    if n_b is not None:
        check_int("n_b", n_b, 0)
    _check(alternative=alternative)
    from statsmodels.stats.power import TTestIndPower, TTestPower

    if not np.isfinite(sd) or sd <= 0 or n < 2 or (n_b is not None and n_b < 2):
        return float("inf")
    alt = {"two-sided": "two-sided", "greater": "larger", "less": "smaller"}[alternative]
    try:
        if n_b is None:
            d = TTestPower().solve_power(effect_size=None, nobs=n, alpha=ALPHA, power=POWER, alternative=alt)
        else:
            d = TTestIndPower().solve_power(effect_size=None, nobs1=n, ratio=n_b / n, alpha=ALPHA, power=POWER,
                                            alternative=alt)
    except (ValueError, RuntimeError):
        return float("inf")
    d = float(np.abs(np.asarray(d)).ravel()[0])
    return d * sd if np.isfinite(d) else float("inf")
