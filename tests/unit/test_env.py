"""Packaging consistency: pyproject.toml vs environment.yml, CI entry point, README commands."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TORCH_PIN = "torch==2.13.0"


def _name(requirement: str) -> str:
    """Return the PEP 503-normalised project name of a requirement string."""
    name = re.split(r"[\s<>=!~;\[@(]", requirement.strip(), maxsplit=1)[0]
    return re.sub(r"[-_.]+", "-", name).lower()


def _pyproject_requirements() -> list[str]:
    """Return runtime + all optional requirements of pyproject.toml."""
    tomllib = pytest.importorskip("tomllib", reason="tomllib needs Python >= 3.11")
    data = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    project = data["project"]
    reqs = list(project.get("dependencies", []))
    for extra in project.get("optional-dependencies", {}).values():
        reqs.extend(extra)
    return reqs


def _conda_pip_requirements() -> list[str]:
    """Return the pip section of environment.yml, without options and the local package."""
    import yaml
    env = yaml.safe_load((ROOT / "environment.yml").read_text(encoding="utf-8"))
    pip_sections = [d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d]
    assert len(pip_sections) == 1, "environment.yml needs exactly one pip: section"
    return [str(r) for r in pip_sections[0] if not str(r).startswith("-")]


def test_pyproject_and_environment_name_the_same_packages() -> None:
    py = {_name(r) for r in _pyproject_requirements()}
    conda = {_name(r) for r in _conda_pip_requirements()}
    assert py == conda, (
        f"only in pyproject.toml: {sorted(py - conda)}; "
        f"only in environment.yml: {sorted(conda - py)}"
    )


def test_environment_yml_basics() -> None:
    import yaml
    env = yaml.safe_load((ROOT / "environment.yml").read_text(encoding="utf-8"))
    deps = env["dependencies"]
    assert "python=3.11" in deps and "pip" in deps
    pip = next(d["pip"] for d in deps if isinstance(d, dict) and "pip" in d)
    assert "-e ." in pip


def test_pyproject_torch_is_a_range_that_admits_the_pin() -> None:
    """pyproject must not force a torch on an environment that has one (Colab, clusters); the pin is
    installed by `make install` and must satisfy the range."""
    from packaging.requirements import Requirement

    torch = [Requirement(r) for r in _pyproject_requirements() if _name(r) == "torch"]
    assert len(torch) == 1 and "==" not in str(torch[0].specifier), torch
    assert torch[0].specifier.contains(TORCH_PIN.split("==")[1]), (torch, TORCH_PIN)


@pytest.mark.parametrize("source", ["environment.yml", "Makefile"])
def test_torch_pinned_exactly(source: str) -> None:
    if source == "environment.yml":
        reqs = _conda_pip_requirements()
    else:
        text = (ROOT / "Makefile").read_text(encoding="utf-8")
        reqs = re.findall(r"torch\s*[=<>!~][^\s\"']*", text)
    torch = [r.replace(" ", "") for r in reqs if _name(r) == "torch"]
    assert torch == [TORCH_PIN], f"{source}: torch must be pinned as {TORCH_PIN}, got {torch}"


def test_ci_runs_make_test() -> None:
    ci = ROOT / ".ci" / "run"
    text = ci.read_text(encoding="utf-8")
    commands = [
        line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")
    ]
    assert "set -euo pipefail" in commands
    assert commands[-1] == "make test", ".ci/run must end by running exactly `make test` (the README's test command)"
    assert "make test-paper" not in commands, \
        "make test-paper takes over an hour on CI's two cores: with make test it does not fit CI's 90 minutes"


def test_readme_documents_make_targets() -> None:
    readme = ROOT / "README.md"
    text = readme.read_text(encoding="utf-8")
    assert "make test" in text
    assert "make figures" in text
