"""docs/parameters.md's study tables: every parameter of every notebook's study with its checked domain and its
value in each profile, generated from the parameters' own checks (lmc_core.studies.params), so the table and the
checks cannot disagree.

The block between `<!-- study-parameters -->` and `<!-- /study-parameters -->` is replaced by `study_tables()`;
`python -m lmc_core params` refreshes it, and a test checks the committed file is current.
"""
from __future__ import annotations

import dataclasses
import re
from pathlib import Path

from ..domains import domain_words
from .paths import repo_root

_BLOCK = re.compile(r"(<!-- study-parameters -->\n)(.*?)(<!-- /study-parameters -->)", re.S)
DOC = Path("docs") / "parameters.md"


def _cell(v, width: int = 48) -> str:
    s = " ".join(repr(v).split()) if not isinstance(v, str) else v
    s = s if len(s) <= width else s[: width - 1] + "…"
    return s.replace("|", "\\|")


def _row(f, values: list) -> str:
    dom = domain_words(f.metadata.get("check")).replace("|", "\\|")
    vals = " | ".join(f"`{_cell(v)}`" for v in values)
    return f"| `{f.name}` | {dom} | {vals}{' | ' if values else ''}{_cell(f.metadata.get('help', ''), 200)} |"


def study_tables(studies: list, base: type) -> str:
    """Markdown: the parameters every study shares (the dataclass `base`, lmc_core.studies.params.StudyParams),
    then one table per study (lmc_core.studies.registry's) with its own parameters: name, domain, the value in
    each profile, meaning."""
    shared = [f.name for f in dataclasses.fields(base)]
    out = ["### Every notebook", "", "| parameter | domain | meaning |", "|---|---|---|"]
    out += [_row(f, []) for f in dataclasses.fields(base)] + [""]
    for st in studies:
        names = list(st.profiles)
        out += [f"### {st.notebook}", "",
                "| parameter | domain | " + " | ".join(names) + " | meaning |",
                "|---|---|" + "---|" * len(names) + "---|"]
        first = next(iter(st.profiles.values()))
        out += [_row(f, [getattr(st.profiles[n], f.name) for n in names])
                for f in dataclasses.fields(first) if f.name not in shared] + [""]
    return "\n".join(out)


def refresh(studies: list, base: type, path: Path | None = None) -> bool:
    """Rewrite the study block of docs/parameters.md (`python -m lmc_core params`); True if it changed."""
    path = path or repo_root() / DOC
    text = path.read_text(encoding="utf-8")
    if not _BLOCK.search(text):
        raise ValueError(f"{path} has no <!-- study-parameters --> ... <!-- /study-parameters --> block")
    new = _BLOCK.sub(lambda m: m.group(1) + study_tables(studies, base) + m.group(3), text)
    if new != text:
        path.write_text(new, encoding="utf-8")
    return new != text


def current_block(path: Path | None = None) -> str:
    """The study block as committed."""
    m = _BLOCK.search((path or repo_root() / DOC).read_text(encoding="utf-8"))
    return m.group(2) if m else ""

