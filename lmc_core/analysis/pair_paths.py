"""Many pairs of fine-tuned endpoints and the paths between them: the rows of an evaluated path, its barrier table
with the distances between the endpoints, a collector that keeps them in order, and where a classifier's training
ended (learned? still falling?).

Used by notebook 03 (the LM part and the MiniLM part alike); any family's evaluation result works.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from ..families import family_of
from .criteria import LEARNED_FRACTION, PLATEAU_DROP
from .diagnostics import weight_distance
from .interpolate import interpolate_states
from .metrics import barrier_table

LATE = 0.4  # "still falling" is measured over the last 40 % of the monitored steps (criteria.PLATEAU_DROP)


def curve_frame(model_kind: str, comparison: str, pair: int, split: str, alphas, res, metrics) -> pd.DataFrame:
    """Rows (alpha, loss[, ppl], error) of one evaluated path (`res`: a family's EvalResult over the alphas;
    `metrics`: the family's metric names; ppl only where the family has it)."""
    d = {"model": model_kind, "comparison": comparison, "pair": pair, "split": split, "alpha": alphas,
         "loss": res.loss, "error": res.error}
    if "ppl" in metrics:
        d["ppl"] = res.ppl
    return pd.DataFrame(d)


def pair_distances(a: dict, b: dict, keys=None, start: dict | None = None) -> dict:
    """Distance between two K=1 endpoints over `keys` (or all): L2, RMS per parameter, cosine, the number of
    parameters compared, and — when both left from one `start` — the L2 distance relative to how far they travelled
    from it (the mean of |A - start| and |B - start|; comparable across tuning modes), else NaN."""
    dist = weight_distance(a, b, keys)
    travelled = float("nan")
    if start is not None:
        ta, tb = weight_distance(start, a, keys)["l2"], weight_distance(start, b, keys)["l2"]
        travelled = dist["l2"] / max(0.5 * (ta + tb), 1e-12)
    return {"l2": dist["l2"], "rms": dist["rms"], "relative_to_travel": travelled, "cosine": dist["cosine"],
            "params_compared": dist["params"]}


def pair_table(curve: pd.DataFrame, distances: dict) -> pd.DataFrame:
    """The barrier table (metrics.barrier_table: every split, metric and definition, with `chord` and the convex
    tag) of one pair's curve (columns model, comparison, pair, split, alpha, metrics), with its distances."""
    return barrier_table(curve, ("model", "comparison", "pair")).assign(**distances)


class PairPaths:
    """The curves and barrier rows of many pairs' paths of one model kind, kept in the order they are added."""

    def __init__(self, model_kind: str, alphas, device):
        self.model_kind, self.alphas, self.device = model_kind, alphas, device
        self.curves: list[pd.DataFrame] = []
        self.rows: list[pd.DataFrame] = []

    def add(self, comparison: str, pair: int, cfg, a: dict, b: dict, examples, batch_size: int, keys=None,
            start: dict | None = None) -> None:
        """Evaluate the linear path A -> B (over `keys`, or every parameter) of a family model `cfg` on `examples`
        (the "test" split) and keep its curve and rows; `start`: the endpoints' common start (pair_distances)."""
        fam = family_of(cfg)
        res = fam.evaluate(cfg, interpolate_states(a, b, self.alphas, keys), examples, batch_size=batch_size,
                           device=self.device)
        curve = curve_frame(self.model_kind, comparison, pair, "test", self.alphas, res, fam.metrics)
        self.keep(curve, pair_distances(a, b, keys, start))

    def keep(self, curve: pd.DataFrame, distances: dict) -> None:
        """Keep a curve evaluated elsewhere (one pair, any splits) and its rows."""
        self.curves.append(curve)
        self.rows.append(pair_table(curve, distances))

    def tables(self) -> tuple[pd.DataFrame, pd.DataFrame]:
        """(barrier rows with distances, curves), each one table."""
        return pd.concat(self.rows, ignore_index=True), pd.concat(self.curves, ignore_index=True)


def endpoint_state(history: pd.DataFrame, chance: float) -> dict:
    """Where a classifier's copies ended, from their training log (columns step, test_loss, test_acc; mean over
    copies): test error and loss, the loss of a uniform guess `chance`, the fraction by which the test loss fell
    over the last 40 % of the monitored steps, whether it learned (test loss below LEARNED_FRACTION x chance) and
    whether it converged (learned, and no longer falling by more than PLATEAU_DROP)."""
    h = history.dropna(subset=["test_loss"]) if "test_loss" in history else pd.DataFrame()
    if h.empty:
        return {"test_error": float("nan"), "test_loss": float("nan"), "chance_loss": chance, "converged": False}
    by_step = h.groupby("step")[["test_loss", "test_acc"]].mean().sort_index()
    last = by_step.iloc[-1]
    early = by_step.index <= by_step.index.max() * (1 - LATE)
    before = by_step[early].iloc[-1] if early.any() else by_step.iloc[0]
    drop = float((before.test_loss - last.test_loss) / max(before.test_loss, 1e-12))
    learned = bool(last.test_loss < LEARNED_FRACTION * chance)
    return {"test_error": float(1 - last.test_acc), "test_loss": float(last.test_loss), "chance_loss": chance,
            "loss_drop_last_40pct": drop, "learned": learned, "converged": bool(drop < PLATEAU_DROP and learned)}


def not_converged(endpoints: pd.DataFrame | None) -> bool:
    """True if some run of an endpoints table (rows of endpoint_state) did not converge."""
    return endpoints is not None and not endpoints.empty and not bool(np.all(endpoints.converged))
