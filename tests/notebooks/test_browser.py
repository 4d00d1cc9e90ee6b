"""The reports as users read them: index.html and the notebook reports in headless Chromium.

Notebook 01 runs for real on the smoke profile into a temporary project home; Chromium then
renders each page (screenshot: must not be blank) and dumps its DOM (figures with alt text,
headlines, no progress output styled as an error, no path of this machine).  The committed
figures of the quick profile are rendered as an index too.  Skipped when Chromium is not
installed, unless LMC_REQUIRE_BROWSER=1 (CI), then it fails.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from lmc_core.publish.paths import repo_root
from lmc_core.publish.report_html import figure_titles, is_progress_line, read_summary
from lmc_core.publish.report_index import INDEX_NAME, write_index
from lmc_core.publish.reports import run_notebooks

ROOT = repo_root()
NOTEBOOK = "01"
BROWSERS = ("chromium", "chromium-browser")
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync")


def _chromium() -> str:
    """The Chromium binary, or skip (fail under LMC_REQUIRE_BROWSER=1) when there is none."""
    for name in BROWSERS:
        found = shutil.which(name)
        if found:
            return found
    reason = ("Chromium is not installed (looked for: " + ", ".join(BROWSERS) + "); install it, e.g. "
              "`apt-get install -y chromium`, to check the HTML reports in a browser")
    if os.environ.get("LMC_REQUIRE_BROWSER") == "1":
        pytest.fail(reason + " [LMC_REQUIRE_BROWSER=1]")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory):
    """Render a page: (screenshot path, dumped DOM) of a file URL in headless Chromium."""
    exe = _chromium()
    work = tmp_path_factory.mktemp("chromium")
    count = [0]

    def render(page: Path, fragment: str = "", size: str = "1280,1600") -> tuple[Path, str]:
        count[0] += 1
        png = work / f"shot{count[0]}.png"
        url = page.resolve().as_uri() + fragment
        common = [exe, *FLAGS, f"--user-data-dir={work / 'profile'}", f"--window-size={size}"]
        shot = subprocess.run([*common, f"--screenshot={png}", url], capture_output=True, text=True,
                              timeout=90)
        assert png.exists(), f"no screenshot of {page.name} (rc {shot.returncode}): {shot.stderr[-2000:]}"
        dom = subprocess.run([*common, "--dump-dom", url], capture_output=True, text=True, timeout=90)
        assert dom.returncode == 0 and "<body" in dom.stdout, f"no DOM of {page.name}: {dom.stderr[-2000:]}"
        return png, dom.stdout

    return render


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Notebook 01 run for real on the smoke profile, in a project home of its own."""
    _chromium()  # skip before the notebook runs when there is no browser
    home = tmp_path_factory.mktemp("home")
    cache = ROOT / "data" / "cache"
    cache.mkdir(parents=True, exist_ok=True)
    try:  # the corpus cache of the checkout, reached by a path relative to home
        (home / "data").mkdir()
        (home / "data" / "cache").symlink_to(cache, target_is_directory=True)
        cache_param = "data/cache"
    except OSError:
        cache_param = str(cache)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LMC_HOME", str(home))
        written = run_notebooks("smoke", notebooks=[NOTEBOOK], extra_params={"cache_dir": cache_param},
                                progress=False)
    return {"home": home, "figures": home / "figures" / "smoke", "reports": home / "reports" / "smoke",
            "index": written[-1], "pages": written[:-1]}


def _not_blank(png: Path) -> None:
    """A screenshot with content: many colours and a clear spread of brightness."""
    from PIL import Image, ImageStat

    with Image.open(png) as im:
        rgb = im.convert("RGB")
        colours = rgb.getcolors(maxcolors=1 << 22) or []
        spread = ImageStat.Stat(rgb.convert("L")).stddev[0]
    assert png.stat().st_size > 10_000, f"{png.name}: {png.stat().st_size} bytes"
    assert len(colours) > 64 and spread > 15, f"{png.name} looks blank: {len(colours)} colours, sd {spread:.1f}"


def _soup(dom: str):
    from bs4 import BeautifulSoup

    return BeautifulSoup(dom, features="html.parser")


def _check_images(soup, where: str) -> list[str]:
    """Every image has a real alt text; returns them."""
    imgs = soup.find_all("img")
    assert imgs, f"no image in {where}"
    alts = [(img.get("alt") or "").strip() for img in imgs]
    assert all(alts), f"an image without alt text in {where}: {alts}"
    assert not any(a.startswith("No description") for a in alts), f"placeholder alt text in {where}: {alts}"
    return alts


