"""Shared plumbing of the study modules: profiles, parameters, checks, output folders, results."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from ..config import ConfigError, ModelConfig, check_int
from ..publish.outputs import Outputs, check_output_dir
from ..publish.paths import resolve


# Parameters every study accepts besides its own (the notebooks' parameters cell).
COMMON = {"profile": "quick", "figures_dir": None, "store_dir": None, "cache_dir": None,
          "device": "auto", "progress": True, "tensorboard": False, "threads": 1}
# threads: torch's CPU threads. 1 by default: two threads wait on each other whenever another process holds a
# core (measured 10x slower on a busy 2-core machine, bench/threads.py), and the float sums of a matrix product
# depend on the thread count, so a fixed count gives the same bits on every machine. "auto": every core.

MAX_ALPHAS = 1001  # more points than anyone can read off a curve; a typo like 10**9 would never finish


@dataclass
class StudyResult:
    """What a study produces: named tables, named figures, the files written and the summary.

    `summary` is the finding in words (Markdown) computed from this run's numbers; `numbers` holds
    the same numbers as data. Figures and tables are written together by `publish`.
    """

    params: dict
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    figures: dict[str, Any] = field(default_factory=dict)
    files: list[Path] = field(default_factory=list)
    summary: str = ""
    headline: str = ""  # one line: the verdict, for the report index
    tensorboard: str = ""  # how to open the training curves in TensorBoard (when asked for)
    numbers: dict = field(default_factory=dict)
    outputs: Outputs = field(default_factory=Outputs)

    def add_figure(self, name: str, fig, data: pd.DataFrame) -> None:
        """Keep a figure (shown by the notebook, in this order) and queue its PNG, PDF and CSV."""
        self.figures[name] = fig
        self.outputs.figure(name, fig, data)

    def add_csv(self, name: str, df: pd.DataFrame) -> None:
        """Queue a table as <name>.csv."""
        self.outputs.table(name, df)

    def publish(self, fig_dir: Path, prefix: str, described: tuple[str, dict] | None = None) -> list[Path]:
        """Write every queued file plus <prefix>_summary.md / .json as one set (see lmc_core.publish.outputs).
        `described` is a study's (summary, numbers) with the index line under numbers["headline"]."""
        if described is not None:
            self.summary, numbers = described
            self.numbers = dict(numbers)
            self.headline = self.numbers.pop("headline")
        self.outputs.text(f"{prefix}_summary.md", self.summary.rstrip() + "\n")
        figures = [{"file": f"{name}.png", "title": figure_title(fig)} for name, fig in self.figures.items()]
        self.outputs.json(f"{prefix}_summary.json", {"profile": self.params.get("profile"), "headline": self.headline,
                                                    "figures": figures, **self.numbers})
        self.files = self.outputs.commit(fig_dir, prefix)
        return self.files


def figure_title(fig) -> str:
    """A figure's title (its suptitle, else its first axes' title) on one line, for alt text."""
    t = fig._suptitle.get_text() if getattr(fig, "_suptitle", None) is not None else ""
    if not t and fig.axes:
        t = fig.axes[0].get_title()
    return " ".join(t.split())


def merge_overrides(params: dict) -> dict:
    """The parameters with their `overrides` entry merged in: a mapping, or a YAML/JSON string as papermill's
    `-p overrides '{"pairs": 3}'` delivers it. A key given both ways with different values is an error that names
    it (a notebook passes its named parameters and `overrides` together)."""
    params = dict(params)
    overrides = params.pop("overrides", None)
    if overrides is None or overrides == "":
        return params
    if isinstance(overrides, str):
        import yaml

        try:
            overrides = yaml.safe_load(overrides)
        except yaml.YAMLError as e:
            raise ConfigError(f"overrides={overrides!r} is not a YAML/JSON mapping ({str(e).splitlines()[0]}); write "
                              """it like -p overrides '{"pairs": 3, "steps": 2000}'""") from None
        overrides = {} if overrides is None else overrides
    if not isinstance(overrides, dict):
        raise ConfigError(f"overrides={overrides!r} must be a mapping of parameter names to values, e.g. "
                          """{"pairs": 3} (papermill: -p overrides '{"pairs": 3}')""")
    clash = sorted(k for k in overrides if k in params and params[k] != overrides[k])
    if clash:
        both = ", ".join(f"{k}: {params[k]!r} as a parameter, {overrides[k]!r} in overrides" for k in clash)
        raise ConfigError(f"{both}. Set each parameter once: in the notebook's parameters cell (papermill -p "
                          f"{clash[0]} ...) or in overrides, not both")
    return {**params, **overrides}


def resolve_params(profiles: dict[str, dict], params: dict | None) -> dict:
    """Profile defaults overlaid with the given parameters (an `overrides` entry merged in, see merge_overrides);
    unknown names or profiles are errors."""
    params = merge_overrides(dict(params or {}))
    profile = params.get("profile", COMMON["profile"])
    if profile not in profiles:
        raise ConfigError(f"unknown profile {profile!r}; choose one of {list(profiles)}")
    base = {**COMMON, **profiles[profile]}
    unknown = sorted(set(params) - set(base))
    if unknown:
        raise ConfigError(f"unknown parameter(s) {unknown}; valid parameters are {sorted(base)}")
    base.update({k: v for k, v in params.items()})
    base["profile"] = profile
    return base


