"""Notebook 07's study: its parameters, what may be concluded from which curves, and its offline behaviour."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from lmc_core.analysis import findings as F
from lmc_core.analysis.criteria import LEARNED_MARGIN, OVERFIT
from lmc_core.analysis.lm_endpoints import endpoint_losses, learned_beyond_unigram
from lmc_core.analysis.metrics import barrier_table
from lmc_core.config import ConfigError, config_hash
from lmc_core.data import DataUnavailableError
from lmc_core.data.lm_text import every_offset, unigram_entropy
from lmc_core.families.registry import family_of
from lmc_core.publish.run_plots import interval_bars, loss_by_run, paths_by_group
from lmc_core.studies import model_sizes as study
from lmc_core.studies import model_sizes_figures as figs


def params(**kw):
    return study.STUDY.params({"profile": "quick", **kw})


@pytest.mark.parametrize("bad, match", [
    ({"sizes": ["tinygpt", "bertgpt"]}, r"sizes\[1\]='bertgpt'"),
    ({"sizes": []}, "sizes="),
    ({"sizes": ["tinygpt", "tinygpt"]}, "at most once"),
    ({"recipes": {"toygpt": {"stpes": 10}}}, r"recipes\['toygpt'\]"),
    ({"sizes": ["toygpt"], "recipes": {"toygpt": {"steps": 10, "warmup": 10}}}, "warmup"),
    ({"recipes": {"tinygpt": {"steps": 0}}}, "steps"),
    ({"sizes": ["compactgpt"], "recipes": {"compactgpt": {"model_overrides": {"n_heads": 5}}}}, "divisible"),
    ({"sizes": ["tinygpt@30"]}, "divisible"),  # 4 heads
    ({"sizes": ["tinygpt@x"]}, r"sizes\[0\]='tinygpt@x'.*'size@d_model'"),
    ({"sizes": ["tinygpt@0"]}, "width after '@'"),
    ({"recipes": {"bertgpt@32": {"steps": 10}}}, "recipes key 'bertgpt@32'"),
    ({"tokenizer": "tiktoken"}, "tokenizer="),
    ({"bpe_vocab": 100}, "bpe_vocab=100"),
    ({"min_lr": 1.0}, "min_lr"),
    ({"ft_model": "llama"}, "ft_model="),
    ({"ft_warmup": 300}, "ft_warmup"),
    ({"ft_lm_profile": "huge"}, "ft_lm_profile"),
    ({"precision": "fp8"}, "precision"),
    ({"eval_chars": 0}, "eval_chars"),
    ({"pair": 3}, "did you mean 'pairs'"),
])
def test_bad_parameters_are_named_before_any_work(bad, match):
    with pytest.raises(ConfigError, match=match):
        params(**bad)


def test_profiles_follow_the_study():
    paper = study.STUDY.params({"profile": "paper"})
    assert paper.sizes == list(study.STUDY_SIZES) and paper.lr == 6e-4 and paper.alphas == 30
    assert paper.bpe_vocab == 50257 and paper.ft_steps == 300 and paper.ft_batch == 8
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

def test_the_quick_ladder_has_one_tokenizer_and_growing_rungs():
    """Issue 27: >= 4 rungs, parameters strictly increasing, one tokenizer, >= 5 pairs per rung."""
    quick = params()
    assert len(quick.sizes) >= 4 and quick.pairs >= 5 and quick.ft_pairs >= 5
    specs = [study.size_spec(quick, s, 72, "char") for s in quick.sizes]
    counts = [sum(t[0].numel() for t in family_of(sp.model).init(sp.model, [0]).values()) for sp in specs]
    assert counts == sorted(set(counts)) and counts[2] == 205184  # TinyGPT at d = 64 is the study's TinyGPT
    assert all(study.rung(s)[0] == "tinygpt" for s in quick.sizes)  # TinyGPT's architecture: characters for all
    widths = [sp.model.d_model for sp in specs]
    assert widths == sorted(set(widths)) and [sp.model.d_ff for sp in specs] == [4 * w for w in widths]
    assert {(sp.model.n_layers, sp.model.n_heads, sp.model.context, sp.train.steps) for sp in specs} == {(4, 4, 8, 1000)}
    assert not any(sp.train.store_optimizer for sp in specs)  # a finished rung is never resumed: no Adam buffers kept
    assert study.rung("tinygpt@32") == ("tinygpt", 32) and study.rung("tinygpt") == ("tinygpt", None)
    assert figs.name("tinygpt@32") == "TinyGPT at d = 32" and figs.name("tinygpt") == "TinyGPT"
    # a rung's own recipe overrides its size's, which overrides the study's
    p = params(recipes={"tinygpt": {"steps": 500, "warmup": 50}, "tinygpt@32": {"steps": 300}})
    assert study.recipe(p, "tinygpt@32")["steps"] == 300 and study.recipe(p, "tinygpt@48")["steps"] == 500
    assert study.recipe(p, "tinygpt@32")["warmup"] == 50 and study.recipe(p, "tinygpt")["steps"] == 500


@pytest.mark.parametrize("key, digest", [  # the run identities since the ladder's runs keep no optimizer buffers
    # (store_optimizer=False: nothing resumes a finished rung, a capped paper run's
    # GPT-2 copies took 6.0 GB with them, 2.0 GB without)
    ("smoke/compactgpt/bpe", "3dd3b3bd40fe988f"), ("quick/tinygpt/char", "c6c8972638492c4f"),
    ("quick/tinygpt@32/char", "f9b3af3da51774bf"), ("quick/tinygpt@96/char", "fef3a97c1f0e827d"),
    ("paper/mingpt/bpe", "2ab1c5a865fe1623"), ("paper/gpt2/bpe", "e7163b4f042e95d9")])
def test_every_profile_keeps_its_runs(key, digest):
    """Stored runs are found again: each profile builds the same specs (hashes) as when they were last changed on
    purpose."""
    profile, size, level = key.split("/")
    p = study.STUDY.params({"profile": profile})
    spec = study.size_spec(p, size, vocab=300 if level == "char" else p.bpe_vocab, level=level, part="x")
    assert config_hash(spec) == digest


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
            b, e = bump * (1 + 0.1 * rng.standard_normal()), end * (1 + 0.01 * rng.standard_normal())
            for a in np.linspace(0, 1, 11):
                loss = e + b * 4 * a * (1 - a)
                rows.append({"size": size, "pair": pair, "split": split, "alpha": a, "loss": loss,
                             "ppl": np.exp(loss), "error": 0.5 + 0.1 * b * 4 * a * (1 - a), "tokens": 1000})
    return rows


def _sizes(rows, pairs=5):
    return pd.DataFrame([{"size": s, "params": n, "start": start, "pairs": pairs, "unigram_entropy": h, "steps": 100,
                          "tokenizer": "char" if s == "tinygpt" or start == "pretrained" else "bpe",
                          "study_steps": 1000, "study_params": study.STUDY_PARAMS.get(s, np.nan)}
                         for s, n, start, h in rows])


def _judge(curves, sizes):
    barriers = barrier_table(curves, ("size", "pair"))
    found = figs.size_findings(barriers, curves, sizes, "mean")
    return barriers, found, figs.summary_table(found, sizes, "mean")


def test_verdicts_preconditions_and_the_over_parameterisation_pattern():
    curves = pd.DataFrame(_curves("tinygpt", 0.3, 0.3, 2.0, 2.2)  # bumpy everywhere: unstable on both
                          + _curves("compactgpt", 0.3, 0.0, 1.0, 5.0)  # overfits: train bumpy, eval flat
                          + _curves("toygpt", 0.3, 0.3, 6.5, 6.6)  # above its unigram entropy: not judged
                          + _curves("our LM", 0.0, 0.0, 1.5, 1.6))  # fine-tuned: no bump
    sizes = _sizes([("tinygpt", 2e5, "initialisation", 3.0), ("compactgpt", 3e6, "initialisation", 6.0),
                    ("toygpt", 2e5, "initialisation", 6.0), ("our LM", 5e4, "pretrained", 3.0)])
    barriers, found, s = _judge(curves, sizes)
    f = {k: v["findings"] for k, v in found.items()}
    assert f["tinygpt"]["train_loss"].verdict == f["tinygpt"]["eval_loss"].verdict == F.UNSTABLE
    assert f["tinygpt"]["train_loss"].n_units == 5 and f["tinygpt"]["train_loss"].interval == "bootstrap-t"
    assert f["compactgpt"]["train_loss"].verdict == F.UNSTABLE
    assert f["compactgpt"]["eval_loss"].verdict == F.NO_BARRIER  # a flat path is no barrier, never "stable"
    assert f["compactgpt"]["overfit"].verdict == OVERFIT.above and f["tinygpt"]["overfit"].verdict == OVERFIT.below
    s = s.set_index("size")
    assert s.loc["compactgpt", "pattern"] == figs.APPEARS and s.loc["tinygpt", "pattern"] == figs.NO_OVERFIT
    # a size that did not learn is not judged in any finding, nor in the pattern
    assert not found["toygpt"]["trained"] and found["tinygpt"]["trained"]
    assert {x.verdict for x in f["toygpt"].values()} == {F.NOT_TESTABLE} and s.loc["toygpt", "pattern"] == "not judged"
    # fine-tuned pairs share one pretrained model: the unit says so
    assert f["our LM"]["train_loss"].verdict == F.NO_BARRIER and f["our LM"]["train_loss"].unit_name == figs.FT_UNIT
    summary = figs.describe(found, s.reset_index(), sizes, params(), "bpe", "ours")
    text = summary.markdown()
    assert "Precondition not met at ToyGPT" in text and "appears at CompactGPT" in text
    assert f"{figs.NO_OVERFIT} at TinyGPT" in text and "not judged at ToyGPT" in text
    assert f"{F.UNSTABLE} at TinyGPT, CompactGPT" in text and "over the 2 judged rungs" in text
    assert "TinyGPT reads characters, the others a byte-level BPE" in text  # two tokenizers: not one scale
    assert summary.headline is f["tinygpt"]["train_loss"]  # the smallest judged size on the study's ladder
    assert summary.numbers["not_judged"] == ["ToyGPT"]
    for name, fig, data in study.STUDY.figures(params(), {"summary": s.reset_index(), "curves": curves,
                                                           "training": loss_by_run({})}):
        if "size" in data:  # the plotted numbers name the model they belong to
            assert set(data["size"]) <= set(sizes["size"]), name
        if name == "barrier_vs_params":
            bars = data.set_index(["size", "split", "metric"])
            assert bars.loc[("compactgpt", "eval", "loss"), "verdict"] == F.NO_BARRIER
            assert bars.loc[("toygpt", "train", "loss"), "verdict"] == F.NOT_TESTABLE
            assert "not judged" in " ".join(t.get_text() for t in fig.axes[0].texts)


def test_too_few_pairs_give_a_range_and_no_verdict():
    curves = pd.DataFrame(_curves("tinygpt", 0.3, 0.3, 2.0, 2.2, pairs=3))
    _, found, s = _judge(curves, _sizes([("tinygpt", 2e5, "initialisation", 3.0)], pairs=3))
    f = found["tinygpt"]["findings"]["train_loss"]
    assert f.verdict == F.TOO_FEW and f.interval == "range" and not f.decided
    assert s.pattern.iloc[0] == figs.NO_OVERFIT  # a size that does not overfit is not asked for the pattern


def test_inconclusive_when_the_interval_contains_the_threshold():
    rng = np.random.default_rng(1)
    rows = []
    for pair, bump in enumerate((0.005, 0.08, 0.005, 0.08, 0.005)):  # ~0.5 %, ~8 %, ... of a loss of 2
        for split in ("train", "eval"):
            for a in np.linspace(0, 1, 11):
                rows.append({"size": "tinygpt", "pair": pair, "split": split, "alpha": a,
                             "loss": 2 + bump * 4 * a * (1 - a) + 1e-4 * rng.standard_normal(), "ppl": 1.0,
                             "error": 0.5, "tokens": 10})
    sizes = _sizes([("tinygpt", 2e5, "initialisation", 3.0)])
    _, found, s = _judge(pd.DataFrame(rows), sizes)
    f = found["tinygpt"]["findings"]["train_loss"]
    assert f.verdict == F.INCONCLUSIVE and np.isfinite(f.detectable)  # the null says what it could have seen
    assert s.pattern.iloc[0] == figs.NO_OVERFIT
    text = figs.describe(found, s, sizes, params(), "bpe", "ours").markdown()
    assert f"{F.INCONCLUSIVE} at TinyGPT" in text  # study 2's claim over the rungs
    assert "needs a rung that overfits; none does here" in text and "undecided at" not in text
    assert "every rung reads characters (one tokenizer" in text


def test_a_held_out_loss_at_the_unigram_entropy_fails_the_precondition():
    """Training loss just below the unigram entropy is not enough: a model whose held-out loss sits at it learned
    token frequencies only (CompactGPT at 150 quick steps), so no verdict is drawn about it."""
    curves = pd.DataFrame(_curves("compactgpt", 0.3, 0.3, 5.9, 6.0) + _curves("tinygpt", 0.3, 0.3, 2.0, 2.2))
    sizes = _sizes([("compactgpt", 3e6, "initialisation", 6.0), ("tinygpt", 2e5, "initialisation", 3.0)])
    _, found, _ = _judge(curves, sizes)
    assert not found["compactgpt"]["trained"] and found["tinygpt"]["trained"]


def test_the_precondition_and_the_endpoints():
    c = pd.DataFrame([{"pair": p, "split": s, "alpha": a, "loss": v + (0.5 if 0 < a < 1 else 0) + 0.1 * (a == 1)}
                      for p in (0, 1) for s, v in (("train", 1.0), ("eval", 2.0)) for a in (0.0, 0.5, 1.0)])
    ends = endpoint_losses(c)
    assert np.allclose(ends.train_loss, 1.05) and np.allclose(ends.eval_max, 2.1)  # the bump at α = ½ is no endpoint
    assert learned_beyond_unigram(ends, 2.1 / (1 - LEARNED_MARGIN) + 1e-9)
    assert not learned_beyond_unigram(ends, 2.1 / (1 - LEARNED_MARGIN) - 1e-9)  # held-out loss not far enough below
    assert not learned_beyond_unigram(ends, 1.1)  # training loss at the entropy


def test_text_helpers():
    tokens = torch.arange(8).repeat(3)
    assert unigram_entropy(tokens) == pytest.approx(math.log(8))  # uniform over 8 tokens
    w = every_offset(tokens, 4)["tokens"]
    assert w.shape == (len(tokens) - 4, 5) and w[3].tolist() == [3, 4, 5, 6, 7]  # a window at every offset


def test_plot_helpers():
    df = pd.DataFrame({"x_estimate": [1.0, 2.0], "x_low": [0.5, np.nan], "x_high": [2.0, np.nan]})
    assert interval_bars(df, "x").tolist() == [[0.5, 0.0], [1.0, 0.0]]
    curves = pd.DataFrame(_curves("a", 0.3, 0.0, 1.0, 2.0, pairs=2) + _curves("b", 0.0, 0.0, 1.0, 2.0, pairs=2))
    _, means = paths_by_group(curves, "size", [("a", "A"), ("b", "B")], {"train": "b", "eval": "r"}, {}, "t")
    m = means[(means["size"] == "a") & (means.split == "train") & (means.metric == "loss")].set_index("alpha")
    assert m.mean_over_pairs[0.5] == pytest.approx(curves[(curves["size"] == "a") & (curves.split == "train")
                                                          & (curves.alpha == 0.5)].loss.mean())
    h = pd.DataFrame({"step": [1, 1, 2, 2], "copy": [0, 1, 0, 1], "loss": [3.0, 5.0, 2.0, 4.0]})
    assert loss_by_run({"r": h}).loss.tolist() == [4.0, 3.0]
