"""The verdict layer: convex paths are no barrier, intervals over independent units, inconclusive words."""
import numpy as np
import pytest

from lmc_core.analysis import barrier as B
from lmc_core.analysis.verdict import (CONVEX_TOL, compare, difference, interval, is_convex, judge, share,
                                       unit_bootstrap)

ALPHAS = np.linspace(0, 1, 11)


def inst(curve, definition):
    return B.instability(ALPHAS, curve, definition, "relative")


def test_a_monotone_path_is_convex_and_its_mean_barrier_is_only_the_endpoint_gap():
    curve = 3.0 - 0.2 * ALPHAS  # decreasing, no bump
    mean, chord = inst(curve, "mean"), inst(curve, "chord")
    assert mean > 2.0 and chord <= CONVEX_TOL and is_convex(chord)  # 'mean' reads half the gap as a barrier
    v = judge([mean] * 4, [chord] * 4, "test loss, barrier `mean`", "% of endpoints' mean")
    assert v.status == "convex"
    assert "no barrier" in v.text() and "difference between the endpoints" in v.text()


def test_a_valley_is_no_barrier_either():
    curve = 60 - 108 * ALPHAS + 108 * ALPHAS ** 2  # 60 -> 33 -> 60: a deep valley
    chord = inst(curve, "chord")
    assert is_convex(chord)
    assert judge([inst(curve, "mean")] * 3, [chord] * 3, "loss", "%").status == "convex"


def test_a_bump_above_the_threshold_with_a_tight_interval_is_unstable_and_below_is_stable():
    bumps = [np.sin(np.pi * ALPHAS) * h + 3.0 for h in (0.30, 0.32, 0.31, 0.29)]
    v = judge([inst(c, "mean") for c in bumps], [inst(c, "chord") for c in bumps], "loss", "% of endpoints' mean")
    assert v.status == "unstable" and v.interval.low >= 2.0 and "unstable: at or above the 2 % threshold" in v.text()
    small = [np.sin(np.pi * ALPHAS) * h + 3.0 for h in (0.01, 0.012, 0.011, 0.009)]
    s = judge([inst(c, "mean") for c in small], [inst(c, "chord") for c in small], "loss", "% of endpoints' mean")
    assert s.status == "stable" and "stable: below" in s.text()


def test_an_interval_that_crosses_the_threshold_is_inconclusive():
    v = judge([0.5, 3.5, 1.0, 3.0], [0.5, 3.5, 1.0, 3.0], "test error, barrier `mean`", "percentage points")
    assert v.interval.low < 2.0 <= v.interval.high
    assert v.status == "inconclusive" and "inconclusive" in v.text() and "2-point threshold" in v.text()


def test_two_pairs_bound_little_and_one_pair_bounds_nothing():
    one = judge([5.0], [5.0], "loss", "%")
    assert one.status == "too few" and "no verdict" in one.text()
    two = judge([1.0, 9.0], [1.0, 9.0], "loss", "%")
    assert two.status == "inconclusive"  # the interval of two far-apart pairs spans the threshold


def test_not_finite_is_never_a_verdict():
    assert judge([1.0, float("nan")], [1.0, 1.0], "loss", "%").status == "not finite"


def test_pairs_sharing_an_initialisation_are_resampled_as_units():
    # two initialisations whose pairs agree within but differ between: the unit interval must be much wider
    # than the one that treats the eight pairs as independent
    values = [1.0, 1.1, 0.9, 1.0, 5.0, 5.1, 4.9, 5.0]
    units = [0, 0, 0, 0, 1, 1, 1, 1]
    naive, nested = interval(values), interval(values, units, "initialisation")
    assert nested.estimate == pytest.approx(naive.estimate)
    assert (nested.high - nested.low) > 1.3 * (naive.high - naive.low)
    assert "2 initialisations, 8 pairs in all" in nested.text()


def test_differences_and_comparisons_say_inconclusive_when_intervals_overlap():
    d = difference([3.0, 3.2, 2.9, 3.1], [1.0, 1.1, 0.9, 1.2])
    assert d.low > 0
    a, b = interval([3.0, 3.2, 2.9, 3.1]), interval([1.0, 1.1, 0.9, 1.2])
    assert "higher for A than for B" in compare(a, b, "A", "B", "the barrier")
    c = interval([0.5, 3.0, 1.0, 2.5])
    assert "inconclusive" in compare(c, b, "C", "B", "the barrier")


def test_a_derived_number_gets_its_distribution_from_resampled_units():
    groups = [np.array([0, 25]), np.array([25, 25]), np.array([25, 50])]
    dist = unit_bootstrap(groups, lambda gs: float(np.median(np.concatenate(gs))), n_resamples=500, seed=1)
    assert 0 < share(dist, 25.0) < 1 and set(np.unique(dist)) <= {0.0, 12.5, 25.0, 37.5, 50.0}
