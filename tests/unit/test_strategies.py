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


def test_summary_of_a_one_cluster_matrix_says_so_and_states_no_placeholder():
    from lmc_core.studies.generalization import STUDY_DEFAULTS
    from lmc_core.studies.generalization_report import describe
    from lmc_core.studies.generalization_stats import agreement, group_barriers

    rng = np.random.default_rng(1)
    m = 16
    mat = rng.uniform(0.010, 0.012, (m, m))  # one cluster: every pair alike
    mat = (mat + mat.T) / 2
    np.fill_diagonal(mat, 0)
    ood = rng.normal(0.52, 0.01, m)
    modes = bimodality(ood)
    models = pd.DataFrame({"model": range(m), "id_loss": rng.uniform(0.9, 1.0, m), "id_accuracy": rng.uniform(0.9, 1, m),
                           "ood_accuracy": ood, "sharpness": rng.uniform(1, 2, m), "mode": modes.labels})
    cl = spectral_clusters(mat, None, None, 6, seed=0)
    cl2 = spectral_clusters(mat, 2, cl.delta, seed=0)
    null = eigengap_null(mat, 6, cl.delta, 99)
    stab = stability_by_k(mat, range(2, 7), cl.delta, 3)
    agree = {"k2": agreement(mat, cl2, modes.labels, 49)}
    groups = group_barriers(mat, modes.labels, 49)
    planes = {s: {"ece": np.full((3, 3), 0.02), "accuracy": np.full((3, 3), 0.5)} for s in ("id", "ood")}
    dyn = pd.DataFrame({"step": [10] * m, "model": range(m), "cluster": cl2.labels, "mode": modes.labels})
    card = pd.DataFrame([{"split": "id", "accuracy of bag of words": 0.97}, {"split": "ood", "accuracy of bag of words": 0.5}])
    p = {**STUDY_DEFAULTS, "profile": "test", "models": m}
    text, numbers = describe(models, modes, mat, cl, cl2, null, stab, agree, groups, planes, dyn, None, card, p)
    assert cl.k == 1 and numbers["k_tested"] == 1
    assert "**k = 1** (no more cluster structure than chance)" in text
    assert "with one cluster (k = 1) there is no stability to measure" in text
    assert "precondition is **not met**" in text and "not a finding" in text
    assert "1.00 ± 0.00" not in text and "0 % cluster changes" not in text
    assert "nan" not in text.lower()


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
    from lmc_core.studies.common import resolve_params

    p = resolve_params(g.PROFILES, {"profile": profile})
    g.check_params(p)
    if profile != "smoke":
        assert p["models"] >= 32 and p["eval_examples"] * (p["words"] + 2) >= 16000  # the floor
    if profile == "paper":
        assert p["models"] == 100 and p["encoder"] == "minilm"


@pytest.mark.parametrize("bad, name", [({"epsilon": 2.0}, "epsilon"), ({"encoder": "minilm"}, "vocab_size"),
                                       ({"models": 3}, "models"), ({"encoder": "bert"}, "encoder"),
                                       ({"eval_examples": 5000}, "eval_examples"), ({"dynamics": [1.5]}, "dynamics")])
def test_bad_study_parameters_are_named_before_any_training(bad, name):
    from lmc_core.studies import generalization as g
    from lmc_core.studies.common import resolve_params

    with pytest.raises(ConfigError, match=name):
        g.check_params(resolve_params(g.PROFILES, {"profile": "quick", **bad}))


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
