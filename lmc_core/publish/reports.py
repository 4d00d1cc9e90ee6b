r"""Headless notebook runs (papermill) and offline HTML reports for lmc_core.

Numbered notebooks ``notebooks/NN_*.ipynb`` (from the checkout, :func:`repo_root`) are executed
with a profile (smoke | quick | paper); executed copies and HTML exports land in
``reports/<profile>/`` and an ``index.html`` there shows, per notebook in numeric order, its
headline, a link to its report and its figures of ``figures/<profile>/`` in reading order (the
``NN_summary.json`` each study writes).  Default folders are resolved against
:func:`lmc_core.publish.paths.home`.

The HTML reports are written for readers, not for debugging the build (see
:func:`tidy_notebook`): one parameters cell with the values of the run and no machine paths,
each progress bar as its final line instead of stderr blocks, and figures with their titles as
alt text.  The executed ``.ipynb`` files keep everything as it ran.  Heavy imports (papermill,
nbformat, nbconvert) happen at call time so importing this module stays cheap.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

from ..domains import ConfigError
from . import paths
from .outputs import check_output_dir
from .paths import check_profile, repo_root
from .report_html import collapse_cr, export_html, inside
from .report_index import write_index

NOTEBOOK_GLOB = "[0-9][0-9]_*.ipynb"
KERNEL_NAME = "python3"
RESERVED_PARAMS: tuple[str, ...] = ("profile", "figures_dir", "store_dir")


class NotebookRunError(RuntimeError):
    """Raised after a run in which some notebooks failed; the rest were still reported."""

    def __init__(self, message: str, failures: list[dict[str, Any]], index: Path) -> None:
        super().__init__(message)
        self.failures = failures
        self.index = index


def list_notebooks(root: Path | str) -> list[Path]:
    """Return the numbered notebooks ``notebooks/NN_*.ipynb`` under ``root``, sorted."""
    return sorted(Path(root).joinpath("notebooks").glob(NOTEBOOK_GLOB))


def select_notebooks(paths_: Sequence[Path], selection: Iterable[str] | None) -> list[Path]:
    """Filter ``paths_`` by number prefix ("01"), stem ("01_data") or file name; keep order."""
    if selection is None:
        return list(paths_)
    wanted: set[Path] = set()
    for raw in selection:
        sel = str(raw).strip()
        if sel.endswith(".ipynb"):
            sel = sel[: -len(".ipynb")]
        sel = Path(sel).name
        hits = [p for p in paths_ if p.stem == sel or p.stem.split("_", 1)[0] == sel]
        if not hits:
            available = ", ".join(p.stem for p in paths_) or "(none)"
            raise ValueError(
                f"no notebook matches {raw!r}; give a number prefix like '01' or a stem; "
                f"available: {available}"
            )
        wanted.update(hits)
    return [p for p in paths_ if p in wanted]


def kernel_path(path: str | os.PathLike, home: Path | None = None) -> str:
    """A path as handed to a notebook: relative to ``home`` (lmc_core.publish.paths.home()) when inside it.

    The kernel resolves relative paths against the same home (lmc_core.publish.paths.resolve, with
    ``LMC_HOME`` set for it by :func:`run_notebooks`), so the reports show ``figures/quick``
    rather than a path of the build machine.  Paths outside home stay absolute.
    """
    home = paths.home() if home is None else Path(home)
    p = Path(path).expanduser()
    if not p.is_absolute():
        return p.as_posix()
    rel = inside(p, home)
    return str(p) if rel is None else (rel.as_posix() or ".")


def _kernel_value(value: Any, home: Path) -> Any:
    """A parameter value for papermill: absolute paths inside ``home`` made relative (also in dicts)."""
    if isinstance(value, os.PathLike):
        return kernel_path(value, home)
    if isinstance(value, str) and os.path.isabs(value):
        return kernel_path(value, home)
    if isinstance(value, dict):
        return {k: _kernel_value(v, home) for k, v in value.items()}
    return value


@contextlib.contextmanager
def _environment(**values: str) -> Iterator[None]:
    """Set environment variables (inherited by the kernels) for the duration of a run."""
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _error_summary(exc: BaseException) -> str:
    """Return a one-line description of a notebook failure."""
    ename = getattr(exc, "ename", None)
    if ename:
        return f"{ename}: {getattr(exc, 'evalue', '')}".strip()
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".strip()


class _StreamFormatter(logging.Formatter):
    """Formatter for streamed kernel output: carriage returns applied, no trailing newline."""

    def format(self, record: logging.LogRecord) -> str:
        """Format the record as the terminal would show it, without trailing newlines."""
        return collapse_cr(super().format(record)).rstrip("\n")


def _not_blank(record: logging.LogRecord) -> bool:
    """Drop log records of streamed output that hold only newlines (e.g. a bar's closing newline)."""
    return bool(str(record.getMessage()).strip())


def _ensure_progress_logging() -> None:
    """Make papermill's INFO log (streamed cell output) visible unless logging is configured."""
    log = logging.getLogger("papermill")
    if log.handlers or logging.getLogger().handlers:
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_StreamFormatter("%(message)s"))
    handler.addFilter(_not_blank)
    log.addHandler(handler)
    log.setLevel(logging.INFO)


