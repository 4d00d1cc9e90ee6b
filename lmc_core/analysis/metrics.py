"""Tables of barriers and instability computed from interpolation curves (the one barrier-table builder), and their
findings through the findings layer (analysis/findings.py: convex paths are no barrier, intervals over the
independent units)."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from . import barrier as B
from . import findings as F
from .criteria import FRANKLE as FRANKLE_CRITERION, RELATIVE_LOSS, Criterion
from ..config import check_choice, check_int
from .findings import is_convex

METRICS = ("loss", "ppl", "error")
# error is a rate: its instability is in percentage points (Frankle et al.); the others are relative
METRIC_SCALE = {"loss": "relative", "ppl": "relative", "error": "absolute", "accuracy": "absolute",
                "loss_word": "relative", "ppl_word": "relative"}  # per word-equivalent (character models)
UNITS = {"relative": "% of endpoints' mean", "absolute": "percentage points"}
LABELS = {"loss": "cross-entropy (nats/token)", "ppl": "perplexity", "error": "next-token error",
          "accuracy": "accuracy", "loss_word": "cross-entropy per word-equivalent (nats)",
          "ppl_word": "perplexity per word-equivalent"}


def unit_of(metric: str) -> str:
    """The unit in which the instability of `metric` is reported."""
    return UNITS[METRIC_SCALE[metric]]


def _scaled(b: float, ends: float, scale: str) -> float:
    """B.instability of a barrier `b` with the endpoints' mean `ends`; NaN (no finding) where the relative scale's
    endpoints' mean is 0 or not finite, instead of an error."""
    if scale == "absolute":
        return 100.0 * b
    if not (np.isfinite(ends) and ends != 0):
        return float("nan")
    return 100.0 * b / ends


def _metric_rows(ident: dict, metric: str, a: np.ndarray, v: np.ndarray) -> list[dict]:
    """The rows of one curve (alphas `a`, values `v`, float64, checked by B.check_alphas) and one metric."""
    scale = METRIC_SCALE[metric]
    ends = 0.5 * (v[0] + v[-1])
    heights = {d: B.height(a, v, d) for d in B.DEFINITIONS}
    chord = _scaled(heights["chord"], ends, scale)
    top = float(np.nanmax(v)) if not np.isnan(v).all() else float("nan")  # all NaN: a path not finite
    rows = []
    for definition in B.DEFINITIONS:
        inst = _scaled(heights[definition], ends, scale)
        rows.append({**ident, "metric": metric, "definition": definition, "endpoint_mean": ends,
                     "max_on_path": top, "barrier": heights[definition], "instability": inst, "unit": UNITS[scale],
                     "stable": B.is_stable(inst), "chord_instability": chord, "convex": is_convex(chord)})
    return rows


def barrier_table(curves: pd.DataFrame, by: tuple[str, ...] = ("pair",),
                  metrics: tuple[str, ...] = METRICS, required: tuple[str, ...] = ()) -> pd.DataFrame:
    """The one barrier-table builder (lmc_core's families and any nn.Module's paths alike). One row per (*by, split,
    metric, definition): barrier height, instability and its unit, whether it is
    below the 2 threshold (None when the barrier is not finite), and beside every definition the path's `chord`
    instability and whether the path is convex (chord at most verdict.CONVEX_TOL: no barrier).

    A metric whose values in a group are all NaN is taken as one the group does not have (another panel's) and has
    no rows, unless it is in `required` (a metric the group was measured in, e.g. a path's loss): then its rows are
    NaN and its verdict "not finite", never a convex path."""
    rows = []
    keys = [*by, "split"]
    present = [m for m in metrics if m in curves]
    for ident, alpha, values in _groups(curves, keys, present):
        a = None
        for metric, v in zip(present, values):
            if metric not in required and np.isnan(v).all():  # a metric this group does not have (another panel's)
                continue
            a = B.check_alphas(alpha) if a is None else a
            rows += _metric_rows(ident, metric, a, v)
    if not rows:
        return pd.DataFrame(rows)
    cols = {k: [r[k] for r in rows] for k in rows[0]}  # pd.DataFrame(rows), float columns given as arrays (faster)
    return pd.DataFrame({k: np.array(c, dtype=np.float64) if k in _FLOATS else c for k, c in cols.items()})


