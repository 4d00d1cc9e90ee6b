"""When a copy groks: the sustained grok of a monitored test accuracy (criteria.GROK_ACCURACY held for a window
of evaluations, so a transient spike does not count), and the grok steps of a grid's cells over their seeds."""
from __future__ import annotations

import numpy as np
import pandas as pd

from .criteria import GROK_ACCURACY


def _held(ok: np.ndarray, evals: int) -> np.ndarray:
    """Per evaluation: from here ok holds for `evals` evaluations (evals <= 0: to the end of the run)."""
    if evals <= 0 or not len(ok):  # from here to the end of the run (suffix-all of ok)
        return np.flip(np.logical_and.accumulate(np.flip(ok))) if len(ok) else ok
    # a whole window of `evals` evaluations: a crossing too close to the end to be held is not a grok
    return np.array([i + evals <= len(ok) and bool(ok[i: i + evals].all()) for i in range(len(ok))], dtype=bool)


def grok_table(curves: pd.DataFrame, copies: pd.DataFrame, diverged: dict, evals: int = 0) -> pd.DataFrame:
    """Per copy: when it fit the training set (first logged step with train accuracy >= GROK_ACCURACY), when its
    test accuracy first reached it (`first_hit_step`), when it grokked (`grok_step`: the first logged step from
    which test accuracy stays >= GROK_ACCURACY for `evals` consecutive evaluations — a crossing in the run's last
    `evals - 1` evaluations cannot be held that long and is not counted; evals = 0: from there to the end of the
    run; NaN if it never did), `late_step` (held from there to the end, but too late to complete the window), the
    final accuracies and weight norm. curves: rows (copy, step, train_acc, test_acc, weight_norm); copies: rows
    (copy, weight_decay, fisher, seed); diverged: {copy: step}."""
    rows = []
    for r in copies.itertuples():
        g = curves[curves["copy"] == r.copy].sort_values("step")
        steps, ok = g.step.to_numpy(float), g.test_acc.to_numpy(float) >= GROK_ACCURACY
        stay, tail, gone = _held(ok, evals), _held(ok, 0), r.copy in diverged
        mem = g[g.train_acc >= GROK_ACCURACY].step
        last = g.iloc[-1] if len(g) else None
        rows.append({"copy": r.copy, "weight_decay": r.weight_decay, "fisher": r.fisher, "seed": r.seed,
                     "diverged": gone, "memorised_step": float(mem.iloc[0]) if len(mem) else np.nan,
                     "first_hit_step": float(steps[ok][0]) if ok.any() and not gone else np.nan,
                     "grok_step": float(steps[stay][0]) if stay.any() and not gone else np.nan,
                     "late_step": float(steps[tail][0]) if tail.any() and not stay.any() and not gone else np.nan,
                     "final_train_acc": float(last.train_acc) if last is not None else np.nan,
                     "final_test_acc": float(last.test_acc) if last is not None else np.nan,
                     "final_weight_norm": float(last.weight_norm) if last is not None else np.nan})
    out = pd.DataFrame(rows)
    out["delay"] = out.grok_step - out.memorised_step
    return out


def cell_table(grok: pd.DataFrame) -> pd.DataFrame:
    """Per (weight decay, lambda): seeds, how many fit the training set and how many grokked, the median grok step
    with its range over seeds (a seed that did not grok counts as later than every step: the median and the upper
    end are then infinite), the median final test accuracy; `fits`: every seed fit, `no_fit`: none did."""
    rows = []
    for (wd, lam), g in grok.groupby(["weight_decay", "fisher"]):
        steps = g.grok_step.fillna(np.inf).to_numpy()
        fit = np.isfinite(g.memorised_step) | np.isfinite(g.grok_step)
        rows.append({"weight_decay": wd, "fisher": lam, "seeds": len(g), "fit": int(fit.sum()),
                     "grokked": int(np.isfinite(g.grok_step).sum()), "median_grok_step": float(np.median(steps)),
                     "min_grok_step": float(steps.min()), "max_grok_step": float(steps.max()),
                     "median_final_test_acc": float(g.final_test_acc.median()),
                     "transient_only": int((np.isfinite(g.first_hit_step) & ~np.isfinite(g.grok_step)).sum())})
    out = pd.DataFrame(rows)
    out["fits"] = out.fit == out.seeds
    out["no_fit"] = out.fit == 0
    return out


def grokked_seeds(grok: pd.DataFrame, weight_decay: float, fisher: float) -> pd.DataFrame:
    """The copies of one cell that grokked and still hold GROK_ACCURACY at the end (where they are interpolated),
    sorted by seed."""
    cell = grok[(grok.weight_decay == weight_decay) & (grok.fisher == fisher) & ~grok.diverged.astype(bool)]
    return cell[np.isfinite(cell.grok_step) & (cell.final_test_acc >= GROK_ACCURACY)].sort_values("seed")


def steps_words(x: float, never: str = "∞") -> str:
    """A step as an integer, or `never` when it is not finite (a seed that did not grok)."""
    return f"{int(x)}" if np.isfinite(x) else never


def grok_range(c, sep: str = " ", never: str = "∞") -> str:
    """A cell's (a cell_table row's) median grok step and its [range] over seeds, e.g. "850 [600–2025]"."""
    low, high = steps_words(c.min_grok_step), steps_words(c.max_grok_step)
    return f"{steps_words(c.median_grok_step, never)}{sep}[{low}–{high}]"
