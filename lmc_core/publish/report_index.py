"""The offline index page of a profile's reports: notebooks in order with their headlines, figures in reading
order, large and click-to-enlarge (used by lmc_core.publish.reports)."""
from __future__ import annotations

import base64
import datetime as _dt
import html
import re
from pathlib import Path
from typing import Any, Sequence

from . import paths
from .outputs import reading
from .paths import check_profile, repo_root

from .report_html import figure_prefix, inside, notebook_title, relhref, figure_titles, read_summary

INDEX_NAME = "index.html"
# CSVs up to this size also get an embedded (data: URI) copy in index.html.
_EMBED_CSV_MAX_BYTES = 1 << 20

_INDEX_CSS = """
:root { --ink: #1f2328; --muted: #59636e; --line: #d1d9e0; --accent: #0b5cad; --bg: #f6f8fa; }
* { box-sizing: border-box; }
body { font: 16px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
       color: var(--ink); margin: 0; background: #fff; }
main { max-width: 1180px; margin: 0 auto; padding: 1.5em 1.5em 4em; }
a { color: var(--accent); }
code { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: 0.92em;
       background: var(--bg); padding: 0 0.2em; border-radius: 4px; }
h1 { font-size: 1.9em; margin: 0.2em 0 0.1em; }
.meta { color: var(--muted); margin: 0 0 1.2em; }
nav.toc { background: var(--bg); border: 1px solid var(--line); border-radius: 8px; padding: 0.8em 1.2em; }
nav.toc ol { margin: 0; padding-left: 1.4em; }
nav.toc li { margin: 0.35em 0; }
nav.toc .headline { display: block; color: var(--muted); font-size: 0.95em; }
section.notebook { margin-top: 2.6em; padding-top: 0.6em; border-top: 3px solid var(--line); }
section.notebook h2 { font-size: 1.5em; margin: 0.2em 0 0.3em; }
.num { color: var(--muted); font-variant-numeric: tabular-nums; margin-right: 0.3em; }
p.headline { font-size: 1.12em; margin: 0.3em 0 0.5em; padding: 0.6em 0.9em; background: #eef6ff;
             border-left: 4px solid var(--accent); border-radius: 0 6px 6px 0; }
p.links { margin: 0.2em 0 1em; }
.failed { color: #b00020; font-weight: 600; }
details.finding { margin: 0 0 1.2em; }
details.finding > summary { cursor: pointer; color: var(--accent); }
details.finding > div { border-left: 3px solid var(--line); padding: 0.1em 1em; margin-top: 0.5em; }
figure.fig { margin: 0 0 2em; padding: 0; max-width: 1100px; }
figure.fig > a.open { display: block; cursor: zoom-in; border: 1px solid var(--line); border-radius: 6px;
                      background: #fff; padding: 6px; }
figure.fig img { display: block; width: auto; height: auto; max-width: 100%; max-height: 88vh; margin: 0 auto; }
figcaption { margin-top: 0.45em; }
figcaption .title { font-weight: 600; display: block; }
figcaption .files { color: var(--muted); font-size: 0.9em; }
figcaption .files code { background: none; padding: 0; }
figure.fig > a.close { display: none; }
figure.fig:target > a.close { display: block; position: fixed; inset: 0; z-index: 10;
                              background: rgba(12, 14, 18, 0.88); cursor: zoom-out; }
figure.fig:target > a.close::after { content: "\\00d7  close"; position: fixed; top: 0.6em; right: 1em;
                                     color: #fff; font-size: 1.2em; }
figure.fig:target > a.open { position: fixed; inset: 3vh 2vw; z-index: 11; display: flex;
                             align-items: center; justify-content: center; background: transparent;
                             border: 0; padding: 0; pointer-events: none; }
figure.fig:target > a.open img { width: auto; height: auto; max-width: 96vw; max-height: 94vh;
                                 background: #fff; border-radius: 4px; padding: 6px; }
.hint { color: var(--muted); font-size: 0.9em; }
""".strip()


def _inline_md(text: str) -> str:
    """Escape ``text`` and render its inline Markdown (`code`, **bold**, *italic*)."""
    out = html.escape(text)
    out = re.sub(r"`([^`]+)`", r"<code>\1</code>", out)
    out = re.sub(r"\*\*([^*]+)\*\*", r"<b>\1</b>", out)
    return re.sub(r"(?<![\w*])\*([^*\s][^*]*)\*(?!\w)", r"<i>\1</i>", out)


def _markdown(text: str) -> str:
    """Markdown to HTML (mistune, which nbconvert uses; escaped text if unavailable)."""
    try:
        import mistune

        return str(mistune.html(text))
    except Exception:  # pragma: no cover - mistune ships with nbconvert
        return f"<pre>{html.escape(text)}</pre>"