_FLOATS = ("endpoint_mean", "max_on_path", "barrier", "instability", "chord_instability")


def _groups(curves: pd.DataFrame, keys: list[str], metrics: list[str]):
    """(key columns' values, alphas, [values of each metric]) of every group of `keys`, in groupby's order (sorted
    keys), each sorted by alpha; float64 arrays. A single key of names that sort in Python (one pair's splits) is
    grouped with numpy: pandas' groupby costs about a millisecond per call."""
    dtype = curves[keys[0]].dtype
    if len(keys) == 1 and pd.api.types.is_string_dtype(dtype) and not isinstance(dtype, pd.CategoricalDtype):
        col = curves[keys[0]].to_numpy()
        try:
            names = sorted(set(col.tolist()))
        except TypeError:  # names that do not sort in Python (NaN among strings): pandas' order
            names = None
        if names is not None and all(isinstance(n, str) for n in names):
            alpha = curves["alpha"].to_numpy(np.float64)
            cols = [curves[m].to_numpy(np.float64) for m in metrics]
            for name in names:
                idx = np.flatnonzero(col == name)
                idx = idx[np.argsort(alpha[idx], kind="stable")]
                yield {keys[0]: name}, alpha[idx], [c[idx] for c in cols]
            return
    for key, d in curves[[*keys, "alpha", *metrics]].groupby(keys):
        d = d.sort_values("alpha")
        yield (dict(zip(keys, key if isinstance(key, tuple) else (key,))), d["alpha"].to_numpy(np.float64),
               [d[m].to_numpy(np.float64) for m in metrics])


def threshold_words(unit: str, threshold: float = B.STABILITY_THRESHOLD_PCT) -> str:
    """'2 % threshold' or '2-point threshold', as fits the unit (ConfigError unless threshold is a number > 0)."""
    B.check_threshold(threshold)
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
    """'m ± se' (or just 'm' when there is no spread); digits: an integer from 0 to 15."""
    check_int("digits", digits, 0, 15)
    if not np.isfinite(mean):
        return "not finite"
    return f"{mean:.{digits}f}" + ("" if not np.isfinite(se) else f" ± {se:.{digits}f}")


def criterion_of(metric: str) -> Criterion:
    """The criterion a metric's barrier is judged by: Frankle et al.'s 2 points for a rate (the error), the 2 % of
    the endpoints' mean for a loss or perplexity (criteria.RELATIVE_LOSS)."""
    return FRANKLE_CRITERION if METRIC_SCALE[metric] == "absolute" else RELATIVE_LOSS


def judge_barriers(barriers: pd.DataFrame, split: str, metric: str, definition: str = B.DEFAULT,
                   unit_col: str | None = None, unit_name: str = "pair", question: str = "",
                   reference: str = "") -> F.Finding:
    """The threshold Finding of a barrier table (barrier_table) for one split and metric under `definition`: the
    instabilities summarised per `unit_col` unit (e.g. "init"), judged by criterion_of(metric), convex paths
    tagged from the table's chord column (findings.threshold)."""
    check_choice("definition", definition, B.DEFINITIONS)
    if barriers.empty:
        raise ValueError("barriers: the table has no rows (no pairs): nothing to judge")
    rows = barriers[(barriers.split == split) & (barriers.metric == metric) & (barriers.definition == definition)]
    if rows.empty:
        raise ValueError(f"no barriers for split={split!r}, metric={metric!r}, definition={definition!r}")
    return F.threshold(rows.instability.to_numpy(float), rows.chord_instability.to_numpy(float),
                       None if unit_col is None else rows[unit_col].to_numpy(), criterion=criterion_of(metric),
                       question=question, metric=f"{split} {LABELS.get(metric, metric)}, barrier `{definition}`",
                       unit_name=unit_name, reference=reference, bounds=bounds_of(metric, definition))


def bounds_of(metric: str, definition: str) -> tuple:
    """The values an instability can take: `mean`, `chord` and `subchord` are never below 0 (the path's maximum is
    at least each endpoint); an error barrier never exceeds 100 points. `midpoint` may be negative."""
    lo = 0.0 if definition in ("mean", "chord", "subchord") else None
    return lo, (100.0 if METRIC_SCALE[metric] == "absolute" else None)
