"""Linear assignment steps shared by weight and activation matching (float64, maximising)."""
from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment

from ..domains import MAX_WIDTH
from .check import check_int


def assign(cost: np.ndarray) -> np.ndarray:
    """p maximising sum_i cost[i, p[i]] for a square cost matrix (ValueError otherwise, or for non-finite costs)."""
    if cost.ndim != 2 or cost.shape[0] != cost.shape[1]:
        raise ValueError(f"assign needs a square cost matrix [n, n]; got shape {tuple(cost.shape)}")
    if not np.isfinite(cost).all():
        raise ValueError("the cost matrix holds NaN or infinite values (are the weights or activations finite?)")
    rows, cols = linear_sum_assignment(cost, maximize=True)
    p = np.empty(cost.shape[0], dtype=np.int64)
    p[rows] = cols
    return p


def score(cost: np.ndarray, p: np.ndarray) -> float:
    """sum_i cost[i, p[i]] in float64."""
    return float(cost[np.arange(len(p)), p].sum(dtype=np.float64))


def assign_heads(c_qk: np.ndarray, c_vo: np.ndarray, n_heads: int, qk_units: bool = True
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Joint optimum over a head permutation and within-head Q/K and V/O unit permutations.

    c_qk, c_vo: [H*hd, H*hd] unit-to-unit costs. For every (head i of A, head j of B) the two
    within-head assignments are solved; their optimal scores are the cost of pairing i with j, and
    one assignment over heads picks the pairing. The objective is a sum over heads of independent
    within-head terms, so this is the exact joint optimum. qk_units=False holds the Q/K units of a head in their
    order (rotary positions): that block's score is its trace. Returns the flat (qk, vo) indices. n_heads: an integer
    >= 1 dividing the number of units (ArgumentError / ValueError otherwise).
    """
    n_heads = check_int("n_heads", n_heads, 1, MAX_WIDTH)
    n = c_qk.shape[0]
    if c_qk.shape != (n, n) or c_vo.shape != (n, n) or n % n_heads:
        raise ValueError(f"assign_heads needs two square cost matrices of n_heads={n_heads} x head_dim units; got "
                         f"{tuple(c_qk.shape)} and {tuple(c_vo.shape)}")
    hd = n // n_heads
    blocks_qk = c_qk.reshape(n_heads, hd, n_heads, hd)
    blocks_vo = c_vo.reshape(n_heads, hd, n_heads, hd)
    pair = np.empty((n_heads, n_heads))
    within_qk = np.empty((n_heads, n_heads, hd), dtype=np.int64)
    within_vo = np.empty((n_heads, n_heads, hd), dtype=np.int64)
    for i in range(n_heads):
        for j in range(n_heads):
            bq, bv = blocks_qk[i, :, j, :], blocks_vo[i, :, j, :]
            within_qk[i, j] = assign(bq) if qk_units else np.arange(hd)
            within_vo[i, j] = assign(bv)
            pair[i, j] = score(bq, within_qk[i, j]) + score(bv, within_vo[i, j])
    heads = assign(pair)
    base = (heads * hd)[:, None]
    qk = (base + within_qk[np.arange(n_heads), heads]).reshape(-1)
    vo = (base + within_vo[np.arange(n_heads), heads]).reshape(-1)
    return qk, vo
