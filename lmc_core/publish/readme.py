"""README results quoted from the runs, and the Colab links from one setting.

The block between `<!-- findings -->` and `<!-- /findings -->` is the findings at a glance: one row per notebook
built from its summary JSON's headline finding (`findings_table`).

The blocks between `<!-- summary:NN -->` and `<!-- /summary:NN -->` are replaced by
figures/<profile>/NN_summary.md, which each study writes from its own numbers;
`python -m lmc_core readme` (run by `make figures` for the quick profile) refreshes them, and a
test checks that the README and the committed summaries agree, so no result is typed by hand.
The block `<!-- colab -->` gets one "Open in Colab" badge per notebook, and every notebook's Colab
cell the install source, both from `[tool.lmc_core] repository` in pyproject.toml.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

from ..analysis.findings import Finding, plural
from .colab import COLAB_CELL
from .compare import flipped_headlines, rebuild_lines, rebuilt
from ..machine import words as machine_words

_BLOCK = re.compile(r"(<!-- summary:(\d\d) -->\n)(.*?)(<!-- /summary:\2 -->)", re.S)
_FINDINGS = re.compile(r"(<!-- findings -->\n)(.*?)(<!-- /findings -->)", re.S)


def _cell(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def findings_table(figures_dir: Path) -> str:
    """The README's findings at a glance: one row per notebook from its summary JSON (the headline Finding the
    study wrote, the study's question, the seed study's claim on the same scale, the setting), the machines that
    computed them, and every verdict a kept rebuild (figures_dir/rebuilds/<label>/, publish.compare) does not share;
    a headline verdict a rebuild does not keep reads "not a finding". '' when no summary carries a headline finding."""
    kept = rebuilt(figures_dir)  # every kept build compared once, for the flags and the lines below the table
    rows, machines, flipped = [], {}, flipped_headlines(kept)
    for f in sorted(Path(figures_dir).glob("[0-9][0-9]_summary.json")):
        d = json.loads(f.read_text(encoding="utf-8"))
        h = d.get("headline_finding")
        if not h or d.get("capped"):  # a capped run is never a result
            continue
        machines.setdefault(machine_words(d.get("machine", {})), []).append(f.name[:2])
        finding = Finding(**{k: h[k] for k in Finding.__dataclass_fields__ if k in h})
        verdict = f"**{_cell(h['verdict'] or '–')}**"
        if f.name[:2] in flipped:  # a verdict a rebuild elsewhere does not keep is not a finding
            verdict = f"**not a finding** ({_cell(flipped[f.name[:2]])})"
        value = f"{finding.short()} {finding.unit}".strip() if finding.estimate == finding.estimate else finding.reason
        units = plural(h["n_units"], h["unit_name"])
        rows.append(f"| {f.name[:2]} | {_cell(d.get('question', ''))} | {_cell(d.get('claim', ''))} | "
                    f"{verdict} | {_cell(value)} | {units} | {_cell(d.get('setting', ''))} |")
    if not rows:
        return ""
    head = ("| notebook | question | the seed study's claim (its scale) | our verdict | estimate [95 % interval] or "
            "(range over fewer than 5 units) "
            "| independent units | setting |\n|---|---|---|---|---|---|---|\n")
    built = "; ".join(f"{', '.join(nbs)} on {words}" if words else f"{', '.join(nbs)}: machine not recorded"
                      for words, nbs in machines.items())
    again = rebuild_lines(kept)
    return head + "\n".join(rows) + f"\n\nComputed by: {built}.\n" + (f"\n{again}\n" if again else "")


def summary_blocks(readme: str) -> dict[str, str]:
    """{notebook prefix: block text} of a README."""
    return {m.group(2): m.group(3) for m in _BLOCK.finditer(readme)}


def render(readme: str, figures_dir: Path) -> str:
    """The README with every summary block replaced by the summary file of its notebook (blocks whose
    summary file does not exist are left as they are)."""
    from .outputs import reading

    def repl(m: re.Match) -> str:
        f = Path(figures_dir) / f"{m.group(2)}_summary.md"
        if not f.exists() or f.read_text(encoding="utf-8").startswith("**CAPPED RUN"):  # never quote a capped run
            return m.group(0)
        return m.group(1) + f.read_text(encoding="utf-8").strip() + "\n" + m.group(4)

    with reading(figures_dir):  # whole figure sets only: a half-done swap is finished, none runs while we read
        table = findings_table(figures_dir)
        readme = _FINDINGS.sub(lambda m: m.group(1) + table + m.group(3), readme) if table else readme
        return _BLOCK.sub(repl, readme)


def update_readme(root: Path, profile: str = "quick") -> list[str]:
    """Rewrite README.md in place from figures/<profile>; returns what changed ('notebook 01', 'colab', 'findings
    table')."""
    path = Path(root) / "README.md"
    old = path.read_text(encoding="utf-8")
    new = render_colab(render(old, Path(root) / "figures" / profile), root)
    stamp_notebooks(root, repository(root))
    before, after = summary_blocks(old), summary_blocks(new)
    changed = [f"notebook {k}" for k in after if before.get(k) != after[k]]
    changed += ["colab"] if render_colab(old, root) != old else []
    tables = [m.group(2) for text in (old, new) for m in _FINDINGS.finditer(text)]
    changed += ["findings table"] if len(set(tables)) > 1 else []
    if new != old:
        path.write_text(new, encoding="utf-8")
    return changed


_COLAB = re.compile(r"(<!-- colab -->\n)(.*?)(<!-- /colab -->)", re.S)
BADGE = "https://colab.research.google.com/assets/colab-badge.svg"


def repository(root: Path) -> str:
    """The public GitHub repository (owner/name): pyproject.toml's `[tool.lmc_core] repository`, else the
    checkout's git remote `origin` when it points to GitHub, else ''."""
    import subprocess
    import tomllib

    data = tomllib.loads((Path(root) / "pyproject.toml").read_text(encoding="utf-8"))
    repo = str(data.get("tool", {}).get("lmc_core", {}).get("repository", "")).strip()
    if repo:
        return repo
    try:
        url = subprocess.run(["git", "-C", str(root), "remote", "get-url", "origin"], capture_output=True, text=True,
                             timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""
    return github_repository(url)


def github_repository(url: str) -> str:
    """owner/name of a GitHub remote URL (https or ssh form), or ''."""
    m = re.match(r"^(?:https?://(?:[^@/]+@)?github\.com/|git@github\.com:|ssh://git@github\.com/)"
                 r"([\w.-]+)/([\w.-]+?)(?:\.git)?/?$", url.strip())
    return f"{m.group(1)}/{m.group(2)}" if m else ""


def colab_block(root: Path, repo: str) -> str:
    """Markdown: a badge per notebook, or what to set when the repository is not known yet."""
    notebooks = sorted((Path(root) / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    if not repo:
        return ("No public repository is recorded yet: set `[tool.lmc_core] repository = \"owner/name\"` in "
                "pyproject.toml and run `python -m lmc_core readme` to get one \"Open in Colab\" badge per notebook "
                "here. Meanwhile open a notebook in Colab with *File → Open notebook → GitHub* and run "
                "`%env LMC_SOURCE=git+https://github.com/<owner>/<name>` (any pip-installable copy of lmc_core) "
                "before its first cell.\n")
    lines = []
    for nb in notebooks:
        url = f"https://colab.research.google.com/github/{repo}/blob/main/notebooks/{nb.name}"
        lines.append(f"[![Open In Colab]({BADGE})]({url}) `{nb.stem}`  ")
    return "\n".join(lines) + "\n"


def stamp_notebooks(root: Path, repo: str) -> list[str]:
    """Write `repository = "<repo>"` into each notebook's Colab cell; returns the notebooks changed."""
    changed = []
    for nb in sorted((Path(root) / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        text = nb.read_text(encoding="utf-8")
        data = json.loads(text)
        for cell in data["cells"]:
            src = "".join(cell["source"])
            if src.startswith(COLAB_CELL):
                new = re.sub(r'^repository = "[^"]*"', f'repository = "{repo}"', src, flags=re.M)
                if new != src:
                    lines = new.split("\n")
                    cell["source"] = [ln + "\n" for ln in lines[:-1]] + [lines[-1]]
        out = json.dumps(data, indent=1, ensure_ascii=False) + "\n"
        if out != text:
            nb.write_text(out, encoding="utf-8")
            changed.append(nb.stem)
    return changed


def render_colab(readme: str, root: Path) -> str:
    """The README with its Colab block written from the repository setting."""
    block = colab_block(root, repository(root))
    return _COLAB.sub(lambda m: m.group(1) + block + m.group(3), readme)
