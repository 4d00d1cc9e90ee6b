"""lmc_core.reports on tiny generated notebooks (real kernel, no project notebooks)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from lmc_core import reports
from lmc_core.reports import NotebookRunError, run_notebooks

ROOT = Path(__file__).resolve().parent.parent

PARAMS = 'profile = "quick"\nfigures_dir = None\nstore_dir = None\n'
DEMO = """\
import os
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
from IPython.display import Image, display

os.makedirs(figures_dir, exist_ok=True)
fig, ax = plt.subplots(figsize=(3, 2))
ax.plot([0, 1, 2], [2, 0, 1])
png = os.path.join(figures_dir, "01_demo.png")
fig.savefig(png)
plt.close(fig)
with open(os.path.join(figures_dir, "01_demo.csv"), "w") as fh:
    fh.write("x,y\\n0,2\\n1,0\\n2,1\\n")
print("profile", profile)
display(Image(filename=png))
"""
FAIL = 'raise RuntimeError("boom from 02_fail")\n'


def _write_notebook(path: Path, body: str) -> None:
    """Write a two-cell notebook: tagged parameters cell, then ``body``."""
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    params = nbformat.v4.new_code_cell(PARAMS)
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, nbformat.v4.new_code_cell(body)]
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, str(path))


def test_python3_kernel_is_this_interpreter() -> None:
    """Kernel "python3" must resolve to the running interpreter (no kernelspec registration)."""
    from jupyter_client.kernelspec import KernelSpecManager

    spec = KernelSpecManager().get_kernel_spec("python3")
    exe = spec.argv[0]
    assert exe in ("python", "python3") or Path(exe).resolve() == Path(sys.executable).resolve(), (
        f"kernel 'python3' runs {exe!r}, not this interpreter ({sys.executable}); "
        f"a kernelspec at {spec.resource_dir} shadows the environment's own"
    )


def test_check_profile() -> None:
    assert reports.check_profile("smoke") == "smoke"
    with pytest.raises(ValueError, match="smoke"):
        reports.check_profile("nope")


def test_unknown_profile_rejected_before_running(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="smoke"):
        run_notebooks(profile="nope", root=tmp_path, progress=False)


def test_list_and_select_notebooks(tmp_path: Path) -> None:
    for name in ("02_b.ipynb", "01_a.ipynb", "scratch.ipynb", "1_x.ipynb"):
        (tmp_path / "notebooks").mkdir(exist_ok=True)
        (tmp_path / "notebooks" / name).write_text("{}")
    found = reports.list_notebooks(tmp_path)
    assert [p.name for p in found] == ["01_a.ipynb", "02_b.ipynb"]
    assert [p.stem for p in reports.select_notebooks(found, ["02"])] == ["02_b"]
    assert [p.stem for p in reports.select_notebooks(found, ["02_b", "01"])] == ["01_a", "02_b"]
    assert reports.select_notebooks(found, None) == found
    with pytest.raises(ValueError, match="01_a"):
        reports.select_notebooks(found, ["07"])


def test_run_notebooks_writes_reports_and_index(tmp_path: Path) -> None:
    _write_notebook(tmp_path / "notebooks" / "01_demo.ipynb", DEMO)
    written = run_notebooks(profile="smoke", root=tmp_path, progress=False)

    out = tmp_path / "reports" / "smoke"
    index = out / "index.html"
    assert written == [out / "01_demo.html", index]
    assert (out / "01_demo.ipynb").exists()
    assert (tmp_path / "figures" / "smoke" / "01_demo.png").exists()
    assert (tmp_path / "runs").is_dir()

    import nbformat

    executed = nbformat.read(str(out / "01_demo.ipynb"), as_version=4)
    injected = [c for c in executed.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert injected and 'profile = "smoke"' in injected[0].source

    page = (out / "01_demo.html").read_text(encoding="utf-8")
    assert "data:image/png;base64" in page
    assert "profile smoke" in page

    idx = index.read_text(encoding="utf-8")
    assert 'href="01_demo.html"' in idx
    assert "data:image/png;base64" in idx
    assert "01_demo.png" in idx
    assert 'href="../../figures/smoke/01_demo.csv"' in idx
    assert "smoke" in idx


def test_failing_notebook_keeps_others_and_index(tmp_path: Path) -> None:
    _write_notebook(tmp_path / "notebooks" / "01_demo.ipynb", DEMO)
    _write_notebook(tmp_path / "notebooks" / "02_fail.ipynb", FAIL)
    with pytest.raises(NotebookRunError, match="02_fail") as info:
        run_notebooks(profile="smoke", root=tmp_path, progress=False)

    out = tmp_path / "reports" / "smoke"
    msg = str(info.value)
    assert "boom from 02_fail" in msg
    assert str(out / "02_fail.ipynb") in msg  # where the partial notebook is
    assert "01_demo" not in msg
    assert (out / "01_demo.html").exists()
    assert (out / "02_fail.ipynb").exists()
    idx = (out / "index.html").read_text(encoding="utf-8")
    assert info.value.index == out / "index.html"
    assert 'href="01_demo.html"' in idx
    assert "FAILED" in idx and "02_fail" in idx


def test_extra_params_cannot_override_reserved(tmp_path: Path) -> None:
    _write_notebook(tmp_path / "notebooks" / "01_demo.ipynb", DEMO)
    with pytest.raises(ValueError, match="profile"):
        run_notebooks("smoke", root=tmp_path, extra_params={"profile": "paper"}, progress=False)


def _cli(*args: str) -> subprocess.CompletedProcess:
    """Run ``python -m lmc_core`` with this checkout importable."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return subprocess.run(
        [sys.executable, "-m", "lmc_core", *args],
        capture_output=True, text=True, env=env, cwd=ROOT, timeout=300,
    )


def test_cli_bad_profile_exits_2() -> None:
    res = _cli("figures", "--profile", "nope")
    assert res.returncode == 2, res.stderr
    assert "smoke" in res.stderr and "quick" in res.stderr


def test_cli_lists_profiles() -> None:
    res = _cli("profiles")
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == list(reports.PROFILES)
