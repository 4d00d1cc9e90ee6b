"""Every registered study's smoke profile runs, and every finding it prints follows the findings layer's rules:
it names its unit, its number of independent units and its interval (or range); no stable/unstable, higher/lower
verdict rests on a convex path, a non-finite value or fewer than MIN_UNITS units (a study whose notebook does the
computing, notebook 00, runs through papermill in tests/notebooks instead)."""
import json

import numpy as np
import pytest
import torch

from lmc_core.analysis import findings as F
from lmc_core.analysis.stats import MIN_UNITS
from lmc_core.studies.registry import studies

RUN = [s for s in studies() if not s.in_notebook]


def check_finding(f: F.Finding) -> None:
    assert f.question and f.n_units >= 0
    if f.verdict in (F.STABLE, F.UNSTABLE):
        assert f.criterion and f.source and f.unit, f.text()
        assert f.n_units >= MIN_UNITS and f.interval not in ("", "range"), f.text()
        assert np.isfinite(f.estimate) and f.convex_pairs < f.n_pairs, f.text()
    if f.verdict in (F.HIGHER, F.LOWER):
        assert np.isfinite(f.p_value) and f.p_value <= 0.05 and f.test, f.text()
    if f.verdict == F.NO_BARRIER:
        # of several pairs a claim, which needs the units; of one lone path, the description that it is convex
        assert f.convex_pairs == f.n_pairs and (f.n_units >= MIN_UNITS or f.n_pairs == 1), f.text()
    if f.verdict == F.INCONCLUSIVE and f.interval not in ("range", ""):
        assert np.isfinite(f.detectable) or f.test, f.text()  # a null says what it could have seen
    if f.interval == "range":
        assert f.verdict not in (F.STABLE, F.UNSTABLE), f.text()
    if np.isfinite(f.estimate) and f.n_units and f.interval:
        assert f.low <= f.estimate + 1e-9 and f.estimate <= f.high + 1e-9 or f.verdict == F.BRACKETED, f.text()


@pytest.mark.parametrize("study", RUN, ids=[s.notebook for s in RUN])
def test_the_smoke_profile_runs_and_its_findings_follow_the_rules(study, tmp_path, smoke_store):
    res = study.run({"profile": "smoke", "figures_dir": str(tmp_path / "f"), "store_dir": str(smoke_store),
                     "cache_dir": str(tmp_path / "c") if study.prefix == "99" else None, "progress": False})
    assert res.findings and res.summary.startswith("**")
    for f in res.findings:
        check_finding(f)
    numbers = json.loads((tmp_path / "f" / f"{study.prefix}_summary.json").read_text())
    assert numbers["headline_finding"]["verdict"] and numbers["findings"]
    # the machine that computed the numbers: float32 kernels (AVX2, AVX512 ...) round differently
    assert numbers["machine"]["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert numbers["machine"]["torch"] == torch.__version__
    # the machines that trained the runs it read: this one (the session's smoke store), or none (no stored run)
    here = f"{numbers['machine']['cpu']} ({numbers['machine']['cpu_capability']})"
    assert all(w.startswith(here) for w in numbers["trained_on"]), numbers["trained_on"]
    assert (tmp_path / "f" / f"{study.prefix}_summary.md").read_text() == res.summary


def test_the_rules_catch_a_verdict_from_too_few_units():
    bad = F.Finding("q", "m", "points", 3.0, F.UNSTABLE, 2.5, 3.5, "range", 3, "initialisation", 6,
                    criterion="the 2-point threshold", source="Frankle")
    with pytest.raises(AssertionError):
        check_finding(bad)
