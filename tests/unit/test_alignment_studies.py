"""The inference rules of notebooks 04 and 06 on planted tables: trained cells, the bootstrapped argmin learning
rate, the Fisher comparison on common cells, the sustained grok, range comparisons, seed-level bootstraps and key
Fourier frequencies."""
import math
from dataclasses import replace

import pandas as pd
import pytest
import torch

from lmc_core.config import CopySettings, RunSpec, Seeds, TrainConfig
from lmc_core.models.mlp import MLPConfig
from lmc_core.runs.dispatch import Job, Recipe
from lmc_core.studies.alignment_mlp import argmin_lr, fisher_effect, mark_trained, median_pair
from lmc_core.studies.grokking import cell_table, grok_table
from lmc_core.studies.grokking_connect import jaccard, key_frequencies, seed_bootstrap
from lmc_core.studies.grokking_summary import claim, compare_cells


def grid(barrier, errors=None, pairs=3, lam=(0.0,), opt="sgd"):
    """A pair table: barrier[lr_index] gives each pair's barrier after weight matching (list per lr)."""
    rows = []
    for i, bs in enumerate(barrier):
        for f in lam:
            for pair in range(pairs):
                rows.append({"optimizer": opt, "width": 128, "lr": 10.0 ** (i - 3), "fisher": f, "pair": pair,
                             "diverged": False, "collapsed": False, "barrier_wm": bs[pair] + f,
                             "endpoint_error": (errors or [0.3] * len(barrier))[i]})
    return pd.DataFrame(rows)


def test_cells_far_from_the_optimizer_s_best_error_are_not_trained():
    t = mark_trained(grid([[1, 1, 1]] * 4, errors=[0.8, 0.35, 0.3, 0.45]), margin_pp=10)
    by_lr = t.groupby("lr").trained.all()
    assert list(by_lr) == [False, True, True, False]
    t.loc[(t.lr == 0.01) & (t.pair == 1), "diverged"] = True  # one diverged pair spoils its cell
    assert not mark_trained(t, 10).groupby("lr").trained.all()[0.01]


def test_argmin_learning_rate_verdicts():
    inside = mark_trained(grid([[0.5, 0.6, 0.55], [0.1, 0.12, 0.11], [0.4, 0.5, 0.45]]), 10)
    r = argmin_lr(inside, "sgd", 0.0)
    assert r["lr"] == 0.01 and r["verdict"] == "interior" and r["share"][0.01] == 1.0
    edge = mark_trained(grid([[0.1, 0.12, 0.11], [0.3, 0.35, 0.3], [0.4, 0.5, 0.45]]), 10)
    assert argmin_lr(edge, "sgd", 0.0)["verdict"] == "edge"
    # one pair prefers another lr: resamples disagree
    mixed = mark_trained(grid([[0.5, 0.5, 0.05], [0.1, 0.12, 0.3], [0.4, 0.5, 0.45]]), 10)
    assert argmin_lr(mixed, "sgd", 0.0)["verdict"] == "inconclusive"
    few = mark_trained(grid([[0.5, 0.6, 0.55], [0.1, 0.12, 0.11]]), 10)
    assert argmin_lr(few, "sgd", 0.0)["verdict"] == "too few"


def test_fisher_is_compared_only_where_every_lambda_trained():
    t = mark_trained(grid([[0.2, 0.3, 0.25], [0.1, 0.12, 0.11]], lam=(0.0, 1.0)), 10)
    t.loc[(t.lr == 0.001) & (t.fisher == 1.0), "collapsed"] = True  # lr 0.001 trained for lambda 0 only
    fe = fisher_effect(mark_trained(t, 10), "sgd", 1.0)
    assert fe["common_lrs"] == [0.01]
    assert fe["interval"].estimate == pytest.approx(1.0)  # grid() adds lambda to the barrier


def test_the_median_pair_is_shown_not_the_best():
    t = mark_trained(grid([[0.5, 0.1, 0.3]]), 10)
    assert median_pair(t).barrier_wm == 0.3


