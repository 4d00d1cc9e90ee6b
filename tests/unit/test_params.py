"""The papermill parameter files match the notebooks' parameters cells and the study profiles."""
import ast
import json
from pathlib import Path

import pytest
import yaml

from lmc_core.studies.registry import studies
from lmc_core.publish.paths import PROFILES

ROOT = Path(__file__).resolve().parents[2]


def parameter_names(nb: Path) -> set[str]:
    cells = json.loads(nb.read_text())["cells"]
    src = next("".join(c["source"]) for c in cells if "parameters" in c.get("metadata", {}).get("tags", []))
    return {t.id for node in ast.parse(src).body if isinstance(node, ast.Assign) for t in node.targets}


@pytest.mark.parametrize("profile", PROFILES)
def test_param_files_fit_every_notebook(profile):
    params = yaml.safe_load((ROOT / "params" / f"{profile}.yaml").read_text())
    assert params["profile"] == profile
    for nb in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        missing = set(params) - parameter_names(nb)
        assert not missing, f"{nb.name} has no parameter(s) {missing}"
    for study in studies():
        study.params({"profile": profile})  # every study knows every profile
