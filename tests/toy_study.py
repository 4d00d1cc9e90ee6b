"""A study that lives only in the test suite: its own file plus one line in conftest.py (registry.register) is all
it takes for the study contract tests (tests/unit/test_study_contract.py) to cover it."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from lmc_core.analysis.interpolate import alpha_grid
from lmc_core.analysis.metrics import barrier_table, judge_barriers
from lmc_core.config import ConfigError
from lmc_core.publish.plotting import plt
from lmc_core.studies.base import Study, Summary
from lmc_core.studies.params import ALPHAS, POSITIVE, Real, StudyParams, param


@dataclass(frozen=True)
class ToyParams(StudyParams):
    pairs: int = param(6, "pairs of toy paths (independent units)", POSITIVE)
    bump: float = param(0.05, "height of the bump on every path (a fraction of the error)", Real(0, 1))
    alphas: int = param(11, "points on each path", ALPHAS)

    def check(self) -> None:
        if self.pairs > 1000:
            raise ConfigError(f"pairs={self.pairs} is more toy paths than anyone needs (at most 1000)")


class ToyStudy(Study):
    prefix, notebook = "99", "99_toy"
    question = "Do toy paths with a bump have an error barrier?"
    claim = "a bump of 5 points of error is a barrier above Frankle et al.'s 2 points"
    profiles = {"smoke": ToyParams(profile="smoke", pairs=6), "quick": ToyParams(pairs=8),
                "paper": ToyParams(profile="paper", pairs=20)}

    def compute(self, p: ToyParams, ctx) -> dict:
        a = alpha_grid(p.alphas)
        rng = np.random.default_rng(0)
        rows = [{"pair": i, "split": "test", "alpha": x, "loss": 1.0 + 0.3 * np.sin(np.pi * x) * (1 + 0.1 * rng.random()),
                 "error": 0.2 + p.bump * np.sin(np.pi * x)} for i in range(p.pairs) for x in a]
        curves = pd.DataFrame(rows)
        return {"curves": curves, "barriers": barrier_table(curves, ("pair",), ("loss", "error"))}

    def figures(self, p: ToyParams, data: dict):
        fig, ax = plt.subplots()
        c = data["curves"].groupby("alpha").error.mean()
        ax.plot(c.index, c.values)
        ax.set_title("toy paths")
        yield "paths", fig, c.reset_index()

    def findings(self, p: ToyParams, data: dict) -> Summary:
        f = judge_barriers(data["barriers"], "test", "error", "mean", question="Toy error barrier")
        return Summary(f"Profile `{p.profile}`: {p.pairs} toy pairs.", [f], f)
