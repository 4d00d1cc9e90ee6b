"""The `paper` profile of every notebook, capped (issue 31): the real model sizes, data pipeline, α grid, alignment
and statistics, with every training run stopped after one update and evaluation on small samples, run through
papermill to its HTML report. A crash or a memory blow-up of the paper profile fails here, on a CPU, before anyone
spends GPU hours on it. `make test-paper` runs this tier (over an hour on two cores, so not in CI: run it before a GPU run)."""
import json
import os
import shutil

import pytest

from lmc_core.publish import costs
from lmc_core.publish.reports import list_notebooks, repo_root, run_notebooks
from lmc_core.studies.registry import PACKAGE_PREFIXES
from lmc_core.train import memory

CAP = 1
MEMORY_GB = 20  # the CI machine has 24 GB; a capped paper run above this would not fit beside the tests


@pytest.fixture(scope="module")
def capped_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("capped")
    figures, reports, store = root / "figures-capped", root / "reports-capped", root / "runs"
    # the notebooks that hold a few GB two at a time on CI's two cores; the others (10-12 GB each: MiniLM ensembles,
    # the Fisher grid's double backward, GPT-2) one at a time, so that the memory a run sizes its packs of copies
    # by is not taken by another notebook afterwards; notebook 07 (GPT-2, 124 M parameters) within 4 GB per pack
    # of copies, so that it trains one GPT-2 copy at a time (the process keeps what earlier sizes held)
    for notebooks, jobs, budget in ((["00", "01", "02", "04"], int(os.environ.get("LMC_TEST_JOBS", "2")), None),
                                    (["03", "05", "06"], 1, None), (["07"], 1, "4")):
        before = os.environ.get(memory.ENV)
        if budget is not None:
            os.environ[memory.ENV] = budget
        try:
            run_notebooks("paper", notebooks=notebooks, figures_dir=figures, reports_dir=reports, store_dir=store,
                          progress=False, jobs=jobs, cap_steps=CAP)
        except Exception as e:  # the index and every report that ran are still there: the asserts name the notebook
            print(e)
        finally:
            if before is None:
                os.environ.pop(memory.ENV, None)
            else:
                os.environ[memory.ENV] = before
    return figures, reports


def raised(executed) -> str:
    """The errors an executed notebook's cells raised ('ename: evalue'), and the disk left where its runs went: what
    a CI log must show when only its tail is kept."""
    cells = json.loads(executed.read_text(encoding="utf-8"))["cells"] if executed.exists() else []
    errors = [f"{o['ename']}: {o['evalue']}" for c in cells for o in c.get("outputs", [])
              if o.get("output_type") == "error"]
    free = shutil.disk_usage(executed.parent).free / 2 ** 30
    return f"{'; '.join(errors) or 'no error output'} (disk free beside the reports: {free:.1f} GiB)"


@pytest.mark.parametrize("prefix", PACKAGE_PREFIXES)
def test_every_paper_profile_runs_capped_to_its_html_report(capped_run, prefix):
    figures, reports = capped_run
    stem = next(p.stem for p in list_notebooks(repo_root()) if p.stem.startswith(prefix))
    html = reports / f"{stem}.html"
    assert html.exists(), f"{stem}: no HTML report (the capped paper profile failed; see the executed notebook)"
    text = html.read_text(encoding="utf-8")
    assert "Traceback" not in text, f"{stem} raised {raised(reports / f'{stem}.ipynb')}"
    assert "CAPPED" in text
    summary = json.loads((figures / f"{prefix}_summary.json").read_text(encoding="utf-8"))
    assert summary["profile"] == "paper" and summary["capped"]["cap_steps"] == CAP
    proj = summary["capped"]["projection"]
    assert proj["flops"] > 0 and proj["h100_seconds"] > 0 and proj["copy_steps"] > 0
    assert proj["peak_memory_gb"] < MEMORY_GB, f"{stem}: the capped run held {proj['peak_memory_gb']:.1f} GB"
    assert (figures / f"{prefix}_summary.md").read_text(encoding="utf-8").startswith(f"**{costs.BANNER}")


def test_the_capped_index_says_it_is_not_a_result(capped_run):
    _, reports = capped_run
    assert "CAPPED RUN &mdash; NOT A RESULT" in (reports / "index.html").read_text(encoding="utf-8")
