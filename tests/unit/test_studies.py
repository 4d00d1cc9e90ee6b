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
    ({"stepz": 3}, ConfigError, "valid parameters"),
    ({"corpus": "wikitext"}, ValueError, "shakespeare"),
    ({"corpus": "ptb", "data_path": "no/such/folder"}, DataUnavailableError, "no/such/folder"),
    ({"device": "cuda:7"} , ValueError, "cpu"),
])
def test_bad_parameters(tmp_path, kw, err, match):
    if kw.get("device") and __import__("torch").cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(err, match=match):
        run(tmp_path, **kw)
    assert not (tmp_path / "s").exists() or not any((tmp_path / "s").iterdir())


def test_grokking_summary_never_calls_a_half_grokked_pair_grokked():
    """One seed of a barrier setting grokked, the other did not: the summary must not say 'both seeds grokked'
    (pandas' max skips NaN), and the figure must not mark a grok step for that pair."""
    import pandas as pd

    from lmc_core.studies.grokking_figures import both_grokked, describe

    grok = pd.DataFrame({"weight_decay": [1.0, 1.0, 0.5], "fisher": [0.0, 0.0, 0.0], "seed": [1, 2, 1],
                         "diverged": False, "grok_step": [float("nan"), 2350.0, 1500.0],
                         "memorised_step": [50.0, 50.0, 100.0],
                         "final_test_acc": [0.943, 1.0, 1.0]})
    barriers = pd.DataFrame([{"weight_decay": 1.0, "fisher": 0.0, "step": s, "kind": k, "loss_barrier": 1.0,
                              "error_barrier_pp": 50.0} for s in (1000, 3000) for k in ("unaligned", "weight matching")])
    p = {"profile": "test", "p": 31, "train_frac": 0.4, "steps": 3000, "lr": 0.01}
    text, _ = describe(grok, barriers, p)
    assert "both seeds grokked" not in text
    assert "only seed 2 grokked (step 2350)" in text and "94.3 %" in text
    assert np.isnan(both_grokked(grok, 1.0, 0.0)) and both_grokked(grok, 0.5, 0.0) == 1500.0


def test_grokking_claim_leaves_out_settings_that_never_fit_the_training_set():
    """More weight decay groks sooner among the settings that memorise; the strongest setting never fits the
    training set at all (over-regularised), which must not count as 'slowest to grok' against the claim."""
    import pandas as pd

    from lmc_core.studies.grokking_figures import describe

    nan = float("nan")
    grok = pd.DataFrame({"weight_decay": [4.0, 2.0, 1.0, 0.0], "fisher": 0.0, "seed": 1, "diverged": False,
                         "memorised_step": [nan, 50.0, 50.0, 50.0], "grok_step": [nan, 1000.0, 2000.0, nan],
                         "final_test_acc": [0.05, 1.0, 1.0, 0.2]})
    p = {"profile": "test", "p": 31, "train_frac": 0.4, "steps": 3000, "lr": 0.01}
    text, numbers = describe(grok, pd.DataFrame(), p)
    assert numbers["unfit"] == 1 and "never fit the training set" in text and "wd 4, λ 0" in text
    assert numbers["claims"]["weight_decay"] == {"rho_mean": -1.0, "agree": 1, "slices": 1}


def test_overrides_arrive_as_papermill_delivers_them():
    from lmc_core.studies.common import merge_overrides

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
