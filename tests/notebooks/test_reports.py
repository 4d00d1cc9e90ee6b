"""lmc_core.publish.reports on tiny generated notebooks (real kernel, no project notebooks) and synthetic files."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from lmc_core import progress
from lmc_core.publish import paths, report_html, report_index, reports
from lmc_core.publish.reports import NotebookRunError, run_notebooks

ROOT = Path(__file__).resolve().parents[2]

PARAMS = ('# Parameters (papermill overrides these): DEFAULT-CELL-MARKER\n'
          'profile = "quick"\nfigures_dir = None   # default: figures/<profile>\nstore_dir = None\n'
          'device = "auto"      # "cpu" or "cuda"\n')
# Writes its figures where lmc_core.publish.paths.resolve puts them (like the studies), shows a plain
# progress bar, another library's tqdm bar on stderr and a real warning on stderr.
DEMO = """\
import json, sys
import matplotlib.pyplot as plt
from tqdm.std import tqdm
from lmc_core.publish.paths import resolve
from lmc_core.progress import bar

figs = resolve(figures_dir, "figures/" + profile)
figs.mkdir(parents=True, exist_ok=True)
b = bar(total=5, desc="demo steps", mininterval=0)
for _ in range(5):
    b.update(1)
    b.set_postfix(loss="1.23", refresh=False)
b.close()
t = tqdm(total=3, desc="foreign bar", file=sys.stderr, mininterval=0)
for _ in range(3):
    t.update(1)
t.close()
print("UserWarning: a real warning from the demo", file=sys.stderr)
figures = {}
for name, title in [("01_zeta", "Zeta comes first"), ("01_alpha", "Alpha <second> & last")]:
    fig, ax = plt.subplots(figsize=(3, 2))
    ax.plot([0, 1, 2], [2, 0, 1])
    ax.set_title(title)
    fig.savefig(figs / f"{name}.png")
    figures[name] = fig
for name in ("01_omega", "01_beta"):  # not in the summary's list
    fig, ax = plt.subplots(figsize=(3, 2))
    fig.savefig(figs / f"{name}.png")
(figs / "01_zeta.csv").write_text("x,y\\n0,2\\n1,0\\n2,1\\n")
summary = {"profile": profile, "headline": "the demo is **stable** under `mean`",
           "figures": [{"file": "01_zeta.png", "title": "Zeta comes first"},
                       {"file": "01_alpha.png", "title": "Alpha <second> & last"}]}
(figs / "01_summary.json").write_text(json.dumps(summary))
(figs / "01_summary.md").write_text("**Demo finding**: nothing to see.\\n")
plt.close("all")
print("profile", profile)
"""
SHOW_ZETA = 'figures["01_zeta"]'
SHOW_ALPHA = 'from IPython.display import display\ndisplay(figures["01_alpha"])'
SIMPLE = """\
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
from lmc_core.publish.paths import resolve

figs = resolve(figures_dir, "figures/" + profile)
figs.mkdir(parents=True, exist_ok=True)
fig, ax = plt.subplots(figsize=(3, 2))
ax.plot([0, 1, 2], [2, 0, 1])
fig.savefig(figs / "01_demo.png")
print("profile", profile)
"""
FAIL = 'raise RuntimeError("boom from 02_fail")\n'


def _write_notebook(path: Path, *bodies: str) -> None:
    """Write a notebook: a Markdown title, the tagged parameters cell, then one code cell per body."""
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    params = nbformat.v4.new_code_cell(PARAMS)
    params.metadata["tags"] = ["parameters"]
    nb.cells = [nbformat.v4.new_markdown_cell(f"# {path.stem[:2]} · Demo notebook\n\nText."), params,
                *(nbformat.v4.new_code_cell(b) for b in bodies)]
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, str(path))


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A project home apart from the notebooks' folder (tmp_path / "src")."""
    h = tmp_path / "home"
    h.mkdir()
    monkeypatch.setenv("LMC_HOME", str(h))
    monkeypatch.delenv(progress.ENV, raising=False)
    return h


