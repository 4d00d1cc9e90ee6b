"""Notebook 07's study: its parameters, what may be concluded from which curves, and its offline behaviour."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from lmc_core.analysis.metrics import barrier_table
from lmc_core.config import ConfigError
from lmc_core.data import DataUnavailableError
from lmc_core.studies import model_sizes as study
from lmc_core.studies.common import resolve_params
from lmc_core.studies.model_sizes_figures import describe, figures, size_summary


def params(**kw):
    p = resolve_params(study.PROFILES, {"profile": "quick", **kw})
    study.check_params(p)
    return p


@pytest.mark.parametrize("bad, match", [
    ({"sizes": ["tinygpt", "bertgpt"]}, "sizes="),
    ({"sizes": []}, "non-empty"),
    ({"recipes": {"toygpt": {"stpes": 10}}}, r"recipes\['toygpt'\]"),
    ({"recipes": {"toygpt": {"steps": 10, "warmup": 10}}}, "warmup"),
    ({"recipes": {"tinygpt": {"steps": 0}}}, "steps"),
    ({"recipes": {"compactgpt": {"model_overrides": {"n_heads": 5}}}}, "divisible"),
    ({"tokenizer": "tiktoken"}, "tokenizer="),
    ({"bpe_vocab": 100}, "bpe_vocab=100"),
    ({"min_lr": 1.0}, "min_lr"),
    ({"ft_model": "llama"}, "ft_model="),
    ({"ft_warmup": 300}, "ft_warmup"),
    ({"ft_lm_profile": "huge"}, "ft_lm_profile"),
    ({"precision": "fp8"}, "precision"),
    ({"eval_chars": 0}, "eval_chars"),
])
def test_bad_parameters_are_named_before_any_work(bad, match):
    with pytest.raises(ConfigError, match=match):
        params(**bad)


def test_profiles_follow_the_study():
    paper = resolve_params(study.PROFILES, {"profile": "paper"})
    assert paper["sizes"] == list(study.STUDY_SIZES) and paper["lr"] == 6e-4 and paper["alphas"] == 30
    assert paper["bpe_vocab"] == 50257 and paper["ft_steps"] == 300 and paper["ft_batch"] == 8
    for size in study.STUDY_SIZES:  # the study's Table 1 lengths, untouched in paper
        assert study.recipe(paper, size)["steps"] == study.STUDY_RECIPES[size]["steps"]
    spec = study.size_spec(paper, "mingpt", 50257, "bpe")
    t = spec.train
    assert (t.optimizer, t.betas, t.clip_norm, t.weight_decay, t.warmup_from_min) == ("adam", (0.9, 0.95), 1.0, 0, True)
    assert spec.model.dropout == 0 and spec.model.tie_embeddings and spec.model.context == 256
    assert t.batch_size == 32 and t.accum == 1 and t.steps == 3000 and t.warmup_steps == 300
    # pairs share their own initialisation; every copy has its own data order
    assert [s.init for s in spec.seeds] == [0, 0, 1, 1, 2, 2]
    assert len({s.data for s in spec.seeds}) == spec.k
    quick = params()
    assert study.recipe(quick, "compactgpt")["context"] == 32 and quick["pairs"] >= 3


def test_gpt2_sources_fail_fast_offline(monkeypatch):
    monkeypatch.setattr(study, "hub_reachable", lambda timeout=2.0: False)
    assert study.sources(params(tokenizer="auto", ft_model="auto")) == ("bpe", "ours")
    for name, default in (("tokenizer", "'bpe'"), ("ft_model", "'ours'")):
        with pytest.raises(DataUnavailableError, match=f"offline default {name}={default}"):
            study.sources(params(**{name: "gpt2"}))
    monkeypatch.setattr(study, "hub_reachable", lambda timeout=2.0: True)
    assert study.sources(params(tokenizer="auto", ft_model="auto")) == ("gpt2", "gpt2")


def _curves(size: str, bump_train: float, bump_eval: float, train_end: float, eval_end: float, pairs=5,
            rng=np.random.default_rng(0)) -> list[dict]:
    rows = []
    for pair in range(pairs):
        for split, end, bump in (("train", train_end, bump_train), ("eval", eval_end, bump_eval)):
            b = bump * (1 + 0.1 * rng.standard_normal())
            for a in np.linspace(0, 1, 11):
                loss = end + b * 4 * a * (1 - a)
                rows.append({"size": size, "pair": pair, "split": split, "alpha": a, "loss": loss,
                             "ppl": np.exp(loss), "error": 0.5 + 0.1 * b * 4 * a * (1 - a), "tokens": 1000})
    return rows


def _sizes(rows):
    return pd.DataFrame([{"size": s, "params": n, "start": start, "pairs": 5, "unigram_entropy": h, "steps": 100,
                          "study_steps": 1000, "study_params": 1e6} for s, n, start, h in rows])


def test_verdicts_preconditions_and_the_over_parameterisation_pattern():
    curves = pd.DataFrame(_curves("tinygpt", 0.3, 0.3, 2.0, 2.2)  # bumpy everywhere: unstable on both
                          + _curves("compactgpt", 0.3, 0.0, 1.0, 5.0)  # overfits: train bumpy, eval flat
                          + _curves("toygpt", 0.3, 0.3, 6.5, 6.6)  # above its unigram entropy: not trained
                          + _curves("our LM", 0.0, 0.0, 1.5, 1.6))  # fine-tuned: no bump
    sizes = _sizes([("tinygpt", 2e5, "initialisation", 3.0), ("compactgpt", 3e6, "initialisation", 6.0),
                    ("toygpt", 2e5, "initialisation", 6.0), ("our LM", 5e4, "pretrained", 3.0)])
    barriers = barrier_table(curves, ("size", "pair"))
    s = size_summary(barriers, curves, sizes, "mean").set_index("size")
    assert s.loc["tinygpt", "train_loss_verdict"] == s.loc["tinygpt", "eval_loss_verdict"] == "unstable"
    assert s.loc["compactgpt", "train_loss_verdict"] == "unstable"
    assert s.loc["compactgpt", "eval_loss_verdict"] == "convex"  # a flat path is no barrier, never "stable"
    assert s.loc["compactgpt", "eval_flat_train_bumpy"] and not s.loc["tinygpt", "eval_flat_train_bumpy"]
    assert s.loc["compactgpt", "overfits"] and s.loc["compactgpt", "gap_low"] > 3.5
    assert not s.loc["toygpt", "trained"] and s.loc["tinygpt", "trained"]
    assert s.loc["our LM", "train_loss_verdict"] == "convex"
    assert "unstable" in s.loc["tinygpt", "train_loss_text"] and "no barrier" in s.loc["compactgpt", "eval_loss_text"]
    lo, hi = s.loc["tinygpt", "train_loss_low"], s.loc["tinygpt", "train_loss_high"]
    assert lo < s.loc["tinygpt", "train_loss_instability"] < hi  # an interval over the pairs
    p = params()
    text, numbers = describe(s.reset_index(), sizes, p, "bpe", "ours")
    assert "Precondition not met for ToyGPT" in text
    assert "**appears** at CompactGPT" in text
    assert not numbers["instability_every_size_train"]  # ToyGPT is untrained: "every size" cannot be claimed
    assert numbers["eval_flat_train_bumpy"] == ["CompactGPT"] and numbers["untrained"] == ["ToyGPT"]
    assert "inconclusive" not in text.split("Instability")[1].split("\n")[0]
    plotted = figures(curves, barriers, s.reset_index(), sizes, p, "bpe")
    for name, (fig, data) in plotted.items():  # the plotted numbers name the model they belong to
        if "size" in data:
            assert set(data["size"]) <= set(sizes["size"]), name
    bars = plotted["barrier_vs_params"][1].set_index(["size", "split", "metric"])
    assert bars.loc[("compactgpt", "eval", "loss"), "verdict"] == "convex"


def test_inconclusive_when_the_interval_contains_the_threshold():
    rng = np.random.default_rng(1)
    rows = []
    for pair, bump in enumerate((0.005, 0.08, 0.005, 0.08, 0.005)):  # ~0.5 %, ~8 %, ... of a loss of 2
        for split in ("train", "eval"):
            for a in np.linspace(0, 1, 11):
                rows.append({"size": "tinygpt", "pair": pair, "split": split, "alpha": a,
                             "loss": 2 + bump * 4 * a * (1 - a) + 1e-4 * rng.standard_normal(), "ppl": 1.0,
                             "error": 0.5, "tokens": 10})
    curves = pd.DataFrame(rows)
    s = size_summary(barrier_table(curves, ("size", "pair")), curves,
                     _sizes([("tinygpt", 2e5, "initialisation", 3.0)]), "mean")
    assert s.train_loss_verdict.iloc[0] == "inconclusive"
    text, numbers = describe(s, _sizes([("tinygpt", 2e5, "initialisation", 3.0)]), params(), "bpe", "ours")
    assert "not at TinyGPT (inconclusive)" in text and not numbers["instability_every_size_train"]


def test_a_held_out_loss_at_the_unigram_entropy_fails_the_precondition():
    """Training loss just below the unigram entropy is not enough: a model whose held-out loss sits at it learned
    token frequencies only (CompactGPT at 150 quick steps), so no verdict is drawn about it."""
    curves = pd.DataFrame(_curves("compactgpt", 0.3, 0.3, 5.9, 6.0) + _curves("tinygpt", 0.3, 0.3, 2.0, 2.2))
    sizes = _sizes([("compactgpt", 3e6, "initialisation", 6.0), ("tinygpt", 2e5, "initialisation", 3.0)])
    s = size_summary(barrier_table(curves, ("size", "pair")), curves, sizes, "mean").set_index("size")
    assert not s.loc["compactgpt", "trained"] and s.loc["tinygpt", "trained"]
