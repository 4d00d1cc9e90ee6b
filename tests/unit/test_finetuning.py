"""Notebook 03's helpers and findings: the forgetting control, the distances between endpoints, the barrier rows of a
pair, the units of each comparison, and the rules its summary uses (a convex path is no barrier, the scratch arm
against the pretrained arm, forgetting and cartography paired by pair)."""
from dataclasses import replace
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch

from lmc_core.analysis import findings as F
from lmc_core.analysis.forgetting import confidence_gaps, forgetting_summary, random_direction
from lmc_core.analysis.pair_paths import PairPaths, pair_distances
from lmc_core.config import config_hash
from lmc_core.runs.finetune import enc_spec, lm_specs
from lmc_core.studies import finetuning, finetuning_figures as figs


def test_the_quick_profile_keeps_every_run_s_identity():
    """The stored runs of the committed figures are found again (no retraining): the specs' hashes are pinned (the
    scratch arm's changed with its redesign, issue 26: pretrained by the pretraining recipe; the fine-tunes' and the
    scratch arm's with 5 pairs and 300 fine-tuning steps). The pretraining run, which notebooks 05 and 07 share, keeps
    its hash."""
    p = finetuning.PROFILES["quick"]
    assert [config_hash(s) for s in lm_specs(p, 72)] == ["f702e68ab0f440c7", "b00f187e026713c0", "7b9b6cd2101d5138"]
    assert config_hash(enc_spec(p, "full", "verse_prose")) == "70c8e8b96533d955"
    assert config_hash(enc_spec(p, "lora", "verse_prose")) == "04f47cdd8b9aa090"
    assert lm_specs(p.as_dict(), 72) == lm_specs(p, 72)  # notebooks 05 and 07 pass a mapping


def test_the_random_direction_has_the_path_s_length_over_the_interpolated_keys_only():
    g = torch.Generator().manual_seed(0)
    a = {"w": torch.randn(1, 4, 3, generator=g), "head": torch.randn(1, 2, generator=g)}
    b = {"w": a["w"] + 0.5, "head": a["head"] + 1.0}
    r = random_direction(a, b, {"w"}, seed=3)
    assert torch.allclose((r["w"] - a["w"]).norm(), (b["w"] - a["w"]).norm(), rtol=1e-5)
    assert torch.equal(r["head"], a["head"])
    assert not torch.allclose(r["w"] - a["w"], b["w"] - a["w"])  # another direction
    assert torch.equal(random_direction(a, b, {"w"}, seed=3)["w"], r["w"])  # seeded


def _forgetting_frame(gap: float, pairs: int = 6) -> pd.DataFrame:
    rows = []
    for q in range(pairs):
        for e in range(10):
            lost = e < 3
            rows.append({"pair": q, "example": e, "correct_a": e != 9, "correct_b": e != 8, "forgotten": lost,
                         "forgotten_random": e == 0 and q == 0, "confidence": 0.8 + (gap if lost else 0) + 0.01 * q})
    return pd.DataFrame(rows)


def test_forgetting_is_counted_among_the_passages_right_at_both_endpoints_and_cartography_gaps_per_pair():
    f = _forgetting_frame(-0.2)  # passage 9 wrong at A, passage 8 wrong at B: neither can be forgotten by the path
    s = forgetting_summary(f)
    assert list(s.passages_right_at_both) == [8] * 6 and s.forgotten_path.iloc[0] == pytest.approx(3 / 8)
    assert list(s.forgotten_count) == [3] * 6 and list(s.wrong_at_b) == [1] * 6
    assert s.forgotten_random.iloc[0] == pytest.approx(1 / 8) and s.forgotten_random.iloc[1] == 0
    g = confidence_gaps(f)
    assert np.allclose(g.gap, -0.2) and list(g.n_forgotten) == [3] * 6 and list(g.n_kept) == [5] * 6
    nothing = f.assign(forgotten=False)
    assert confidence_gaps(nothing).empty and confidence_gaps(f.drop(columns="confidence")).empty


def test_forgetting_findings_are_paired_by_pair_in_the_claimed_directions():
    p = SimpleNamespace(enc_train_sample=10)
    found = [x for x in figs.forgetting_findings(_forgetting_frame(-0.2), p) if isinstance(x, F.Finding)]
    path, carto = found
    assert path.verdict == F.HIGHER and path.unit_name == "pair" and path.n_units == 6 and "sign-flip" in path.test
    assert carto.verdict == F.LOWER and carto.estimate == pytest.approx(-0.2)
    few = [x for x in figs.forgetting_findings(_forgetting_frame(-0.2, pairs=2), p) if isinstance(x, F.Finding)]
    assert all(x.verdict == F.TOO_FEW and x.min_p > 0.05 for x in few)  # 2 pairs: the range, no verdict


def test_distances_relative_to_how_far_the_endpoints_travelled():
    start = {"w": torch.zeros(1, 4)}
    d = pair_distances({"w": torch.ones(1, 4)}, {"w": -torch.ones(1, 4)}, None, start)
    assert d["l2"] == pytest.approx(4.0) and d["rms"] == pytest.approx(2.0) and d["relative_to_travel"] == 2.0
    assert np.isnan(pair_distances({"w": torch.ones(1, 4)}, {"w": -torch.ones(1, 4)})["relative_to_travel"])


# the committed quick run's LoRA error paths (03_curves.csv): a valley, highest at an endpoint (chord 0); `mean` read
# 0 and 5.86 points, "2.93 points" on average, from the endpoints' difference alone
LORA = [[0.5, 0.5, 0.5, 0.265625, 0.5, 0.5, 0.5], [0.5, 0.460938, 0.3125, 0.257812, 0.328125, 0.382812, 0.382812]]


