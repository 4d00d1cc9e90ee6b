"""Tables of barriers and instability computed from interpolation curves."""
from __future__ import annotations

import numpy as np
import pandas as pd

from . import barrier as B

METRICS = ("loss", "ppl", "error")


def barrier_table(curves: pd.DataFrame, by: tuple[str, ...] = ("pair",),
                  metrics: tuple[str, ...] = METRICS) -> pd.DataFrame:
    """One row per (*by, split, metric, definition): barrier height and instability %."""
    rows = []
    for key, d in curves.groupby([*by, "split"]):
        d = d.sort_values("alpha")
        ident = dict(zip([*by, "split"], key))
        for metric in metrics:
            ends = 0.5 * (d[metric].iloc[0] + d[metric].iloc[-1])
            for definition in B.DEFINITIONS:
                inst = B.instability(d.alpha, d[metric], definition)
                rows.append({**ident, "metric": metric, "definition": definition, "endpoint_mean": ends,
                             "max_on_path": float(d[metric].max()),
                             "barrier": B.barrier(d.alpha, d[metric], definition),
                             "instability_pct": inst, "stable": B.is_stable(inst)})
    return pd.DataFrame(rows)


def onset_of_stability(steps, instability_pct, threshold: float = B.STABILITY_THRESHOLD_PCT):
    """The first step from which instability stays below the threshold (None if never)."""
    s = np.asarray(steps)
    v = np.asarray(instability_pct, dtype=float)
    order = np.argsort(s)
    s, v = s[order], v[order]
    onset = None
    for i in range(len(s) - 1, -1, -1):
        if v[i] < threshold:
            onset = s[i]
        else:
            break
    return None if onset is None else int(onset)
