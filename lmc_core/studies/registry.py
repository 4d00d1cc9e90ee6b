"""The list of studies, one per notebook, in reading order: the only place that names them.

A new study is its module(s) plus one line in MODULES (the module defines `STUDY`, an instance of base.Study).
A study outside the package (a test's, a user's) joins with `register`.
"""
from __future__ import annotations

import importlib

from .base import Study

MODULES = (
    "your_models",
    "instability_init",
    "instability_spawn",
    "finetuning",
    "alignment",
    "generalization",
    "grokking",
    "model_sizes",
)
PACKAGE_PREFIXES = ("00", "01", "02", "03", "04", "05", "06", "07")  # MODULES' prefixes, in order (contract test)
EXTRA: list[Study] = []  # registered at run time


def register(study: Study) -> Study:
    """Add a study at run time; its prefix must be new among those registered so (the package's own are checked
    by the contract test, without importing them here)."""
    if not isinstance(study, Study):
        raise TypeError(f"register takes a Study instance, got {type(study).__name__}")
    if any(s.prefix == study.prefix for s in EXTRA) or study.prefix in PACKAGE_PREFIXES:
        raise ValueError(f"a study with prefix {study.prefix!r} is already registered")
    EXTRA.append(study)
    return study


def studies() -> list[Study]:
    """Every study: the package's (MODULES, in order) and those registered at run time."""
    return [importlib.import_module(f"{__package__}.{m}").STUDY for m in MODULES] + list(EXTRA)


def study(key: str) -> Study:
    """A study by its prefix ("01") or its notebook's stem ("01_instability_at_init")."""
    for s in studies():
        if key in (s.prefix, s.notebook):
            return s
    raise KeyError(f"no study {key!r}; known: {[s.notebook for s in studies()]}")