def out_dirs(p: dict) -> tuple[Path, Path, Path]:
    """(figures dir, run store dir, data cache dir): the project's defaults under lmc_core.publish.paths.home()
    (the checkout or $LMC_HOME, wherever the kernel started); relative paths are taken from there too.
    Each must be a folder (or creatable as one), else ConfigError before any work."""
    figures = resolve(p["figures_dir"], Path("figures") / p["profile"])
    store = resolve(p["store_dir"], "runs")
    cache = resolve(p["cache_dir"], Path("data") / "cache")
    for path, name in ((figures, "figures_dir"), (store, "store_dir"), (cache, "cache_dir")):
        check_output_dir(path, name, writable=name != "store_dir")  # reading finished runs needs no write access
    return figures, store, cache


@dataclass
class Setup:
    """What every study's run starts from: its resolved parameters, output folder, run store, data cache
    folder and device."""

    p: dict
    fig_dir: Path
    store: Any
    cache_dir: Path
    device: Any

    def __iter__(self):
        return iter((self.p, self.fig_dir, self.store, self.cache_dir, self.device))


def prepare(profiles: dict[str, dict], params: dict | None, *checks) -> Setup:
    """Resolve the parameters, run every check (before any data is loaded or anything trained) and set up
    the folders, the run store and the device."""
    from ..runs.store import RunStore
    from ..train import resolve_device

    p = resolve_params(profiles, params)
    check_threads(p)
    for check in checks:
        check(p)
    fig_dir, store_dir, cache_dir = out_dirs(p)
    device = resolve_device(p["device"])
    set_threads(p["threads"])
    return Setup(p, fig_dir, RunStore(store_dir), cache_dir, device)


def check_threads(p: dict) -> None:
    """`threads` must be a positive integer or "auto"."""
    if p["threads"] != "auto":
        check_int("threads", p["threads"], 1)


def set_threads(threads) -> int:
    """Set torch's CPU threads (an integer, or "auto" for every core); returns the count."""
    import os

    import torch

    n = (os.cpu_count() or 1) if threads == "auto" else int(threads)
    torch.set_num_threads(n)
    return n


def check_positive(p: dict, *names: str) -> None:
    """Raise ConfigError unless each named parameter is a positive integer."""
    for n in names:
        v = p[n]
        if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
            raise ConfigError(f"parameter {n}={v!r} must be a positive integer")


def check_alphas(p: dict) -> None:
    """`alphas` (points on the path, endpoints included) must be an integer in [2, MAX_ALPHAS]."""
    v = p["alphas"]
    if not isinstance(v, int) or isinstance(v, bool) or not 2 <= v <= MAX_ALPHAS:
        raise ConfigError(f"alphas={v!r} must be an integer from 2 (the endpoints) to {MAX_ALPHAS}; "
                          "31 is a good choice")


def check_optional_positive(p: dict, *names: str) -> None:
    """Raise ConfigError unless each named parameter is None (all) or a positive integer."""
    for n in names:
        v = p[n]
        if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v <= 0):
            raise ConfigError(f"parameter {n}={v!r} must be a positive integer, or None for all")


def check_model_overrides(overrides: Any, set_by_study: tuple[str, ...] = ("vocab_size",),
                          config: type = ModelConfig) -> None:
    """model_overrides must be a dict of known model fields the study does not set itself."""
    if not isinstance(overrides, dict):
        raise ConfigError(f"model_overrides={overrides!r} must be a dict, e.g. {{'d_model': 64}}")
    known = {f.name for f in dataclasses.fields(config)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ConfigError(f"model_overrides has unknown key(s) {unknown}; valid keys are "
                          f"{sorted(known - set(set_by_study))}")
    clash = sorted(set(overrides) & set(set_by_study))
    if clash:
        raise ConfigError(f"model_overrides may not set {clash}: the study sets it from the data "
                          "(the corpus vocabulary)")


def tensorboard_logs(runs: list[dict], store_root: Path, prefix: str) -> str:
    """Write every run's stored loss log for TensorBoard (one folder per run, named by its "run" label) under
    <store>/tensorboard/<prefix>; returns the lines that open it in a notebook."""
    import re

    from ..runs.store import history_of
    from ..publish.tb import command, write_history

    tb_dir = Path(store_root) / "tensorboard" / prefix
    for r in runs:
        name = re.sub(r"[^A-Za-z0-9._-]+", "-", str(r["run"])).strip("-")
        write_history(tb_dir / name, history_of(r["store"]))
    return command(tb_dir)


def without_store(runs: list[dict]) -> pd.DataFrame:
    """The runs table as shown (store folders relative to the project home)."""
    from ..publish.paths import shown

    t = pd.DataFrame(runs)
    if "store" in t:
        t["store"] = t["store"].map(shown)
    return t
