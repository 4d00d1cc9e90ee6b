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

from ..machine import words as machine_words


@dataclass(frozen=True)
class Pair:
    """One finding in both builds: its notebook, each build's finding (a dict of NN_summary.json's `findings`; {} where
    that build has none paired with it) and whether it is A's headline."""

    notebook: str
    a: dict
    b: dict
    headline: bool

    def _get(self, key: str):
        return (self.a or self.b).get(key, "")

    @property
    def question(self) -> str:
        return self._get("question")

    @property
    def metric(self) -> str:
        return self._get("metric")

    @property
    def verdict_a(self) -> str | None:
        return self.a.get("verdict") if self.a else None

    @property
    def verdict_b(self) -> str | None:
        return self.b.get("verdict") if self.b else None

    @property
    def estimate_a(self) -> float:
        return float(self.a.get("estimate", float("nan"))) if self.a else float("nan")

    @property
    def estimate_b(self) -> float:
        return float(self.b.get("estimate", float("nan"))) if self.b else float("nan")

    @property
    def same(self) -> bool:
        return self.verdict_a == self.verdict_b


_NUMBER = re.compile(r"[-+]?(\d[\d.,]*(e[-+]?\d+)?|∞|nan|inf)")


def _key(f: dict) -> tuple[str, str]:
    """A finding's question and metric with their numbers blanked: questions quote measured numbers ("... unaligned
    1.896 nats", "2 of 3 paths convex", "∞ [1900-∞]"), which differ between builds of the same finding."""
    return _NUMBER.sub("#", f.get("question", "")), _NUMBER.sub("#", f.get("metric", ""))


def _pair(fa: list[dict], fb: list[dict]) -> list[tuple[dict, dict]]:
    """The findings of two builds of one notebook, paired: first by the exact question and metric; the rest by the
    question and metric with numbers blanked, in order, only where both builds have the same number of them (a
    study emits its findings in its design's order, so the k-th is the same finding); every other finding unpaired
    ({} on the other side). Blanking also blanks design numbers (wd 1 and wd 0.5): a group whose sizes differ
    between the builds is never paired by order, so one build's missing finding cannot shift the others."""
    exact = lambda f: (f.get("question", ""), f.get("metric", ""))  # noqa: E731
    out, left_a, left_b = [], [], list(fb)
    for x in fa:
        y = next((y for y in left_b if exact(y) == exact(x)), None)
        if y is None:
            left_a.append(x)
        else:
            left_b.remove(y)
            out.append((x, y))
    groups_a, groups_b = {}, {}
    for x in left_a:
        groups_a.setdefault(_key(x), []).append(x)
    for y in left_b:
        groups_b.setdefault(_key(y), []).append(y)
    for key, xs in groups_a.items():
        ys = groups_b.pop(key, [])
        out += list(zip(xs, ys)) if len(xs) == len(ys) else [(x, {}) for x in xs] + [({}, y) for y in ys]
    out += [({}, y) for ys in groups_b.values() for y in ys]
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


def other_designs(folder_a: Path, folder_b: Path) -> list[str]:
    """The notebooks both folders hold whose runs had another design: their summaries' `setting` words differ (e.g.
    6 initialisations against 5), so their verdicts answer different runs and are not a rebuild's to compare."""
    return _other(_summaries(folder_a), _summaries(folder_b))


def _other(a: dict, b: dict) -> list[str]:
    """The notebooks of two read folders (`_summaries`) whose `setting` differs."""
    return sorted(nb for nb in set(a) & set(b) if a[nb].get("setting") != b[nb].get("setting"))


