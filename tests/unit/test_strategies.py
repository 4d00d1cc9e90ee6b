"""Notebook 05's pieces: the phrase task and its pretraining windows, the bimodality test, the eigengap null,
stability per k, and a summary that never states a statistic that was not computed."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch

from lmc_core.analysis.cluster import eigengap_null, spectral_clusters, stability_by_k
from lmc_core.analysis.modes import bimodality
from lmc_core.config import ConfigError
from lmc_core.data.strategies import (CATEGORIES, PlaysTaskConfig, dataset_card, heuristic_predictions, phrase_ids,
                                      plays_task)

SMALL = PlaysTaskConfig(train_size=600, eval_size=300, epsilon=0.1)


def test_phrase_task_is_deterministic_fixed_length_and_separates_the_strategies():
    task = plays_task(SMALL)
    again = plays_task(replace(SMALL, seed=0))
    assert torch.equal(task["train"]["input_ids"], again["train"]["input_ids"])
    other = plays_task(replace(SMALL, seed=1))
    assert not torch.equal(task["train"]["input_ids"], other["train"]["input_ids"])
    for split, ex in task.items():
        assert ex["input_ids"].shape[1] == SMALL.words + 2 and bool(ex["attention_mask"].all())  # no padding
        pred = heuristic_predictions(SMALL, ex)
        assert torch.equal(pred["rule"], ex["labels"]), split  # the rule is the label
        bow = (pred["bag of words"] == ex["labels"]).double().mean().item()
        order = (ex["category"] == CATEGORIES.index("order")).double().mean().item()
        assert bow == pytest.approx(1 - order)  # the heuristic fails exactly the order passages
    assert 0.4 < (task["ood"]["category"] == 2).double().mean() < 0.6  # HANS-like: half out of order
    assert (task["ood"]["category"] == 1).sum() == 0
    share = (task["train"]["category"] == 2).double().mean().item()
    assert 0.5 * SMALL.epsilon * 0.4 < share < 0.5 * SMALL.epsilon * 1.8


def test_phrase_passages_hold_the_words_where_their_category_says():
    ex = plays_task(SMALL)["ood"]
    a, b = phrase_ids(SMALL)
    w = ex["input_ids"][:, 1:-1]
    both = (w == a).any(1) & (w == b).any(1)
    assert bool(both.all())  # every HANS-like passage holds both words
    adjacent = ((w[:, :-1] == a) & (w[:, 1:] == b)).any(1)
    assert torch.equal(adjacent, ex["category"] == 0)


def test_mlm_windows_predict_a_fixed_number_of_positions():
    cfg = PlaysTaskConfig(task="mlm", words=10, vocab_size=128, eval_size=50)
    ex = plays_task(cfg)["valid"]
    assert len(ex) == 50 and ex["mlm_positions"].shape == (50, 2)
    assert int(ex["input_ids"].max()) < 128 and int(ex["mlm_positions"].min()) >= 1
    card = pd.DataFrame(dataset_card(cfg))
    assert set(card.split) == {"train", "valid"}


@pytest.mark.parametrize("bad, field", [({"task": "nli"}, "task"), ({"epsilon": 1.5}, "epsilon"),
                                        ({"vocab_size": 10}, "vocab_size"), ({"phrase": ("my", "my")}, "phrase"),
                                        ({"words": 2}, "words")])
def test_bad_task_config_names_the_field(bad, field):
    with pytest.raises(ConfigError, match=field):
        replace(PlaysTaskConfig(), **bad).validate()


def test_a_phrase_word_outside_the_vocabulary_is_a_clear_error():
    with pytest.raises(ConfigError, match="phrase word"):
        phrase_ids(PlaysTaskConfig(phrase=("my", "xylophone")))


def test_bimodality_finds_two_modes_and_not_one():
    rng = np.random.default_rng(0)
    two = bimodality(np.r_[rng.normal(0.5, 0.01, 20), rng.normal(0.9, 0.03, 12)])
    assert two.bimodal and two.dip_p < 0.05 and two.delta_bic > 0
    assert two.labels[:20].sum() == 0 and two.labels[20:].min() == 1  # mode 1 is the higher one
    one = bimodality(rng.normal(0.6, 0.05, 32))
    assert one.verdict == "unimodal" and not one.bimodal
    flat = bimodality(np.full(10, 0.5))
    assert flat.verdict == "constant" and "same value" in flat.text()
    with pytest.raises(ValueError, match="at least 4"):
        bimodality([0.5, 0.6, np.nan, 0.7])


def _blocks(sizes, within=0.01, across=0.05, noise=0.005, seed=0):
    rng = np.random.default_rng(seed)
    lab = np.repeat(np.arange(len(sizes)), sizes)
    d = np.where(lab[:, None] == lab[None], within, across) + rng.uniform(0, noise, (len(lab), len(lab)))
    d = (d + d.T) / 2
    np.fill_diagonal(d, 0)
    return d, lab


def test_eigengap_null_rejects_two_blocks_and_not_a_structureless_matrix():
    d, _ = _blocks([14, 10])
    t = eigengap_null(d, resamples=199)
    assert t.k == 2 and t.p < 0.05 and t.k_tested() == 2
    rng = np.random.default_rng(3)
    flat = rng.uniform(0.01, 0.02, (24, 24))
    flat = (flat + flat.T) / 2
    np.fill_diagonal(flat, 0)
    assert eigengap_null(flat, resamples=199).k_tested() == 1


def test_stability_exists_for_k_of_two_or_more_only():
    d, _ = _blocks([12, 8])
    stab = stability_by_k(d, [2, 3], resamples=4)
    assert set(stab) == {2, 3} and np.allclose(stab[2], 1.0)
    with pytest.raises(ValueError, match="2 <= k"):
        stability_by_k(d, [1])


def _one_cluster_run(m: int = 16):
    """What compute() hands the findings for a structureless matrix and unimodal OOD accuracies."""
    from lmc_core.analysis.cluster import adjusted_rand, row_effect_null
    from lmc_core.analysis.stats import label_permutation_null
    from lmc_core.analysis.strategies import across_minus_within
    from lmc_core.studies.generalization import QUICK
    from lmc_core.studies.generalization_report import group_findings

    rng = np.random.default_rng(1)
    mat = rng.uniform(0.010, 0.012, (m, m))  # one cluster: every pair alike
    mat = (mat + mat.T) / 2
    np.fill_diagonal(mat, 0)
    ood = rng.normal(0.52, 0.01, m)
    modes = bimodality(ood)
    models = pd.DataFrame({"model": range(m), "id_loss": rng.uniform(0.9, 1.0, m), "id_accuracy": rng.uniform(0.9, 1, m),
                           "ood_accuracy": ood, "sharpness": rng.uniform(1, 2, m), "mode": modes.labels})
    cl = spectral_clusters(mat, None, None, 6, seed=0)
    cl2 = spectral_clusters(mat, 2, cl.delta, seed=0)
    p = QUICK.replace(profile="smoke", models=m, null_resamples=99, permutations=99, resamples=3)
    return {"models": models, "modes": modes, "mat": mat, "cl": cl, "cl2": cl2, "stab": stability_by_k(mat, range(2, 7),
            cl.delta, 3), "eigengap": eigengap_null(mat, 6, cl.delta, 99), "row_null": row_effect_null(mat, 6, cl.delta, 99),
            "ari": {"k2": (adjusted_rand(cl2.labels, modes.labels), label_permutation_null(
                lambda lab: adjusted_rand(cl2.labels, lab), modes.labels, 99))},
            "amw": (across_minus_within(mat, modes.labels), label_permutation_null(
                lambda lab: across_minus_within(mat, lab), modes.labels, 99)),
            "group_findings": group_findings(p, mat, modes.labels),
            "planes": {s: {"ece": np.full((3, 3), 0.02), "accuracy": np.full((3, 3), 0.5)} for s in ("id", "ood")},
            "dynamics": pd.DataFrame({"step": [10] * m, "model": range(m), "cluster": cl2.labels, "mode": modes.labels}),
            "card": pd.DataFrame([{"split": "id", "accuracy of bag of words": 0.97},
                                  {"split": "ood", "accuracy of bag of words": 0.5}])}, p


def test_summary_of_a_one_cluster_matrix_says_so_and_states_no_placeholder():
    from lmc_core.analysis import findings as F
    from lmc_core.studies.generalization_report import describe

    d, p = _one_cluster_run()
    summary = describe(p, d)
    text = summary.markdown()
    assert d["cl"].k == 1 and summary.numbers["k_tested"] == 1
    found = {f.question: f for f in summary.findings()}
    gap = next(f for q, f in found.items() if q.startswith("Cluster structure beyond the same barriers"))
    assert gap.verdict == F.NOT_ABOVE_CHANCE and "would have been called above chance" in gap.text()
    assert "with one cluster (k = 1) there is no stability to measure" in text
    assert "precondition is **not met**" in text
    head = summary.headline  # the agreement of clusters and modes, not testable without two modes
    assert head.question.startswith("Clusters (k = 2) vs strategy modes") and head.verdict == F.NOT_TESTABLE
    assert head.n_units == 16 and np.isfinite(head.p_value)
    assert "1.00 ± 0.00" not in text and "0 % cluster changes" not in text
    assert "nan" not in text.lower()


def test_agreement_of_clusters_and_modes_is_judged_against_permuted_mode_labels():
    """The headline: ARI against the mode labels permuted among the models (clusters fixed) — no bootstrap of
    models with replacement (duplicates have barrier 0 to each other and cluster together, biasing ARI upwards)."""
    from lmc_core.analysis import findings as F
    from lmc_core.analysis.cluster import adjusted_rand
    from lmc_core.analysis.stats import label_permutation_null

    d, lab = _blocks([14, 10])
    cl = spectral_clusters(d, 2, seed=0)
    null = label_permutation_null(lambda x: adjusted_rand(cl.labels, x), lab, 199)
    same = F.structure(adjusted_rand(cl.labels, lab), null, question="q", metric="ARI", n_units=24)
    assert same.verdict == F.ABOVE_CHANCE and same.estimate == pytest.approx(1.0)
    assert abs(np.median(null)) < 0.05 and same.detectable < 0.3  # the null centres on 0; 0.3 would be called
    other = np.random.default_rng(5).permutation(lab)
    chance = F.structure(adjusted_rand(cl.labels, other), label_permutation_null(
        lambda x: adjusted_rand(cl.labels, x), other, 199), question="q", metric="ARI", n_units=24)
    assert chance.verdict == F.NOT_ABOVE_CHANCE and chance.detectable == pytest.approx(same.detectable, abs=0.1)


def test_across_minus_within_and_the_groups_of_pairs():
    from lmc_core.analysis.stats import label_permutation_null, permutation_p
    from lmc_core.analysis.strategies import (GROUPS, across_minus_within, group_means, group_pairs, top_pairs,
                                              typical_models)

    d, lab = _blocks([6, 4], within=0.01, across=0.05, noise=0.0)
    pairs = group_pairs(lab)
    assert [len(pairs[g][0]) for g in GROUPS] == [15, 6, 24]  # C(6, 2), C(4, 2), 6 x 4
    assert group_means(d, lab)[GROUPS[2]] == pytest.approx(0.05)
    assert across_minus_within(d, lab) == pytest.approx(0.04)
    null = label_permutation_null(lambda x: across_minus_within(d, x), lab, 199)
    assert permutation_p(across_minus_within(d, lab), null) <= 0.01
    assert np.isnan(across_minus_within(d, np.zeros(10, dtype=int)))  # one mode: nothing across
    assert len(top_pairs(d, lab, 2)) == 6 and all(lab[a] != lab[b] for a, b in top_pairs(d, lab, 2)[4:])
    score = np.r_[0.50, 0.51, 0.52, 0.53, 0.54, 0.90, 0.70, 0.71, 0.72, 0.73]
    a, b, c = typical_models(lab, score)  # two typical of the larger mode (0), one of the other
    assert lab[a] == lab[b] == 0 and lab[c] == 1 and 5 not in (a, b) and c in (7, 8)


def test_row_effect_null_keeps_each_model_s_level_of_barriers():
    """A few models with high barriers to every other model are structure for the plain eigengap null, not for the
    null that keeps each model's row effect; two blocks are structure for both."""
    from lmc_core.analysis.cluster import row_effect_null, row_effects

    rng = np.random.default_rng(0)
    r = rng.uniform(0, 1, 12)
    fit, resid = row_effects(r[:, None] + r[None])  # an additive matrix: b_ij = r_i + r_j exactly
    assert np.allclose(fit, r) and np.allclose(resid, 0)
    r = np.r_[np.full(3, 0.05), np.zeros(17)]
    hub = 0.02 + r[:, None] + r[None] + rng.uniform(0, 0.004, (20, 20))
    hub = (hub + hub.T) / 2
    np.fill_diagonal(hub, 0)
    assert eigengap_null(hub, resamples=199).p < 0.05 and row_effect_null(hub, resamples=199).p > 0.05
    d, _ = _blocks([12, 8])
    assert row_effect_null(d, resamples=199).p < 0.05