def curves_of(acc: list[float], step: int = 100):
    return pd.DataFrame({"copy": 0, "step": [step * (i + 1) for i in range(len(acc))], "test_acc": acc,
                         "train_acc": 1.0, "weight_norm": 1.0})


@pytest.mark.parametrize("acc, first, sustained", [
    ([0.1, 0.96, 0.5, 0.7, 0.96, 0.97], 200, 500),  # a transient spike, then the real grok
    ([0.1, 0.96, 0.97, 0.98], 200, 200),
    ([0.1, 0.96, 0.97, 0.76], 200, math.nan),  # "grokked" at 200 by a first-hit definition, ends at 76 %
])
def test_grokking_counts_only_when_sustained(acc, first, sustained):
    copies = pd.DataFrame({"copy": [0], "weight_decay": [1.0], "fisher": [0.0], "seed": [1]})
    g = grok_table(curves_of(acc), copies, {}).iloc[0]
    assert g.first_hit_step == first
    assert (math.isnan(sustained) and math.isnan(g.grok_step)) or g.grok_step == sustained
    assert g.final_test_acc == acc[-1]


def test_a_grok_held_for_a_window_survives_a_later_dip():
    """With a window of consecutive evaluations, a grok that held for the window counts from its start even if a
    brief dip follows; a spike shorter than the window does not."""
    copies = pd.DataFrame({"copy": [0], "weight_decay": [1.0], "fisher": [0.0], "seed": [1]})
    acc = [0.1, 0.96, 0.5, 0.97, 0.98, 0.99, 0.97, 0.9, 0.99, 0.99]
    assert grok_table(curves_of(acc), copies, {}, evals=4).iloc[0].grok_step == 400
    assert grok_table(curves_of(acc), copies, {}, evals=0).iloc[0].grok_step == 900  # to the end of the run


def cells(rows):
    grok = pd.DataFrame([{"weight_decay": wd, "fisher": 0.0, "seed": s, "grok_step": st, "memorised_step": 50.0,
                          "first_hit_step": st, "final_test_acc": 1.0, "diverged": False}
                         for wd, steps in rows for s, st in enumerate(steps, 1)])
    return cell_table(grok)


def test_grok_steps_are_compared_by_their_ranges_over_seeds():
    c = cells([(0.5, [3000, 3200, 3100]), (1.0, [1000, 1500, 1200]), (2.0, [900, 1400, math.nan])])
    row = c.set_index("weight_decay")
    assert compare_cells(row.loc[0.5], row.loc[1.0]) == "sooner"
    assert compare_cells(row.loc[1.0], row.loc[2.0]) == "inconclusive"  # ranges overlap (a seed never grokked)
    assert row.loc[2.0].max_grok_step == math.inf and row.loc[2.0].median_grok_step == 1400
    out = claim(c, "weight_decay", "fisher")
    assert (out["sooner"], out["inconclusive"], out["verdict"]) == (1, 1, "inconclusive")  # 1 of 2: not most


def test_seed_bootstrap_resamples_seeds_not_pairs():
    pairs = pd.DataFrame([{"seed_a": a, "seed_b": b, "x": float(a + b)} for a in range(1, 5) for b in range(a + 1, 5)])
    est, lo, hi = seed_bootstrap(pairs, "x")
    assert est == pytest.approx(5.0) and lo < est < hi
    assert math.isnan(seed_bootstrap(pairs[pairs.seed_b < 3], "x")[1])  # two seeds cannot be resampled


