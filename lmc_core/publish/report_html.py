"""The HTML reports as users read them: progress bars as their final lines, one parameters cell without
machine paths, figures with their titles as alt text (used by lmc_core.publish.reports)."""
from __future__ import annotations

import ast
import json
import logging
import os
import re
from pathlib import Path
from typing import Any, Sequence

from . import paths
from .colab import COLAB_CELL
from .outputs import reading

_NO_ALT = "No description has been provided for this image"
PARAMETERS_TITLE = "# Parameters of this run (profile {profile})"
_PREFIX_RE = re.compile(r"^(\d{2})_")

def figure_prefix(name: str) -> str:
    """Return the two-digit notebook prefix of a figure file name, or 'other'."""
    m = _PREFIX_RE.match(name)
    return m.group(1) if m else "other"


def relhref(target: Path, start: Path) -> str:
    """Return a relative URL from directory ``start`` to ``target`` (file URI if impossible)."""
    try:
        return Path(os.path.relpath(target, start)).as_posix()
    except ValueError:  # different drives on Windows
        return target.resolve().as_uri()


def inside(path: Path, base: Path) -> Path | None:
    """``path`` relative to ``base`` when it lies inside it (as given or with links resolved), else None."""
    for p, b in ((Path(os.path.abspath(path)), Path(os.path.abspath(base))), (path.resolve(), base.resolve())):
        try:
            return p.relative_to(b)
        except ValueError:
            continue
    return None


_CR_RE = re.compile(r"[^\n]*\r(?=[^\n])")


def collapse_cr(text: str) -> str:
    """Apply carriage returns as a terminal would: of each line keep what was written last.

    Trailing blanks (tqdm pads a shorter line with spaces) and a dangling final ``\\r`` go too.
    """
    text = text.replace("\r\n", "\n")
    if "\r" not in text:
        return text
    text = _CR_RE.sub("", text).replace("\r", "")
    return re.sub(r"[ \t]+(?=\n|$)", "", text)


# A progress line: tqdm's own format ("desc:  40%|####  | 40/100 [00:01<00:02, 13.3it/s, ...]",
# "desc: 40it [00:01, 13.3it/s]") or lmc_core's plain one ("desc: 40/100 (40%) [00:01<00:02, ...]").
_PROGRESS_LINE = re.compile(
    r"""^\s*(?:[^\n]*?:\s*)?                     # description
        (?:\d{1,3}%\s*\|[^\n]*?\|\s*)?            # tqdm: percentage and bar
        \d+(?:\.\d+)?\s?[kMGTPEZY]?[A-Za-z]*      # count, maybe scaled or with a unit
        (?:/\d+(?:\.\d+)?\s?[kMGTPEZY]?[A-Za-z]*)?  # / total
        (?:\s*\(\d{1,3}%\))?                      # plain: (percentage)
        \s*\[(?:\d+:)?\d{1,2}:\d{2}[^\]\n]*\]\s*$ # [elapsed<remaining, rate, postfix]
    """,
    re.X,
)


def is_progress_line(line: str) -> bool:
    """Whether one line of output is a progress bar's (tqdm's or lmc_core's plain format)."""
    return bool(_PROGRESS_LINE.match(line))


def _split_progress(text: str) -> list[tuple[bool, str]]:
    """Split stream text into runs of [(is progress, text)], in order, blank lines kept with their run."""
    runs: list[tuple[bool, str]] = []
    for line in text.splitlines(keepends=True):
        prog = is_progress_line(line) if line.strip() else (runs[-1][0] if runs else False)
        if runs and runs[-1][0] == prog:
            runs[-1] = (prog, runs[-1][1] + line)
        else:
            runs.append((prog, line))
    return runs


def _tidy_outputs(outputs: list, home_prefixes: Sequence[str]) -> list:
    """Coalesce streams, apply carriage returns, move progress off stderr, hide home paths."""
    import nbformat

    merged: list = []
    for out in outputs:
        if (out.get("output_type") == "stream" and merged
                and merged[-1].get("output_type") == "stream" and merged[-1].get("name") == out.get("name")):
            merged[-1]["text"] += out.get("text", "")
        else:
            merged.append(nbformat.from_dict(dict(out)))
    result: list = []
    for out in merged:
        kind = out.get("output_type")
        if kind == "stream":
            text = _unhome(collapse_cr(out.get("text", "")), home_prefixes)
            if out.get("name") == "stderr":
                for prog, part in _split_progress(text):
                    result.append(nbformat.v4.new_output("stream", name="stdout" if prog else "stderr",
                                                         text=part))
            else:
                result.append(nbformat.v4.new_output("stream", name=out.get("name", "stdout"), text=text))
        elif kind == "error":
            out["evalue"] = _unhome(out.get("evalue", ""), home_prefixes)
            out["traceback"] = [_unhome(t, home_prefixes) for t in out.get("traceback", [])]
            result.append(out)
        else:
            result.append(out)
    # merge what became neighbours (progress moved to stdout next to stdout), drop empty streams
    final: list = []
    for out in result:
        if out.get("output_type") == "stream":
            if not out["text"].strip():
                continue
            if final and final[-1].get("output_type") == "stream" and final[-1]["name"] == out["name"]:
                final[-1]["text"] += out["text"]
                continue
        final.append(out)
    return final


