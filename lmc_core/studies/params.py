"""Typed, frozen study parameters: every field has a default, help text and a domain check, validated once.

A study's parameters are a frozen dataclass derived from StudyParams; its profiles are instances of it. The
notebooks' parameters (and `overrides`) are merged into the chosen profile by `resolve`, which refuses an unknown
name naming the nearest field, then checks every field's domain and the study's cross-field rules before any data
is loaded or anything trained.

    @dataclass(frozen=True)
    class MyParams(StudyParams):
        pairs: int = param(4, "pairs of models per cell", Int(2))

        def check(self) -> None:      # rules between fields; raise ConfigError naming them
            ...
"""
from __future__ import annotations

import copy
import dataclasses
import difflib
from dataclasses import dataclass, field, fields
from typing import Any, Callable

from ..analysis import barrier as B
# the domain checks and bounds live in lmc_core.domains (the lowest layer); studies import them from here
from ..domains import (MAX_ALPHAS, MAX_BATCH, MAX_EXAMPLES, MAX_MODULUS, MAX_PLANE_POINTS, MAX_RESAMPLES,  # noqa: F401
                       MAX_SEED, MAX_STEPS, MAX_UNITS, MAX_VOCAB, MAX_WIDTH, Bool, Choice, ConfigError, DictOf, Int, ListOf,
                       Mapping, Maybe, Real, Text, Threads, domain_words)
from ..publish.paths import PROFILES

ALPHAS = Int(2, MAX_ALPHAS)  # points on a path, endpoints included
DEFINITION = Choice(B.DEFINITIONS)
POSITIVE = Int(1)  # a count with no size attached (use a bounded domain below for anything that costs)
UNITS = Int(1, MAX_UNITS)
STEPS = Int(1, MAX_STEPS)
WIDTH = Int(1, MAX_WIDTH)
BATCH = Int(1, MAX_BATCH)
EXAMPLES = Int(1, MAX_EXAMPLES)
RESAMPLES = Int(1, MAX_RESAMPLES)
RATE = Real(0, None, lo_open=True)


def param(default: Any, help: str, check: Callable[[str, Any], None] | None = None) -> Any:
    """A parameter field: its default (lists and dicts copied for every instance), help text and domain check."""
    meta = {"help": help, "check": check}
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: copy.deepcopy(default), metadata=meta)
    return field(default=default, metadata=meta)


# ----------------------------------------------------------------------------------------------- the base
@dataclass(frozen=True)
class StudyParams:
    """What every study takes: the notebooks' parameters cell (its study fields come in subclasses)."""

    profile: str = param("quick", "smoke (seconds, tests) | quick (minutes on a 2-core CPU) | paper (a GPU)",
                         Choice(PROFILES))
    figures_dir: str | None = param(None, "where figures, CSVs and the summary go (default figures/<profile>)",
                                    Maybe(Text()))
    store_dir: str | None = param(None, "the run store: trained copies are cached there (default runs/)",
                                  Maybe(Text()))
    cache_dir: str | None = param(None, "the data cache (default data/cache)", Maybe(Text()))
    device: str = param("auto", '"cpu", "cuda" or "auto"', Text())
    progress: bool = param(True, "show progress bars while training", Bool())
    tensorboard: bool = param(False, "write the training curves for TensorBoard (also for stored runs)", Bool())
    threads: int | str = param(1, 'torch CPU threads: 1 (the same bits on every machine, and no collapse beside '
                               'another process) or "auto" (every core)', Threads())

    cap_steps: int | None = param(None, "a capped run (lmc_core.capped): at most this many updates per training "
                                  "run, evaluation on the study's capped samples; it proves the profile runs and "
                                  "projects its cost, is written to figures/<profile>-capped and is never a result",
                                  Maybe(Int(1, 1000)))

    def check(self) -> None:
        """Rules between fields (a study overrides it); raise ConfigError naming the fields."""

    def validate(self) -> "StudyParams":
        """Check every field's domain, then the study's rules; returns self."""
        for f in fields(self):
            chk = f.metadata.get("check")
            if chk is not None:
                chk(f.name, getattr(self, f.name))
        self.check()
        return self

    def replace(self, **changes: Any) -> "StudyParams":
        """A copy with some fields changed (not validated: call validate())."""
        return dataclasses.replace(self, **changes)

    def as_dict(self) -> dict:
        """Every field as plain data (for the summary and the run table)."""
        return {f.name: copy.deepcopy(getattr(self, f.name)) for f in fields(self)}

    @classmethod
    def help(cls) -> dict[str, str]:
        """Field name -> help text."""
        return {f.name: f.metadata.get("help", "") for f in fields(cls)}


def merge_overrides(params: dict) -> dict:
    """The parameters with their `overrides` entry merged in: a mapping, or a YAML/JSON string as papermill's
    `-p overrides '{"pairs": 3}'` delivers it. A key given both ways with different values is an error."""
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


def resolve(profiles: dict[str, StudyParams], params: dict | None) -> StudyParams:
    """The chosen profile (params["profile"], default quick) with the given parameters and overrides, validated.
    An unknown name is refused naming the nearest field; an unknown profile naming the valid ones."""
    params = merge_overrides(dict(params or {}))
    profile = params.get("profile", "quick")
    if profile not in profiles:
        raise ConfigError(f"unknown profile {profile!r}; choose one of {list(profiles)}")
    base = profiles[profile]
    names = [f.name for f in fields(base)]
    for key in params:
        if key not in names:
            near = difflib.get_close_matches(str(key), names, n=1)
            hint = f"; did you mean {near[0]!r}?" if near else ""
            raise ConfigError(f"unknown parameter {key!r}{hint} This study's parameters are: {', '.join(names)}")
    return dataclasses.replace(base, **params).validate()
