"""Study parameters: bad input stops early with a message that says what to change."""
import numpy as np
import pytest

from lmc_core.config import ConfigError
from lmc_core.data import DataUnavailableError
from lmc_core.studies import instability_init as study


def run(tmp_path, **kw):
    return study.run({"profile": "smoke", "figures_dir": str(tmp_path / "f"), "store_dir": str(tmp_path / "s"),
                      "progress": False, **kw})


@pytest.mark.parametrize("kw, err, match", [
    ({"profile": "huge"}, ConfigError, "smoke"),
    ({"model": "resnet"}, ConfigError, "ptb-transformer"),
    ({"steps": -5}, ConfigError, "steps"),
    ({"inits": 0}, ConfigError, "inits"),
    ({"copies": 1}, ConfigError, "copies"),
    ({"variant": {"colour": 1}}, ConfigError, "variant"),
    ({"definition": "area"}, ValueError, "subchord"),
    ({"stepz": 3}, ConfigError, "did you mean 'steps'"),
    ({"corpus": "wikitext"}, ValueError, "shakespeare"),
    ({"corpus": "ptb", "data_path": "no/such/folder"}, DataUnavailableError, "no/such/folder"),
    ({"device": "cuda:7"} , ValueError, "cpu"),
    ({"lengths": [40]}, ConfigError, "shorter than steps=40"),
    ({"lengths": [10, 10]}, ConfigError, "distinct"),
    ({"overrides": {"epochs": 1}}, ConfigError, "lengths=.* are steps"),
    ({"resamples": 5}, ConfigError, "resamples"),
])
def test_bad_parameters(tmp_path, kw, err, match):
    if kw.get("device") and __import__("torch").cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(err, match=match):
        run(tmp_path, **kw)
    assert not (tmp_path / "s").exists() or not any((tmp_path / "s").iterdir())


def test_grokking_summary_never_calls_a_half_grokked_pair_grokked():
    """Connectivity is judged only between seeds that grokked (sustained): with one of three seeds not grokked, the
    setting has one pair of two seeds, too few for a verdict (findings.shared_pairs over the seeds), and the summary
    says so instead of judging anything."""
    import pandas as pd

    from lmc_core.analysis import findings as F
    from lmc_core.analysis.grok import cell_table
    from lmc_core.analysis.residual_methods import METHODS
    from lmc_core.studies.grokking import STUDY
    from lmc_core.studies.grokking_summary import describe

    nan = float("nan")
    grok = pd.DataFrame({"weight_decay": 1.0, "fisher": 0.0, "seed": [1, 2, 3], "diverged": False,
                         "grok_step": [nan, 2350.0, 2400.0], "first_hit_step": [1200.0, 2350.0, 2400.0],
                         "late_step": nan, "memorised_step": [50.0, 50.0, 50.0], "final_test_acc": [0.76, 1.0, 1.0]})
    pairs = pd.DataFrame([{"role": "grokked", "weight_decay": 1.0, "fisher": 0.0, "seed_a": 2, "seed_b": 3,
                           "overlap": 1.0, "keys_a": "[3]", "keys_b": "[3]", "learned_start": "learned",
                           "invertible_map_condition": 10.0,
                           **{f"{m}:{k}": 1.0 for m in ("loss_barrier", "chord_pct", "error_barrier_pp",
                                                        "error_chord_pp") for k in METHODS}}])
    p = STUDY.params({"profile": "smoke", "p": 31, "train_frac": 0.4, "steps": 3000, "lr": 0.01, "seeds": 3,
                      "grok_evals": 20, "eval_every": 25, "weight_decay": [1.0, 0.0], "fisher": [0.0]})
    summary = describe(grok, cell_table(grok), pairs, pd.DataFrame(columns=["step", "kind", "error_barrier_pp"]), p)
    text = summary.markdown()
    assert "2 of 3 seeds grokked and end at ≥ 95 % test accuracy, so 1 pairs" in text
    connect = [f for f in summary.findings() if f.question.startswith("Grokked seeds")]
    assert len(connect) == len(METHODS) and all(f.verdict == F.TOO_FEW and f.n_units == 2 for f in connect)
    assert summary.headline.verdict == F.NOT_TESTABLE and "weight decay" in summary.headline.question  # one cell
    assert "1 reached 95 % test accuracy but never held it for the window" in text


def test_grokking_claim_leaves_out_settings_that_never_fit_the_training_set():
    """More weight decay groks sooner among the settings that memorise; the strongest setting never fits the
    training set at all (over-regularised), which must not count as 'slowest to grok' against the claim."""
    import pandas as pd

    from lmc_core.analysis import findings as F
    from lmc_core.analysis.grok import cell_table
    from lmc_core.studies.grokking_summary import comparisons

    nan = float("nan")
    rows = [(4.0, nan, nan), (2.0, 50.0, 1000.0), (1.0, 50.0, 2000.0), (0.0, 50.0, nan)]
    grok = pd.DataFrame([{"weight_decay": wd, "fisher": 0.0, "seed": s, "diverged": False, "memorised_step": mem,
                          "grok_step": st + 10 * s if st == st else nan, "first_hit_step": nan, "final_test_acc": 1.0}
                         for wd, mem, st in rows for s in (1, 2, 3)])

    def trend(g):
        comps = comparisons(g, cell_table(g), "weight_decay", "fisher", "weight decay", "wd", "λ")
        return comps, F.trend(comps, question="q", claimed=F.LOWER)

    cells = cell_table(grok)
    assert list(cells.set_index("weight_decay").no_fit[[4.0, 2.0]]) == [True, False]
    comps, t = trend(grok)
    assert [c.verdict for c in comps] == [F.LOWER, F.LOWER] and t.verdict == F.SUPPORTED  # wd 4 not compared
    # unless most (more than half) of the neighbouring cells can be told apart, nothing is claimed
    grok.loc[grok.weight_decay == 2.0, "grok_step"] = [1500.0, 2100.0, float("nan")]  # overlaps wd 1 now
    assert trend(grok)[1].verdict == F.INCONCLUSIVE  # 1 of 2 decisive
    grok.loc[grok.weight_decay == 1.0, "grok_step"] = [2010.0, 2020.0, float("nan")]  # overlaps wd 0 too
    comps, t = trend(grok)
    assert [c.verdict for c in comps] == [F.INCONCLUSIVE, F.INCONCLUSIVE] and t.verdict == F.INCONCLUSIVE


