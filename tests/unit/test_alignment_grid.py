"""Notebook 04 on planted tables and tiny models: which cells trained (analysis.lr_grid), the argmin learning rate, the
Fisher comparison and the headline through the findings layer on the `chord` barrier (paired by pair, no verdict
below MIN_UNITS), a pair aligned every way (analysis.pair_alignment), and the grid jobs' data recipe (data/)."""
from dataclasses import replace

import pandas as pd
import pytest
import torch

from lmc_core.align.methods import CONTROL, UNALIGNED, WEIGHT
from lmc_core.analysis import findings as F
from lmc_core.analysis.lr_grid import (budget_steps, fisher_differences, lowest_lr, lr_matrix, mark_trained, median_pair,
                                      middle_points, raw_midpoint)
from lmc_core.analysis.pair_alignment import classifier_pair, permutation_ends
from lmc_core.analysis.stats import MIN_UNITS
from lmc_core.config import CopySettings, RunSpec, Seeds, TrainConfig
from lmc_core.data.batches import Examples
from lmc_core.families import family_of
from lmc_core.models.mlp import MLPConfig
from lmc_core.runs.dispatch import Job, Recipe
from lmc_core.studies import alignment
from lmc_core.studies.alignment_summary import describe

RECIPE = "lmc_core.data.vectors:train_examples"


def grid(barrier, errors=None, pairs=3, lam=(0.0,), opt="sgd", unaligned=1.0):
    """A pair table: barrier[lr_index] gives each pair's barrier after weight matching (list per lr); the chord
    barrier equals it (no convex path) and lambda is added to it."""
    rows = []
    for i, bs in enumerate(barrier):
        for f in lam:
            for pair in range(pairs):
                b = bs[pair] + f
                rows.append({"optimizer": opt, "width": 128, "lr": 10.0 ** (i - 3), "fisher": f, "pair": pair,
                             "diverged": False, "collapsed": False, "barrier_wm": b, "chord_wm": b,
                             "barrier_unaligned": unaligned + 0.01 * pair, "chord_unaligned": unaligned + 0.01 * pair,
                             "barrier_control": 0.0, "endpoint_error": (errors or [0.3] * len(barrier))[i],
                             "endpoint_loss": 1.0 + 0.1 * i, "midpoint_wm": 1.0 + b, "disagree_ab": 0.3,
                             "disagree_a_mid": 0.1})
    return pd.DataFrame(rows)


def test_cells_far_from_the_optimizer_s_best_error_are_not_trained():
    t = mark_trained(grid([[1, 1, 1]] * 4, errors=[0.8, 0.35, 0.3, 0.45]), margin_pp=10)
    assert list(t.groupby("lr").trained.all()) == [False, True, True, False]
    t.loc[(t.lr == 0.01) & (t.pair == 1), "diverged"] = True  # one diverged pair spoils its cell
    assert not mark_trained(t, 10).groupby("lr").trained.all()[0.01]


def argmin_of(t):
    m = lr_matrix(t, "sgd", 0.0, "chord_wm")
    return F.argmin(list(m.columns), m.to_numpy(), question="q", metric="m", unit="")


def test_the_argmin_learning_rate_is_paired_by_pair_and_needs_min_units():
    five = [[0.5, 0.6, 0.55, 0.5, 0.62], [0.1, 0.12, 0.11, 0.1, 0.13], [0.4, 0.5, 0.45, 0.42, 0.48]]
    inside = mark_trained(grid(five, pairs=MIN_UNITS), 10)
    assert lr_matrix(inside, "sgd", 0.0, "chord_wm").shape == (MIN_UNITS, 3)
    f = argmin_of(inside)
    assert f.estimate == 0.01 and f.verdict == F.INTERIOR
    edge = mark_trained(grid([five[1], five[0], five[2]], pairs=MIN_UNITS), 10)
    assert argmin_of(edge).verdict == F.EDGE
    few = mark_trained(grid([r[:3] for r in five]), 10)  # 3 pairs: the lr is named, no verdict drawn
    f = argmin_of(few)
    assert f.estimate == 0.01 and f.verdict == F.TOO_FEW and not f.decided


def test_fisher_is_compared_only_where_every_lambda_trained():
    t = mark_trained(grid([[0.2, 0.3, 0.25], [0.1, 0.12, 0.11]], lam=(0.0, 1.0)), 10)
    t.loc[(t.lr == 0.001) & (t.fisher == 1.0), "collapsed"] = True  # lr 0.001 trained for lambda 0 only
    common, diff = fisher_differences(mark_trained(t, 10), "sgd", 1.0, "chord_wm")
    assert common == [0.01] and list(diff) == pytest.approx([1.0] * 3)  # grid() adds lambda to the barrier