def _unhome(text: str, prefixes: Sequence[str]) -> str:
    """``text`` with the home folder's absolute path prefix removed (paths shown relative to it)."""
    for pre in prefixes:
        text = text.replace(pre, "")
    return text


def _home_prefixes(home: Path) -> list[str]:
    """The spellings of ``home`` + separator that may appear in outputs, longest first."""
    forms = {str(home), os.path.abspath(home), str(Path(home).resolve())}
    return sorted({f.rstrip(os.sep) + os.sep for f in forms if f and f != os.sep}, key=len, reverse=True)


def merged_parameters(default_src: str, injected_src: str, title: str) -> str:
    """One parameters cell: ``title``, then the notebook's parameters in their order with the values
    injected by papermill where given (keeping each line's trailing comment), then injected names
    the notebook does not declare.  Falls back to the injected cell under ``title``."""
    body_injected = "\n".join(line for line in injected_src.splitlines()
                              if not line.lstrip().startswith("#"))
    try:
        dtree, itree = ast.parse(default_src), ast.parse(body_injected)
    except SyntaxError:
        return f"{title}\n{body_injected.strip()}\n"

    def name_of(node: ast.stmt) -> str | None:
        targets = getattr(node, "targets", None) or ([node.target] if isinstance(node, ast.AnnAssign) else [])
        return targets[0].id if len(targets) == 1 and isinstance(targets[0], ast.Name) else None

    injected: dict[str, str] = {}
    for node in itree.body:
        name = name_of(node)
        injected[name or f"#{len(injected)}"] = ast.get_source_segment(body_injected, node) or ""
    dlines = default_src.splitlines()
    lines, used = [title], set()
    for node in dtree.body:
        name = name_of(node)
        tail = dlines[node.end_lineno - 1][node.end_col_offset:] if node.end_lineno else ""
        comment = tail.rstrip() if tail.strip().startswith("#") else ""
        if name is not None and name in injected:
            lines.append(injected[name] + comment)
            used.add(name)
        else:
            lines.append((ast.get_source_segment(default_src, node) or "") + comment)
    lines += [text for name, text in injected.items() if name not in used]
    return "\n".join(lines) + "\n"


def tidy_notebook(nb, profile: str | None = None, home: Path | None = None):
    """Prepare an executed notebook for readers (in place; returns ``nb``).

    - one parameters cell: the notebook's own ``parameters`` cell is dropped and papermill's
      ``injected-parameters`` cell shows every parameter with the value this run used, titled
      ``# Parameters of this run (profile <profile>)``;
    - stream outputs coalesced and carriage returns applied, so a progress bar shows its final
      line only; stderr lines that are only progress become ordinary (stdout) output, real
      warnings and errors stay on stderr;
    - the absolute path of the home folder is removed from streams and tracebacks;
    - the Colab install cell (it does nothing outside Colab, and its `raise` reads like an error) is dropped.
    """
    home = paths.home() if home is None else Path(home)
    prefixes = _home_prefixes(home)
    tags = [set(c.get("metadata", {}).get("tags", [])) for c in nb.cells]
    inj = next((i for i, t in enumerate(tags) if "injected-parameters" in t), None)
    default = next((i for i, t in enumerate(tags) if "parameters" in t), None)
    if inj is not None:
        cell = nb.cells[inj]
        if profile is None:
            m = re.search(r"^profile\s*=\s*['\"]([^'\"]+)['\"]", cell.source, re.M)
            profile = m.group(1) if m else "?"
        title = PARAMETERS_TITLE.format(profile=profile)
        default_src = nb.cells[default].source if default is not None else ""
        cell.source = _unhome(merged_parameters(default_src, cell.source, title), prefixes).rstrip("\n")
        if default is not None:
            del nb.cells[default]
    nb.cells = [c for c in nb.cells if not (c.get("cell_type") == "code" and c.source.startswith(COLAB_CELL))]
    for cell in nb.cells:
        if cell.get("cell_type") == "code" and cell.get("outputs"):
            cell.outputs = _tidy_outputs(cell.outputs, prefixes)
    return nb