def test_a_fine_tune_starts_from_the_pretrained_backbone_with_its_own_classifier_per_seed():
    from lmc_core.config import RunSpec, Seeds, TrainConfig
    from lmc_core.ensemble import stack_states
    from lmc_core.families import family_of
    from lmc_core.models.mlm import MaskedLMConfig, backbone
    from lmc_core.train.trainer import Trainer, TrainState

    mlm = MaskedLMConfig(vocab_size=64, d_model=16, n_layers=1, n_heads=2, d_ff=32, max_positions=12)
    pre = backbone(family_of(mlm).init(mlm, [7]))
    assert not any(n.startswith(("mlm_", "pooler", "head")) for n in pre)
    cfg = mlm.encoder(2)
    ids = torch.randint(5, 64, (20, 12))
    ex_ = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": torch.randint(0, 2, (20,))}
    from lmc_core.data.batches import Examples

    spec = RunSpec(model=cfg, data=PlaysTaskConfig(vocab_size=64), train=TrainConfig(steps=1, batch_size=4),
                   seeds=(Seeds(1, 2, 3), Seeds(4, 5, 6)), init_from="pretrained@1")
    t = Trainer(spec, Examples(**ex_), "cpu", TrainState(stack_states([pre] * 2)))
    state = t.model.state_dict()
    for n, v in pre.items():  # the backbone is the pretrained one in both copies
        assert torch.equal(state[n][0], v[0]) and torch.equal(state[n][1], v[0]), n
    assert not torch.equal(state["head.weight"][0], state["head.weight"][1])  # the classifier: each copy's seed


