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
from ..config import check_real
from .metrics import barrier_table, criterion_of

METRICS = ("loss", "error")


def barrier_rows(curve: pd.DataFrame) -> pd.DataFrame:
    """One row per (split, metric, definition) of one pair's curve (metrics.barrier_table, the one builder; a metric
    whose values are all NaN has no rows)."""
    return barrier_table(curve, (), METRICS)


def _judge(inst: Sequence[float], chord: Sequence[float], split: str, metric: str, definition: str,
           threshold: float | None = None, units=None, unit_name: str = "pair") -> F.Finding:
    crit = criterion_of(metric)
    if threshold is not None and threshold != crit.threshold:
        check_real("threshold", threshold, 0, None, lo_open=True)
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
                threshold: float | None = None) -> PathResult:
    """Barriers and verdicts of one pair's curve (a DataFrame, or a function that makes it): the arguments checked
    now, the tables built on first access (PathResult.__getattr__)."""
    if definition not in B.DEFINITIONS:
        raise ValueError(f"definition={definition!r}; choose one of {list(B.DEFINITIONS)}")
    if threshold is not None and any(threshold != criterion_of(m).threshold for m in METRICS):
        check_real("threshold", threshold, 0, None, lo_open=True)

    def tables() -> dict:
        c = curve() if callable(curve) else curve
        bars = barrier_rows(c)
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
    the error and 2 % of the endpoints' mean for the loss."""
    if not results:
        raise ValueError("judge_paths needs at least one PathResult")
    definition = definition or results[0].definition
    split = split or results[0].barriers["split"].iloc[0]
    inst, chord = [], []
    for r in results:
        b = r.barriers
        g = b[(b.split == split) & (b.metric == metric)].set_index("definition")["instability"]
        if g.empty:
            raise KeyError(f"a path has no {metric} barrier on split {split!r}")
        inst.append(g[definition])
        chord.append(g["chord"])
    return _judge(inst, chord, split, metric, definition, threshold, units, unit_name)