def _ordered_figures(figures: Sequence[Path], titles: Sequence[tuple[str, str]]) -> list[tuple[Path, str]]:
    """[(png, title)]: the summary's figures in its order (those that exist), then the rest by name."""
    by_name = {f.name: f for f in figures}
    out, seen = [], set()
    for name, title in titles:
        if name in by_name and name not in seen:
            out.append((by_name[name], title))
            seen.add(name)
    out += [(f, "") for f in sorted(figures, key=lambda p: p.name) if f.name not in seen]
    return out


def _prefix_key(prefix: str) -> tuple[int, int]:
    """Sort key: notebooks by number, 'other' last."""
    return (1, 0) if prefix == "other" else (0, int(prefix))


def write_index(
    profile: str,
    root: Path | str | None = None,
    reports_dir: Path | str | None = None,
    figures_dir: Path | str | None = None,
    failed: Sequence[str] = (),
) -> Path:
    """Write ``reports/<profile>/index.html``, self-contained and offline.

    Per notebook, in numeric order: its title, the headline of ``NN_summary.json``, a link to its
    report and its figures in reading order (the summary's ``figures`` list, unlisted files after
    them by name), each large, with its title as caption and alt text, click to enlarge
    (CSS only), and links to its CSV.  ``root`` is the checkout (notebook titles when a notebook
    has no executed copy); default folders lie under lmc_core.publish.paths.home().  The figure
    folder is read as whole sets (lmc_core.publish.outputs.reading): a half-done swap is finished
    first, and none runs while the page is built.
    """
    check_profile(profile)
    root = Path(root).resolve() if root is not None else repo_root()
    home = paths.home()
    reports_dir = Path(reports_dir) if reports_dir else home / "reports" / profile
    figures_dir = Path(figures_dir) if figures_dir else home / "figures" / profile
    reports_dir.mkdir(parents=True, exist_ok=True)
    with reading(figures_dir):  # whole figure sets only: a half-done swap is finished, none runs while we read
        return _write_index(profile, root, reports_dir, figures_dir, failed, home)