@pytest.mark.parametrize("profile", ["smoke", "quick", "paper"])
def test_every_profile_passes_the_checks(profile):
    from lmc_core.studies import generalization as g

    p = g.STUDY.params({"profile": profile})
    if profile != "smoke":
        assert p.models >= 32 and p.eval_examples * (p.words + 2) >= 16000  # the floor
    if profile == "paper":
        assert p.models == 100 and p.encoder == "minilm"


@pytest.mark.parametrize("bad, name", [({"epsilon": 2.0}, "epsilon"), ({"encoder": "minilm"}, "vocab_size"),
                                       ({"models": 3}, "models"), ({"encoder": "bert"}, "encoder"),
                                       ({"eval_examples": 5000}, "eval_examples"), ({"dynamics": [1.5]}, "dynamics"),
                                       ({"control_models": 2}, "control_models"), ({"plane_range": [1, 0]}, "plane_range"),
                                       ({"bootstrap": 99}, "bootstrap")])
def test_bad_study_parameters_are_named_before_any_training(bad, name):
    from lmc_core.studies import generalization as g

    with pytest.raises(ConfigError, match=name):
        g.STUDY.params({"profile": "quick", **bad})


def test_profiles_keep_the_specs_of_the_stored_runs():
    """Every run's identity (its spec's hash) stays what the committed figures were built from."""
    from lmc_core.config import config_hash
    from lmc_core.studies import generalization as g
    from lmc_core.runs.strategies import jobs, pretrain_spec

    quick = jobs(g.PROFILES["quick"], "/store")
    assert len(quick) == 32 and config_hash(quick[0].spec) == "ccde474c0e012547"
    assert config_hash(jobs(g.PROFILES["smoke"], "/store")[0].spec) == "676b6ee28ee4ce98"
    assert config_hash(jobs(g.PROFILES["paper"], "/store")[0].spec) == "259ef83900dceadf"
    assert quick[0].spec.init_from.startswith(config_hash(pretrain_spec(g.PROFILES["quick"])))


