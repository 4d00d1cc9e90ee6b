"""The findings layer: one vocabulary and one set of rules for every verdict a study prints (analysis/findings.py,
stats.py, criteria.py). Convex paths are no barrier, pairs are summarised within their unit, intervals are
printed only from MIN_UNITS units on, nulls state the smallest effect they could have seen."""
import numpy as np
import pytest

from lmc_core.analysis import barrier as B
from lmc_core.analysis import findings as F
from lmc_core.analysis import stats as S
from lmc_core.analysis.criteria import CONVEX_TOL, FRANKLE, RELATIVE_LOSS

ALPHAS = np.linspace(0, 1, 11)


def inst(curve, definition):
    return B.instability(ALPHAS, curve, definition, "relative")


def judge(values, chord=None, units=None, criterion=RELATIVE_LOSS):
    return F.threshold(values, values if chord is None else chord, units, criterion=criterion, question="q",
                       metric="test loss, barrier `mean`")


def test_a_monotone_path_is_convex_and_its_mean_barrier_is_only_the_endpoint_gap():
    curve = 3.0 - 0.2 * ALPHAS
    mean, chord = inst(curve, "mean"), inst(curve, "chord")
    assert mean > 2.0 and chord <= CONVEX_TOL
    f = judge([mean] * 6, [chord] * 6)
    assert f.verdict == F.NO_BARRIER and f.decided
    assert "no barrier" in f.text() and "endpoints' difference" in f.text()


def test_convex_paths_of_fewer_than_the_minimum_of_units_draw_no_verdict():
    """'No barrier' of several pairs is a claim about their kind: from 4 units (3 of 4 paths convex on one CPU, 4 of 4
    on another) it flipped between machines, so below stats.MIN_UNITS it is the range and the convex count, no
    verdict. One lone path (linear_path's verdict) is still described as convex."""
    curve = 3.0 - 0.2 * ALPHAS
    f = judge([inst(curve, "mean")] * 4, [inst(curve, "chord")] * 4)
    assert f.verdict == F.TOO_FEW and f.convex_pairs == 4 and "4 of 4 paths are convex" in f.text()
    assert judge([inst(curve, "mean")], [inst(curve, "chord")]).verdict == F.NO_BARRIER


def test_a_valley_is_no_barrier_either():
    curve = 60 - 108 * ALPHAS + 108 * ALPHAS ** 2
    assert judge([inst(curve, "mean")] * 5, [inst(curve, "chord")] * 5).verdict == F.NO_BARRIER


def test_bumps_above_the_threshold_are_unstable_and_small_ones_stable():
    bumps = [np.sin(np.pi * ALPHAS) * h + 3.0 for h in (0.30, 0.32, 0.31, 0.29, 0.30, 0.33)]
    f = judge([inst(c, "mean") for c in bumps], [inst(c, "chord") for c in bumps])
    assert f.verdict == F.UNSTABLE and f.low >= 2.0 and "at or above the 2 % threshold" in f.text()
    small = [np.sin(np.pi * ALPHAS) * h + 3.0 for h in (0.01, 0.012, 0.011, 0.009, 0.01)]
    s = judge([inst(c, "mean") for c in small], [inst(c, "chord") for c in small])
    assert s.verdict == F.STABLE and "stable: below" in s.text()


def test_an_interval_that_crosses_the_threshold_is_inconclusive_with_the_effect_it_could_detect():
    f = judge([0.5, 3.5, 1.0, 3.0, 2.2, 1.6], criterion=FRANKLE)
    assert f.low < 2.0 <= f.high and f.verdict == F.INCONCLUSIVE
    assert "2-point threshold" in f.text() and np.isfinite(f.detectable) and "80 % power" in f.text()


def test_fewer_units_than_the_minimum_give_the_range_and_no_verdict():
    for n in range(1, S.MIN_UNITS):
        f = judge([5.0 + i for i in range(n)])
        assert f.verdict == F.TOO_FEW and f.interval == "range" and "no verdict" in f.text()


