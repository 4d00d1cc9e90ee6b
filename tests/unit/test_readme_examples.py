"""The README's command examples, executed as far as a test can: every `papermill` command names a notebook that
exists and parameters it has, with values in the form papermill delivers them (YAML/JSON strings) that our
parsing accepts; every `python -m lmc_core` command parses; every `make` target exists."""
from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest

import committed

ROOT = Path(__file__).resolve().parents[2]


def code_blocks() -> list[str]:
    text = committed.read_text("README.md")
    # every fenced block, whatever its language (so a ```python block cannot shift the pairing of fences)
    return [body for lang, body in re.findall(r"```(\w*)\n(.*?)```", text, re.S) if lang in ("", "bash", "sh")]


def commands(prefix: str) -> list[list[str]]:
    out = []
    for block in code_blocks():
        for cmd in block.replace("\\\n", " ").splitlines():
            cmd = cmd.split("  #")[0].strip()
            if cmd.startswith(prefix):
                out.append(shlex.split(cmd))
    return out


def notebook_parameters(path: Path) -> set[str]:
    nb = json.loads(path.read_text())
    cell = next(c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", []))
    return {m.group(1) for m in re.finditer(r"^(\w+)\s*=", "".join(cell["source"]), re.M)}


def test_the_readme_has_examples_to_check():
    assert commands("papermill") and commands("python -m lmc_core") and commands("make")


@pytest.mark.parametrize("cmd", commands("papermill"), ids=lambda c: " ".join(c)[:60])
def test_papermill_examples_pass_parameters_our_code_accepts(cmd):
    from lmc_core.runs.dispatch import check_executor
    from lmc_core.studies.params import merge_overrides

    nb = ROOT / cmd[1]
    assert nb.exists(), f"{cmd[1]} does not exist"
    known = notebook_parameters(nb) | {"executor", "slurm"}  # grid notebooks take these through their study
    params = {}
    args = cmd[3:]
    while args:
        flag, *args = args
        if flag in ("-p", "--parameters"):
            name, value, *args = args
            assert name in known, f"{nb.name} has no parameter {name!r}"
            params[name] = value  # papermill -p passes strings (it casts numbers and booleans only)
        elif flag in ("-f", "--parameters_file"):
            path, *args = args
            assert (ROOT / path).exists(), f"parameter file {path} does not exist"
    if "overrides" in params:
        merge_overrides({"overrides": params["overrides"]})
    if "slurm" in params:
        assert isinstance(check_executor("local", params["slurm"]), dict)
    if "executor" in params:
        assert params["executor"] in ("inprocess", "local", "slurm")


@pytest.mark.parametrize("cmd", commands("python -m lmc_core"), ids=lambda c: " ".join(c)[:60])
def test_command_line_examples_parse(cmd):
    from lmc_core.__main__ import build_parser

    args = [a for a in cmd[3:] if a != "..." and not a.startswith("<")]
    if args and args[0] == "bench":
        args = args[:2]
    build_parser().parse_args(args)


@pytest.mark.parametrize("cmd", commands("make"), ids=lambda c: " ".join(c)[:60])
def test_make_examples_name_real_targets(cmd):
    makefile = (ROOT / "Makefile").read_text()
    targets = {m.group(1) for m in re.finditer(r"^([a-z][\w-]*):", makefile, re.M)}
    target = next((a for a in cmd[1:] if "=" not in a), "help")
    assert target in targets, f"`{' '.join(cmd)}`: the Makefile has no target {target!r}"