def test_clumps_inside_one_broad_mode_are_not_two_strategies():
    rng = np.random.default_rng(4)
    x = np.r_[rng.normal(0.71, 0.004, 14), rng.normal(0.74, 0.004, 10), rng.uniform(0.6, 0.8, 8)]
    b = bimodality(x)
    assert b.ashman_d < 2 or b.verdict != "bimodal"


def test_fine_tunes_on_unpadded_passages_train_as_alone_inside_an_ensemble():
    """The phrase task has no padding, so the encoder's dropout masks do not depend on the other copies' batches
    (the padding-trim caveat of the encoder family does not arise): copy k of an ensemble equals it trained alone."""
    from lmc_core.config import RunSpec, Seeds, TrainConfig
    from lmc_core.models.mlm import MaskedLMConfig
    from lmc_core.train import train_copies

    torch.set_num_threads(1)
    cfg = MaskedLMConfig(vocab_size=512, d_model=16, n_layers=1, n_heads=2, d_ff=32, max_positions=12).encoder(2)
    data = plays_task(SMALL)["train"]
    spec = RunSpec(model=cfg, data=SMALL, train=TrainConfig(steps=3, batch_size=8, optimizer="adamw", lr=1e-2,
                                                            schedule="constant"),
                   seeds=(Seeds(1, 2, 3), Seeds(4, 5, 6)))
    both = train_copies(spec, data, "cpu", progress=False)
    alone = train_copies(replace(spec, seeds=spec.seeds[1:]), data, "cpu", progress=False)
    for n, t in both.state.items():
        torch.testing.assert_close(t[1:2], alone.state[n], rtol=1e-5, atol=1e-6)