def test_not_finite_is_never_a_verdict():
    assert judge([1.0, float("nan"), 2, 3, 4]).verdict == F.NOT_FINITE
    assert judge([1.0, 2, 3, 4, 5], [1, 2, 3, 4, float("inf")]).verdict == F.NOT_FINITE


def test_pairs_sharing_a_unit_are_one_unit():
    values = [1.0, 1.1, 0.9] * 2 + [5.0, 5.1, 4.9] * 2
    units = [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3]
    f = F.estimate(values, units, question="q", metric="m", unit="%", unit_name="initialisation")
    assert f.n_units == 4 and f.n_pairs == 12 and f.interval == "range"  # 4 units: not 12 independent pairs
    assert "4 initialisations, 12 pairs" in f.text()


def test_pairs_that_share_a_model_are_grouped_into_one_unit():
    assert S.units_of_pairs([0, 0, 1, 4], [1, 2, 2, 5]).tolist() == [0, 0, 0, 1]


def test_paired_differences_use_an_exact_sign_flip_test_and_state_its_smallest_p():
    three = F.paired([0.3, 0.2, 0.4], question="q", metric="m", unit="nats", expected=F.LOWER)
    assert three.min_p == pytest.approx(1 / 8) and three.verdict == F.TOO_FEW  # below 5 units: no verdict
    assert "range" in three.text() and "no verdict" in three.text()
    six = F.paired([-0.3, -0.2, -0.4, -0.25, -0.35, -0.3], question="q", metric="m", unit="nats", expected=F.LOWER)
    assert six.verdict == F.LOWER and six.p_value == pytest.approx(1 / 64)
    wrong_way = F.paired([0.3, 0.2, 0.4, 0.25, 0.35, 0.3], question="q", metric="m", unit="nats", expected=F.LOWER)
    assert wrong_way.verdict == F.HIGHER and "against the claimed direction" in wrong_way.text()  # said as it is
    weak = F.paired([0.3, -0.2, 0.4, -0.25, 0.35, 0.3], question="q", metric="m", unit="nats", expected=F.LOWER)
    assert weak.verdict == F.INCONCLUSIVE


def test_two_arms_with_an_exact_permutation_test():
    f = F.arms([3.0, 3.2, 2.9, 3.1, 3.3], [1.0, 1.1, 0.9, 1.2, 1.0], question="q", metric="m", unit="%",
               names=("scratch", "pretrained"), expected=F.HIGHER)
    assert f.verdict == F.HIGHER and f.low > 0 and f.p_value == pytest.approx(1 / 252)
    assert "scratch − pretrained" in f.text()


def test_shared_pairs_get_an_interval_over_models_not_pairs():
    rng = np.random.default_rng(0)
    m = 8
    a, b = np.triu_indices(m, 1)
    eff = rng.normal(0, 1, m)
    v = 5 + eff[a] + eff[b] + rng.normal(0, 0.1, a.size)
    f = F.shared_pairs(v, a, b, criterion=FRANKLE, question="q", metric="m")
    naive = F.estimate(v, question="q", metric="m", unit="")
    assert f.n_units == m and f.n_pairs == 28
    assert (f.high - f.low) > 1.5 * (naive.high - naive.low)  # 28 "independent" pairs would be far too narrow


def test_the_onset_is_bracketed_and_needs_instability_to_start_from():
    ks = [0, 10, 50, 100]
    mk = lambda vals: judge(vals, criterion=FRANKLE)  # noqa: E731
    per_k = [mk([9, 8, 9.5, 8.5, 9]), mk([5, 4, 6, 5.5, 4.5]), mk([1, 3, 2.5, 0.5, 2.1]), mk([0.1, 0.2, 0.1, 0.3, 0.2])]
    f = F.onset(ks, per_k, question="q", metric="m")
    assert f.verdict == F.BRACKETED and (f.low, f.high) == (10, 100)
    assert f.short() == "(10, 100]" and "(10, 100] steps" in f.text()  # a bracket, not a point
    stable_start = F.onset(ks[1:], [mk([0.1, 0.2, 0.1, 0.3, 0.2])] * 3, question="q", metric="m")
    assert stable_start.verdict == F.NOT_TESTABLE


