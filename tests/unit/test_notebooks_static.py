"""Static checks of the committed notebooks (no execution)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def _committed(path: Path) -> str:
    """The notebook as git stores it (the index: what a commit holds, after the nbstripout filter),
    so that outputs saved by JupyterLab in the working copy do not fail the tests; the file itself
    outside a git checkout."""
    rel = path.relative_to(ROOT).as_posix()
    try:
        out = subprocess.run(["git", "show", f":{rel}"], cwd=ROOT, capture_output=True, check=True, timeout=30)
        return out.stdout.decode("utf-8")
    except (OSError, subprocess.SubprocessError):
        return path.read_text(encoding="utf-8")


def _source(cell: dict) -> str:
    """Return a cell's source as one string."""
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else src


if NOTEBOOKS:

    @pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
    def test_notebook_is_clean(path: Path) -> None:
        nb = json.loads(_committed(path))
        dirty = [
            i
            for i, c in enumerate(nb["cells"])
            if c.get("cell_type") == "code" and (c.get("outputs") or c.get("execution_count") is not None)
        ]
        assert not dirty, f"{path.name}: clear outputs/execution counts before committing (cells {dirty})"

        params = [c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", [])]
        assert len(params) == 1, (
            f"{path.name}: need exactly one cell tagged 'parameters', found {len(params)}"
        )
        assert "profile =" in _source(params[0]), (
            f"{path.name}: the parameters cell must set `profile = ...`"
        )

        for i, c in enumerate(nb["cells"]):
            if c.get("cell_type") != "code":
                continue
            for line in _source(c).splitlines():
                stripped = line.lstrip()
                assert not stripped.startswith(("def ", "async def ", "class ")), (
                    f"{path.name} cell {i}: defines `{stripped[:40]}`; move functions/classes into lmc_core"
                )

    @pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
    def test_papermill_reads_every_parameter(path: Path) -> None:
        """`papermill --help-notebook` lists every assignment of the parameters cell (a comment with an `=` sign
        made papermill skip its line and give the next parameter the wrong help)."""
        from papermill.translators import PythonTranslator

        nb = json.loads(_committed(path))
        src = next(_source(c) for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", []))
        assigned = [ln.split("=")[0].strip() for ln in src.splitlines() if ln and not ln.startswith("#")]
        import nbformat

        inferred = [p.name for p in PythonTranslator.inspect(nbformat.from_dict({"source": src}))]
        assert inferred == assigned, f"{path.name}: papermill infers {inferred}, the cell assigns {assigned}"

else:

    def test_notebook_is_clean() -> None:
        pytest.fail("no notebooks/*.ipynb found: the checkout is incomplete")


def test_git_strips_notebook_outputs_on_add(tmp_path: Path) -> None:
    """.gitattributes routes notebooks through nbstripout (installed by `make install`), which removes
    outputs and execution counts but keeps tags and cell ids."""
    attrs = (ROOT / ".gitattributes").read_text(encoding="utf-8")
    assert "*.ipynb filter=nbstripout" in attrs
    nb = json.loads((ROOT / "notebooks" / NOTEBOOKS[0].name).read_text(encoding="utf-8"))
    for c in nb["cells"]:
        if c["cell_type"] == "code":
            c["outputs"] = [{"output_type": "stream", "name": "stdout", "text": ["saved by JupyterLab\n"]}]
            c["execution_count"] = 7
    out = subprocess.run([sys.executable, "-m", "nbstripout", "--keep-id"], input=json.dumps(nb).encode(),
                         capture_output=True, check=True, timeout=60).stdout
    clean = json.loads(out)
    code = [c for c in clean["cells"] if c["cell_type"] == "code"]
    assert all(not c["outputs"] and c["execution_count"] is None for c in code)
    assert [c.get("id") for c in clean["cells"]] == [c.get("id") for c in nb["cells"]]
    assert any("parameters" in c.get("metadata", {}).get("tags", []) for c in code)
