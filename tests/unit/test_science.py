"""Results a researcher can trust: divergence is never a finding, the error threshold is in points,
verdicts agree with the curve, committed numbers can be recomputed, text cells carry no numbers."""
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import committed

from lmc_core.analysis import barrier as B
from lmc_core.config import Seeds
from lmc_core.analysis.metrics import METRICS, barrier_table, judge_barriers
from lmc_core.studies.reference import FRANKLE_RESNET20_ONSET_PCT, FRANKLE_THRESHOLD_PCT, PTB_STUDY_PPL_INSTABILITY_PCT
from lmc_core.runs.store import RunStore
from lmc_core.train import TrainingDiverged, train_copies

from conftest import tiny_spec

ROOT = Path(__file__).resolve().parents[2]


def curves(values_by_pair: dict[int, dict[str, list[float]]], split="test") -> pd.DataFrame:
    rows = []
    for pair, metrics in values_by_pair.items():
        n = len(next(iter(metrics.values())))
        for i, a in enumerate(np.linspace(0, 1, n)):
            rows.append({"pair": pair, "split": split, "alpha": a, **{m: v[i] for m, v in metrics.items()}})
    return pd.DataFrame(rows)


def test_blown_up_run_with_clipping_is_divergence_and_never_stored(stream, tmp_path):
    # lr 1e3 with clipping: the loss explodes to thousands of nats/token but stays finite
    spec = tiny_spec([Seeds(0, 1, 2), Seeds(0, 3, 4)], steps=40, lr=1e3, clip_norm=0.5, save_every=10)
    store = RunStore(tmp_path)
    with pytest.raises(TrainingDiverged, match=r"ln V"):
        store.get(spec, stream, "cpu", progress=False)
    assert not (store.path(spec) / "DONE.json").exists()
    assert store.load(spec) is None


def test_healthy_run_is_not_called_divergent(stream):
    res = train_copies(tiny_spec(steps=30, lr=0.5), stream, "cpu", progress=False)
    assert res.history.loss.max() < 2 * np.log(60)


def test_non_finite_barrier_gives_no_verdict():
    c = curves({0: {"loss": [2.0, np.nan, 2.1], "ppl": [7.4, np.inf, 8.2], "error": [0.5, 0.6, 0.5]},
                1: {"loss": [2.0, 2.5, 2.1], "ppl": [7.4, 12.2, 8.2], "error": [0.5, 0.6, 0.5]}})
    t = barrier_table(c)
    bad = t[(t.metric == "ppl") & (t.pair == 0)]
    assert bad.barrier.isna().all() and bad.stable.isna().all()  # never False ("unstable") from NaN
    v = judge_barriers(t, "test", "ppl")
    assert v.verdict == "not finite" and "no finding" in v.text() and "unstable" not in v.text()
    assert B.is_stable(float("nan")) is None
    for d in B.DEFINITIONS:  # subchord's loop must not hide a NaN behind max(0, nan)
        assert np.isnan(B.barrier([0, 0.5, 1], [1.0, np.nan, 1.0], d))


def test_error_instability_is_in_points_and_loss_is_relative():
    c = curves({0: {"loss": [1.0, 1.1, 1.0], "ppl": [2.7, 3.0, 2.7], "error": [0.30, 0.33, 0.30]}})
    t = barrier_table(c).set_index(["metric", "definition"])
    assert t.loc[("error", "mean"), "instability"] == pytest.approx(3.0)  # 3 points, not 10 % of 0.30
    assert t.loc[("error", "mean"), "unit"] == "percentage points"
    assert t.loc[("loss", "mean"), "instability"] == pytest.approx(10.0)
    assert t.loc[("loss", "mean"), "unit"] == "% of endpoints' mean"
    assert not t.loc[("error", "mean"), "stable"]  # 3 points > 2 points