def test_key_frequencies_of_a_planted_fourier_embedding():
    p, d = 31, 8
    a = torch.arange(p, dtype=torch.float64)[:, None]
    w = torch.zeros(p + 1, d, dtype=torch.float64)
    w[:p, 0], w[:p, 1] = torch.cos(2 * math.pi * 5 * a[:, 0] / p), torch.sin(2 * math.pi * 5 * a[:, 0] / p)
    w[:p, 2] = torch.cos(2 * math.pi * 11 * a[:, 0] / p)
    w[:p] += 0.01 * torch.randn(p, d, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    keys, share = key_frequencies({"tok_emb": w[None].float()}, p)
    assert keys == [5, 11] and share.sum() == pytest.approx(1.0) and share.argmax() == 4
    assert jaccard([5, 11], [5, 7]) == pytest.approx(1 / 3)


def test_fisher_penalised_jobs_pack_apart_from_plain_ones():
    spec = RunSpec(model=MLPConfig(d_in=4, hidden=(8,), n_classes=2), train=TrainConfig(steps=2),
                   seeds=(Seeds(1, 1, 1),))
    recipe = Recipe.of("lmc_core.studies.alignment:train_data", dataset="mnist1d", cache_dir="x")

    def job(lam):
        return Job(replace(spec, per_copy=(CopySettings(lr=0.1, fisher=lam),)), recipe)

    assert job(0.5).pack_key() == job(1.0).pack_key() != job(0.0).pack_key()


def test_study_5s_raw_midpoint_is_read_off_every_cell_that_ran():
    """The raw midpoint loss of an undertrained low-lr cell counts (study 5 read its sweet spot off the whole grid);
    a cell with a missing (diverged) pair does not; the minimum is compared with the endpoints' best lr."""
    from lmc_core.studies.alignment_summary import raw_midpoint

    t = grid([[0.1] * 3] * 4)
    t["endpoint_loss"] = t.lr.map({0.001: 2.0, 0.01: 1.0, 0.1: 1.2, 1.0: 1.5})
    t["midpoint_wm"] = t.endpoint_loss + 0.1
    r = raw_midpoint(t, 3)["sgd"]
    assert r["lr"] == r["endpoint_lr"] == 0.01 and r["same_argmin"] and r["rho_endpoint_loss"] == pytest.approx(1.0)
    assert r["lrs"] == 4
    assert raw_midpoint(t[~((t.lr == 1.0) & (t.pair == 0))], 3)["sgd"]["lrs"] == 3
    t.loc[t.lr == 1.0, "midpoint_wm"] = 0.5  # the raw minimum moves away from the endpoints' best lr
    r = raw_midpoint(t, 3)["sgd"]
    assert r["lr"] == 1.0 and not r["same_argmin"]


def test_a_crossing_too_late_to_be_held_for_the_window_is_no_grok():
    """With a window of 4 evaluations, test accuracy that reaches 95 % only in the last 3 evaluations of the run has
    not been held for the window: no grok (it would count under 'to the end of the run')."""
    copies = pd.DataFrame({"copy": [0], "weight_decay": [1.0], "fisher": [0.0], "seed": [1]})
    acc = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.96, 0.97, 0.98]
    assert math.isnan(grok_table(curves_of(acc), copies, {}, evals=4).iloc[0].grok_step)
    assert grok_table(curves_of(acc), copies, {}, evals=3).iloc[0].grok_step == 800
    assert grok_table(curves_of(acc), copies, {}, evals=0).iloc[0].grok_step == 800


def test_a_late_crossing_held_to_the_end_is_told_apart_from_a_transient_one():
    """late_step marks a copy that holds >= 95 % from a step too late to complete the window to the end of the run; a
    copy that crossed early and fell back has none."""
    copies = pd.DataFrame({"copy": [0], "weight_decay": [1.0], "fisher": [0.0], "seed": [1]})
    late = grok_table(curves_of([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.96, 0.97, 0.98]), copies, {}, evals=4).iloc[0]
    assert math.isnan(late.grok_step) and late.late_step == 800
    early = grok_table(curves_of([0.1, 0.96, 0.5, 0.97, 0.4, 0.6, 0.7, 0.5, 0.6, 0.98]), copies, {}, evals=4).iloc[0]
    assert math.isnan(early.grok_step) and early.late_step == 1000  # only its last evaluation holds
    never = grok_table(curves_of([0.1, 0.96, 0.5, 0.97, 0.4, 0.6, 0.7, 0.5, 0.6, 0.5]), copies, {}, evals=4).iloc[0]
    assert math.isnan(never.late_step) and never.first_hit_step == 200