def _say(progress: bool, message: str) -> None:
    """Print a status line to stderr when progress output is on."""
    if progress:
        print(message, file=sys.stderr, flush=True)


def _abs(path: Path | str | None, default: Path) -> Path:
    """An explicit folder (relative to the current directory) made absolute, else ``default``."""
    return Path(path).expanduser().resolve() if path else default


def run_notebooks(
    profile: str,
    root: Path | str | None = None,
    notebooks: list[str] | None = None,
    figures_dir: Path | str | None = None,
    reports_dir: Path | str | None = None,
    store_dir: Path | str | None = None,
    extra_params: dict[str, Any] | None = None,
    progress: bool = True,
    jobs: int = 1,
    cap_steps: int | None = None,
) -> list[Path]:
    """Execute the numbered notebooks for ``profile``; return the HTML reports, index.html last.

    ``jobs`` > 1 runs that many notebooks at once (separate kernels; with the studies' one torch thread each,
    ``jobs`` = the number of cores uses them all); their output is then not streamed.

    Notebooks come from ``<root>/notebooks`` (default: the checkout, :func:`repo_root`) and run
    with ``root`` as working directory.  Default folders lie under lmc_core.publish.paths.home():
    figures in ``figures/<profile>``, reports (executed .ipynb + .html) in ``reports/<profile>``,
    stored runs in ``runs``; folders given explicitly are taken relative to the current directory.
    Paths inside home reach the notebooks relative to it (the kernel gets ``LMC_HOME``), so no
    path of the build machine shows in the reports.  A failing notebook does not stop the
    others; the index is still written, then NotebookRunError is raised.

    ``cap_steps``: a capped run of the profile (lmc_core.capped; the notebooks get ``overrides={"cap_steps": n}``),
    written to ``figures/<profile>-capped`` and ``reports/<profile>-capped``, each notebook's runs to a fresh
    ``runs/capped/<NN>`` (emptied first, so every run is trained and timed) unless folders are given, and marked as
    capped in every report, figure and the index.
    """
    check_profile(profile)
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise ValueError(f"jobs={jobs!r} must be a positive integer (notebooks run at once)")
    root = Path(root).resolve() if root is not None else repo_root()
    home = paths.home()
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

    if cap_steps is None and isinstance(extra.get("overrides"), dict) and extra["overrides"].get("cap_steps"):
        cap_steps = extra.pop("overrides")["cap_steps"]  # a capped run asked for through overrides: the same
    if cap_steps is not None:
        if isinstance(cap_steps, bool) or not isinstance(cap_steps, int) or not 1 <= cap_steps <= 1000:
            raise ValueError(f"cap_steps={cap_steps!r} must be an integer in [1, 1000] (updates per training run)")
        if "overrides" in extra:
            raise ValueError("a capped run sets the notebooks' overrides itself; leave overrides out of extra_params")
        extra["overrides"] = {"cap_steps": cap_steps}
    folder = f"{profile}-capped" if cap_steps is not None else profile
    if cap_steps is not None:
        from .costs import check_capped_folder

        for given, name in ((figures_dir, "figures_dir"), (reports_dir, "reports_dir")):
            try:
                check_capped_folder(cap_steps, given)
            except ConfigError as e:
                raise ValueError(str(e).replace("figures_dir", name, 1)) from None
    figures_dir = _abs(figures_dir, home / "figures" / folder)
    reports_dir = _abs(reports_dir, home / "reports" / folder)
    # a capped run without a store_dir: each notebook's own fresh store, runs/capped/<NN> (costs.fresh_store)
    store_dir = None if cap_steps is not None and store_dir is None else _abs(store_dir, home / "runs")
    for d, name in ((figures_dir, "figures_dir"), (reports_dir, "reports_dir"), (store_dir, "store_dir")):
        if d is None:
            continue
        check_output_dir(d, name, writable=name != "store_dir")  # a file in the way: ConfigError naming it
        d.mkdir(parents=True, exist_ok=True)

    if progress:
        _ensure_progress_logging()
    import papermill as pm

    params = {
        "profile": profile,
        "figures_dir": kernel_path(figures_dir, home),
        "store_dir": None if store_dir is None else kernel_path(store_dir, home),
        **{k: _kernel_value(v, home) for k, v in extra.items()},
    }
    def run_one(i: int, nb: Path) -> tuple[Path | None, dict[str, Any] | None]:
        out_ipynb = reports_dir / f"{nb.stem}.ipynb"
        out_html = reports_dir / f"{nb.stem}.html"
        for stale in (out_ipynb, out_html):
            stale.unlink(missing_ok=True)
        _say(progress, f"[lmc_core] ({i}/{len(selected)}) {nb.stem}: running, profile={profile}")
        error: BaseException | None = None
        html = None
        try:
            # the kernel starts in root (nbclient's resources path), never through papermill's cwd=, which chdirs
            # this whole process: notebooks run at once in threads then left it in another run's folder
            pm.execute_notebook(str(nb), str(out_ipynb), parameters=params, kernel_name=KERNEL_NAME,
                                resources={"metadata": {"path": str(root)}},
                                log_output=progress and jobs == 1, progress_bar=False)
        except Exception as exc:  # keep going: report it after the others ran
            error = exc
        if out_ipynb.exists():
            try:
                export_html(out_ipynb, out_html, notebook_dir=nb.parent, figures_dir=figures_dir,
                            profile=profile if cap_steps is None else f"{profile}, CAPPED at {cap_steps} steps: "
                                                                      "not a result")
                html = out_html
            except Exception as exc:
                error = error or exc
        if error is not None:
            _say(progress, f"[lmc_core] {nb.stem}: FAILED ({_error_summary(error)})")
            return html, {"notebook": nb.stem, "error": _error_summary(error),
                          "executed": out_ipynb if out_ipynb.exists() else None,
                          "html": out_html if out_html.exists() else None}
        _say(progress, f"[lmc_core] {nb.stem}: done -> {paths.shown(out_html)}")
        return html, None

    # The kernels inherit these: progress bars print as plain text on stdout, and relative paths
    # resolve against the same home folder as here.
    with _environment(LMC_PLAIN_PROGRESS="1", **{paths.ENV: str(home)}):
        if jobs == 1:
            results = [run_one(i, nb) for i, nb in enumerate(selected, 1)]
        else:  # several kernels at once (each trains with one thread); runs they share wait on the store's lock
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(max_workers=jobs) as pool:
                results = list(pool.map(lambda a: run_one(*a), enumerate(selected, 1)))
    written = [h for h, _ in results if h is not None]
    failures = [f for _, f in results if f is not None]

    index = write_index(
        profile, root, reports_dir, figures_dir, failed=[f["notebook"] for f in failures]
    )
    if failures:
        lines = [
            f"{len(failures)} of {len(selected)} notebook(s) failed for profile {profile!r} "
            f"(the other reports and the index were written: {paths.shown(index)}):"
        ]
        for f in failures:
            lines.append(f"  - {f['notebook']}: {f['error']}")
            if f["executed"] is not None:
                where = f"    partial executed notebook: {paths.shown(f['executed'])}"
                if f["html"] is not None:
                    where += f" (HTML: {paths.shown(f['html'])})"
                lines.append(where)
            else:
                lines.append("    no executed notebook was written (failed before execution)")
        raise NotebookRunError("\n".join(lines), failures, index)
    return [*written, index]


# --------------------------------------------------------------------------- index.html
