"""Every documented switch of every notebook runs the notebook to its last cell (smoke profile).

A switch is set alone, the way a user would: each boolean study parameter flipped from its profile's value, the
notebook-level `tensorboard`, and the documented settings that drop part of a study (a variant, a mode, a size).
The notebook's code cells run in this process (papermill's parameter injection, without a kernel: the display
cells are what a switch breaks, and a kernel per case would cost minutes), so a display cell that asks for a
figure or table the switch turned off fails here.
"""
from __future__ import annotations

import dataclasses
import importlib
import json

import matplotlib
import pytest

from lmc_core.publish.paths import repo_root
from lmc_core.studies import params as P

matplotlib.use("Agg")
ROOT = repo_root()

SWITCHES = {  # notebook -> (study module, the switches its notebook or its study's parameters document)
    "01_instability_at_init": ("instability_init", [{"variant": None}, {"tensorboard": True},
                                                    {"fused_cross_entropy": True}]),
    "02_instability_during_training": ("instability_spawn", [{"tensorboard": True}]),
    "03_finetuning": ("finetuning", [{"run_encoder": False}, {"modes": ["full"]}, {"enc_controls": False}]),
    "04_alignment_and_fisher": ("alignment", [{"run_lm": False}, {"lm_learn_units": True}, {"width_optimizers": []},
                                              {"tensorboard": True}]),
    "05_generalization_strategies": ("generalization", [{"control": False}, {"dynamics": []},
                                                        {"encoder": "minilm", "vocab_size": 0, "finetune_lr": 2e-5, "minilm_layers": 1},
                                                        {"executor": "local"},
                                                        {"tensorboard": True}]),
    "06_grokking": ("grokking", [{"grok_evals": 0}, {"learn_units": True}, {"tensorboard": True}]),
    "07_model_sizes": ("model_sizes", [{"finetune": False}, {"sizes": ["tinygpt"]}, {"tensorboard": True}]),
}
NOTEBOOK_LEVEL = {"tensorboard", "executor"}  # set in the parameters cell itself; the rest goes through `overrides`
TRAINING = {"tensorboard", "executor"}  # switches of the training itself: a store of their own, so that they train
TESTED_ELSEWHERE = {  # boolean parameters whose switch a smoke notebook run would only make slow
    "progress": "progress bars only",
    "compile": "tests/integration/test_fast_training.py trains compiled runs (a cold compile takes about a minute)",
    "fused_cross_entropy": "notebook 01 runs with it here (02 shares its LM parameters and training code); "
                           "tests/integration/test_fast_training.py and tests/unit/test_linear_ce.py test the loss",
}


def _cases():
    return [(nb, sw) for nb, (_, sws) in SWITCHES.items() for sw in sws]


def _run_notebook(name: str, injected: dict) -> dict:
    """Execute the notebook's code cells in order in one namespace, the injected parameters set right after its
    parameters cell (as papermill does); returns the namespace."""
    nb = json.loads((ROOT / "notebooks" / f"{name}.ipynb").read_text())
    ns: dict = {"__name__": "__main__"}
    for i, cell in enumerate(c for c in nb["cells"] if c["cell_type"] == "code"):
        exec(compile("".join(cell["source"]), f"{name}.ipynb[code cell {i}]", "exec"), ns)  # noqa: S102
        if "parameters" in (cell.get("metadata", {}).get("tags") or []):
            ns.update(injected)
    return ns


@pytest.mark.parametrize("notebook, switch", _cases(),
                         ids=[f"{nb[:2]}-" + ",".join(f"{k}={v}" for k, v in sw.items()) for nb, sw in _cases()])
def test_a_documented_switch_runs_the_notebook_to_its_end(notebook, switch, tmp_path, smoke_store):
    overrides = {k: v for k, v in switch.items() if k not in NOTEBOOK_LEVEL}
    store = tmp_path / "s" if TRAINING & set(switch) else smoke_store  # the others find the smoke runs they share
    injected = {"profile": "smoke", "figures_dir": str(tmp_path / "f"), "store_dir": str(store),
                "cache_dir": str(ROOT / "data" / "cache"), "progress": False, "overrides": overrides,
                **{k: v for k, v in switch.items() if k in NOTEBOOK_LEVEL}}
    ns = _run_notebook(notebook, injected)
    res = ns["result"]
    assert res.summary and res.files and all(f.exists() for f in res.files)
    for k, v in overrides.items():
        assert res.params[k] == v, f"the switch {k}={v!r} did not reach the study"


@pytest.mark.parametrize("notebook", sorted(SWITCHES))
def test_every_boolean_switch_of_a_study_is_exercised(notebook):
    """A boolean parameter added to a study without a case here fails: each is a switch a user sets alone."""
    module, switches = SWITCHES[notebook]
    study = importlib.import_module(f"lmc_core.studies.{module}").STUDY
    smoke = study.profiles["smoke"]
    flags = {f.name for f in dataclasses.fields(smoke) if isinstance(f.metadata.get("check"), P.Bool)}
    flipped = {k for sw in switches for k, v in sw.items() if k in flags and v != getattr(smoke, k)}
    assert flags - NOTEBOOK_LEVEL - set(TESTED_ELSEWHERE) <= flipped, f"untested switches: {sorted(flags - NOTEBOOK_LEVEL - set(TESTED_ELSEWHERE) - flipped)}"
