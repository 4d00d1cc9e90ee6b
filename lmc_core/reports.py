"""Headless notebook runs (papermill) and offline HTML reports for lmc_core.

Numbered notebooks ``notebooks/NN_*.ipynb`` are executed with a profile
(smoke | quick | paper); executed copies and HTML exports land in
``reports/<profile>/`` and an ``index.html`` there shows every figure of
``figures/<profile>/``.  Heavy imports (papermill, nbformat, nbconvert) happen
at call time so importing this module stays cheap.
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import logging
import os
import re
import sys
from pathlib import Path
from typing import Any, Iterable, Sequence

PROFILES: tuple[str, ...] = ("smoke", "quick", "paper")
NOTEBOOK_GLOB = "[0-9][0-9]_*.ipynb"
KERNEL_NAME = "python3"
RESERVED_PARAMS: tuple[str, ...] = ("profile", "figures_dir", "store_dir")
INDEX_NAME = "index.html"
# CSVs up to this size also get an embedded (data: URI) copy in index.html.
_EMBED_CSV_MAX_BYTES = 1 << 20

_PREFIX_RE = re.compile(r"^(\d{2})_")


class NotebookRunError(RuntimeError):
    """Raised after a run in which some notebooks failed; the rest were still reported."""

    def __init__(self, message: str, failures: list[dict[str, Any]], index: Path) -> None:
        super().__init__(message)
        self.failures = failures
        self.index = index


def check_profile(profile: str) -> str:
    """Return ``profile`` if it is one of PROFILES, else raise ValueError naming the valid ones."""
    if profile not in PROFILES:
        raise ValueError(
            f"unknown profile {profile!r}; valid profiles are: {', '.join(PROFILES)}"
        )
    return profile


def repo_root() -> Path:
    """Return the checkout holding ``notebooks/`` next to this package (editable install), else cwd."""
    here = Path(__file__).resolve().parent.parent
    if (here / "notebooks").is_dir():
        return here
    return Path.cwd()


def list_notebooks(root: Path | str) -> list[Path]:
    """Return the numbered notebooks ``notebooks/NN_*.ipynb`` under ``root``, sorted."""
    return sorted(Path(root).joinpath("notebooks").glob(NOTEBOOK_GLOB))


def select_notebooks(paths: Sequence[Path], selection: Iterable[str] | None) -> list[Path]:
    """Filter ``paths`` by number prefix ("01"), stem ("01_data") or file name; keep order."""
    if selection is None:
        return list(paths)
    wanted: set[Path] = set()
    for raw in selection:
        sel = str(raw).strip()
        if sel.endswith(".ipynb"):
            sel = sel[: -len(".ipynb")]
        sel = Path(sel).name
        hits = [p for p in paths if p.stem == sel or p.stem.split("_", 1)[0] == sel]
        if not hits:
            available = ", ".join(p.stem for p in paths) or "(none)"
            raise ValueError(
                f"no notebook matches {raw!r}; give a number prefix like '01' or a stem; "
                f"available: {available}"
            )
        wanted.update(hits)
    return [p for p in paths if p in wanted]


def _figure_prefix(name: str) -> str:
    """Return the two-digit notebook prefix of a figure file name, or 'other'."""
    m = _PREFIX_RE.match(name)
    return m.group(1) if m else "other"


def _relhref(target: Path, start: Path) -> str:
    """Return a relative URL from directory ``start`` to ``target`` (file URI if impossible)."""
    try:
        return Path(os.path.relpath(target, start)).as_posix()
    except ValueError:  # different drives on Windows
        return target.resolve().as_uri()


class _StripNewlineFormatter(logging.Formatter):
    """Formatter that drops the trailing newline of streamed kernel output."""

    def format(self, record: logging.LogRecord) -> str:
        """Format the record without trailing newlines."""
        return super().format(record).rstrip("\n")


def _ensure_progress_logging() -> None:
    """Make papermill's INFO log (streamed cell output) visible unless logging is configured."""
    log = logging.getLogger("papermill")
    if log.handlers or logging.getLogger().handlers:
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_StripNewlineFormatter("%(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)


def _say(progress: bool, message: str) -> None:
    """Print a status line to stderr when progress output is on."""
    if progress:
        print(message, file=sys.stderr, flush=True)


def export_html(executed: Path, html_path: Path, notebook_dir: Path | None = None) -> Path:
    """Export an executed notebook to standalone HTML with all images embedded inline."""
    import nbformat
    from nbconvert import HTMLExporter

    nb = nbformat.read(str(executed), as_version=4)
    exporter = HTMLExporter()
    exporter.embed_images = True  # markdown images too, not only cell outputs
    base = notebook_dir if notebook_dir is not None else executed.parent
    resources = {"metadata": {"name": executed.stem, "path": str(base)}}
    body, _ = exporter.from_notebook_node(nb, resources=resources)
    html_path.write_text(body, encoding="utf-8")
    return html_path


def _error_summary(exc: BaseException) -> str:
    """Return a one-line description of a notebook failure."""
    ename = getattr(exc, "ename", None)
    if ename:
        return f"{ename}: {getattr(exc, 'evalue', '')}".strip()
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".strip()


def run_notebooks(
    profile: str,
    root: Path | str | None = None,
    notebooks: list[str] | None = None,
    figures_dir: Path | str | None = None,
    reports_dir: Path | str | None = None,
    store_dir: Path | str | None = None,
    extra_params: dict[str, Any] | None = None,
    progress: bool = True,
) -> list[Path]:
    """Execute the numbered notebooks for ``profile``; return the HTML reports, index.html last.

    Defaults: figures in ``<root>/figures/<profile>``, reports (executed .ipynb + .html)
    in ``<root>/reports/<profile>``, stored runs in ``<root>/runs``.  A failing notebook
    does not stop the others; the index is still written, then NotebookRunError is raised.
    """
    check_profile(profile)
    root = Path(root).resolve() if root is not None else repo_root()
    extra = dict(extra_params or {})
    clash = sorted(set(extra) & set(RESERVED_PARAMS))
    if clash:
        raise ValueError(
            f"extra_params may not set {', '.join(clash)}; use the dedicated arguments"
        )
    available = list_notebooks(root)
    if not available:
        raise ValueError(
            f"no notebooks matching {NOTEBOOK_GLOB} in {root / 'notebooks'}; "
            "run from the repository root"
        )
    selected = select_notebooks(available, notebooks)

    figures_dir = Path(figures_dir).resolve() if figures_dir else root / "figures" / profile
    reports_dir = Path(reports_dir).resolve() if reports_dir else root / "reports" / profile
    store_dir = Path(store_dir).resolve() if store_dir else root / "runs"
    for d in (figures_dir, reports_dir, store_dir):
        d.mkdir(parents=True, exist_ok=True)

    if progress:
        _ensure_progress_logging()
    import papermill as pm

    params = {
        "profile": profile,
        "figures_dir": str(figures_dir),
        "store_dir": str(store_dir),
        **extra,
    }
    written: list[Path] = []
    failures: list[dict[str, Any]] = []
    # the kernel inherits this: progress bars print as plain text into the executed notebook
    os.environ["LMC_PLAIN_PROGRESS"] = "1"
    for i, nb in enumerate(selected, 1):
        out_ipynb = reports_dir / f"{nb.stem}.ipynb"
        out_html = reports_dir / f"{nb.stem}.html"
        for stale in (out_ipynb, out_html):
            stale.unlink(missing_ok=True)
        _say(progress, f"[lmc_core] ({i}/{len(selected)}) {nb.stem}: running, profile={profile}")
        error: BaseException | None = None
        try:
            pm.execute_notebook(
                str(nb),
                str(out_ipynb),
                parameters=params,
                kernel_name=KERNEL_NAME,
                cwd=str(root),
                log_output=progress,
                progress_bar=False,
            )
        except Exception as exc:  # keep going: report it after the others ran
            error = exc
        if out_ipynb.exists():
            try:
                export_html(out_ipynb, out_html, notebook_dir=nb.parent)
                written.append(out_html)
            except Exception as exc:
                error = error or exc
        if error is not None:
            failures.append(
                {
                    "notebook": nb.stem,
                    "error": _error_summary(error),
                    "executed": out_ipynb if out_ipynb.exists() else None,
                    "html": out_html if out_html.exists() else None,
                }
            )
            _say(progress, f"[lmc_core] {nb.stem}: FAILED ({_error_summary(error)})")
        else:
            _say(progress, f"[lmc_core] {nb.stem}: done -> {out_html}")

    index = write_index(
        profile, root, reports_dir, figures_dir, failed=[f["notebook"] for f in failures]
    )
    if failures:
        lines = [
            f"{len(failures)} of {len(selected)} notebook(s) failed for profile {profile!r} "
            f"(the other reports and the index were written: {index}):"
        ]
        for f in failures:
            lines.append(f"  - {f['notebook']}: {f['error']}")
            if f["executed"] is not None:
                where = f"    partial executed notebook: {f['executed']}"
                if f["html"] is not None:
                    where += f" (HTML: {f['html']})"
                lines.append(where)
            else:
                lines.append("    no executed notebook was written (failed before execution)")
        raise NotebookRunError("\n".join(lines), failures, index)
    return [*written, index]


_INDEX_CSS = """
body { font-family: system-ui, -apple-system, Segoe UI, Roboto, sans-serif; margin: 2em auto;
       max-width: 1200px; padding: 0 1em; color: #222; }
h1 { margin-bottom: 0.2em; }
.meta { color: #666; margin-top: 0; }
.failed { color: #b00020; font-weight: bold; }
.grid { display: flex; flex-wrap: wrap; gap: 1.2em; }
figure { margin: 0; border: 1px solid #ddd; border-radius: 6px; padding: 0.6em;
         max-width: 560px; background: #fafafa; }
figure img { max-width: 100%; height: auto; display: block; }
figcaption { font-family: ui-monospace, monospace; font-size: 0.9em; margin-top: 0.4em; }
""".strip()


def write_index(
    profile: str,
    root: Path | str | None = None,
    reports_dir: Path | str | None = None,
    figures_dir: Path | str | None = None,
    failed: Sequence[str] = (),
) -> Path:
    """Write ``reports/<profile>/index.html``: report links and all figures embedded (offline)."""
    check_profile(profile)
    root = Path(root).resolve() if root is not None else repo_root()
    reports_dir = Path(reports_dir) if reports_dir else root / "reports" / profile
    figures_dir = Path(figures_dir) if figures_dir else root / "figures" / profile
    reports_dir.mkdir(parents=True, exist_ok=True)
    esc = html.escape
    failed_set = set(failed)

    reports = sorted(p for p in reports_dir.glob("*.html") if p.name != INDEX_NAME)
    report_stems = {p.stem for p in reports} | failed_set
    figures = sorted(figures_dir.glob("*.png")) if figures_dir.is_dir() else []
    now = _dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M:%S %Z").strip()
    try:
        fig_label = figures_dir.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        fig_label = figures_dir.name

    out: list[str] = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>lmc_core reports ({esc(profile)})</title>",
        f"<style>{_INDEX_CSS}</style></head><body>",
        f"<h1>lmc_core reports &mdash; profile <code>{esc(profile)}</code></h1>",
        f'<p class="meta">Profile <b>{esc(profile)}</b> &middot; generated {esc(now)} '
        f"&middot; {len(reports)} report(s), {len(figures)} figure(s)</p>",
        "<h2>Notebook reports</h2>",
    ]
    if report_stems:
        out.append("<ul>")
        for stem in sorted(report_stems):
            page = reports_dir / f"{stem}.html"
            label = (
                f'<a href="{esc(_relhref(page, reports_dir))}">{esc(stem)}</a>'
                if page.exists()
                else esc(stem)
            )
            if stem in failed_set:
                label += ' <span class="failed">FAILED</span>'
            out.append(f"<li>{label}</li>")
        out.append("</ul>")
    else:
        out.append("<p>No notebook reports yet.</p>")

    out.append(f"<h2>Figures <small>(<code>{esc(fig_label)}</code>)</small></h2>")
    if not figures:
        out.append("<p>No figures found.</p>")
    groups: dict[str, list[Path]] = {}
    for fig in figures:
        groups.setdefault(_figure_prefix(fig.name), []).append(fig)
    for prefix in sorted(groups, key=lambda k: (k == "other", k)):
        owners = sorted(s for s in report_stems if s.split("_", 1)[0] == prefix)
        links = ", ".join(
            f'<a href="{esc(_relhref(reports_dir / f"{s}.html", reports_dir))}">{esc(s)}</a>'
            if (reports_dir / f"{s}.html").exists()
            else esc(s)
            for s in owners
        )
        title = f"Notebook {esc(prefix)}" if prefix != "other" else "Other figures"
        out.append(f'<section id="nb-{esc(prefix)}"><h3>{title}'
                   + (f" &mdash; {links}" if links else "") + "</h3>")
        out.append('<div class="grid">')
        for fig in groups[prefix]:
            data = base64.b64encode(fig.read_bytes()).decode("ascii")
            caption = esc(fig.name)
            csv = fig.with_suffix(".csv")
            if csv.exists():
                caption += (
                    f' &middot; <a href="{esc(_relhref(csv, reports_dir))}">{esc(csv.name)}</a>'
                )
                if csv.stat().st_size <= _EMBED_CSV_MAX_BYTES:
                    csv_data = base64.b64encode(csv.read_bytes()).decode("ascii")
                    caption += (
                        f' (<a download="{esc(csv.name)}" '
                        f'href="data:text/csv;base64,{csv_data}">embedded copy</a>)'
                    )
            out.append(
                f'<figure><img alt="{esc(fig.name)}" src="data:image/png;base64,{data}">'
                f"<figcaption>{caption}</figcaption></figure>"
            )
        out.append("</div></section>")
    out.append("</body></html>")

    index = reports_dir / INDEX_NAME
    index.write_text("\n".join(out) + "\n", encoding="utf-8")
    return index