def test_argmin_is_interior_only_when_both_ends_are_worse_than_the_best():
    rng = np.random.default_rng(0)
    u = np.array([3.0, 1.0, 0.5, 1.2, 3.5]) + rng.normal(0, 0.05, (6, 5))
    assert F.argmin([1, 2, 3, 4, 5], u, question="q", metric="m", unit="nats").verdict == F.INTERIOR
    edge = np.array([0.5, 2.0, 3.0, 4.0, 5.0]) + rng.normal(0, 0.05, (6, 5))
    assert F.argmin([1, 2, 3, 4, 5], edge, question="q", metric="m", unit="nats").verdict == F.EDGE
    assert F.argmin([1, 2, 3], edge[:3, :3], question="q", metric="m", unit="nats").verdict == F.TOO_FEW


def test_a_trend_needs_most_neighbouring_comparisons_decisive():
    c = lambda v: F.Finding("q", "m", "", 0.0, v)  # noqa: E731
    assert F.trend([c(F.LOWER)] * 3 + [c(F.INCONCLUSIVE)], question="q", claimed=F.LOWER).verdict == F.SUPPORTED
    assert F.trend([c(F.LOWER), c(F.INCONCLUSIVE)], question="q", claimed=F.LOWER).verdict == F.INCONCLUSIVE
    assert F.trend([c(F.HIGHER)] * 3, question="q", claimed=F.LOWER).verdict == F.CONTRADICTED
    assert F.trend([c(F.HIGHER), c(F.LOWER)] * 2, question="q", claimed=F.LOWER).verdict == F.MIXED
    assert F.trend([], question="q", claimed=F.LOWER).verdict == F.NOT_TESTABLE


def test_structure_against_a_permutation_null_states_what_it_could_have_seen():
    null = np.random.default_rng(0).normal(0, 0.04, 999)
    f = F.structure(-0.03, null, question="clusters vs strategies", metric="ARI", n_units=32)
    assert f.verdict == F.NOT_ABOVE_CHANCE and f.detectable == pytest.approx(np.quantile(null, 0.95))
    assert F.structure(0.5, null, question="q", metric="ARI").verdict == F.ABOVE_CHANCE


def test_every_verdict_word_is_in_the_vocabulary():
    words = {v for k, v in vars(F).items() if k.isupper() and isinstance(v, str) and k not in ("NO_VERDICT",)}
    words -= {F.INTERVAL_NAME.get(k, "") for k in F.INTERVAL_NAME}
    assert words <= set(F.VERDICTS)


def test_an_arm_of_one_unit_gets_the_exact_relabelling_test():
    p, min_p = S.two_sample_test([1.0], [2.0, 3.0, 4.0], "less")
    assert p == pytest.approx(0.25) and min_p == pytest.approx(0.25)  # 1 of the 4 ways to pick the lone arm
    f = F.arms([1.0], [2.0, 3.0, 4.0], question="q", metric="m", unit="", expected=F.LOWER)
    assert f.verdict == F.INCONCLUSIVE and "no effect of any size" in f.text()


def test_bumps_within_the_convex_tolerance_never_decide_a_comparison_of_barriers():
    # three scratch paths are convex (chord <= 0.1) but not exactly 0; a rebuild could move them either way
    scratch, pretrained = [0.0, 0.03, 0.39, 0.099], [0.0, 0.0, 0.0, 0.0]
    raw = F.arms(scratch, pretrained, question="q", metric="m", unit="%", expected=F.HIGHER)
    tol = F.arms(scratch, pretrained, question="q", metric="m", unit="%", expected=F.HIGHER, convex_tol=CONVEX_TOL)
    assert tol.p_value == pytest.approx(0.5) and tol.p_value > raw.p_value  # one real bump: no evidence
    assert tol.estimate == pytest.approx(0.39 / 4)
