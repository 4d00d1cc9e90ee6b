"""The inference rules of notebook 06 on planted tables: the sustained grok (analysis.grok), neighbouring cells
compared by an exact rank test and the trend over them (findings.arms / trend), connectivity over seeds that pairs
share (findings.shared_pairs) and key Fourier frequencies (analysis.fourier) (notebook 04's:
tests/unit/test_alignment_grid.py)."""
import math

import pandas as pd
import pytest
import torch

from lmc_core.analysis import findings as F
from lmc_core.analysis.fourier import frequency_table, jaccard, key_frequencies
from lmc_core.analysis.grok import cell_table, grok_range, grok_table, grokked_seeds
from lmc_core.studies.grokking_summary import comparisons


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


def grok_of(rows):
    return pd.DataFrame([{"weight_decay": wd, "fisher": 0.0, "seed": s, "grok_step": st, "memorised_step": 50.0,
                          "first_hit_step": st, "final_test_acc": 1.0, "diverged": False}
                         for wd, steps in rows for s, st in enumerate(steps, 1)])


def wd_comparisons(grok):
    return comparisons(grok, cell_table(grok), "weight_decay", "fisher", "weight decay", "wd", "λ")


def test_neighbouring_cells_are_compared_by_an_exact_rank_test_of_their_seeds_grok_steps():
    """3 seeds per cell: the one-sided exact test reaches p = 1/20 = 0.05 only when the ranges separate (the old
    range rule, now a test); a seed that never grokked counts as infinitely late."""
    grok = grok_of([(0.5, [3000, 3200, 3100]), (1.0, [1000, 1500, 1200]), (2.0, [900, 1400, math.nan])])
    row = cell_table(grok).set_index("weight_decay")
    assert row.loc[2.0].max_grok_step == math.inf and row.loc[2.0].median_grok_step == 1400
    assert grok_range(row.loc[2.0]) == "1400 [900–∞]"
    sooner, overlap = wd_comparisons(grok)  # wd 1 against wd 0.5, wd 2 against wd 1
    assert sooner.verdict == F.LOWER and sooner.p_value == pytest.approx(0.05) and sooner.min_p == pytest.approx(0.05)
    assert "(wd 1 − wd 0.5)" in sooner.question and "1200 [1000–1500] vs 3100 [3000–3200]" in sooner.metric
    assert overlap.verdict == F.INCONCLUSIVE and overlap.p_value > 0.05  # ranges overlap
    trend = F.trend([sooner, overlap], question="q", claimed=F.LOWER)
    assert trend.verdict == F.INCONCLUSIVE  # 1 of 2 decisive: not most
    later = wd_comparisons(grok_of([(0.5, [1000, 1100, 1200, 1300]), (1.0, [3000, 3100, 3200, math.nan])]))
    assert [c.verdict for c in later] == [F.HIGHER]  # later, said as it is (two-sided: 2/70 <= 0.05)
    assert "against the claimed direction" in later[0].text() and later[0].p_value == pytest.approx(2 / 70)
    three = wd_comparisons(grok_of([(0.5, [1000, 1100, 1200]), (1.0, [3000, 3100, math.nan])]))[0]
    assert three.verdict == F.INCONCLUSIVE  # one-sided 1/20 against the claim, two-sided 1/10: not enough
    assert F.trend(later + [sooner], question="q", claimed=F.LOWER).verdict == F.MIXED
    two = wd_comparisons(grok_of([(0.5, [3000, 3100]), (1.0, [1000, 1100])]))[0]  # 2 vs 2 seeds: p >= 1/6
    assert two.verdict == F.INCONCLUSIVE and two.min_p == pytest.approx(1 / 6) and "no effect of any size" in two.text()


def test_connectivity_over_seeds_that_pairs_share():
    """All pairs among m seeds: findings.shared_pairs with the seeds as units — a range and no verdict below 5
    seeds, a verdict by Frankle's criterion from 5 on, no barrier when every error path is convex."""
    from lmc_core.analysis.criteria import FRANKLE

    def finding(m, value, chord=1.0):
        pairs = pd.DataFrame([{"seed_a": a, "seed_b": b, "e": value + 0.1 * (a + b), "c": chord}
                              for a in range(1, m + 1) for b in range(a + 1, m + 1)])
        return F.shared_pairs(pairs.e, pairs.seed_a, pairs.seed_b, pairs.c, criterion=FRANKLE, question="q",
                              metric="m", unit_name="seed")

    four = finding(4, 50.0)
    assert four.verdict == F.TOO_FEW and four.interval == "range" and four.n_units == 4 and four.n_pairs == 6
    assert finding(6, 50.0).verdict == F.UNSTABLE and finding(6, 0.1).verdict == F.STABLE
    assert finding(6, 0.1, chord=0.0).verdict == F.NO_BARRIER