def test_the_null_is_read_as_a_null_with_its_power_and_the_modes_set_against_juneja():
    """Issue 27: clusters that do not recover the strategies are a null stated with the smallest effect the design
    could have seen; the rule-like mode's within barriers are set against Juneja et al.'s one-basin picture."""
    from types import SimpleNamespace

    from lmc_core.analysis import findings as F
    from lmc_core.studies.generalization_report import _null_lines

    rng = np.random.default_rng(0)
    null = rng.normal(0, 0.03, 999)
    s = {"ari_k2": F.structure(0.0, null, question="ari", metric="m", n_units=32),
         "amw": F.structure(0.001, null / 10, question="amw", metric="m", unit="nats", n_units=32, digits=4)}
    within = {g: F.estimate(v, question=g, metric="m", unit="nats", unit_name="model", digits=4)
              for g, v in (("within mode 0", rng.normal(0.05, 0.002, 6)), ("within mode 1", rng.normal(0.07, 0.002, 6)))}
    d = {"modes": SimpleNamespace(bimodal=True), "group_findings": within}
    text = "\n".join(_null_lines(d, s))
    assert "a null" in text and f"an ARI above {s['ari_k2'].detectable:.3f}" in text and "not ruled out" in text
    assert "generalises better is the less internally connected one, the opposite of Juneja" in text
    assert "do not overlap" in text
    within["within mode 1"] = F.estimate(rng.normal(0.051, 0.01, 6), question="w1", metric="m", unit="nats",
                                         unit_name="model", digits=4)  # overlapping: no direction
    text = "\n".join(_null_lines(d, s))
    assert "overlap, so no mode is called the more connected one" in text and "Juneja" not in text
    d["modes"] = SimpleNamespace(bimodal=False)  # no two strategies: nothing to read
    assert _null_lines(d, s) == []
