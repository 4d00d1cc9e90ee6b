"""The Study seam's contract, on every registered study (the package's and the test suite's toy study): typed
parameters with help and a domain check, profiles that round-trip, bad values and unknown names refused naming
the field before any work; and (integration tier, tests/integration/test_study_runs.py) the smoke profile runs
and every finding it prints follows the findings layer's rules."""
import dataclasses

import pytest

from lmc_core.config import ConfigError
from lmc_core.publish.paths import PROFILES
from lmc_core.studies.base import Study
from lmc_core.studies.params import StudyParams
from lmc_core.studies.registry import MODULES, studies

STUDIES = studies()
IDS = [s.notebook for s in STUDIES]


def test_every_module_of_the_registry_is_one_study_in_reading_order():
    from lmc_core.studies.registry import PACKAGE_PREFIXES

    assert STUDIES[-1].prefix == "99"  # the test suite's toy study joined with one line
    assert [s.prefix for s in STUDIES[:-1]] == list(PACKAGE_PREFIXES) and len(STUDIES) == len(MODULES) + 1
    prefixes = [s.prefix for s in STUDIES]
    assert len(set(prefixes)) == len(prefixes) and prefixes == sorted(prefixes)


@pytest.mark.parametrize("study", STUDIES, ids=IDS)
def test_a_study_describes_itself(study):
    assert isinstance(study, Study)
    assert study.notebook.startswith(study.prefix + "_") and study.question.endswith("?") and study.claim


@pytest.mark.parametrize("study", STUDIES, ids=IDS)
def test_every_profile_is_a_validated_instance_that_round_trips(study):
    assert set(study.profiles) == set(PROFILES)
    for name, prof in study.profiles.items():
        assert isinstance(prof, StudyParams) and prof.profile == name
        p = study.params({"profile": name})
        assert p == prof.validate()
        assert study.params(p.as_dict()) == p  # every field given back as a parameter: the same parameters


@pytest.mark.parametrize("study", STUDIES, ids=IDS)
def test_every_parameter_has_help_and_a_domain_check_that_names_it(study):
    bad = object()
    for f in dataclasses.fields(study.profiles["quick"]):
        assert f.metadata.get("help"), f"{study.notebook}: parameter {f.name} has no help text"
        assert callable(f.metadata.get("check")), f"{study.notebook}: parameter {f.name} has no domain check"
        with pytest.raises(ConfigError, match=f.name):
            study.params({"profile": "smoke", f.name: bad})


@pytest.mark.parametrize("study", STUDIES, ids=IDS)
def test_an_unknown_parameter_is_refused_naming_the_nearest(study):
    name = dataclasses.fields(study.profiles["quick"])[-1].name
    with pytest.raises(ConfigError, match=f"did you mean '{name}'"):
        study.params({"profile": "smoke", name + "x": 1})
    with pytest.raises(ConfigError, match="smoke"):
        study.params({"profile": "huge"})