def test_key_frequencies_of_a_planted_fourier_embedding():
    p, d = 31, 8
    a = torch.arange(p, dtype=torch.float64)[:, None]
    w = torch.zeros(p + 1, d, dtype=torch.float64)
    w[:p, 0], w[:p, 1] = torch.cos(2 * math.pi * 5 * a[:, 0] / p), torch.sin(2 * math.pi * 5 * a[:, 0] / p)
    w[:p, 2] = torch.cos(2 * math.pi * 11 * a[:, 0] / p)
    w[:p] += 0.01 * torch.randn(p, d, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    keys, share = key_frequencies({"tok_emb": w[None].float()}, p)
    assert keys == [5, 11] and share.sum() == pytest.approx(1.0) and share.argmax() == 4
    assert jaccard([5, 11], [5, 7]) == pytest.approx(1 / 3) and math.isnan(jaccard([], []))
    labels = pd.DataFrame({"copy": [7], "weight_decay": [1.0], "fisher": [0.0], "seed": [3]})
    table, found = frequency_table({7: {"tok_emb": w[None].float()}}, labels, p)
    assert found == {7: [5, 11]} and len(table) == (p - 1) // 2 and table.seed.dtype.kind == "i"
    assert list(table[table.key].frequency) == [5, 11] and list(table.columns[:4]) == list(labels.columns)


def test_only_seeds_that_grokked_and_still_hold_it_are_interpolated():
    grok = grok_of([(1.0, [500, math.nan, 700, 800])]).assign(final_test_acc=[1.0, 1.0, 0.5, 1.0],
                                                               diverged=[False, False, False, True])
    assert list(grokked_seeds(grok, 1.0, 0.0).seed) == [1]  # 2 never grokked, 3 fell back, 4 diverged


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


def test_every_alignment_method_keeps_b_s_function_and_gives_one_column_per_quantity(tmp_path):
    """analysis.residual_methods on Nanda et al.'s model (no LayerNorm): every method's T(B) computes B's function
    (each path ends where the unaligned one does), and barriers_by_method reads barrier_table into one column per
    quantity and method; analysis.checkpoint_paths follows pairs of a stored run over its checkpoints."""
    import numpy as np

    from lmc_core.analysis import barrier as B
    from lmc_core.analysis.checkpoint_paths import paths_over_training
    from lmc_core.analysis.interpolate import alpha_grid
    from lmc_core.analysis.residual_methods import METHODS, QUANTITIES, barriers_by_method, method_paths
    from lmc_core.data.modular import ModularDataConfig, modular_data
    from lmc_core.families import family_of
    from lmc_core.runs.store import RunStore
    from lmc_core.studies.grokking import STUDY, copies_table, grid_spec

    p = STUDY.params({"profile": "smoke", "steps": 4, "weight_decay": [1.0], "fisher": [0.0],
                      "connect_setting": [1.0, 0.0], "control_setting": [1.0, 0.0]})
    data = modular_data(ModularDataConfig(p=p.p, train_frac=p.train_frac, seed=p.data_seed))
    spec = grid_spec(p, len(data["train"]), copies_table(p))
    run = RunStore(tmp_path).get(spec, data["train"], "cpu", False, monitor={"test": data["test"]})
    fam, alphas = family_of(spec.model), alpha_grid(3)
    test = fam.eval_examples(spec.model, data["test"])
    a, b = ({n: t[k: k + 1] for n, t in run.state.items()} for k in (0, 1))
    paths, diag = method_paths(fam, spec.model, a, b, alphas, test, "cpu", dict(
        x_train=data["train"]["tokens"], train=data["train"].tensors, seed=1, learn_steps=2, learn_lr=1e-2),
        setting="s", pair="1-2")
    assert list(dict.fromkeys(paths.kind)) == list(METHODS) and diag["invertible_map_condition"] >= 1
    for end in (0.0, 1.0):
        at = paths[paths.alpha == end]
        np.testing.assert_allclose(at.loss, at.loss.iloc[0], rtol=1e-4)
    wide = barriers_by_method(paths, ("setting", "pair"), "mean")
    assert list(wide.columns) == [f"{q}:{m}" for m in METHODS for q in QUANTITIES]
    u = paths[paths.kind == METHODS[0]]
    assert wide["error_barrier_pp:unaligned"].iloc[0] == pytest.approx(100 * B.barrier(u.alpha, u.error, "mean"))
    over = paths_over_training(spec, RunStore(tmp_path), run, [((0, 1), (1, 2))], alphas, test, "cpu")
    assert sorted(over.step.unique()) == [*spec.train.checkpoints, spec.train.steps] and len(over) == 2 * 2 * 3
    first = over[(over.step == spec.train.steps) & (over.kind == "unaligned")]
    np.testing.assert_allclose(first.loss, u.loss, rtol=1e-6)  # the end of training is the run's own state
