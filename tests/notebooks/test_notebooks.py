"""Every numbered notebook runs headless under papermill on the smoke profile and writes its figures."""
from pathlib import Path

import pytest

from lmc_core.publish.paths import repo_root
from lmc_core.publish.reports import list_notebooks, run_notebooks

ROOT = repo_root()
NOTEBOOKS = list_notebooks(ROOT)


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_smoke(nb: Path, tmp_path, smoke_store):
    figs, reports, store = tmp_path / "figures", tmp_path / "reports", smoke_store
    run_notebooks("smoke", root=ROOT, notebooks=[nb.stem], figures_dir=figs, reports_dir=reports,
                  store_dir=store, extra_params={"cache_dir": str(ROOT / "data" / "cache")}, progress=False)
    prefix = nb.stem[:2]
    pngs = sorted(figs.glob(f"{prefix}_*.png"))
    assert pngs, f"{nb.name} wrote no figure"
    for png in pngs:
        for ext in (".pdf", ".csv"):
            other = png.with_suffix(ext)
            assert other.exists() and other.stat().st_size > 0, f"missing {other.name}"
    html = (reports / f"{nb.stem}.html").read_text()
    assert "data:image/png;base64" in html and "Traceback" not in html
    assert (reports / "index.html").exists()
    assert any(store.iterdir()), "the trained run was not stored"
