"""Shared plumbing of the study modules: profiles, parameters, corpora, output folders."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from ..config import ConfigError

PROFILES = ("smoke", "quick", "paper")

# Parameters every study accepts besides its own (the notebooks' parameters cell).
COMMON = {"profile": "quick", "figures_dir": None, "store_dir": None, "cache_dir": None,
          "device": "auto", "progress": True, "tensorboard": False}


@dataclass
class StudyResult:
    """What a study produces: named tables, named figures and the files written."""

    params: dict
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    figures: dict[str, Any] = field(default_factory=dict)
    files: list[Path] = field(default_factory=list)
    summary: str = ""


def resolve_params(profiles: dict[str, dict], params: dict | None) -> dict:
    """Profile defaults overlaid with the given parameters; unknown names or profiles are errors."""
    params = dict(params or {})
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
    """(figures dir, run store dir, data cache dir) with the project's defaults."""
    figures = Path(p["figures_dir"] or Path("figures") / p["profile"])
    store = Path(p["store_dir"] or "runs")
    cache = Path(p["cache_dir"] or Path("data") / "cache")
    return figures, store, cache


def check_positive(p: dict, *names: str) -> None:
    """Raise ConfigError unless each named parameter is a positive integer."""
    for n in names:
        v = p[n]
        if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
            raise ConfigError(f"parameter {n}={v!r} must be a positive integer")
