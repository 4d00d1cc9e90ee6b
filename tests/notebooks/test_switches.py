"""Every documented switch of every notebook runs (smoke profile): a study's optional parts can be turned off, and
its other documented settings on, without a crash after training."""
from __future__ import annotations

import importlib

import pytest

SWITCHES = {  # notebook study -> the switches its notebook documents
    "instability_init": [{"variant": None}, {"tensorboard": True}],
    "instability_spawn": [{"tensorboard": True}],
    "finetuning": [{"run_encoder": False}, {"modes": ["full"]}],
    "alignment": [{"run_lm": False}, {"tensorboard": True}],
    "generalization": [{"control": False}, {"tensorboard": True}],
    "grokking": [{"grok_evals": 0}, {"tensorboard": True}],
    "model_sizes": [{"finetune": False}, {"sizes": ["tinygpt"], "tensorboard": True}],
}


@pytest.mark.parametrize("study, switch", [(s, w) for s, ws in SWITCHES.items() for w in ws],
                         ids=lambda v: v if isinstance(v, str) else ",".join(f"{k}={v[k]}" for k in v))
def test_a_documented_switch_runs(study, switch, tmp_path):
    mod = importlib.import_module(f"lmc_core.studies.{study}")
    res = mod.run({"profile": "smoke", "figures_dir": str(tmp_path / "f"), "store_dir": str(tmp_path / "s"),
                   "progress": False, **switch})
    assert res.summary and res.files and all(f.exists() for f in res.files)