def _table(comparison: str, model: str, error_paths, loss_paths=None) -> pd.DataFrame:
    paths = PairPaths(model, np.linspace(0, 1, len(error_paths[0])), "cpu")
    for i, err in enumerate(error_paths):
        loss = loss_paths[i] if loss_paths else [0.69] * len(err)
        curve = pd.DataFrame({"model": model, "comparison": comparison, "pair": i, "split": "test",
                              "alpha": paths.alphas, "loss": loss, "error": err})
        paths.keep(curve, {"l2": 1.0, "rms": 0.1, "relative_to_travel": np.nan, "cosine": 1.0, "params_compared": 10})
    return paths.tables()[0]


def test_a_valley_shaped_path_reads_as_convex_and_two_pairs_draw_no_verdict():
    t = _table("LoRA fine-tuning, SGD noise", "encoder", LORA)
    rows = t[(t.metric == "error") & (t.definition == "mean")]
    assert rows.instability.mean() == pytest.approx(2.93, abs=0.01) and rows.convex.all()
    f = figs.judged(t, "encoder", "LoRA fine-tuning, SGD noise", "error", "mean")
    assert f.verdict == F.TOO_FEW and f.convex_pairs == 2 and "2 of 2 paths are convex (no barrier)" in f.text()


def test_each_comparison_names_its_independent_unit():
    assert figs.units_of("lm", figs.SCRATCH, 4) == (None, "initialisation")
    assert figs.units_of("lm", figs.PRETRAINED, 4)[1] == figs.ONE_RUN
    assert figs.units_of("lm", "two halves of the data", 4)[1] == figs.ONE_RUN
    units, name = figs.units_of("encoder", "different seeds", 3)
    assert len(set(units)) == 1 and "sharing" in name  # pairs 0-2, 2-4, 4-6 chain through shared copies


def _bump(h: float, n: int = 11) -> list[float]:
    a = np.linspace(0, 1, n)
    return list(2.0 + h * 4 * a * (1 - a))


def test_the_headline_is_the_scratch_arm_against_the_pretrained_arm():
    sc = _table(figs.SCRATCH, "lm", [_bump(0)] * 5, [_bump(0.05 + 0.01 * i) for i in range(5)])
    pre = _table(figs.PRETRAINED, "lm", [_bump(0)] * 5, [_bump(0.0) for _ in range(5)])
    table = pd.concat([pre, sc], ignore_index=True)
    p = SimpleNamespace(definition="mean", pretrain_steps=10, finetune_steps=5, finetune_lr=1e-3)
    body, head = figs.lm_findings(table, p)
    assert head.verdict == F.HIGHER and head.test.startswith("exact permutation test, 5 vs 5")
    assert head.estimate > 0 and "(scratch − pretrained)" in head.question
    assert any(isinstance(x, str) and "Precondition" in x and "the same quality" in x for x in body)  # equal losses
    lm = [x for x in body if isinstance(x, F.Finding) and x is not head]
    assert [x.unit_name for x in lm] == [figs.ONE_RUN, figs.ONE_RUN, "initialisation", "initialisation"]
    assert lm[0].verdict == F.NO_BARRIER  # the pretrained error paths are flat


def test_the_scratch_arm_runs_the_pretraining_recipe_from_shared_initialisations_then_fine_tunes():
    from lmc_core.runs.finetune import scratch_finetune

    p = finetuning.PROFILES["quick"]
    pre, fine, scratch = lm_specs(p, 72)
    assert scratch.train == replace(pre.train, checkpoints=()) and scratch.data == pre.data  # pretraining's recipe
    inits = [s.init for s in scratch.seeds]
    assert inits == [100 + c // 2 for c in range(2 * p.lm_pairs)]  # a pair shares its initialisation ...
    assert len({(s.data, s.dropout) for s in scratch.seeds}) == scratch.k  # ... and differs in SGD noise from step 0
    ft = scratch_finetune(fine, scratch)
    assert ft.train == replace(fine.train, checkpoints=()) and ft.data == fine.data  # fine-tuning's recipe
    assert ft.init_from == f"{config_hash(scratch)}@{p.pretrain_steps}"
    assert [s.data for s in ft.seeds] == [s.data for s in fine.seeds]  # the fine-tunes' own noise


def test_margins_and_forgetting_near_the_decision_boundary():
    from lmc_core.analysis.forgetting import margins

    probs = np.array([[[0.7, 0.2, 0.1], [0.3, 0.6, 0.1]]])  # [1, N=2, C=3]
    np.testing.assert_allclose(margins(probs, np.array([0, 0])), [[0.5, -0.3]])  # right: positive; wrong: negative
    f = _forgetting_frame(-0.2).assign(margin=lambda d: 0.1 * d.example)  # passages 0-2 forgotten, least margin
    s = forgetting_summary(f)
    # of the 8 right at both endpoints (0-7), the half with the smallest margin (0-3, median 0.35) holds the 3 lost
    assert list(s.low_margin_passages) == [4] * 6 and s.forgotten_path_low_margin.iloc[0] == pytest.approx(3 / 4)
    assert s.forgotten_random_low_margin.iloc[0] == pytest.approx(1 / 4) and s.forgotten_random_low_margin.iloc[1] == 0
    found = [x for x in figs.forgetting_findings(f, SimpleNamespace(enc_train_sample=10)) if isinstance(x, F.Finding)]
    assert len(found) == 3 and "decision boundary" in found[1].question and found[1].verdict == F.HIGHER
