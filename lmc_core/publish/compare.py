"""Two builds of the same notebooks compared finding by finding: does a rebuild keep every verdict?

A verdict that a rebuild on another machine would flip is not a finding (float32 kernels of different CPUs round
differently, so trained weights, and everything after them, differ in their last bits and then more). This reads
two figures folders (`figures/quick` as committed, and a rebuild's), pairs each notebook's findings by their question
and metric (in order, where one question is asked more than once) and reports every verdict that differs, with both
estimates and both machines (`NN_summary.json`'s `machine`, written by `lmc_core.studies.base`).

    python -m lmc_core compare figures/quick /path/to/rebuild/figures/quick
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from .costs import machine_words


@dataclass(frozen=True)
class Pair:
    """One finding in both builds: its notebook, question and metric, verdict and estimate in each (a finding one
    build lacks has verdict None there)."""

    notebook: str
    question: str
    metric: str
    verdict_a: str | None
    verdict_b: str | None
    estimate_a: float
    estimate_b: float
    headline: bool

    @property
    def same(self) -> bool:
        return self.verdict_a == self.verdict_b


_NUMBER = re.compile(r"[-+]?\d[\d.,]*(e[-+]?\d+)?")


def _key(text: str) -> str:
    """A finding's question or metric with its numbers blanked: questions quote measured numbers ("... unaligned
    1.896 nats", "2 of 3 paths convex"), which differ between builds of the same finding."""
    return _NUMBER.sub("#", text)


def _findings(summary: dict) -> dict[tuple[str, str, int], dict]:
    """{(question, metric, k-th time asked): finding} of one summary JSON, numbers in the question blanked."""
    out, seen = {}, {}
    for f in summary.get("findings", []):
        key = (_key(f.get("question", "")), _key(f.get("metric", "")))
        k = seen[key] = seen.get(key, -1) + 1
        out[(*key, k)] = f
    return out


def _summaries(folder: Path) -> dict[str, dict]:
    """{notebook prefix: summary} of a figures folder; capped runs are never compared (they are not results)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such figures folder (give the folder holding NN_summary.json)")
    out = {}
    for f in sorted(folder.glob("[0-9][0-9]_summary.json")):
        d = json.loads(f.read_text(encoding="utf-8"))
        if not d.get("capped"):
            out[f.name[:2]] = d
    return out


def compare(folder_a: Path, folder_b: Path) -> tuple[list[Pair], dict[str, tuple[str, str]]]:
    """Every finding of the notebooks both folders hold, paired (`Pair`), and {notebook: (machine of a, of b)} in
    words. Raises FileNotFoundError naming a folder that does not exist, ValueError when they share no notebook."""
    a, b = _summaries(folder_a), _summaries(folder_b)
    common = sorted(set(a) & set(b))
    if not common:
        raise ValueError(f"{folder_a} and {folder_b} hold no summary of the same notebook (NN_summary.json)")
    pairs, machines = [], {}
    for nb in common:
        fa, fb = _findings(a[nb]), _findings(b[nb])
        head = a[nb].get("headline_finding") or {}
        head_key = (_key(head.get("question", "")), _key(head.get("metric", "")))
        for key in list(fa) + [k for k in fb if k not in fa]:
            x, y = fa.get(key, {}), fb.get(key, {})
            pairs.append(Pair(nb, (x or y).get("question", ""), (x or y).get("metric", ""), x.get("verdict") if x else None, y.get("verdict") if y else None,
                              float(x.get("estimate", float("nan"))) if x else float("nan"),
                              float(y.get("estimate", float("nan"))) if y else float("nan"),
                              headline=key[:2] == head_key and key[2] == 0))
        machines[nb] = (machine_words(a[nb].get("machine", {})) or "not recorded",
                        machine_words(b[nb].get("machine", {})) or "not recorded")
    return pairs, machines


def report(pairs: list[Pair], machines: dict[str, tuple[str, str]]) -> str:
    """The comparison in markdown: per notebook the machines and how many verdicts agree, then every finding whose
    verdict differs (the headline marked)."""
    lines = ["| notebook | build A | build B | verdicts the same |", "|---|---|---|---|"]
    for nb, (ma, mb) in machines.items():
        mine = [p for p in pairs if p.notebook == nb]
        lines.append(f"| {nb} | {ma} | {mb} | {sum(p.same for p in mine)} of {len(mine)} |")
    flips = [p for p in pairs if not p.same]
    lines += ["", f"{sum(p.same for p in pairs)} of {len(pairs)} verdicts the same; {len(flips)} differ"
              + (":" if flips else ".")]
    if flips:
        lines += ["", "| notebook | finding | verdict A | verdict B | estimate A | estimate B |", "|---|---|---|---|---|---|"]
        for p in flips:
            name = f"{'**headline** ' if p.headline else ''}{p.question} ({p.metric})"
            lines.append(f"| {p.notebook} | {name} | {p.verdict_a if p.verdict_a is not None else 'absent'} | "
                         f"{p.verdict_b if p.verdict_b is not None else 'absent'} | {p.estimate_a:.4g} | "
                         f"{p.estimate_b:.4g} |")
    return "\n".join(lines) + "\n"


REBUILDS = "rebuilds"  # figures/<profile>/rebuilds/<label>/NN_summary.json: the same notebooks built elsewhere


def rebuilt(figures_dir: Path) -> list[tuple[str, list[Pair]]]:
    """[(label, its Pairs against figures_dir)] for every other build kept under figures_dir/rebuilds/<label>/ (its
    summary JSONs, e.g. the same commit built on another CPU); [] when there is none."""
    root = Path(figures_dir) / REBUILDS
    folders = sorted(d for d in root.iterdir() if d.is_dir()) if root.is_dir() else []
    return [(d.name, compare(figures_dir, d)[0]) for d in folders if any(d.glob("[0-9][0-9]_summary.json"))]


def flipped_headlines(figures_dir: Path) -> dict[str, str]:
    """{notebook: words} for each notebook whose headline verdict differs on a kept rebuild: such a verdict is not a
    finding ('unstable here, inconclusive on the rebuild amd-epyc-avx2')."""
    out = {}
    for label, pairs in rebuilt(figures_dir):
        for p in pairs:
            if p.headline and not p.same:
                out[p.notebook] = (out[p.notebook] + "; " if p.notebook in out else "") + (
                    f"{p.verdict_a or '–'} here, {p.verdict_b or 'absent'} on the rebuild {label}")
    return out


def rebuild_lines(figures_dir: Path) -> str:
    """Markdown lines, one per kept rebuild: how many verdicts it shares with figures_dir and each one that differs."""
    lines = []
    for label, pairs in rebuilt(figures_dir):
        flips = [p for p in pairs if not p.same]
        what = "; ".join(f"{p.notebook} {p.question} ({p.metric}): {p.verdict_a or 'absent'} here, "
                         f"{p.verdict_b or 'absent'} there" for p in flips)
        lines.append(f"Rebuild `{label}` (figures/quick/{REBUILDS}/{label}): {sum(p.same for p in pairs)} of "
                     f"{len(pairs)} verdicts the same" + (f"; differ: {what}." if flips else "."))
    return "\n\n".join(lines)
