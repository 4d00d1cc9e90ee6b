"""What a linear path reports: the curve, the barriers under every definition and the verdict in the notebooks'
words (lmc_core.analysis.barrier for the definitions, lmc_core.analysis.verdict for the convex tag and the words).

Scales (barrier.py): the loss barrier's instability is relative (% of the endpoints' mean loss), the error
barrier's is absolute (percentage points of error; Frankle et al. 2020 call a pair stable below 2 points). A
single pair has no interval, so its verdict is "too few" unless its path is convex or not finite; `judge_paths`
judges several pairs with an interval over them.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import pandas as pd

from . import barrier as B
from .verdict import FRANKLE, Verdict, is_convex, judge

UNITS = {"loss": ("relative", "% of endpoints' mean"), "error": ("absolute", "percentage points")}
WHAT = {"loss": "loss", "error": "error"}


def _instability(alphas, values, definition: str, scale: str, b: float | None = None) -> float:
    b = B.barrier(alphas, values, definition) if b is None else b
    if scale == "absolute":
        return 100.0 * b
    ends = 0.5 * (values[0] + values[-1])
    return 100.0 * b / ends if ends != 0 and np.isfinite(ends) else float("nan")


def barrier_rows(curve: pd.DataFrame) -> pd.DataFrame:
    """One row per (split, metric, definition): barrier (in the metric's unit), instability, unit, convex."""
    rows = []
    for split, g in curve.groupby("split", sort=False):
        g = g.sort_values("alpha")
        a = g["alpha"].to_numpy()
        for metric, (scale, unit) in UNITS.items():
            if metric not in g or g[metric].isna().all():
                continue
            v = g[metric].to_numpy(dtype=float)
            bars = B.all_barriers(a, v)
            chord = _instability(a, v, "chord", scale, bars["chord"])
            for d in B.DEFINITIONS:
                rows.append({"split": split, "metric": metric, "definition": d, "barrier": bars[d],
                             "instability": _instability(a, v, d, scale, bars[d]), "unit": unit,
                             "convex": is_convex(chord)})
    return pd.DataFrame(rows, columns=["split", "metric", "definition", "barrier", "instability", "unit", "convex"])


def _judge(inst: Sequence[float], chord: Sequence[float], split: str, metric: str, definition: str,
           threshold: float, units=None, unit_name: str = "pair") -> Verdict:
    what = f"{WHAT[metric]} ({split}), barrier `{definition}`"
    return judge(inst, chord, what, UNITS[metric][1], units=units, unit_name=unit_name, threshold=threshold,
                 criterion=FRANKLE if metric == "error" else "")


@dataclass
class PathResult:
    """A linear path between two models.

    curve: one row per (split, alpha): loss (mean per example, in the loss function's unit; nats for the default
      cross-entropy), error (top-1, a fraction; NaN without labels), examples (how many losses were averaged).
    barriers: one row per (split, metric, definition): barrier, instability (% of the endpoints' mean for the
      loss, percentage points for the error), unit, convex (chord instability <= verdict.CONVEX_TOL).
    verdicts: one Verdict per (split, metric) under `definition`. notes: how buffers were handled and how the
      alphas were evaluated. mode: "batched", "one alpha at a time" or "family ensemble".
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


def path_result(curve: pd.DataFrame, notes: list, mode: str, definition: str = B.DEFAULT,
                threshold: float = B.STABILITY_THRESHOLD_PCT) -> PathResult:
    """Barriers and verdicts of one pair's curve."""
    if definition not in B.DEFINITIONS:
        raise ValueError(f"definition={definition!r}; choose one of {list(B.DEFINITIONS)}")
    bars = barrier_rows(curve)
    verdicts = {}
    for (split, metric), g in bars.groupby(["split", "metric"], sort=False):
        inst = g.set_index("definition")["instability"]
        verdicts[(split, metric)] = _judge([inst[definition]], [inst["chord"]], split, metric, definition, threshold)
    return PathResult(curve, bars, verdicts, list(notes), mode, definition)


def judge_paths(results: Sequence[PathResult], split: str | None = None, metric: str = "loss",
                definition: str | None = None, units=None, unit_name: str = "pair",
                threshold: float = B.STABILITY_THRESHOLD_PCT) -> Verdict:
    """The verdict over several pairs' paths: the mean instability with its bootstrap interval over the independent
    units (`units`: one label per pair, e.g. the shared initialisation; None: every pair its own unit)."""
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