def _stderr_blocks(page: str) -> list[str]:
    """Text of the output blocks an HTML report renders as stderr (pink)."""
    blocks = re.findall(r'data-mime-type="application/vnd.jupyter.stderr"[^>]*>\s*<pre>(.*?)</pre>', page, re.S)
    return [re.sub(r"<[^>]+>", "", b) for b in blocks]


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
    assert paths.check_profile("smoke") == "smoke"
    with pytest.raises(ValueError, match="smoke"):
        paths.check_profile("nope")


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


# ----------------------------------------------------------------------------- progress
def test_plain_bar_prints_lines_on_stdout(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(progress.ENV, "1")
    out, err = io.StringIO(), io.StringIO()
    monkeypatch.setattr(sys, "stdout", out)
    monkeypatch.setattr(sys, "stderr", err)
    b = progress.bar(total=4, desc="train K=8", mininterval=0)
    assert isinstance(b, progress.PlainBar)
    for _ in range(4):
        b.update(1)
    b.set_postfix(loss="2.39", refresh=False)
    b.close()
    short = progress.bar(total=3, desc="eval")  # default interval: only its final line
    short.update(3)
    short.close()
    text = out.getvalue()
    assert err.getvalue() == ""
    assert "train K=8: 2/4 (50%) [" in text  # an update while running
    assert re.search(r"\rtrain K=8: 4/4 \[00:00, [\d.,]+ it/s, loss=2\.39\]\n", text)
    assert "%|" not in text  # no bar graphics
    assert re.search(r"\reval: 3/3 \[00:00, [\d.,]+ it/s\]\n$", text)
    assert "eval: 0/3" not in text and "eval: 3/3 (100%)" not in text
    assert report_html.collapse_cr(text).splitlines()[0].startswith("train K=8: 4/4 [")


def test_bar_is_tqdm_auto_without_plain(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(progress.ENV, raising=False)
    b = progress.bar(total=2, disable=True)
    assert not isinstance(b, progress.PlainBar)
    b.close()


def test_format_plain() -> None:
    assert progress.format_plain(1200, 4000, 90, "train K=8", rate=13.33, postfix="loss=2.41") == (
        "train K=8: 1200/4000 (30%) [01:30<03:30, 13.3 it/s, loss=2.41]")
    assert progress.format_plain(4000, 4000, 301, "train K=8", rate=99.0, postfix="loss=2.39",
                                 final=True) == "train K=8: 4000/4000 [05:01, 13.3 it/s, loss=2.39]"
    assert progress.format_plain(3, 40, 6, "slow", rate=0.5) == "slow: 3/40 (8%) [00:06<01:14, 2 s/it]"
    assert progress.format_plain(7, None, 0, "") == "7 it [00:00]"


@pytest.mark.parametrize("line, expected", [
    ("train K=4:   0%|          | 0/40 [00:00<?, ?it/s]", True),
    ("train K=4: 100%|##########| 40/40 [00:07<00:00,  5.47it/s, loss=5.597, lr=2.5]", True),
    ("Map: 100%|\u2588\u2588\u2588| 1000/1000 [00:00<00:00, 5000.00 examples/s]", True),
    ("Downloading: 100%|#| 1.23M/1.23M [00:01<00:00, 1.0MB/s]", True),
    ("desc: 40it [00:01, 13.3it/s]", True),
    ("train K=8: 1200/4000 (30%) [01:30<03:30, 13.3 it/s, loss=2.41]", True),
    ("train K=8: 4000/4000 [05:01, 13.3 it/s, loss=2.39]", True),
    ("x.py:131: PerformanceWarning: indexing past lexsort depth may impact performance.", False),
    ("UserWarning: 3/4 of the batches were empty [see docs]", False),
    ("Traceback (most recent call last):", False),
])
def test_is_progress_line(line: str, expected: bool) -> None:
    assert report_html.is_progress_line(line) is expected


def test_collapse_cr() -> None:
    assert report_html.collapse_cr("\ra 1/3\ra 2/3   \ra 3/3\nnext\n") == "a 3/3\nnext\n"
    assert report_html.collapse_cr("plain\r\nline\n") == "plain\nline\n"
    assert report_html.collapse_cr("x\r") == "x"


# ----------------------------------------------------------------------------- export pass
def _nb_with_outputs(home: Path):
    import nbformat

    nb = nbformat.v4.new_notebook()
    default = nbformat.v4.new_code_cell(PARAMS)
    default.metadata["tags"] = ["parameters"]
    injected = nbformat.v4.new_code_cell(
        '# Parameters\nprofile = "smoke"\nfigures_dir = "figures/smoke"\ncache_dir = "data/cache"\n')
    injected.metadata["tags"] = ["injected-parameters"]
    run = nbformat.v4.new_code_cell("study.run(params)")
    run.outputs = [
        nbformat.v4.new_output("stream", name="stdout", text="\rtrain K=2: 1/4 (25%) [00:01<00:03, 1 it/s]"),
        nbformat.v4.new_output("stream", name="stdout", text="\rtrain K=2: 4/4 [00:04, 1 it/s]"),
        nbformat.v4.new_output("stream", name="stdout", text="\n"),
        nbformat.v4.new_output("stream", name="stderr",
                               text="\rfetch:   0%|          | 0/2 [00:00<?, ?it/s]\rfetch: 100%|##| 2/2 "
                                    "[00:00<00:00, 9.1it/s]\n"),
        nbformat.v4.new_output("stream", name="stderr",
                               text=f"{home}/lmc_core/x.py:3: PerformanceWarning: slow\n"),
        nbformat.v4.new_output("error", ename="ValueError", evalue=f"bad file {home}/runs/a",
                               traceback=[f"File {home}/lmc_core/x.py:3", "ValueError: bad"]),
    ]
    nb.cells = [nbformat.v4.new_markdown_cell("# 01 · Title"), default, injected, run]
    return nb


def test_tidy_notebook(tmp_path: Path) -> None:
    nb = report_html.tidy_notebook(_nb_with_outputs(tmp_path), profile="smoke", home=tmp_path)
    params = [c for c in nb.cells if c.cell_type == "code" and "parameters" in c.source.lower()]
    assert len(params) == 1 and "injected-parameters" in params[0].metadata["tags"]
    assert params[0].source.splitlines() == [
        "# Parameters of this run (profile smoke)",
        'profile = "smoke"',
        'figures_dir = "figures/smoke"   # default: figures/<profile>',
        "store_dir = None",
        'device = "auto"      # "cpu" or "cuda"',
        'cache_dir = "data/cache"',
    ]
    outs = nb.cells[-1].outputs
    streams = [(o.name, o.text) for o in outs if o.output_type == "stream"]
    assert streams == [
        ("stdout", "train K=2: 4/4 [00:04, 1 it/s]\nfetch: 100%|##| 2/2 [00:00<00:00, 9.1it/s]\n"),
        ("stderr", "lmc_core/x.py:3: PerformanceWarning: slow\n"),
    ]
    err = outs[-1]
    assert err.output_type == "error" and err.evalue == "bad file runs/a"
    assert err.traceback[0] == "File lmc_core/x.py:3"


def test_merged_parameters_falls_back_and_keeps_unknown_names() -> None:
    merged = report_html.merged_parameters("a = 1  # one\nb = {\n  'x': 2,\n}\n",
                                       "# Parameters\nb = {'x': 3}\nc = 'new'\n", "# T")
    assert merged == "# T\na = 1  # one\nb = {'x': 3}\nc = 'new'\n"
    assert report_html.merged_parameters("a = (", "# Parameters\na = 2\n", "# T") == "# T\na = 2\n"


def test_kernel_path(tmp_path: Path) -> None:
    home = tmp_path / "home"
    (home / "figures").mkdir(parents=True)
    assert reports.kernel_path(home / "figures" / "quick", home) == "figures/quick"
    assert reports.kernel_path(home, home) == "."
    assert reports.kernel_path("rel/dir", home) == "rel/dir"
    outside = tmp_path / "elsewhere"
    assert reports.kernel_path(outside, home) == str(outside)
    assert reports._kernel_value({"data_path": str(home / "d"), "n": 3}, home) == {"data_path": "d", "n": 3}


# ----------------------------------------------------------------------------- index
def _png(path: Path, color: tuple[int, int, int]) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (40, 20), color).save(path)


def test_index_order_titles_headlines_and_lightbox(tmp_path: Path, home: Path) -> None:
    figs, out = home / "figures" / "smoke", home / "reports" / "smoke"
    for i, name in enumerate(["01_b", "01_a", "01_c", "01_d", "02_z", "10_x", "notes"]):
        _png(figs / f"{name}.png", (10 * i, 100, 200))
    (figs / "01_a.csv").write_text("x\n1\n")
    (figs / "01_summary.json").write_text(json.dumps({
        "headline": "unstable — `mean` 4.5 %", "figures": [
            {"file": "01_c.png", "title": "C first"}, {"file": "01_a.png", "title": 'A "second"'},
            {"file": "01_gone.png", "title": "missing file"}]}))
    (figs / "01_summary.md").write_text("**Finding** in words.\n")
    (figs / "10_summary.json").write_text(json.dumps({"headline": "ten's verdict", "figures": []}))
    out.mkdir(parents=True)
    for stem in ("10_tenth", "01_first", "02_second"):
        (out / f"{stem}.html").write_text("<html></html>")
    _write_notebook(out / "01_first.ipynb", "pass")

    index = report_index.write_index("smoke", root=tmp_path / "src", failed=["02_second"])
    assert index == out / "index.html"
    page = index.read_text(encoding="utf-8")
    sections = re.findall(r'<section class="notebook" id="nb-(\w+)"', page)
    assert sections == ["01", "02", "10", "other"]
    alts = re.findall(r'<img alt="([^"]*)"', page)
    assert alts == ["C first", "A &quot;second&quot;", "01_b.png", "01_d.png", "02_z.png", "10_x.png", "notes.png"]
    assert "<h2><span class=\"num\">01</span>Demo notebook</h2>" in page  # title of the executed notebook
    assert "unstable — <code>mean</code> 4.5 %" in page and "ten&#x27;s verdict" in page
    assert 'href="01_first.html"' in page and 'href="10_tenth.html"' in page
    assert re.search(r'02_second\.html">02_second</a> <span class="failed">FAILED', page)
    assert "<strong>Finding</strong> in words." in page  # the summary rendered from Markdown
    assert 'href="../../figures/smoke/01_a.csv"' in page and 'download="01_a.csv"' in page
    # a CSS-only lightbox: each figure is its own target and links to itself
    assert 'id="fig-01_c"' in page and 'href="#fig-01_c"' in page and ":target" in page
    # self-contained: nothing loaded from elsewhere
    assert not re.search(r'(src|href)="(https?:)?//', page) and "@import" not in page and "<script" not in page
    assert str(tmp_path) not in page


# ----------------------------------------------------------------------------- real kernels
def test_run_notebooks_writes_reports_and_index(tmp_path: Path, home: Path) -> None:
    src = tmp_path / "src"
    _write_notebook(src / "notebooks" / "01_demo.ipynb", DEMO, SHOW_ZETA, SHOW_ALPHA)
    written = run_notebooks(profile="smoke", root=src, progress=False,
                            extra_params={"device": str(home / "not-a-device")})

    out = home / "reports" / "smoke"
    index = out / "index.html"
    assert written == [out / "01_demo.html", index]
    assert (home / "figures" / "smoke" / "01_zeta.png").exists()  # relative path resolved against home
    assert (home / "runs").is_dir()
    assert progress.ENV not in os.environ  # the run's environment does not leak

    import nbformat

    executed = nbformat.read(str(out / "01_demo.ipynb"), as_version=4)
    injected = [c for c in executed.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert injected and 'profile = "smoke"' in injected[0].source
    assert 'figures_dir = "figures/smoke"' in injected[0].source and str(home) not in injected[0].source
    assert 'device = "not-a-device"' in injected[0].source
    raw = "".join(o.get("text", "") for c in executed.cells for o in c.get("outputs", []))
    assert "demo steps: 1/5 (20%)" in raw  # the executed notebook keeps everything

    page = (out / "01_demo.html").read_text(encoding="utf-8")
    assert "data:image/png;base64" in page
    assert "profile smoke" in page
    # one parameters cell, with this run's values and no machine path
    assert page.count("Parameters of this run (profile smoke)") == 1
    assert "DEFAULT-CELL-MARKER" not in page
    assert str(tmp_path) not in page
    # each bar as its final line, progress never in a stderr block, the real warning still there
    assert re.search(r"demo steps: 5/5 \[00:0\d, [\d.,]+ it/s, loss=1\.23\]", page)
    assert "demo steps: 1/5" not in page and "foreign bar:   0%" not in page
    assert "foreign bar: 100%" in page
    blocks = _stderr_blocks(page)
    assert blocks and all("demo steps" not in b and "foreign bar" not in b for b in blocks)
    assert any("a real warning from the demo" in b for b in blocks)
    # alt text: the figures' titles from the summary, in the order the cells show them
    alts = re.findall(r'<img alt="([^"]*)"', page)
    assert alts == ["Zeta comes first", "Alpha &lt;second&gt; &amp; last"], alts

    idx = index.read_text(encoding="utf-8")
    assert 'href="01_demo.html"' in idx
    assert "the demo is <b>stable</b> under <code>mean</code>" in idx
    assert re.findall(r'<img alt="([^"]*)"', idx) == [
        "Zeta comes first", "Alpha &lt;second&gt; &amp; last", "01_beta.png", "01_omega.png"]
    assert 'href="../../figures/smoke/01_zeta.csv"' in idx
    assert str(tmp_path) not in idx


def test_failing_notebook_keeps_others_and_index(tmp_path: Path, home: Path) -> None:
    src = tmp_path / "src"
    _write_notebook(src / "notebooks" / "01_demo.ipynb", SIMPLE)
    _write_notebook(src / "notebooks" / "02_fail.ipynb", FAIL)
    with pytest.raises(NotebookRunError, match="02_fail") as info:
        run_notebooks(profile="smoke", root=src, progress=False)

    out = home / "reports" / "smoke"
    msg = str(info.value)
    assert "boom from 02_fail" in msg
    assert "partial executed notebook: reports/smoke/02_fail.ipynb" in msg  # shown relative to home
    assert "01_demo" not in msg
    assert (out / "01_demo.html").exists()
    assert (out / "02_fail.ipynb").exists()
    idx = (out / "index.html").read_text(encoding="utf-8")
    assert info.value.index == out / "index.html"
    assert 'href="01_demo.html"' in idx
    assert "FAILED" in idx and "02_fail" in idx
    assert '<img alt="01_demo.png"' in idx  # no summary: the file name
    fail_page = (out / "02_fail.html").read_text(encoding="utf-8")
    assert "boom from 02_fail" in fail_page and str(tmp_path) not in fail_page


def test_notebooks_run_at_once_give_the_same_reports_and_failures(tmp_path: Path, home: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    src = tmp_path / "src"
    _write_notebook(src / "notebooks" / "01_demo.ipynb", SIMPLE)
    _write_notebook(src / "notebooks" / "02_fail.ipynb", FAIL)
    _write_notebook(src / "notebooks" / "03_demo.ipynb", SIMPLE)
    here, moved, chdir = os.getcwd(), [], os.chdir
    monkeypatch.setattr(os, "chdir", lambda p: (moved.append(p), chdir(p))[1])
    with pytest.raises(NotebookRunError, match="02_fail") as info:
        run_notebooks(profile="smoke", root=src, progress=False, jobs=2)
    # notebooks run in threads never move this process elsewhere (papermill's cwd= chdirs the whole process: two
    # runs at once left it in a folder deleted later, and every subprocess started after it failed; papermill's
    # file reads still chdir to where the process is, which is harmless)
    assert os.getcwd() == here and set(moved) <= {here}, sorted(set(moved))
    out = home / "reports" / "smoke"
    assert (out / "01_demo.html").exists() and (out / "03_demo.html").exists() and (out / "02_fail.ipynb").exists()
    assert [f["notebook"] for f in info.value.failures] == ["02_fail"]
    with pytest.raises(ValueError, match="jobs"):
        run_notebooks(profile="smoke", root=src, progress=False, jobs=0)


def test_extra_params_cannot_override_reserved(tmp_path: Path) -> None:
    _write_notebook(tmp_path / "notebooks" / "01_demo.ipynb", SIMPLE)
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
    lines = res.stdout.splitlines()
    assert [ln.split()[0] for ln in lines[: len(paths.PROFILES)]] == list(paths.PROFILES)
    assert all(len(ln.split()) > 3 for ln in lines[: len(paths.PROFILES)])  # each says what it is for
