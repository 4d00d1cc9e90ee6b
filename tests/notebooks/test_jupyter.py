"""Use in JupyterLab and Colab: one home for runs wherever the kernel starts, the explorer, TensorBoard
from stored runs, the Colab set-up."""
import json
import os
import sys
import types
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lmc_core.analysis import barrier as B
from lmc_core.publish import explore, paths
from lmc_core.config import Seeds
from lmc_core.runs.store import RunStore

from conftest import tiny_spec

ROOT = Path(__file__).resolve().parents[2]


def test_home_is_the_checkout_wherever_the_kernel_starts(monkeypatch):
    monkeypatch.delenv("LMC_HOME", raising=False)
    monkeypatch.chdir(ROOT / "notebooks")
    assert paths.home() == ROOT
    assert paths.resolve(None, "runs") == ROOT / "runs"
    assert paths.resolve("figures/x", "y") == ROOT / "figures" / "x"
    monkeypatch.setenv("LMC_HOME", "/somewhere/else")
    assert paths.resolve(None, "runs") == Path("/somewhere/else/runs")


def test_notebook_run_from_notebooks_folder_reuses_the_stored_run(tmp_path, monkeypatch):
    """A kernel started in notebooks/ (JupyterLab) finds the runs the command line trained."""
    import papermill as pm

    monkeypatch.setenv("LMC_HOME", str(tmp_path))
    monkeypatch.setenv("LMC_PLAIN_PROGRESS", "1")
    nb = ROOT / "notebooks" / "01_instability_at_init.ipynb"
    cache = str(ROOT / "data" / "cache")
    params = {"profile": "smoke", "progress": False, "cache_dir": cache, "overrides": {"inits": 1, "variant": None}}
    first = tmp_path / "first.ipynb"
    pm.execute_notebook(str(nb), str(first), parameters=params, cwd=str(ROOT), kernel_name="python3",
                        progress_bar=False)
    second = tmp_path / "second.ipynb"
    pm.execute_notebook(str(nb), str(second), parameters=params, cwd=str(ROOT / "notebooks"),
                        kernel_name="python3", progress_bar=False)

    assert (tmp_path / "runs").is_dir() and (tmp_path / "figures" / "smoke").is_dir()
    assert not (ROOT / "notebooks" / "runs").exists() and not (ROOT / "notebooks" / "figures").exists()
    t1, t2 = json.loads(first.read_text()), json.loads(second.read_text())
    texts = ["".join("".join(o.get("data", {}).get("text/plain", "")) for c in nb_["cells"]
                     for o in c.get("outputs", [])) for nb_ in (t1, t2)]
    assert "True" in texts[0].split("trained_now")[1][:80] and "False" in texts[1].split("trained_now")[1][:80]


def curves_df():
    a = np.linspace(0, 1, 11)
    rows = []
    for pair, h in ((0, 0.3), (1, 0.1)):
        for split in ("train", "test"):
            loss = 1 + h * np.sin(np.pi * a) + 0.05 * a
            rows += [{"pair": pair, "split": split, "alpha": x, "loss": v, "ppl": np.exp(v), "error": 0.3 + v / 10}
                     for x, v in zip(a, loss)]
    return pd.DataFrame(rows)


def test_explorer_curve_and_barrier_agree_with_the_barrier_functions():
    c = curves_df()
    a, v, label = explore.select_curve(c[c.split == "test"], {"pair": 0}, "loss")
    assert label == "pair 0" and len(a) == 11
    import matplotlib.pyplot as plt

    for d in B.DEFINITIONS:
        fig, ax = plt.subplots()
        assert explore.barrier_axes(ax, a, v, d, "loss") == pytest.approx(B.barrier(a, v, d))
        assert f"barrier '{d}'" in ax.get_title()
        plt.close(fig)
    a2, v2, label2 = explore.select_curve(c[c.split == "test"], {"pair": explore.MEAN}, "loss")
    assert label2 == explore.MEAN and v2[5] == pytest.approx((v[5] + c[(c.pair == 1) & (c.split == "test")].loss.iloc[5]) / 2)


