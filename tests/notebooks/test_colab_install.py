"""The Colab install path, offline: a fresh environment that already has another torch (as Colab does),
a lone copy of a notebook, its first cell installs lmc_core, and the smoke profile runs.

Slow and large (it installs a second torch build into a new venv), so it runs only with
LMC_COLAB_INSTALL_TEST=1: `make test-colab`. LMC_OTHER_TORCH picks the preinstalled torch
(default torch==2.14.1, a different minor version from the project's pin).
"""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.skipif(not os.environ.get("LMC_COLAB_INSTALL_TEST"),
                                reason="slow: installs another torch into a fresh venv; run `make test-colab`")


def run(cmd, **kw):
    return subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=3600, **kw)


def test_colab_cell_installs_lmc_core_next_to_another_torch(tmp_path):
    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", str(venv)])
    py = str(venv / "bin" / "python")
    other = os.environ.get("LMC_OTHER_TORCH", "torch==2.14.1")
    run([py, "-m", "pip", "install", "-q", other, "ipykernel", "papermill"])  # what the runtime already has
    version = lambda: run([py, "-c", "import torch; print(torch.__version__)"]).stdout.strip()  # noqa: E731
    before = version()
    assert not before.startswith("2.13."), f"{other} is not a different torch from the project's pin"

    lone = tmp_path / "lone"
    lone.mkdir()
    nb = "01_instability_at_init.ipynb"
    shutil.copy(ROOT / "notebooks" / nb, lone / nb)  # the notebook alone, no checkout beside it
    env = {**os.environ, "LMC_COLAB_INSTALL_TEST": "1", "LMC_SOURCE": str(ROOT), "LMC_HOME": str(tmp_path / "home"),
           "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "LMC_PLAIN_PROGRESS": "1"}
    env.pop("PYTHONPATH", None)
    env.pop("VIRTUAL_ENV", None)
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env['PATH']}"
    out = lone / "out.ipynb"
    run([py, "-m", "papermill", str(lone / nb), str(out), "-p", "profile", "smoke", "-p", "progress", "False",
         "-k", "python3", "--cwd", str(lone)], env=env)

    assert version() == before, "installing lmc_core replaced the runtime's torch"
    pip_list = run([py, "-m", "pip", "list", "--format", "json"]).stdout
    assert any(p["name"] == "lmc-core" for p in json.loads(pip_list))
    cells = json.loads(out.read_text())["cells"]
    assert not any(o.get("output_type") == "error" for c in cells for o in c.get("outputs", []))
    figs = tmp_path / "home" / "figures" / "smoke"
    assert (figs / "01_summary.md").exists() and list(figs.glob("01_*.png"))
