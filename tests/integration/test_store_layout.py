"""One owner of files on disk: a store written before the layout refactor loads under its old hashes without
retraining, and a store written today uses one result layout for runs, spawn points and grid jobs."""
from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
import torch

from lmc_core.config import CopySettings, DataConfig, RunSpec, Seeds, TrainConfig, config_hash, model_preset
from lmc_core.data.modular import ModularDataConfig
from lmc_core.data.vectors import VectorDataConfig
from lmc_core.families import SeqClassConfig, TextDataConfig
from lmc_core.models.encoder import EncoderConfig
from lmc_core.models.mlp import MLPConfig
from lmc_core.runs.dispatch import Job, Recipe, dispatch
from lmc_core.runs.layout import RESULT, read_result
from lmc_core.runs.spawn import parent_dir, spawn_children
from lmc_core.runs.store import RunStore

LEGACY = Path(__file__).resolve().parents[1] / "data" / "legacy_store_v2"
MANIFEST = json.loads((LEGACY / "MANIFEST.json").read_text())


def digest(state):
    return {n: hashlib.sha256(t.contiguous().numpy().tobytes()).hexdigest()[:16] for n, t in sorted(state.items())}


def specs():
    """The specs of make.py (written with the code of commit ba76396)."""
    g = torch.Generator().manual_seed(0)
    base = torch.randint(0, 30, (600,), generator=g)
    stream = torch.cat([base, (base * 7 + 3) % 30])
    model = model_preset("ptb-transformer", vocab_size=30, d_model=8, d_ff=8, context=6, n_heads=2)
    lm = RunSpec(model=model, train=TrainConfig(steps=6, batch_size=4, checkpoints=(3,)),
                 seeds=(Seeds(0, 1, 2), Seeds(0, 3, 4)))
    parent = RunSpec(model=model, train=TrainConfig(steps=6, batch_size=4, momentum=0.9), seeds=(Seeds(0, 1, 2),))
    mlp = MLPConfig(d_in=40, hidden=(8,), n_classes=10)
    tc = TrainConfig(steps=4, batch_size=20, optimizer="sgd", lr=0.1, schedule="constant", clip_norm=None,
                     checkpoints=(2,))
    grid = [RunSpec(model=mlp, data=VectorDataConfig(), train=tc, seeds=(Seeds(s, s, s),), per_copy=(CopySettings(lr=lr),))
            for lr in (0.05, 0.1) for s in (1, 2)]
    return stream, lm, parent, grid


@pytest.fixture
def legacy(tmp_path):
    store = tmp_path / "runs"
    shutil.copytree(LEGACY, store)
    return RunStore(store)


def test_every_family_s_spec_keeps_its_hash():
    mlp = specs()[3][0]  # the stored hashes come from make.py
    now = {
        "lm_default": RunSpec(),
        "lm_char": RunSpec(model=model_preset("tinygpt"), data=DataConfig(level="char"),
                           train=TrainConfig(optimizer="adamw", lr=1e-3)),
        "seqcls": RunSpec(model=SeqClassConfig(), data=ModularDataConfig(),
                          train=TrainConfig(optimizer="adamw", lr=1e-3, weight_decay=1.0),
                          seeds=(Seeds(1, 2, 3), Seeds(4, 5, 6)), per_copy=(CopySettings(fisher=0.5), CopySettings())),
        "encoder": RunSpec(model=EncoderConfig(n_layers=2, pretrained="minilm", tune="lora", lora_rank=8),
                           data=TextDataConfig(task="genre", half=1), train=TrainConfig(steps=80, optimizer="adamw", lr=2e-5),
                           init_from="abc@3"),
        "mlp": mlp,
    }
    assert {k: config_hash(s) for k, s in now.items()} == MANIFEST["hashes"]


def test_an_old_store_loads_under_its_hashes_without_retraining(legacy, monkeypatch):
    stream, lm, parent, grid = specs()
    import lmc_core.runs.checkpoints as ck

    def no_training(*a, **kw):
        raise AssertionError("a stored result was trained again")

    monkeypatch.setattr(ck, "train_copies", no_training)
    run = legacy.get(lm, stream, "cpu", progress=False)
    assert config_hash(lm) == MANIFEST["lm"]["hash"] and not run.trained_now
    assert digest(run.state) == MANIFEST["lm"]["state"]
    assert list(run.history.columns[:3]) == ["step", "copy", "loss"] and len(run.history) == 12
    kept = legacy.checkpoint(lm, 3)  # a requested checkpoint of the old layout
    assert kept.keys() == run.state.keys() and not torch.equal(kept["tok_emb"], run.state["tok_emb"])
    kids = [Seeds(0, 11, 12), Seeds(0, 13, 14)]
    children = spawn_children(legacy, parent, [0, 3], kids, stream, "cpu", progress=False)  # old spawn layout
    for k, st in children.items():
        assert digest(st) == MANIFEST["spawn"][str(k)]["state"]
    assert parent_dir(legacy, parent).name == MANIFEST["parent"]
    runs = dispatch([Job(s, Recipe.of("no.such:module")) for s in grid], legacy.root, "inprocess", "cpu", progress=False)
    for r, want in zip(runs, MANIFEST["grid"]):
        assert config_hash(r.spec) == want["hash"] and digest(r.state) == want["state"] and not r.trained_now


def test_runs_spawn_points_and_grid_jobs_share_one_result_layout(tmp_path):
    stream, lm, parent, _ = specs()
    store = RunStore(tmp_path)
    store.get(lm, stream, "cpu", progress=False)
    spawn_children(store, parent, [3], [Seeds(0, 11, 12)], stream, "cpu", progress=False)
    mlp = MLPConfig(d_in=40, hidden=(8,), n_classes=10)
    tc = TrainConfig(steps=2, batch_size=20, optimizer="sgd", lr=0.1, schedule="constant", clip_norm=None)
    job = Job(RunSpec(model=mlp, data=VectorDataConfig(), train=tc, seeds=(Seeds(1, 1, 1),)),
              Recipe.of("lmc_core.data.vectors:train_examples", dataset="mnist1d", cache_dir=str(tmp_path / "c")))
    dispatch([job], tmp_path, "inprocess", "cpu", progress=False)
    results = [d for d in tmp_path.iterdir() if (d / "DONE.json").exists()]
    assert len(results) == 3
    for d in results:
        assert {"spec.json", RESULT, RESULT + ".sha256", "history.csv", "DONE.json"} <= {p.name for p in d.iterdir()}
        r = read_result(d)
        assert r.state and all(t.shape[0] >= 1 for t in r.state.values()) and r.steps and len(r.history)
    assert not any(p.name.startswith(("pack-", "spawn-group-")) and (p / "ckpt").exists() for p in tmp_path.iterdir())