def _write_index(profile: str, root: Path, reports_dir: Path, figures_dir: Path, failed: Sequence[str],
                 home: Path) -> Path:
    """write_index inside the figure folder's reading() block."""
    esc = html.escape
    failed_set = set(failed)

    reports = sorted(p for p in reports_dir.glob("*.html") if p.name != INDEX_NAME)
    stems = {p.stem for p in reports} | failed_set
    figures = sorted(figures_dir.glob("*.png")) if figures_dir.is_dir() else []
    summaries = sorted(figures_dir.glob("[0-9][0-9]_summary.json")) if figures_dir.is_dir() else []
    prefixes = ({figure_prefix(s) for s in stems} | {figure_prefix(f.name) for f in figures}
                | {p.name[:2] for p in summaries})
    now = _dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z").strip()
    rel = inside(figures_dir, home)
    fig_label = rel.as_posix() if rel is not None else figures_dir.name

    sections: list[dict[str, Any]] = []
    for prefix in sorted(prefixes, key=_prefix_key):
        owners = sorted(s for s in stems if figure_prefix(s) == prefix)
        summary = read_summary(figures_dir, prefix) if prefix != "other" else {}
        title = ""
        for s in owners:
            title = (notebook_title(reports_dir / f"{s}.ipynb")
                     or notebook_title(root / "notebooks" / f"{s}.ipynb"))
            if title:
                break
        title = re.sub(rf"^{prefix}\s*[·.:\-–—]?\s*", "", title) if title else ""
        if not title:
            title = owners[0].split("_", 1)[-1].replace("_", " ") if owners else (
                "Other figures" if prefix == "other" else f"Notebook {prefix}")
        sections.append({
            "prefix": prefix, "owners": owners, "title": title, "summary": summary,
            "figures": _ordered_figures([f for f in figures if figure_prefix(f.name) == prefix],
                                        figure_titles(summary)),
        })

    out: list[str] = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>lmc_core reports ({esc(profile)})</title>",
        f"<style>{_INDEX_CSS}</style></head><body><main>",
        f"<h1>lmc_core reports &mdash; profile <code>{esc(profile)}</code></h1>",
        f'<p class="meta">Generated {esc(now)} &middot; {len(reports)} report(s), {len(figures)} figure(s) '
        f"from <code>{esc(fig_label)}</code> &middot; "
        '<span class="hint">click a figure to enlarge it</span></p>',
    ]
    capped = sorted({str(s["summary"]["capped"].get("cap_steps")) for s in sections
                     if isinstance(s["summary"].get("capped"), dict)})
    if capped:  # a capped run (lmc_core.capped): never to be read as a result
        out.append(f'<p style="color:#b00;font-weight:bold">CAPPED RUN &mdash; NOT A RESULT: training stopped after '
                   f'{esc(", ".join(capped))} update(s) per run; these pages show that the profile runs and what a '
                   "full run costs, nothing about the studies' questions.</p>")

    def report_links(owners: list[str]) -> list[str]:
        links = []
        for s in owners:
            page = reports_dir / f"{s}.html"
            if page.exists():
                links.append(f'<a href="{esc(relhref(page, reports_dir))}">{esc(s)}</a>')
            else:
                links.append(esc(s))
            if s in failed_set:
                links[-1] += ' <span class="failed">FAILED</span>'
        return links

    if sections:
        out.append('<nav class="toc"><b>Notebooks</b><ol>')
        for sec in sections:
            head = sec["summary"].get("headline")
            line = (f'<a href="#nb-{esc(sec["prefix"])}">'
                    + (f'<span class="num">{esc(sec["prefix"])}</span>' if sec["prefix"] != "other" else "")
                    + f'{esc(sec["title"])}</a>')
            if any(s in failed_set for s in sec["owners"]):
                line += ' <span class="failed">FAILED</span>'
            if isinstance(head, str) and head.strip():
                line += f'<span class="headline">{_inline_md(head.strip())}</span>'
            out.append(f"<li>{line}</li>")
        out.append("</ol></nav>")
    else:
        out.append("<p>No notebook reports or figures yet.</p>")

    for sec in sections:
        prefix, summary = sec["prefix"], sec["summary"]
        num = f'<span class="num">{esc(prefix)}</span>' if prefix != "other" else ""
        out.append(f'<section class="notebook" id="nb-{esc(prefix)}"><h2>{num}{esc(sec["title"])}</h2>')
        head = summary.get("headline")
        if isinstance(head, str) and head.strip():
            out.append(f'<p class="headline">{_inline_md(head.strip())}</p>')
        links = report_links(sec["owners"])
        if links:
            out.append(f'<p class="links">Full report: {", ".join(links)}</p>')
        if any(s in failed_set for s in sec["owners"]) and sec["figures"]:
            out.append('<p class="failed">This notebook failed in the last run: the headline and '
                       "figures below may come from an earlier run.</p>")
        md = figures_dir / f"{prefix}_summary.md"
        if prefix != "other" and md.is_file():
            out.append('<details class="finding"><summary>The finding in words '
                       f"(<code>{esc(md.name)}</code>)</summary><div>"
                       f"{_markdown(md.read_text(encoding='utf-8'))}</div></details>")
        for fig, title in sec["figures"]:
            out.append(_figure_html(fig, title, reports_dir))
        out.append("</section>")
    out.append("</main></body></html>")

    index = reports_dir / INDEX_NAME
    index.write_text("\n".join(out) + "\n", encoding="utf-8")
    return index


def _figure_html(fig: Path, title: str, reports_dir: Path) -> str:
    """One figure of the index: the image (click to enlarge), its title, file and CSV links."""
    esc = html.escape
    data = base64.b64encode(fig.read_bytes()).decode("ascii")
    anchor = "fig-" + re.sub(r"[^A-Za-z0-9_-]", "-", fig.stem)
    alt = title or fig.name
    files = [f"<code>{esc(fig.name)}</code>"]
    csv = fig.with_suffix(".csv")
    if csv.exists():
        item = f'data: <a href="{esc(relhref(csv, reports_dir))}">{esc(csv.name)}</a>'
        if csv.stat().st_size <= _EMBED_CSV_MAX_BYTES:
            csv_data = base64.b64encode(csv.read_bytes()).decode("ascii")
            item += (f' (<a download="{esc(csv.name)}" '
                     f'href="data:text/csv;base64,{csv_data}">embedded copy</a>)')
        files.append(item)
    pdf = fig.with_suffix(".pdf")
    if pdf.exists():
        files.append(f'<a href="{esc(relhref(pdf, reports_dir))}">{esc(pdf.name)}</a>')
    caption = (f'<span class="title">{esc(title)}</span>' if title else "") + (
        f'<span class="files">{" &middot; ".join(files)}</span>')
    return (
        f'<figure class="fig" id="{esc(anchor)}">'
        f'<a class="open" href="#{esc(anchor)}" title="Click to enlarge">'
        f'<img alt="{esc(alt)}" src="data:image/png;base64,{data}"></a>'
        f'<a class="close" href="#_" title="Close" aria-label="Close the enlarged figure"></a>'
        f"<figcaption>{caption}</figcaption></figure>"
    )

