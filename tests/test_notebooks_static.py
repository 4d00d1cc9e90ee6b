"""Static checks of the committed notebooks (no execution)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def _source(cell: dict) -> str:
    """Return a cell's source as one string."""
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else src


if NOTEBOOKS:

    @pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
    def test_notebook_is_clean(path: Path) -> None:
        nb = json.loads(path.read_text(encoding="utf-8"))
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

else:

    def test_notebook_is_clean() -> None:
        pytest.skip("no notebooks/*.ipynb in the repository yet")