def read_summary(figures_dir: Path | str, prefix: str) -> dict[str, Any]:
    """``figures_dir/<prefix>_summary.json`` as a dict ({} when missing or unreadable), read from a whole figure
    set (lmc_core.publish.outputs.reading: a half-done swap is finished first, none runs while it reads)."""
    path = Path(figures_dir) / f"{prefix}_summary.json"
    try:
        with reading(figures_dir):
            data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def figure_titles(summary: dict[str, Any]) -> list[tuple[str, str]]:
    """[(file, title)] of a summary's ``figures`` list, in reading order (bad entries skipped)."""
    out: list[tuple[str, str]] = []
    for entry in summary.get("figures") or []:
        if isinstance(entry, dict) and isinstance(entry.get("file"), str) and entry["file"]:
            out.append((entry["file"], " ".join(str(entry.get("title") or "").split())))
    return out


def _image_alts(nb, titles: Sequence[tuple[str, str]], label: str) -> dict[str, str]:
    """{base64 image data: alt text} for the image outputs of ``nb``.

    A cell that names figures (``result.figures["01_x"]``) gets their titles for its images, in the
    order it names them; other images take the titles not yet used in reading order; the rest
    are described as "Figure n of <label>".
    """
    stems = {Path(f).stem: t or Path(f).name for f, t in titles}
    per_cell: list[tuple[list[str], list[str]]] = []
    for cell in nb.cells:
        if cell.get("cell_type") != "code":
            continue
        images = [re.sub(r"\s", "", o["data"][mime]) for o in cell.get("outputs", [])
                  for mime in ("image/png", "image/jpeg") if mime in o.get("data", {})]
        if not images:
            continue
        hits = sorted((m.start(), s) for s in stems
                      for m in re.finditer(r"""["']""" + re.escape(s) + r"""(?:\.png)?["']""", cell.source))
        named = list(dict.fromkeys(s for _, s in hits))
        per_cell.append((images, named))
    used = {s for _, named in per_cell for s in named}
    spare = [s for s in stems if s not in used]
    alts: dict[str, str] = {}
    n = 0
    for images, named in per_cell:
        for i, data in enumerate(images):
            n += 1
            if i < len(named):
                alts[data] = stems[named[i]]
            elif spare:
                alts[data] = stems[spare.pop(0)]
            else:
                alts.setdefault(data, f"Figure {n} of {label}")
    return alts


def _set_alts(page: str, alts: dict[str, str], label: str) -> str:
    """``page`` with alt text on every data: image (from ``alts``, else "Figure n of <label>")."""
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(page, features="html.parser")
    n = 0
    for img in soup.find_all("img"):
        n += 1
        src = img.get("src") or ""
        data = re.sub(r"\s", "", src.split(",", 1)[1]) if src.startswith("data:image/") and "," in src else ""
        if data in alts:
            img["alt"] = alts[data]
        elif not (img.get("alt") or "").strip() or img.get("alt") == _NO_ALT:
            img["alt"] = f"Figure {n} of {label}"
    return str(soup)


def notebook_title(nb_path: Path) -> str:
    """The first Markdown heading of a notebook (without '#'), or '' when there is none."""
    try:
        nb = json.loads(Path(nb_path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return ""
    for cell in nb.get("cells", []):
        if cell.get("cell_type") != "markdown":
            continue
        src = cell.get("source", "")
        src = "".join(src) if isinstance(src, list) else src
        for line in src.splitlines():
            if line.startswith("#"):
                return line.lstrip("#").strip()
    return ""


class _DropAltWarning(logging.Filter):
    """Drop nbconvert's "Alternative text is missing" warning (the alt text is added after export)."""

    def filter(self, record: logging.LogRecord) -> bool:
        """False for that warning only."""
        return "Alternative text is missing" not in str(record.msg)


def export_html(executed: Path, html_path: Path, notebook_dir: Path | None = None,
                figures_dir: Path | None = None, profile: str | None = None) -> Path:
    """Export an executed notebook to standalone HTML for readers, all images embedded inline.

    The notebook is tidied first (:func:`tidy_notebook`), and its figures get their titles from
    ``figures_dir/NN_summary.json`` as alt text.  The executed notebook itself is not changed.
    """
    import nbformat
    from nbconvert import HTMLExporter

    executed = Path(executed)
    nb = nbformat.read(str(executed), as_version=4)
    tidy_notebook(nb, profile=profile)
    prefix = figure_prefix(executed.name)
    titles = figure_titles(read_summary(figures_dir, prefix)) if figures_dir and prefix != "other" else []
    label = notebook_title(executed) or executed.stem
    alts = _image_alts(nb, titles, label)
    exporter = HTMLExporter()
    exporter.embed_images = True  # markdown images too, not only cell outputs
    base = notebook_dir if notebook_dir is not None else executed.parent
    resources = {"metadata": {"name": executed.stem, "path": str(base)}}
    quiet = _DropAltWarning()
    exporter.log.addFilter(quiet)  # nbconvert warns of missing alt text, which _set_alts adds
    try:
        body, _ = exporter.from_notebook_node(nb, resources=resources)
    finally:
        exporter.log.removeFilter(quiet)
    html_path.write_text(_set_alts(body, alts, label), encoding="utf-8")
    return html_path