def test_verdict_says_convex_when_the_chord_barrier_is_zero():
    # endpoints differ, the middle is lower: `mean` = 4.8 % > 2 % but there is no barrier
    c = curves({p: {"loss": [1.0, 0.99, 1.1], "ppl": [2.72, 2.69, 3.0], "error": [0.3, 0.3, 0.31]} for p in range(5)})
    t = barrier_table(c)
    v = judge_barriers(t, "test", "loss", "mean")
    assert v.estimate > 2 and v.verdict == "no barrier"
    assert "no barrier" in v.text() and "convex" in v.text() and "`mean`" in v.text()
    assert t[(t.metric == "loss")].convex.all() and "chord_instability" in t
    bump = curves({p: {"loss": [1.0, 1.3 + 0.01 * p, 1.0], "ppl": [2.72, 3.7, 2.72], "error": [0.3, 0.4, 0.3]}
                   for p in range(5)})
    assert judge_barriers(barrier_table(bump), "test", "loss").verdict == "unstable"
    err = judge_barriers(barrier_table(bump), "test", "error")
    assert err.unit == "percentage points" and "Frankle" in err.text()


def test_study_summary_names_criterion_interval_and_convexity():
    from lmc_core.studies.instability_init import STUDY
    from lmc_core.studies.instability_init_figures import describe

    # error falls monotonically from one end to the other on every pair: `mean` reads the gap, no barrier
    vals = {p: {"loss": [1.0, 0.96, 0.95], "ppl": [2.72, 2.61, 2.59], "error": [0.34, 0.32, 0.30]} for p in range(6)}
    c = curves(vals)
    c = pd.concat([c, c.assign(split="train")]).assign(panel="char level", init=lambda d: d.pair // 2)
    t = barrier_table(c, ("panel", "init", "pair"))
    runs = pd.DataFrame([{"panel": "char level", "run": "x", "copies": 6, "inits": 3, "pairs": 6, "steps": 100,
                          "schedule": "SGD", "eval_tokens": 100, "chars_per_word": float("nan"), "role": "main"}])
    noise = pd.DataFrame([{"panel": "char level", "init": p // 2, "pair": p, "split": "test", "metric": "error",
                           "se": 0.05, "windows": 100, "resamples": 1000} for p in range(6)])
    s = describe(t, noise, runs, STUDY.params({"profile": "quick"}))
    text, numbers = s.markdown(), s.as_numbers()
    # every path convex, but 3 initialisations: the convex count and the range, no verdict ("no barrier" is one)
    assert numbers["verdict"] == "too few units" and "6 of 6 paths are convex (no barrier)" in text and "Frankle" in text
    assert "unstable" not in text and "range" in text and "`mean`" in text and "3 initialisations" in text
    assert "T = 100 steps" in s.headline.question  # the headline names the level and the training length
    assert "standard error of 0.05 percentage points" in text and "2 % of the 2-point threshold" in text
    assert "comparable to the evaluation noise" in text  # these pairs' barriers are all alike: no spread to beat


@pytest.mark.parametrize("prefix, by", [("01", ["panel", "init", "pair"]), ("02", ["parent", "k", "k_frac", "pair"])])
def test_committed_barriers_recompute_from_committed_curves(prefix, by, tmp_path):
    fig = committed.folder("figures/quick", tmp_path)  # what git stores: a local rebuild does not count
    curves = pd.read_csv(fig / f"{prefix}_curves.csv")
    if "floor" in curves:  # notebook 01 stores its noise-floor paths beside the pairs'
        curves = curves[curves.floor.isna() | (curves.floor == False)]  # noqa: E712
    stored = pd.read_csv(fig / f"{prefix}_barriers.csv")
    metrics = tuple(m for m in ("loss", "ppl", "error", "loss_word", "ppl_word") if m in curves)
    again = barrier_table(curves, tuple(by), metrics)
    key = [*by, "split", "metric", "definition"]
    m = stored.merge(again, on=key, suffixes=("", "_again"))
    assert len(m) == len(stored) == len(again)
    np.testing.assert_allclose(m.barrier, m.barrier_again, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(m.instability, m.instability_again, rtol=1e-9, atol=1e-12)
    assert (m.convex == m.convex_again).all()


def test_committed_quick_results_replicate_over_independent_units(tmp_path):
    """01: at least 5 initialisations (the findings layer's minimum for an interval); 02: at least 2 parents at every
    spawn point."""
    fig = committed.folder("figures/quick", tmp_path)
    one = pd.read_csv(fig / "01_barriers.csv")
    main = one[one.panel == one.panel.iloc[0]]
    assert main.init.nunique() >= 5
    two = pd.read_csv(fig / "02_barriers.csv")
    assert two.groupby("k").parent.nunique().min() >= 2 and two.groupby("k").pair.nunique().min() >= 4


# numbers a text cell may quote: published reference values and the threshold, never this run's numbers
def _allowed() -> set[str]:
    from lmc_core.analysis import criteria as C
    from lmc_core.analysis.stats import CONFIDENCE, MIN_UNITS

    return ({f"{v:g}" for v in PTB_STUDY_PPL_INSTABILITY_PCT.values()}
            | {f"{FRANKLE_THRESHOLD_PCT:g}", f"{FRANKLE_RESNET20_ONSET_PCT:g}", f"{100 * C.GROK_ACCURACY:g}",
               f"{100 * CONFIDENCE:g}", f"{MIN_UNITS}", f"{100 * C.LEARNED_MARGIN:g}", f"{C.OVERFIT_PCT:g}"})


ALLOWED = _allowed()  # published reference values and definitions (thresholds), never a run's result


@pytest.mark.parametrize("nb", sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")), ids=lambda p: p.stem)
def test_text_cells_quote_no_numbers_of_a_run(nb):
    cells = json.loads(nb.read_text())["cells"]
    for cell in cells:
        if cell["cell_type"] != "markdown":
            continue
        text = "".join(cell["source"])
        for m in re.finditer(r"(\d+(?:\.\d+)?)\s?%", text):
            assert m.group(1) in ALLOWED, (f"{nb.name}: a text cell quotes '{m.group(0)}'; numbers of a run "
                                           "belong in result.summary, not in text cells")


def test_readme_results_are_the_committed_summaries(tmp_path):
    """Compares what git stores, so a local `make figures` (even one interrupted halfway, which has rewritten
    some summaries and not yet the README) never turns `make test` red."""
    from lmc_core.publish.readme import render, summary_blocks

    readme = committed.read_text("README.md")
    blocks = summary_blocks(readme)
    assert {"01", "02"} <= set(blocks), "the README quotes each notebook's summary between summary markers"
    assert render(readme, committed.folder("figures/quick", tmp_path)) == readme, (
        "README results differ from figures/quick/NN_summary.md; run `python -m lmc_core readme` and commit both")
    table = readme.split("<!-- findings -->")[1].split("<!-- /findings -->")[0]
    assert table.count("\n| 0") == 8, "the findings table has one row per notebook"


def test_every_committed_summary_comes_from_the_findings_layer(tmp_path):
    """Each notebook's committed summary was written through the findings layer: a headline finding and every
    finding with its verdict word from the vocabulary (or its criterion's own), its unit count and interval kind."""
    import json

    from lmc_core.analysis import findings as F

    fig = committed.folder("figures/quick", tmp_path)
    for prefix in ("00", "01", "02", "03", "04", "05", "06", "07"):
        d = json.loads((fig / f"{prefix}_summary.json").read_text())
        assert d["headline_finding"] and d["findings"] and d["question"] and d["claim"], prefix
        for f in d["findings"]:
            assert f["verdict"] in F.VERDICTS or f["verdict"] == "" or f["criterion"], (prefix, f["text"])
            assert f["interval"] in ("", "range", *F.INTERVAL_NAME), (prefix, f["text"])
            if f["verdict"] in (F.STABLE, F.UNSTABLE):
                assert f["n_units"] >= F.S.MIN_UNITS and f["interval"] != "range", (prefix, f["text"])


def test_colab_badges_and_install_source_come_from_one_setting(tmp_path):
    import shutil

    from lmc_core.publish.readme import render_colab, stamp_notebooks

    shutil.copytree(ROOT / "notebooks", tmp_path / "notebooks")
    (tmp_path / "pyproject.toml").write_text('[tool.lmc_core]\nrepository = "someone/lmc"\n')
    readme = "intro\n<!-- colab -->\nold\n<!-- /colab -->\nend\n"
    out = render_colab(readme, tmp_path)
    notebooks = sorted(p.name for p in (tmp_path / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    for nb in notebooks:
        assert f"colab.research.google.com/github/someone/lmc/blob/main/notebooks/{nb}" in out
    assert out.count("colab-badge.svg") == len(notebooks) and "old" not in out
    assert sorted(stamp_notebooks(tmp_path, "someone/lmc")) == sorted(n[:-6] for n in notebooks)
    for nb in notebooks:
        cell = "".join(json.loads((tmp_path / "notebooks" / nb).read_text())["cells"][1]["source"])
        assert 'repository = "someone/lmc"' in cell
