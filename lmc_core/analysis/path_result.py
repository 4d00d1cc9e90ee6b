"""What a linear path reports: the curve, the barriers under every definition and the verdict in the notebooks'
words (lmc_core.analysis.barrier for the definitions, lmc_core.analysis.findings for the convex tag and the words).

Scales (barrier.py): the loss barrier's instability is relative (% of the endpoints' mean loss), the error
barrier's is absolute (percentage points of error; Frankle et al. 2020 call a pair stable below 2 points). A
single pair has no interval, so its finding is "too few units" unless its path is convex or not finite;
`judge_paths` judges several pairs with an interval over them.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Sequence

import pandas as pd

from . import barrier as B
from . import findings as F
from ..config import check_choice
from .metrics import barrier_table, criterion_of

METRICS = ("loss", "error")


def barrier_rows(curve: pd.DataFrame, required: tuple[str, ...] = ("loss",)) -> pd.DataFrame:
    """One row per (split, metric, definition) of one pair's curve (metrics.barrier_table, the one builder). A
    metric that was measured (`required`: the loss always, the error where the path had one) has rows even when its
    values are all NaN: NaN barriers, verdict "not finite"; any other metric whose values are all NaN (an error
    without labels) has none."""
    return barrier_table(curve, (), METRICS, required)


def _judge(inst: Sequence[float], chord: Sequence[float], split: str, metric: str, definition: str,
           threshold: float | None = None, units=None, unit_name: str = "pair") -> F.Finding:
    crit = criterion_of(metric)
    if threshold is not None and threshold != crit.threshold:
        threshold = B.check_threshold(threshold)
        crit = replace(crit, threshold=float(threshold), source=f"a threshold of {threshold:g} set by the caller")
    return F.threshold(inst, chord, units, criterion=crit, question=f"{metric} ({split})",
                       metric=f"barrier `{definition}`", unit_name=unit_name)


@dataclass
class PathResult:
    """A linear path between two models.

    curve: one row per (split, alpha): loss (mean per example, in the loss function's unit; nats for the default
      cross-entropy), error (top-1, a fraction; NaN without labels), examples (how many losses were averaged).
    barriers: one row per (split, metric, definition): barrier, instability (% of the endpoints' mean for the
      loss, percentage points for the error), unit, the chord instability and convex (chord <= criteria.CONVEX_TOL).
    verdicts: one findings.Finding per (split, metric) under `definition` (a single pair: the value, no verdict
      unless its path is convex or not finite). notes: how buffers were handled and how the alphas were
      evaluated. mode: "batched", "one alpha at a time" or "family ensemble".
    A result of path_result (linear_path) builds curve, barriers and verdicts on first access, with the same values
    (about a millisecond of pandas, which linear_path's call itself does not spend).
    """

    curve: pd.DataFrame
    barriers: pd.DataFrame
    verdicts: dict = field(default_factory=dict)
    notes: list = field(default_factory=list)
    mode: str = ""
    definition: str = B.DEFAULT

    def barrier(self, split: str | None = None, metric: str = "loss", definition: str | None = None) -> float:
        """One barrier value (split default: the first)."""
        b = self.barriers
        split = split or b["split"].iloc[0]
        row = b[(b.split == split) & (b.metric == metric) & (b.definition == (definition or self.definition))]
        if row.empty:
            raise KeyError(f"no {metric} barrier for split {split!r}; splits: {sorted(set(b.split))}, "
                           f"metrics: {sorted(set(b.metric))}")
        return float(row["barrier"].iloc[0])

    def text(self) -> str:
        """The verdicts, one line each, then the notes."""
        return "\n".join([v.text() for v in self.verdicts.values()] + [f"note: {n}" for n in self.notes])

    def __repr__(self) -> str:
        return f"PathResult(mode={self.mode!r}, splits={sorted(set(self.curve.split))})\n{self.text()}"

    def __getattr__(self, name: str):
        """curve, barriers and verdicts of a result of path_result, built on first access (only attributes not set
        yet reach here)."""
        build = self.__dict__.get("_tables")
        if build is None or name not in ("curve", "barriers", "verdicts"):
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
        self.__dict__.update(build())
        self.__dict__.pop("_tables", None)
        return self.__dict__[name]

    def __getstate__(self) -> dict:
        """The fields, tables built (a pickle holds no builder)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


def path_result(curve, notes: list, mode: str, definition: str = B.DEFAULT,
                threshold: float | None = None, required: tuple[str, ...] = ("loss",)) -> PathResult:
    """Barriers and verdicts of one pair's curve (a DataFrame, or a function that makes it): the arguments checked
    now (ConfigError for a definition or a threshold out of their domain), the tables built on first access
    (PathResult.__getattr__). required: the metrics the path measured (barrier_rows: all NaN is "not finite")."""
    check_choice("definition", definition, B.DEFINITIONS)
    if threshold is not None:
        B.check_threshold(threshold)

    def tables() -> dict:
        c = curve() if callable(curve) else curve
        bars = barrier_rows(c, required)
        inst: dict[tuple, dict] = {}  # (split, metric) -> {definition: instability}, in the table's order
        if not bars.empty:
            for s, m, d, i in zip(*(bars[k].to_numpy() for k in ("split", "metric", "definition", "instability"))):
                inst.setdefault((s, m), {})[d] = i
        return {"curve": c, "barriers": bars, "verdicts": {
            (s, m): _judge([g[definition]], [g["chord"]], s, m, definition, threshold) for (s, m), g in inst.items()}}

    result = PathResult.__new__(PathResult)
    result.__dict__.update(notes=list(notes), mode=mode, definition=definition, _tables=tables)
    return result


def judge_paths(results: Sequence[PathResult], split: str | None = None, metric: str = "loss",
                definition: str | None = None, units=None, unit_name: str = "pair", threshold: float | None = None
                ) -> F.Finding:
    """The finding over several pairs' paths (findings.threshold): the instability summarised per independent unit
    (`units`: one label per pair, e.g. the shared initialisation; None: every pair its own unit), its 95 %
    interval from stats.MIN_UNITS units on (else the range and no verdict), judged by Frankle et al.'s 2 points for
    the error and 2 % of the endpoints' mean for the loss. A path whose curve is not finite makes the finding "not
    finite". Raises ValueError for no results ("no pairs"), ConfigError for a metric, definition or threshold out of
    their domains, KeyError when a path has no such split or metric."""
    results = list(results)
    if not results:
        raise ValueError("judge_paths: results is empty — there are no pairs to judge (give one PathResult per pair)")
    check_choice("metric", metric, METRICS)
    definition = check_choice("definition", definition, B.DEFINITIONS) if definition is not None \
        else results[0].definition
    if threshold is not None:
        B.check_threshold(threshold)
    bad = [type(r).__name__ for r in results if not isinstance(r, PathResult)]
    if bad:
        raise TypeError(f"judge_paths: results must be PathResults (of linear_path); got {bad[:3]}")
    if split is None:
        if results[0].barriers.empty:
            raise KeyError("judge_paths: the first path has no barriers (no split to judge)")
        split = results[0].barriers["split"].iloc[0]
    inst, chord = [], []
    for r in results:
        b = r.barriers
        g = b[(b.split == split) & (b.metric == metric)].set_index("definition")["instability"] if not b.empty \
            else pd.Series(dtype=float)
        if g.empty:
            raise KeyError(f"a path has no {metric} barrier on split {split!r}")
        inst.append(g[definition])
        chord.append(g["chord"])
    return _judge(inst, chord, split, metric, definition, threshold, units, unit_name)
