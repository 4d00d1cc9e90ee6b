"""The evaluation noise of a barrier: a bootstrap over evaluation windows (lmc_core.analysis.eval_noise)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from lmc_core.analysis.criteria import FRANKLE
from lmc_core.analysis.eval_noise import bootstrap_se, noise_words, per_window

ALPHAS = np.array([0.0, 0.5, 1.0])


def test_the_bootstrap_se_of_a_midpoint_barrier_is_the_standard_error_of_a_mean():
    rng = np.random.default_rng(0)
    x = rng.normal(0.3, 0.1, 400)  # per-window error at the midpoint; the ends are exact
    units = np.stack([np.zeros(400), x, np.zeros(400)])
    se = bootstrap_se(ALPHAS, units, "error", resamples=2000, seed=1, definitions=("midpoint", "mean"))
    expected = 100 * x.std(ddof=1) / np.sqrt(400)  # points of error
    assert se["midpoint"] == pytest.approx(expected, rel=0.1) and se["mean"] == pytest.approx(expected, rel=0.1)


def test_identical_windows_have_no_evaluation_noise_and_resampling_repeats_itself():
    units = np.tile(np.array([[1.0], [1.4], [1.1]]), (1, 50))
    assert bootstrap_se(ALPHAS, units, "loss", resamples=200)["mean"] == pytest.approx(0.0, abs=1e-9)
    noisy = units + np.random.default_rng(0).normal(0, 0.1, units.shape)
    assert bootstrap_se(ALPHAS, noisy, "loss", 200, seed=3) == bootstrap_se(ALPHAS, noisy, "loss", 200, seed=3)


def test_windows_average_their_tokens_and_a_ragged_split_is_refused():
    tokens = np.arange(12.0).reshape(2, 6)
    np.testing.assert_array_equal(per_window(tokens, 3), [[1.0, 4.0], [7.0, 10.0]])
    with pytest.raises(ValueError, match="windows of 4 tokens"):
        per_window(tokens, 4)
    with pytest.raises(ValueError, match="at least 2 units"):
        bootstrap_se(ALPHAS, np.ones((3, 1)), "loss")


def test_noise_words_compare_the_noise_with_the_threshold_and_the_units():
    se = pd.DataFrame({"se": [0.1, 0.2, 0.3], "resamples": 1000, "windows": 685})
    small = noise_words(se, pd.Series([2.0, 3.0, 4.0]), "the barrier", FRANKLE)
    assert "0.20 percentage points" in small and "10 % of the 2-point threshold" in small and "adds little" in small
    large = noise_words(se, pd.Series([2.0, 2.1, 2.2]), "the barrier", FRANKLE)
    assert "comparable to the evaluation noise" in large
    assert noise_words(se.iloc[:0], pd.Series([1.0]), "x", FRANKLE).endswith("not measured.")
