"""Rows of notebook 03's comparison table: one per (split, metric, barrier definition) of a pair's path, with the
distances between its endpoints (shared by the LM part and the encoder part)."""
from __future__ import annotations

import pandas as pd

from ..analysis import barrier as B
from ..analysis.diagnostics import weight_distance
from ..analysis.metrics import METRIC_SCALE, UNITS
from ..analysis.verdict import is_convex



def pair_rows(model_kind: str, comparison: str, pair: int, a, b, curve: pd.DataFrame, metrics, keys=None,
              start=None, extra: dict | None = None) -> list[dict]:
    """One row per (split, metric, definition) of a pair's curve, with the path's chord and convex tag, and the
    distance between the endpoints: L2, RMS per parameter and — when both endpoints left from one `start` —
    relative to the distance they travelled from it (comparable across tuning modes)."""
    dist = weight_distance(a, b, keys)
    travelled = float("nan")
    if start is not None:
        ta = weight_distance(start, a, keys)["l2"]
        tb = weight_distance(start, b, keys)["l2"]
        travelled = dist["l2"] / max(0.5 * (ta + tb), 1e-12)
    out = []
    for split, g in curve.groupby("split"):
        g = g.sort_values("alpha")
        for metric in metrics:
            scale = METRIC_SCALE[metric]
            chord = B.instability(g.alpha, g[metric], "chord", scale)
            for d in B.DEFINITIONS:
                inst = B.instability(g.alpha, g[metric], d, scale)
                out.append({"model": model_kind, "comparison": comparison, "pair": pair, "split": split,
                            "metric": metric, "definition": d, "barrier": B.barrier(g.alpha, g[metric], d),
                            "instability": inst, "unit": UNITS[scale], "stable": B.is_stable(inst),
                            "chord_instability": chord, "convex": is_convex(chord),
                            "endpoint_mean": 0.5 * (g[metric].iloc[0] + g[metric].iloc[-1]),
                            "l2": dist["l2"], "rms": dist["rms"], "relative_to_travel": travelled,
                            "cosine": dist["cosine"], "params_compared": dist["params"], **(extra or {})})
    return out


def curve_frame(model_kind: str, comparison: str, pair: int, split: str, alphas, res, fam) -> pd.DataFrame:
    """Rows (alpha, loss[, ppl], error) of one evaluated path."""
    d = {"model": model_kind, "comparison": comparison, "pair": pair, "split": split, "alpha": alphas,
         "loss": res.loss, "error": res.error}
    if "ppl" in fam.metrics:
        d["ppl"] = res.ppl
    return pd.DataFrame(d)