def test_grokking_compares_final_test_accuracy_along_the_fisher_penalty():
    """Issue 27: at weight decay 0 nobody groks, so grok steps cannot compare the penalty (infinite vs infinite), but
    the final test accuracy can: higher with more λ where every seed of the penalised cell generalises better."""
    import pandas as pd

    from lmc_core.analysis import findings as F
    from lmc_core.analysis.grok import cell_table
    from lmc_core.studies.grokking_summary import VARIABLES, comparisons

    nan = float("nan")
    acc = {(0.0, 0.0): (0.25, 0.30, 0.35), (0.0, 0.1): (0.42, 0.46, 0.50), (1.0, 0.0): (1.0, 1.0, 1.0),
           (1.0, 0.1): (1.0, 1.0, 1.0)}
    grok = pd.DataFrame([{"weight_decay": wd, "fisher": lam, "seed": s + 1, "diverged": False, "memorised_step": 50.0,
                          "grok_step": nan if wd == 0 else 800.0 + s, "first_hit_step": nan, "final_test_acc": a}
                         for (wd, lam), accs in acc.items() for s, a in enumerate(accs)])
    cells = cell_table(grok)
    steps = comparisons(grok, cells, *VARIABLES[1])
    assert [c.verdict for c in steps][0] == F.NOT_TESTABLE  # wd 0: no seed grokked in either cell
    accuracy = comparisons(grok, cells, *VARIABLES[1], accuracy=True)
    assert accuracy[0].verdict == F.HIGHER and accuracy[0].estimate == pytest.approx(100 * 0.16)
    assert "final test accuracy, range over seeds: 42–50 % vs 25–35 %" in accuracy[0].metric
    assert accuracy[1].verdict != F.HIGHER  # equal accuracies at wd 1: nothing to claim


def test_overrides_arrive_as_papermill_delivers_them():
    from lmc_core.studies.params import merge_overrides

    named = {"profile": "smoke", "device": "auto", "pairs": 4}
    assert merge_overrides({**named, "overrides": {"steps": 10}}) == {**named, "steps": 10}
    assert merge_overrides({**named, "overrides": '{"steps": 10, "lr": 0.5}'})["lr"] == 0.5  # -p overrides '...'
    assert merge_overrides({**named, "overrides": "steps: 10"})["steps"] == 10  # YAML
    assert merge_overrides({**named, "overrides": {"pairs": 4}}) == named  # the same value twice is no conflict
    assert merge_overrides({**named, "overrides": ""}) == named
    with pytest.raises(ConfigError, match=r"device: 'auto' as a parameter, 'cpu' in overrides.*once"):
        merge_overrides({**named, "overrides": {"device": "cpu"}})
    with pytest.raises(ConfigError, match="mapping"):
        merge_overrides({**named, "overrides": "[1, 2]"})
    with pytest.raises(ConfigError, match="YAML/JSON"):
        merge_overrides({**named, "overrides": "{pairs: [1,"})


def test_a_notebook_passing_overrides_beside_named_parameters_gets_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="device"):
        run(tmp_path, device="auto", overrides={"device": "cpu"})
    assert not (tmp_path / "s").exists() or not any((tmp_path / "s").iterdir())


@pytest.mark.parametrize("study", ["alignment", "generalization"])
@pytest.mark.parametrize("kw, match", [({"executor": "cluster"}, "executor='cluster'"),
                                       ({"executor": "local", "slurm": "[1, 2]"}, "slurm")])
def test_a_bad_executor_is_refused_before_anything_trains(study, kw, match, tmp_path):
    """Notebooks 04 and 05 check where their grids will run before any data is read or model trained (05 used to
    pretrain its encoder first and fail only at the fine-tunes)."""
    import importlib

    mod = importlib.import_module(f"lmc_core.studies.{study}")
    with pytest.raises(ConfigError, match=match):
        mod.run({"profile": "smoke", "figures_dir": str(tmp_path / "f"), "store_dir": str(tmp_path / "s"),
                 "cache_dir": str(tmp_path / "c"), "progress": False, **kw})
    assert not (tmp_path / "s").exists() or not any((tmp_path / "s").iterdir())


def test_your_models_widths_increase_and_report_needs_every_width(tmp_path):
    from lmc_core.studies import your_models

    with pytest.raises(ConfigError, match="distinct and increasing"):
        your_models.settings({"profile": "smoke", "overrides": {"widths": [32, 16]}, "figures_dir": str(tmp_path)})
    p = your_models.settings({"profile": "smoke", "figures_dir": str(tmp_path), "store_dir": str(tmp_path / "s")})
    with pytest.raises(ConfigError, match=r"no paths for width\(s\) \[32\]"):
        your_models.report(p, {16: {}}, None, [], [], [])
