"""A learning-rate x regulariser grid of model pairs, as a table with one row per pair (columns optimizer, width, lr,
fisher, pair, diverged, collapsed, endpoint_error and the pair's measures; notebook 04): which cells trained, a
measure as a [pairs x trained learning rates] matrix, paired differences between regulariser weights, the median
pair, and study 5's raw-midpoint reading of the grid. Pair i has the same seeds in every cell, so a pair is the
independent unit and matrices are paired by it. The findings layer turns these into verdicts.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.stats import spearmanr

CELL = ["optimizer", "width", "lr", "fisher"]
MIN_LRS = 3  # a rank correlation over fewer learning rates says nothing


def budget_steps(lr: float, steps: int, budget: float, multiple: int = 50) -> int:
    """Training steps of a cell at learning rate `lr`: `steps`, or ceil(budget / lr) rounded up to a multiple of
    `multiple` where lr x steps falls short of `budget` (steps scaled with 1/lr, so a low rate travels as far;
    budget 0: always `steps`)."""
    return max(steps, int(np.ceil(budget / lr / multiple - 1e-9)) * multiple if budget > 0 else 0)


def middle_points(grid: list, n: int) -> list:
    """The n points of `grid` nearest its middle (ties: the later one), in grid order; all of it for n = 0."""
    if not n or n >= len(grid):
        return list(grid)
    mid = (len(grid) - 1) / 2
    return [grid[i] for i in sorted(sorted(range(len(grid)), key=lambda i: (abs(i - mid), -i))[:n])]


def mark_trained(table: pd.DataFrame, margin_pp: float) -> pd.DataFrame:
    """The table with a `trained` column: the cell (optimizer, width, lr, lambda) has no diverged or collapsed
    pair and its endpoints' mean test error is at most `margin_pp` points above the best cell of its optimizer
    (and width)."""
    t = table.copy()
    ok = ~t.diverged.astype(bool) & ~t.collapsed.astype(bool) if "endpoint_error" in t else pd.Series(False, t.index)
    cell_err = t[ok].groupby(CELL).endpoint_error.mean()
    bad_cells = set(t[~ok].set_index(CELL).index)
    best = cell_err.groupby(["optimizer", "width"]).min()
    good = {c for c, e in cell_err.items() if c not in bad_cells and e <= best[(c[0], c[1])] + margin_pp / 100}
    t["trained"] = [tuple(r) in good for r in t[CELL].itertuples(index=False)]
    return t


def lr_matrix(table: pd.DataFrame, opt: str, lam: float, column: str) -> pd.DataFrame:
    """[pairs x trained learning rates] of one column for (optimizer, lambda); pairs missing a column dropped."""
    t = table[table.trained & (table.optimizer == opt) & (table.fisher == lam)]
    return t.pivot_table(index="pair", columns="lr", values=column, aggfunc="first").dropna(axis=0)


def fisher_differences(table: pd.DataFrame, opt: str, lam: float, column: str) -> tuple[list, pd.Series]:
    """The learning rates at which EVERY lambda trained, and per pair the mean over them of column(lambda) -
    column(0) (paired: the same seeds in every cell)."""
    t = table[table.optimizer == opt]
    common = [lr for lr, g in t.groupby("lr") if g.trained.all() and g.fisher.nunique() == t.fisher.nunique()]
    s = t[t.lr.isin(common)]
    diff = s[s.fisher == lam].groupby("pair")[column].mean() - s[s.fisher == 0].groupby("pair")[column].mean()
    return common, diff.dropna()


def lowest_lr(table: pd.DataFrame, opt: str, column: str) -> float | None:
    """The trained lambda = 0 learning rate with the lowest mean `column` (None when no lambda = 0 cell trained)."""
    t = table[table.trained & (table.optimizer == opt) & (table.fisher == 0)]
    return float(t.groupby("lr")[column].mean().idxmin()) if len(t) else None


def median_pair(table: pd.DataFrame, column: str = "barrier_wm") -> pd.Series | None:
    """The trained pair whose `column` is the median of all trained pairs (the lower median)."""
    t = table[table.trained].sort_values(column)
    return t.iloc[(len(t) - 1) // 2] if len(t) else None


def raw_midpoint(ran: pd.DataFrame, pairs: int) -> dict:
    """Study 5's sweet-spot measure per optimizer (λ = 0): where the raw test loss at the midpoint of the aligned
    path (column midpoint_wm) is lowest, where the endpoints' loss is, and their Spearman ρ over learning rates.
    Study 5 read it off the whole grid, so every cell whose `pairs` pairs all ran enters, trained or not;
    optimizers with fewer than MIN_LRS such learning rates are left out."""
    out = {}
    whole = ran.groupby(["optimizer", "lr", "fisher"]).filter(lambda c: len(c) == pairs)
    for opt, g in whole[whole.fisher == 0].groupby("optimizer", sort=False):
        m = g.groupby("lr")[["midpoint_wm", "endpoint_loss"]].mean()
        if len(m) >= MIN_LRS:
            out[opt] = {"lr": float(m.midpoint_wm.idxmin()), "endpoint_lr": float(m.endpoint_loss.idxmin()),
                        "rho_endpoint_loss": float(spearmanr(m.midpoint_wm, m.endpoint_loss).statistic),
                        "same_argmin": bool(m.midpoint_wm.idxmin() == m.endpoint_loss.idxmin()), "lrs": int(len(m))}
    return out
