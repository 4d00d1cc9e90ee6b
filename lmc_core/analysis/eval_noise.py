"""The evaluation noise of a barrier: how much it would move on another evaluation sample of the same size.

A path is evaluated on one sample of windows (a language model) or examples; its barrier is a statistic of that
sample. Resampling the windows with replacement (the same draw for every α: the whole path is evaluated on one
sample) and recomputing the barrier gives its standard error over the evaluation sample (Efron & Tibshirani 1993,
the nonparametric bootstrap, ch. 6), for fixed models. The spread between pairs (training noise) is another,
usually larger, term; this is the part a larger evaluation sample removes.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from . import barrier as B
from .criteria import NOISE_SMALL_FRACTION, Criterion
from .metrics import METRIC_SCALE


def per_window(per_example: np.ndarray, context: int | None) -> np.ndarray:
    """[alphas, windows] means of per-token values [alphas, tokens] over consecutive windows of `context` tokens
    (context None: the tokens themselves). ValueError when the tokens do not split into whole windows."""
    v = np.asarray(per_example, dtype=np.float64)
    if context is None:
        return v
    if v.ndim != 2 or v.shape[1] % context:
        raise ValueError(f"per-example values of shape {v.shape} do not split into windows of {context} tokens")
    return v.reshape(v.shape[0], -1, context).mean(-1)


def per_unit(result, metric: str, context: int | None) -> np.ndarray:
    """[alphas, units] means of `metric` ("loss" or "error") of an EvalResult kept with ("examples",): per window
    of `context` tokens, or per token / example (context None)."""
    if metric not in ("loss", "error"):
        raise ValueError(f"metric={metric!r}: the per-example arrays hold 'loss' and 'error'")
    v = result.per_example_loss if metric == "loss" else 1.0 - np.asarray(result.per_example_correct, dtype=np.float64)
    return per_window(v, context)


def instabilities(alphas, values, metric: str, definitions=B.DEFINITIONS) -> dict[str, float]:
    """The barrier of one curve under each definition, in the instability's unit of `metric` (error: percentage
    points; loss, perplexity: % of the endpoints' mean)."""
    return {d: B.instability(alphas, values, d, METRIC_SCALE.get(metric, "relative")) for d in definitions}


def bootstrap_se(alphas, units: np.ndarray, metric: str, resamples: int = 1000, seed: int = 0,
                 definitions=B.DEFINITIONS) -> dict[str, float]:
    """Standard error of each definition's barrier over `resamples` resamples, with replacement, of the units
    (columns of `units` [alphas, n], e.g. per_unit's windows), in the instability's unit of `metric`.
    ValueError for fewer than 2 units or resamples."""
    units = np.asarray(units, dtype=np.float64)
    n = units.shape[1]
    if n < 2 or resamples < 2:
        raise ValueError(f"a bootstrap needs at least 2 units and 2 resamples (got {n} and {resamples})")
    rng = np.random.default_rng(seed)
    draws = {d: [] for d in definitions}
    for start in range(0, resamples, 100):  # chunks keep the count matrix small when the units are tokens
        counts = rng.multinomial(n, np.full(n, 1.0 / n), size=min(100, resamples - start))
        for curve in counts @ units.T / n:
            for d, x in instabilities(alphas, curve, metric, definitions).items():
                draws[d].append(x)
    return {d: float(np.std(x, ddof=1)) for d, x in draws.items()}


def noise_words(se: pd.DataFrame, unit_means: pd.Series, what: str, criterion: Criterion) -> str:
    """A Markdown line: the evaluation noise of `what` (se: one row per pair with columns se, resamples, windows, in
    the criterion's unit) against the criterion's threshold and the spread (sd) of the independent units' means
    (unit_means); small against the spread below NOISE_SMALL_FRACTION of it."""
    if se.empty:
        return "- Evaluation noise: not measured."
    med = float(se.se.median())
    text = (f"- Evaluation noise: {what} has a standard error of {med:.2f} {criterion.unit} (median over {len(se)} "
            f"pairs; largest {se.se.max():.2f}) over {int(se.resamples.iloc[0])} bootstrap resamples of its "
            f"{int(se.windows.iloc[0])} evaluation windows, {100 * med / criterion.threshold:.0f} % of "
            f"{criterion.words()}")
    if unit_means.size <= 1:
        return text + "."
    sd = float(unit_means.std(ddof=1))
    return text + (f"; the independent units' means spread by {sd:.2f} (sd), "
                   + ("so the evaluation sample adds little to the spread between units." if med < NOISE_SMALL_FRACTION
                      * sd else "comparable to the evaluation noise: a larger evaluation sample would sharpen them."))