def _check_no_machine_paths(dom: str, *paths: Path) -> None:
    for p in paths:
        assert str(p) not in dom, f"a path of this machine ({p}) shows in the page"


def test_index_in_browser(built, browser) -> None:
    png, dom = browser(built["index"])
    _not_blank(png)
    soup = _soup(dom)
    alts = _check_images(soup, INDEX_NAME)
    summary = read_summary(built["figures"], NOTEBOOK)
    titles = [t for _, t in figure_titles(summary)]
    assert titles and alts[: len(titles)] == titles  # reading order, titles as alt text
    assert len(alts) == len(list(built["figures"].glob("*.png")))
    headline = " ".join(summary["headline"].replace("`", "").split())
    assert headline in " ".join(soup.get_text().split())
    assert soup.select_one(f'section#nb-{NOTEBOOK} a[href$=".html"]') is not None  # link to the report
    assert not soup.select('[src^="http"], link[href^="http"], script[src]')  # offline, self-contained
    _check_no_machine_paths(dom, built["home"], ROOT)


def test_reports_in_browser(built, browser) -> None:
    assert built["pages"]
    for page in built["pages"]:
        png, dom = browser(page)
        _not_blank(png)
        soup = _soup(dom)
        alts = _check_images(soup, page.name)
        titles = [t for _, t in figure_titles(read_summary(built["figures"], page.name[:2]))]
        assert alts[: len(titles)] == titles
        errors = soup.select('[data-mime-type="application/vnd.jupyter.stderr"]')
        progress_as_error = [line for el in errors for line in el.get_text().splitlines()
                             if is_progress_line(line)]
        assert not progress_as_error, f"progress shown as an error in {page.name}: {progress_as_error}"
        out = "\n".join(el.get_text() for el in soup.select('.jp-RenderedText[data-mime-type="text/plain"]'))
        assert re.search(r"^train K=\d+: (\d+)/\1 \[", out, re.M), "the training bar's final line is missing"
        assert not re.search(r"^train K=\d+: \d+/\d+ \(", out, re.M), "an intermediate progress line is shown"
        text = soup.get_text()
        assert text.count("# Parameters of this run (profile smoke)") == 1
        assert "papermill overrides these" not in text  # the notebook's default parameters cell is gone
        _check_no_machine_paths(dom, built["home"], ROOT)


def test_lightbox_enlarges_a_figure(built, browser, tmp_path: Path) -> None:
    """Clicking a figure targets it (``#fig-…``): it then covers a dark overlay, nearly full size.

    (Headless screenshots of a URL with a fragment come out blank, so the ``:target`` rule is
    applied to one figure by its id instead.)
    """
    from PIL import Image, ImageStat

    page = built["index"].read_text(encoding="utf-8")
    first = re.search(r'<figure class="fig" id="([^"]+)"', page).group(1)
    assert f'href="#{first}"' in page
    forced = tmp_path / "lightbox.html"
    forced.write_text(page.replace("figure.fig:target", f"figure.fig#{first}"), encoding="utf-8")
    png, _ = browser(forced, size="1280,900")
    with Image.open(png) as im:
        gray = im.convert("L")
        w, h = gray.size
        corner = ImageStat.Stat(gray.crop((0, h - 20, 20, h))).mean[0]
        middle = ImageStat.Stat(gray.crop((w // 4, h // 3, 3 * w // 4, 2 * h // 3))).mean[0]
    assert corner < 60, f"no dark overlay behind the enlarged figure (corner brightness {corner:.0f})"
    assert middle > 150, f"the enlarged figure is not in the middle (brightness {middle:.0f})"


def test_committed_quick_index_in_browser(browser, tmp_path: Path) -> None:
    """The index of the committed quick figures: every notebook, its figures in reading order."""
    figures = ROOT / "figures" / "quick"
    pngs = sorted(figures.glob("*.png"))
    assert pngs, "figures/quick holds no figures: the checkout is incomplete"
    index = write_index("quick", reports_dir=tmp_path / "reports", figures_dir=figures)
    png, dom = browser(index)
    _not_blank(png)
    soup = _soup(dom)
    alts = _check_images(soup, "the quick index")
    assert len(alts) == len(pngs)
    prefixes = sorted({p.name[:2] for p in pngs})
    assert [s["id"] for s in soup.select("section.notebook")] == [f"nb-{p}" for p in prefixes]
    for p in prefixes:
        summary = read_summary(figures, p)
        shown = [img["alt"] for img in soup.select(f"section#nb-{p} img")]
        titles = [t or f for f, t in figure_titles(summary) if (figures / f).exists()]
        assert shown[: len(titles)] == titles
        if summary.get("headline"):
            assert soup.select_one(f"section#nb-{p} p.headline") is not None