def test_the_median_pair_is_shown_not_the_best_and_the_width_lr_is_the_lowest():
    t = mark_trained(grid([[0.5, 0.1, 0.3], [0.2, 0.2, 0.2]]), 10)
    assert median_pair(t.iloc[:3]).barrier_wm == 0.3
    assert lowest_lr(t, "sgd", "barrier_wm") == 0.01 and lowest_lr(t, "adam", "barrier_wm") is None


def test_study_5s_raw_midpoint_is_read_off_every_cell_that_ran():
    """The raw midpoint loss of an undertrained low-lr cell counts (study 5 read its sweet spot off the whole grid);
    a cell with a missing (diverged) pair does not; the minimum is compared with the endpoints' best lr."""
    t = grid([[0.1] * 3] * 4)
    t["endpoint_loss"] = t.lr.map({0.001: 2.0, 0.01: 1.0, 0.1: 1.2, 1.0: 1.5})
    t["midpoint_wm"] = t.endpoint_loss + 0.1
    r = raw_midpoint(t, 3)["sgd"]
    assert r["lr"] == r["endpoint_lr"] == 0.01 and r["same_argmin"] and r["rho_endpoint_loss"] == pytest.approx(1.0)
    assert r["lrs"] == 4 and raw_midpoint(t[~((t.lr == 1.0) & (t.pair == 0))], 3)["sgd"]["lrs"] == 3
    t.loc[t.lr == 1.0, "midpoint_wm"] = 0.5  # the raw minimum moves away from the endpoints' best lr
    r = raw_midpoint(t, 3)["sgd"]
    assert r["lr"] == 1.0 and not r["same_argmin"]


@pytest.mark.parametrize("pairs, verdict", [(MIN_UNITS, F.LOWER), (3, F.TOO_FEW)])
def test_the_headline_is_the_paired_test_of_weight_matching_over_pairs(pairs, verdict):
    """Weight matching lowers every pair's chord barrier: with MIN_UNITS pairs the one-sided sign-flip test says
    lower; with 3 (below MIN_UNITS, and no p below 0.125 reachable) the range and no verdict. A Fisher penalty that raises
    every pair's barrier is never 'lower' (the claimed direction), nor 'higher' with MIN_UNITS pairs: the unclaimed
    direction needs a two-sided p <= 0.05, and 5 pairs reach 1/16 at best; and 3 pairs give the argmin no verdict."""
    rows = [[0.3 + 0.01 * i for i in range(pairs)], [0.1 + 0.01 * i for i in range(pairs)],
            [0.4 + 0.01 * i for i in range(pairs)]]
    t = mark_trained(grid(rows, pairs=pairs, lam=(0.0, 1.0)), 10)
    p = alignment.QUICK.replace(pairs=pairs, run_lm=False, hidden=[128, 128, 128])
    s = describe(p, {"mlp": t, "width": pd.DataFrame()})
    h = s.headline
    assert h.verdict == verdict and h.n_units == pairs and h.estimate < 0 and "one-sided" in h.test
    assert h.min_p == pytest.approx(0.5 ** pairs)
    fisher = [f for f in s.findings() if "Fisher" in f.question]
    assert fisher and all(f.verdict == (F.INCONCLUSIVE if pairs >= MIN_UNITS else F.TOO_FEW) and f.estimate > 0
                          for f in fisher)
    argmins = [f for f in s.findings() if "lowest barrier" in f.question]
    assert argmins[0].verdict == (F.INTERIOR if pairs >= MIN_UNITS else F.TOO_FEW)


def test_a_convex_aligned_path_is_no_barrier_where_the_lowest_barrier_is_named():
    t = mark_trained(grid([[0.3] * 3, [0.1] * 3, [0.4] * 3]), 10)
    t.loc[(t.lr == 0.01) & (t.pair < 2), "chord_wm"] = 0.0  # `mean` reads half the endpoint gap there
    s = describe(alignment.QUICK.replace(run_lm=False), {"mlp": t, "width": pd.DataFrame()})
    at = next(f for f in s.findings() if "at lr 0.01" in f.question)
    assert "2 of 3 paths convex" in at.question and at.estimate == pytest.approx(0.1 / 3)


def tiny_pair():
    cfg = MLPConfig(d_in=6, hidden=(8, 8), n_classes=3)
    fam = family_of(cfg)
    states = [fam.init(cfg, [s]) for s in (1, 2)]
    x = torch.randn(64, 6, generator=torch.Generator().manual_seed(0))
    return fam, cfg, states, x


