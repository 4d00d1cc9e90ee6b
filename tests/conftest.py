"""Shared fixtures, and the test tiers: every test is marked by its folder.

- tests/unit: functions and tiny models, seconds in all (`make test-unit`);
- tests/integration: tiny training runs, the run store, spawning, grids, fault injection;
- tests/notebooks: papermill runs of the notebooks, the HTML reports, the browser check, Jupyter/Colab use.

- tests/paper: every notebook's paper profile, capped (lmc_core.capped), to its HTML report (minutes).

`make test` runs the first three (the README's test command, what .ci/run calls); `make test-paper` the fourth
(over an hour on two cores: run it before a GPU run of a paper profile, not in CI).
"""
from pathlib import Path

import pytest
import torch

from lmc_core.config import ModelConfig, RunSpec, Seeds, TrainConfig, model_preset


@pytest.fixture(scope="session")
def stream() -> torch.Tensor:
    """A synthetic token stream with some structure (so training lowers the loss)."""
    g = torch.Generator().manual_seed(0)
    base = torch.randint(0, 60, (4000,), generator=g)
    return torch.cat([base, (base * 7 + 3) % 60]).repeat(2)


def tiny_model(**kw) -> ModelConfig:
    return model_preset("ptb-transformer", vocab_size=60, d_model=16, d_ff=24, context=12, **kw)


def tiny_spec(seeds=(Seeds(0, 1, 2),), steps=12, model=None, **train) -> RunSpec:
    train.setdefault("batch_size", 4)
    return RunSpec(model=model or tiny_model(), train=TrainConfig(steps=steps, **train), seeds=tuple(seeds))


@pytest.fixture(scope="session")
def smoke_store(tmp_path_factory) -> Path:
    """One run store for the smoke profile's runs, shared by the tests that run a study or notebook at smoke
    (tests/integration/test_study_runs.py, tests/notebooks/test_notebooks.py, test_switches.py): a run is trained
    once per session and found in the store afterwards, as a user's second run finds it. Tests of training itself
    (TensorBoard logging, the executors, the store's faults) keep stores of their own."""
    return tmp_path_factory.mktemp("smoke-runs")


TIERS = ("unit", "integration", "notebooks", "paper")


def pytest_collection_modifyitems(config, items):
    """Mark each test with its tier (the folder it lives in) so `-m unit` etc. select a tier."""
    import pytest as _pytest

    for item in items:
        parts = Path(str(item.fspath)).parts
        for tier in TIERS:
            if tier in parts:
                item.add_marker(getattr(_pytest.mark, tier))


# A family that lives only in the test suite, registered with one line: the contract tests cover it too.
from lmc_core.families import register  # noqa: E402
from toy_family import ToyFamily  # noqa: E402

register(ToyFamily())

# A study that lives only in the test suite, registered with one line: the study contract tests cover it too.
from lmc_core.studies.registry import register as register_study  # noqa: E402
from toy_study import ToyStudy  # noqa: E402

register_study(ToyStudy())