def test_explorer_is_static_under_papermill_and_widgets_in_a_live_kernel(monkeypatch):
    shown = []
    monkeypatch.setattr("IPython.display.display", lambda *objs, **kw: shown.extend(objs))
    monkeypatch.setenv("LMC_PLAIN_PROGRESS", "1")
    assert explore.explore(curves_df()) is None and any(type(o).__name__ == "Figure" for o in shown)
    monkeypatch.setattr(explore, "interactive", lambda: True)
    shown.clear()
    assert explore.explore(curves_df(), keys=("pair",)) is None  # a returned box would show a second time
    boxes = [o for o in shown if type(o).__name__ == "VBox"]
    assert len(boxes) == 1
    box = boxes[0]
    menus = {w.description: w for row in box.children[:2] for w in row.children}
    assert set(menus) == {"pair", "split", "metric", "barrier"}
    drawn = []
    monkeypatch.setattr(explore, "explorer_figure", lambda *a: drawn.append(a) or __import__("matplotlib.pyplot").pyplot.figure())
    menus["barrier"].value = "chord"  # each change re-draws from the stored curves, nothing is retrained
    menus["pair"].value = 1
    assert [(d[1], d[4]) for d in drawn] == [({"pair": explore.MEAN}, "chord"), ({"pair": 1}, "chord")]


def test_tensorboard_logs_are_written_for_a_stored_run(stream, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from lmc_core.publish.tb import command, write_history

    store = RunStore(tmp_path)
    spec = tiny_spec([Seeds(0, 1, 2), Seeds(0, 3, 4)], steps=5)
    store.get(spec, stream, "cpu", progress=False)
    cached = store.get(spec, stream, "cpu", progress=False)
    assert not cached.trained_now
    logdir = write_history(tmp_path / "tb", cached.history)
    for c in (0, 1):
        acc = EventAccumulator(str(logdir / f"copy{c}"))
        acc.Reload()
        losses = [e.value for e in acc.Scalars("train/loss")]
        want = cached.history[cached.history["copy"] == c].sort_values("step").loss.tolist()
        assert losses == pytest.approx(want)
    assert "%tensorboard --logdir" in command(logdir)
    stamp = (logdir / "copy0").stat().st_mtime_ns
    write_history(tmp_path / "tb", cached.history)  # idempotent
    assert (logdir / "copy0").stat().st_mtime_ns == stamp


def test_colab_setup_keeps_runs_on_drive(tmp_path, monkeypatch):
    from lmc_core.publish import colab

    monkeypatch.delenv("LMC_HOME", raising=False)
    assert colab.setup() == paths.home()  # outside Colab: nothing changes
    assert "LMC_HOME" not in os.environ
    mounted = []
    fake = types.ModuleType("google.colab")
    fake.drive = types.SimpleNamespace(mount=lambda where: mounted.append(where))
    monkeypatch.setitem(sys.modules, "google", types.ModuleType("google"))
    monkeypatch.setitem(sys.modules, "google.colab", fake)
    monkeypatch.setattr(colab, "DRIVE", tmp_path / "drive")
    home = colab.setup(keep_on_drive=True)
    assert mounted == [str(tmp_path / "drive")] and home == tmp_path / "drive" / "MyDrive" / "lmc_core"
    assert os.environ["LMC_HOME"] == str(home) and paths.resolve(None, "runs") == home / "runs"


def test_every_notebook_has_the_colab_cell_tensorboard_and_explorer():
    for nb in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        cells = ["".join(c["source"]) for c in json.loads(nb.read_text())["cells"]]
        assert cells[1].startswith("# Google Colab only"), nb.name
        assert "torch" not in cells[1].split("import")[-1] or "pip" in cells[1]
        params = next(c for c in json.loads(nb.read_text())["cells"] if "parameters" in c["metadata"].get("tags", []))
        assert "tensorboard =" in "".join(params["source"]), nb.name
        assert any("explore(" in c for c in cells), nb.name