def test_a_pair_aligned_every_way_keeps_b_s_function_and_the_control_comes_back():
    fam, cfg, (a, b), x = tiny_pair()
    ends, info = permutation_ends(fam, cfg, a, b, x, seed=0, restarts=3)
    assert set(ends) == {UNALIGNED, WEIGHT, "activation matching", CONTROL}
    with torch.no_grad():
        logits = [fam.model_from_state(cfg, s).eval()(x[None]) for s in (b, ends[WEIGHT][1])]
        back = fam.model_from_state(cfg, ends[CONTROL][1]).eval()(x[None])
        own = fam.model_from_state(cfg, a).eval()(x[None])
    assert torch.allclose(logits[0], logits[1], atol=1e-5) and torch.allclose(back, own, atol=1e-6)
    test = Examples(x=x, y=torch.randint(0, 3, (64,), generator=torch.Generator().manual_seed(1)))
    row, curves, mid = classifier_pair(fam, cfg, a, b, x, test, [0.0, 0.5, 1.0], 0, 3, "mean", "cpu")
    assert row["barrier_control"] == pytest.approx(0.0, abs=1e-6) and row["chord_wm"] >= 0
    assert set(curves.kind) == {UNALIGNED, WEIGHT, "activation matching", CONTROL} and mid.shape == (64,)


def test_the_grid_s_data_recipe_lives_in_data_and_fisher_jobs_pack_apart(tmp_path):
    spec = RunSpec(model=MLPConfig(d_in=4, hidden=(8,), n_classes=2), train=TrainConfig(steps=2),
                   seeds=(Seeds(1, 1, 1),))
    recipe = Recipe.of(RECIPE, dataset="mnist1d", cache_dir=str(tmp_path))
    assert alignment.RECIPE == RECIPE

    def job(lam):
        return Job(replace(spec, per_copy=(CopySettings(lr=0.1, fisher=lam),)), recipe)

    assert job(0.5).pack_key() == job(1.0).pack_key() != job(0.0).pack_key()
    data = recipe.make()
    assert data["x"].shape[1] == 40 and len(data) == 4000


def test_low_rates_train_longer_to_the_budget_and_the_jobs_of_one_length_pack_together(tmp_path):
    from lmc_core.config import ConfigError
    from lmc_core.data.vectors import VectorDataConfig
    from lmc_core.studies import alignment_mlp as mlp
    p = alignment.Alignment().params({"profile": "smoke"}).replace(
        steps=100, lr_grid={"sgd": [0.01, 0.1, 3]}, optimizers=["sgd"], lr_budget={"sgd": 2.0}, fisher=[0.0, 1.0],
        fisher_lrs=1)
    grid = mlp.lrs(p, "sgd")
    assert [budget_steps(lr, 100, 2.0) for lr in grid] == [200, 100, 100]  # 2 / 0.01; 2 / 0.0316 = 63 < 100
    assert budget_steps(0.03, 100, 7.0) == 250 and budget_steps(0.01, 100, 0.0) == 100  # rounded up to 50
    assert middle_points(grid, 1) == [grid[1]] and middle_points(grid, 0) == grid
    assert middle_points([1, 2, 3, 4], 1) == [3] and middle_points([1, 2, 3, 4], 2) == [2, 3]
    spec, copies = mlp.mlp_spec_of(p, VectorDataConfig(), "sgd")
    assert sorted({(c["lr"], c["fisher"]) for c in copies}) == sorted([(lr, 0.0) for lr in grid] + [(grid[1], 1.0)])
    jobs = mlp.grid_jobs(spec, copies, Recipe.of(RECIPE, dataset="mnist1d", cache_dir=str(tmp_path)))
    assert [j.spec.train.steps for j in jobs] == [c["steps"] for c in copies[::2]]
    low = [j for j in jobs if j.spec.per_copy[0].lr == grid[0]]
    assert len({j.pack_key() for j in low}) == 1 and low[0].pack_key() != jobs[-1].pack_key()
    assert jobs[-1].spec.train == replace(spec.train, steps=100, save_every=25)  # a cell of `steps`: the old run
    with pytest.raises(ConfigError, match="lr_budget"):
        alignment.Alignment().params({"profile": "smoke", "overrides": {"lr_budget": {"sgd": 1e9}}})
    with pytest.raises(ConfigError, match="lr_budget"):
        alignment.Alignment().params({"profile": "smoke", "overrides": {"lr_budget": {"rmsprop": 1.0}}})
