"""The Study seam: what every notebook's study is, and the one `run()` they share.

A study is typed parameters (`params.StudyParams`, one frozen dataclass; its profiles are instances) and three
steps:

    compute(p, ctx)  -> data     train (through the run store), evaluate, build tables; everything that costs
    figures(p, data) -> [(name, figure, plotted numbers)]
    findings(p, data) -> Summary  the run's findings through the findings layer (lmc_core.analysis.findings)

`Study.run(params)` resolves and validates the parameters (before any data is loaded or anything trained), sets
up the folders, the run store, the device and torch's threads, calls the three steps and writes every figure,
CSV and the summary as one set. A new study is its module(s) plus one line in `registry.MODULES`; the contract
test (tests/unit/test_study_contract.py) runs on every registered study.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Iterable

import pandas as pd

from ..analysis.findings import Finding
from .. import machine
from ..capped import Timer, capping
from ..publish import costs
from ..publish.outputs import Outputs, check_output_dir
from ..publish.paths import resolve as resolve_path
from .params import StudyParams, merge_overrides, resolve


@dataclass
class Summary:
    """A run's findings in words: the setting (one paragraph), the body (Markdown lines and Findings, in order),
    the headline Finding (the report index and the README's table) and extra numbers for the JSON."""

    setting: str
    body: list = field(default_factory=list)
    headline: Finding | None = None
    numbers: dict = field(default_factory=dict)

    def findings(self) -> list[Finding]:
        """Every Finding of the body (the headline first if it is not in the body)."""
        out = [x for x in self.body if isinstance(x, Finding)]
        return out if self.headline is None or self.headline in out else [self.headline, *out]

    def markdown(self) -> str:
        """The summary as Markdown: the setting in bold, the body (a Finding as a list item), the headline."""
        lines = [f"**{self.setting}**", ""]
        lines += [f"- {x.text()}" if isinstance(x, Finding) else x for x in self.body]
        if self.headline is not None:
            lines += ["", f"**Headline.** {self.headline.text()}"]
        return "\n".join(lines).rstrip() + "\n"

    def as_numbers(self) -> dict:
        """The JSON beside the summary: the headline sentence and finding, every finding, the extra numbers."""
        head = self.headline
        return {"headline": head.text() if head is not None else "", "headline_finding":
                head.as_dict() if head is not None else None, "findings": [f.as_dict() for f in self.findings()],
                **self.numbers}


class Omitted:
    """What a notebook shows for a figure or table that a switch of this run left out: one line saying which
    switch, in Markdown (a notebook's `display`) and as text."""

    def __init__(self, name: str, reason: str):
        self.name, self.reason = name, reason

    def _repr_markdown_(self) -> str:
        return f"*`{self.name}` is not made in this run: {self.reason}.*"

    def __repr__(self) -> str:
        return f"{self.name}: not made in this run ({self.reason})"


class Shown(dict):
    """A result's figures or tables by name. A name that a switch of this run left out (`omitted`: name -> the
    switch, e.g. "run_lm = False") gives an Omitted note instead of a KeyError, so every notebook cell runs whatever
    the switches; any other missing name is a KeyError listing the names there are."""

    def __init__(self, *args, omitted: dict[str, str] | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.omitted = dict(omitted or {})

    def __missing__(self, name: str):
        if name in self.omitted:
            return Omitted(name, self.omitted[name])
        raise KeyError(f"{name!r}: this run has {sorted(self)}")


@dataclass
class StudyResult:
    """What a study produces: named tables, named figures, the files written and the summary.

    figures and tables are `Shown` mappings: a name the study's switches left out reads as an Omitted note."""

    params: dict
    tables: dict[str, pd.DataFrame] = field(default_factory=Shown)
    figures: dict[str, Any] = field(default_factory=Shown)
    files: list[Path] = field(default_factory=list)
    summary: str = ""
    headline: str = ""
    tensorboard: str = ""
    numbers: dict = field(default_factory=dict)
    findings: list[Finding] = field(default_factory=list)
    outputs: Outputs = field(default_factory=Outputs)

    def add_figure(self, name: str, fig, data: pd.DataFrame) -> None:
        """Keep a figure (shown by the notebook, in this order) and queue its PNG, PDF and CSV."""
        self.figures[name] = fig
        self.outputs.figure(name, fig, data)

    def add_csv(self, name: str, df: pd.DataFrame) -> None:
        """Queue a table as <name>.csv."""
        self.outputs.table(name, df)

    def publish(self, fig_dir: Path, prefix: str, summary: Summary) -> list[Path]:
        """Write every queued file plus <prefix>_summary.md / .json as one set (lmc_core.publish.outputs)."""
        self.summary, self.numbers = summary.markdown(), summary.as_numbers()
        self.headline, self.findings = self.numbers["headline"], summary.findings()
        self.outputs.text(f"{prefix}_summary.md", self.summary)
        figures = [{"file": f"{name}.png", "title": figure_title(fig)} for name, fig in self.figures.items()]
        self.outputs.json(f"{prefix}_summary.json", {"profile": self.params.get("profile"), **self.numbers,
                                                    "figures": figures, "machine": machine.machine(),
                                                    "trained_on": machine.trained_on()})
        self.files = self.outputs.commit(fig_dir, prefix)
        return self.files


def figure_title(fig) -> str:
    """A figure's title (its suptitle, else its first axes' title) on one line, for alt text."""
    t = fig._suptitle.get_text() if getattr(fig, "_suptitle", None) is not None else ""
    if not t and fig.axes:
        t = fig.axes[0].get_title()
    return " ".join(t.split())


@dataclass
class Setup:
    """Where a run writes and reads: figures folder, run store, data cache folder, device."""

    fig_dir: Path
    store: Any
    cache_dir: Path
    device: Any


def folders(p: StudyParams) -> tuple[Path, Path, Path]:
    """(figures, run store, data cache) folders: the project's defaults under lmc_core.publish.paths.home(); each
    must be a folder or creatable as one (ConfigError before any work)."""
    capped = p.cap_steps is not None  # a capped run's own folders: never beside the results
    fig = resolve_path(p.figures_dir, Path("figures") / (f"{p.profile}-capped" if capped else p.profile))
    store = resolve_path(p.store_dir, "runs")
    cache = resolve_path(p.cache_dir, Path("data") / "cache")
    for path, name in ((fig, "figures_dir"), (store, "store_dir"), (cache, "cache_dir")):
        check_output_dir(path, name, writable=name != "store_dir")
    return fig, store, cache


def set_threads(threads) -> int:
    """Set torch's CPU threads (an integer, or "auto" for every core); returns the count."""
    import os

    import torch

    n = (os.cpu_count() or 1) if threads == "auto" else int(threads)
    torch.set_num_threads(n)
    return n


def setup(p: StudyParams) -> Setup:
    """Folders, the run store, the device and torch's threads of a run."""
    from ..runs.store import RunStore
    from ..train import resolve_device

    fig, store, cache = folders(p)
    device = resolve_device(p.device)
    set_threads(p.threads)
    return Setup(fig, RunStore(store), cache, device)


class Study(ABC):
    """One notebook's study (module docstring). Class attributes describe it for the README and the reports."""

    prefix: ClassVar[str]  # "01": the notebook's number and the prefix of every file it writes
    notebook: ClassVar[str]  # "01_instability_at_init"
    question: ClassVar[str]  # the question, in a line
    claim: ClassVar[str]  # the seed study's claim and number, on the scale our headline uses
    profiles: ClassVar[dict[str, StudyParams]]
    in_notebook: ClassVar[bool] = False  # True: the notebook computes (your own models) and calls report()
    # a capped run (cap_steps): its smaller evaluation samples and unit counts, under the user's parameters; a unit
    # field (pairs, models...) also scales the projected training of the family it names; the fields of
    # `capped_eval` scale the main evaluation's projection, each ratio to its power (pairs of n models: n ** 2)
    capped: ClassVar[dict] = {}
    capped_units: ClassVar[dict[str, str]] = {}
    capped_eval: ClassVar[dict[str, float]] = {}

    def params(self, params: dict | None = None) -> StudyParams:
        """The chosen profile with the given parameters and overrides, validated (params.resolve); a capped run
        (cap_steps) takes the study's `capped` sizes unless the parameters set them."""
        merged = merge_overrides(dict(params or {}))
        p = resolve(self.profiles, {**self.capped, **merged} if merged.get("cap_steps") else merged)
        costs.check_capped_folder(p.cap_steps, p.figures_dir)  # a capped run never writes where results go
        return p

    def run(self, params: dict | None = None) -> StudyResult:
        """Resolve the parameters, compute, draw, judge, and write every file as one set (a capped run: marked,
        with its projected full cost, lmc_core.publish.costs)."""
        p = self.params(params)
        if p.cap_steps is not None and p.store_dir is None:  # a fresh store: every run trained (and timed) now
            p = p.replace(store_dir=str(costs.fresh_store(self.prefix)))
        machine.TRAINED_ON.clear()  # the machines of the runs this study stores or reads, for its summary
        with capping(p.cap_steps) as ledger, Timer() as timer:
            ctx = setup(p)
            data = self.compute(p, ctx)
        if p.cap_steps is None:
            return self.publish(p, ctx.fig_dir, data)
        cost = costs.projection(self, p, ledger, timer.seconds)
        return self.publish(p, ctx.fig_dir, data, cost)

    def publish(self, p: StudyParams, fig_dir: Path, data: dict, cost: dict | None = None) -> StudyResult:
        """Figures, tables, CSVs and the summary of computed `data`, written as one set (a capped run's marked,
        with its projected cost)."""
        omitted = self.omitted(p)
        res = StudyResult(params=p.as_dict(), tables=Shown({k: v for k, v in data.items()
                                                            if isinstance(v, pd.DataFrame)}, omitted=omitted),
                          figures=Shown(omitted={f"{self.prefix}_{k}": v for k, v in omitted.items()}))
        res.tensorboard = data.get("tensorboard", "")
        for name, fig, d in self.figures(p, data):
            res.add_figure(f"{self.prefix}_{name}", fig, d)
        for name, df in self.csvs(p, data).items():
            res.add_csv(f"{self.prefix}_{name}", df)
        summary = self.findings(p, data)
        summary.numbers.update(notebook=self.notebook, question=self.question, claim=self.claim,
                               setting=self.setting(p))  # the README's findings table reads these
        if p.cap_steps is not None:
            costs.mark_capped(res, summary, self.prefix, p.cap_steps, cost)
        res.publish(fig_dir, self.prefix, summary)
        return res

    @abstractmethod
    def compute(self, p: StudyParams, ctx: Setup) -> dict:
        """Train and evaluate; a dict of tables (DataFrames are the notebook's tables) and anything else."""

    @abstractmethod
    def figures(self, p: StudyParams, data: dict) -> Iterable[tuple[str, Any, pd.DataFrame]]:
        """(name without the prefix, figure, the plotted numbers) in the order the notebook shows them."""

    @abstractmethod
    def findings(self, p: StudyParams, data: dict) -> Summary:
        """The run's findings through the findings layer."""

    def omitted(self, p: StudyParams) -> dict[str, str]:
        """Figures (name without the prefix) and tables this run's switches leave out -> the switch in words,
        e.g. {"lm_floor": "run_lm = False"}: the notebook's cells for them show that line instead of failing."""
        return {}

    def csvs(self, p: StudyParams, data: dict) -> dict[str, pd.DataFrame]:
        """Tables written as CSV besides the figures' own (name without the prefix -> table)."""
        return {}

    def setting(self, p: StudyParams) -> str:
        """The setting of a run in a few words (the README's findings table)."""
        return p.profile