def compare(folder_a: Path, folder_b: Path, same_design: bool = False) -> tuple[list[Pair], dict[str, tuple[str, str]]]:
    """Every finding of the notebooks both folders hold, paired (`Pair`), and {notebook: (machine of a, of b)} in
    words; with same_design, only the notebooks whose `setting` is the same in both (other_designs lists the rest).
    Raises FileNotFoundError naming a folder that does not exist, ValueError when they share no notebook."""
    a, b = _summaries(folder_a), _summaries(folder_b)
    common = sorted(set(a) & set(b))
    if not common:
        raise ValueError(f"{folder_a} and {folder_b} hold no summary of the same notebook (NN_summary.json)")
    if same_design:
        common = [nb for nb in common if nb not in _other(a, b)]
    pairs, machines = [], {}
    for nb in common:
        head = a[nb].get("headline_finding") or {}
        pairs += [Pair(nb, x, y, headline=bool(x) and x == head)
                  for x, y in _pair(a[nb].get("findings", []), b[nb].get("findings", []))]
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
            if p.a and p.b and (p.b.get("question"), p.b.get("metric")) != (p.a.get("question"), p.a.get("metric")):
                name += f" [B: {p.b.get('question')} ({p.b.get('metric')})]"
            lines.append(f"| {p.notebook} | {name} | {p.verdict_a if p.verdict_a is not None else 'absent'} | "
                         f"{p.verdict_b if p.verdict_b is not None else 'absent'} | {p.estimate_a:.4g} | "
                         f"{p.estimate_b:.4g} |")
    return "\n".join(lines) + "\n"


REBUILDS = "rebuilds"  # figures/<profile>/rebuilds/<label>/NN_summary.json: the same notebooks built elsewhere


def rebuilt(figures_dir: Path) -> list[tuple[str, list[Pair], list[str]]]:
    """[(label, its Pairs against figures_dir, the notebooks it ran in another design)] for every other build kept
    under figures_dir/rebuilds/<label>/ (its summary JSONs, e.g. the same commit built on another CPU); only notebooks
    of the same design (`setting`) are paired; [] when there is none."""
    root = Path(figures_dir) / REBUILDS
    folders = sorted(d for d in root.iterdir() if d.is_dir()) if root.is_dir() else []
    return [(d.name, compare(figures_dir, d, same_design=True)[0], other_designs(figures_dir, d))
            for d in folders if any(d.glob("[0-9][0-9]_summary.json"))]


def flipped_headlines(kept: list[tuple[str, list[Pair], list[str]]]) -> dict[str, str]:
    """{notebook: words} for each notebook whose headline verdict differs in a kept build (`rebuilt`'s list): such a
    verdict is not a finding ('unstable here (2.81 [2.63, 3.07]), inconclusive in the kept build `previous` (2.63
    [1.98, 3.04])')."""
    out = {}
    for label, pairs, _ in kept:
        for p in pairs:
            if p.headline and not p.same:
                out[p.notebook] = (out[p.notebook] + "; " if p.notebook in out else "") + (
                    f"{p.verdict_a or '–'} here ({_short(p.a)}), {p.verdict_b or 'absent'} in the kept build "
                    f"`{label}`" + (f" ({_short(p.b)})" if p.b else ""))
    return out


def _short(f: dict) -> str:
    """A finding's estimate and interval (or range) in a few characters, as the findings table prints it."""
    from ..analysis.findings import Finding

    return Finding(**{k: f[k] for k in Finding.__dataclass_fields__ if k in f}).short()


def rebuild_lines(kept: list[tuple[str, list[Pair], list[str]]]) -> str:
    """Markdown lines, one per kept build (`rebuilt`'s list): how many verdicts it shares with the committed build,
    each one that differs, and the notebooks it ran in another design (not compared)."""
    lines = []
    for label, pairs, other in kept:
        flips = [p for p in pairs if not p.same]
        what = "; ".join(f"{p.notebook} {p.question} ({p.metric}): {p.verdict_a or 'absent'} here, "
                         f"{p.verdict_b or 'absent'} there" for p in flips)
        lines.append(f"Kept build `{label}` (its summaries in {REBUILDS}/{label}/ beside the committed ones): "
                     f"{sum(p.same for p in pairs)} of {len(pairs)} verdicts the same"
                     + (f"; differ: {what}." if flips else ".")
                     + (f" Not compared: notebook{'s' if len(other) > 1 else ''} {', '.join(other)}, run there in "
                        "another design (the summaries' settings differ)." if other else ""))
    return "\n\n".join(lines)
