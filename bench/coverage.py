"""Measured coverage of every interval the findings layer prints, at n = 2, 3, 4, 5, 6, 10 independent units, on
normal and on skewed (gamma, shape 2) data (lmc_core.analysis.coverage), beside the percentile bootstrap and
Student's t (the one it replaced and the one it could have used). The test suite asserts >= 93 % wherever the layer prints an interval.

    python bench/coverage.py              # ~3 minutes on one core
    python bench/coverage.py --reps 20000
"""
from __future__ import annotations

import argparse
from datetime import date

import numpy as np
from scipy import stats as sps

from lmc_core.analysis import coverage as C
from lmc_core.analysis.stats import MIN_UNITS

SIZES = (2, 3, 4, 5, 6, 10)


def other(method: str, dist: str, n: int, reps: int, seed: int = 0) -> float:
    """Coverage of Student's t or the percentile bootstrap of the mean (one value per unit)."""
    rng = np.random.default_rng(seed)
    x = C.draw(dist, (reps, n), rng)
    m, se = x.mean(1), x.std(1, ddof=1) / np.sqrt(n)
    if method == "student t":
        t = sps.t.ppf(0.975, n - 1)
        lo, hi = m - t * se, m + t * se
    else:
        idx = rng.integers(0, n, (999, n))
        boot = x[:, idx].mean(-1)
        lo, hi = np.quantile(boot, [0.025, 0.975], axis=1)
    return float(np.mean((lo <= 0) & (0 <= hi)))


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=4000)
    a = ap.parse_args(argv)
    print(f"# coverage of nominal 95 % intervals, {a.reps} simulated designs per cell, {date.today()}; "
          f"the findings layer prints an interval from {MIN_UNITS} units on")
    print("| interval | data | " + " | ".join(f"n = {n}" for n in SIZES) + " |")
    print("|---|---|" + "---|" * len(SIZES))
    for dist in C.DISTS:
        for method in ("percentile bootstrap", "student t"):
            label = "replaced" if method.startswith("percentile") else "considered"
            print(f"| {method} ({label}) | {dist} | "
                  + " | ".join(f"{other(method, dist, n, a.reps):.3f}" for n in SIZES) + " |")
        for kind in C.KINDS:
            reps = a.reps if kind != "shared" else max(a.reps // 4, 300)
            cells = [f"{C.coverage(kind, dist, n, reps):.3f}" if not (kind == "shared" and n < 3) else "–"
                     for n in SIZES]
            print(f"| layer: {kind} | {dist} | " + " | ".join(cells) + " |")
    print(f"\n# share of the layer's intervals reaching more than half the data's range beyond the data ({a.reps} "
          "designs per cell; shared: a quarter of them)")
    print("| interval | data | " + " | ".join(f"n = {n}" for n in SIZES if n >= MIN_UNITS) + " |")
    print("|---|---|" + "---|" * len([n for n in SIZES if n >= MIN_UNITS]))
    for kind in ("mean", "shared"):
        for dist in C.DISTS:
            reps = a.reps if kind != "shared" else max(a.reps // 4, 300)
            print(f"| layer: {kind} | {dist} | " + " | ".join(f"{C.far(kind, dist, n, reps):.3f}" for n in SIZES
                                                          if n >= MIN_UNITS) + " |")


if __name__ == "__main__":
    main()
