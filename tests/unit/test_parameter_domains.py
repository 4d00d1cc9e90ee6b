"""Every study parameter has a checked domain, every size-like one an upper bound, and docs/parameters.md lists
them as the checks define them."""
from __future__ import annotations

import dataclasses

import pytest

from lmc_core.config import MAX_VOCAB, ConfigError, DataConfig, ModelConfig, TrainConfig
from lmc_core.publish import params_doc
from lmc_core.studies import params as P
from lmc_core.studies.registry import MODULES, studies

STUDIES = studies()[: len(MODULES)]  # the package's (a test may register a toy study at run time)


def _unbounded(check) -> bool:
    """True if a check admits arbitrarily large integers or lists."""
    if isinstance(check, P.Int):
        return check.hi is None
    if isinstance(check, P.Maybe):
        return _unbounded(check.inner)
    if isinstance(check, P.ListOf):
        return check.max_len is None or _unbounded(check.item)
    return False


@pytest.mark.parametrize("study", STUDIES, ids=[s.notebook for s in STUDIES])
def test_every_parameter_is_checked_and_every_size_bounded(study):
    for name, p in study.profiles.items():
        for f in dataclasses.fields(p):
            check = f.metadata.get("check")
            assert check is not None, f"{study.notebook}: {f.name} has no domain check"
            assert not _unbounded(check), f"{study.notebook}: {f.name} has no upper bound ({P.domain_words(check)})"


@pytest.mark.parametrize("study", STUDIES, ids=[s.notebook for s in STUDIES])
def test_a_huge_size_is_refused_before_any_work_naming_the_parameter(study, tmp_path):
    p = study.profiles["smoke"]
    sizes = {f.name: f.metadata["check"].hi for f in dataclasses.fields(p) if isinstance(f.metadata.get("check"), P.Int)}
    assert sizes
    for name, hi in sizes.items():
        with pytest.raises(ConfigError, match=name):
            study.params({"profile": "smoke", name: hi + 1, "store_dir": str(tmp_path / "never")})
    assert not (tmp_path / "never").exists()


def test_the_bpe_of_a_billion_entries_is_refused_by_name():
    from lmc_core.studies import model_sizes

    with pytest.raises(ConfigError, match="bpe_vocab"):
        model_sizes.STUDY.params({"profile": "smoke", "bpe_vocab": 10**9})
    with pytest.raises(ConfigError, match="vocab_cap"):
        DataConfig(level="bpe", vocab_cap=MAX_VOCAB + 1).validate()


@pytest.mark.parametrize("field, value", [("d_model", 10**6), ("vocab_size", 10**9), ("context", 10**7),
                                          ("n_layers", 0)])
def test_model_sizes_are_bounded(field, value):
    with pytest.raises(ConfigError, match=field):
        dataclasses.replace(ModelConfig(), **{field: value}).validate()


@pytest.mark.parametrize("field, value", [("steps", 10**9), ("batch_size", 10**9), ("steps", 0)])
def test_training_lengths_are_bounded(field, value):
    with pytest.raises(ConfigError, match=field):
        dataclasses.replace(TrainConfig(), **{field: value}).validate()


def test_a_list_parameter_of_exactly_two_items_refuses_three():
    from lmc_core.studies import grokking

    with pytest.raises(ConfigError, match="betas"):
        grokking.STUDY.params({"profile": "smoke", "betas": [0.9, 0.98, 0.5]})


def test_the_docs_table_is_current():
    assert params_doc.current_block() == params_doc.study_tables(STUDIES, P.StudyParams), \
        "docs/parameters.md is stale: run python -m lmc_core params"


def test_the_cli_says_whether_the_docs_table_is_current(tmp_path, monkeypatch, capsys):
    from lmc_core.__main__ import main

    assert main(["params", "--check"]) == 0 and "current" in capsys.readouterr().out
    stale = tmp_path / "parameters.md"
    stale.write_text("# x\n<!-- study-parameters -->\nold\n<!-- /study-parameters -->\n")
    monkeypatch.setattr(params_doc, "current_block", lambda path=None: "old\n")
    assert main(["params", "--check"]) == 1 and "stale" in capsys.readouterr().out
    assert params_doc.refresh(STUDIES, P.StudyParams, stale) and "### 01_instability_at_init" in stale.read_text()


def test_the_landscape_functions_bound_their_sizes():
    import numpy as np

    from lmc_core import ece, plane, spectral_clusters

    with pytest.raises(ConfigError, match="points"):
        plane(None, {}, {}, {}, None, points=202)  # 202**2 models: refused before anything is read
    with pytest.raises(ConfigError, match="kmax"):
        spectral_clusters(np.ones((3, 3)) - np.eye(3), kmax=10**6)
    with pytest.raises(ConfigError, match="bins"):
        ece(np.array([0.5]), np.array([1]), bins=10**12)
