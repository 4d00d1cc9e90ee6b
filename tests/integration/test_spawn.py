"""Spawning at step k: exact continuation of the parent, ensembles of spawn points, caching, resume."""
from dataclasses import replace

import pytest
import torch

from lmc_core.config import Seeds
from lmc_core.train.optim import lr_at
from lmc_core.runs.store import RunStore
from lmc_core.runs.spawn import group_spawn_points, spawn_children
from lmc_core.studies.instability_spawn import spawn_steps
from lmc_core.runs.checkpoints import train_resumable
from lmc_core.runs.spawn import parent_checkpoint, stack_optimizer_states
from lmc_core.train import TrainState, train_copies

from conftest import tiny_spec

KIDS = [Seeds(0, 11, 12), Seeds(0, 13, 14)]


def parent_spec(**kw):
    kw.setdefault("momentum", 0.9)
    return tiny_spec([Seeds(0, 1, 2)], steps=20, schedule="step", step_size=4, gamma=0.5, **kw)


def test_parent_checkpoint_continues_exactly_with_optimizer_and_schedule(stream, tmp_path):
    spec = parent_spec()
    spawn_children(RunStore(tmp_path), spec, [0, 10], KIDS, stream, "cpu", progress=False)
    parent = parent_checkpoint(RunStore(tmp_path), spec, 10)
    assert parent.steps == [10] and any(n.startswith("momentum.") for n in parent.opt_state)
    whole = train_copies(spec, stream, "cpu", progress=False)
    cont = train_copies(spec, stream, "cpu", start=TrainState(parent.state, parent.opt_state, parent.steps),
                        progress=False)
    assert all(torch.equal(whole.state[n], cont.state[n]) for n in whole.state)
    # the learning rate continues where the parent was (StepLR halves every 4 steps), not at the base rate
    first = cont.history[cont.history.step == 11].lr.iloc[0]
    assert first == pytest.approx(float(lr_at(spec.train, torch.tensor([10]), 100)[0])) == pytest.approx(2.5 * 0.25)


def test_child_in_multi_k_ensemble_equals_child_trained_alone(stream, tmp_path):
    spec = parent_spec()
    out = spawn_children(RunStore(tmp_path), spec, [0, 5, 10], KIDS, stream, "cpu", progress=False)
    assert sorted(out) == [0, 5, 10] and out[5]["tok_emb"].shape[0] == 2
    for k in (0, 5, 10):
        parent = parent_checkpoint(RunStore(tmp_path), spec, k)
        alone = train_copies(replace(spec, seeds=(KIDS[1],)), stream, "cpu", progress=False,
                             start=TrainState(parent.state, parent.opt_state, parent.steps))
        for n, t in alone.state.items():
            torch.testing.assert_close(out[k][n][1:2], t, rtol=1e-5, atol=1e-6)
    assert not torch.equal(out[10]["tok_emb"][0], out[10]["tok_emb"][1])  # different SGD noise


def test_more_spawn_points_train_only_the_new_ones(stream, tmp_path, monkeypatch):
    store = RunStore(tmp_path)
    spec = parent_spec()
    first = spawn_children(store, spec, [0, 8], KIDS, stream, "cpu", progress=False)
    stamps = {p: p.stat().st_mtime_ns for p in tmp_path.glob("spawn-*/final.safetensors")}
    calls = []
    import lmc_core.runs.spawn as sp
    real = sp.train_resumable

    def spy(spec_, *a, **kw):
        start = kw.get("start")
        calls.append((spec_.k, start.steps if start else None, kw.get("until"), kw.get("resume_at_most")))
        return real(spec_, *a, **kw)

    monkeypatch.setattr(sp, "train_resumable", spy)
    second = spawn_children(store, spec, [0, 8, 4], KIDS, stream, "cpu", progress=False)
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps  # stored spawn points untouched
    assert all(torch.equal(first[0][n], second[0][n]) for n in first[0])
    # one parent extension (from its step-0 checkpoint up to step 4) and one child ensemble (k=4)
    assert calls[0][0] == 1 and calls[0][2] == 4 and calls[0][3] == 4
    assert calls[1][0] == 2 and calls[1][1] == [4, 4]
    assert len(calls) == 2


def test_killed_spawn_ensemble_resumes_bit_exactly(stream, tmp_path):
    spec = parent_spec()
    spawn_children(RunStore(tmp_path), spec, [0, 6], KIDS, stream, "cpu", progress=False)
    parents = [parent_checkpoint(RunStore(tmp_path), spec, k) for k in (0, 6)]
    from lmc_core.ensemble import stack_states
    init = stack_states([stack_states([p.state] * 2) for p in parents])
    opt = stack_optimizer_states(parents, 2)
    gspec = replace(spec, seeds=tuple(KIDS) * 2, train=replace(spec.train, save_every=3))
    start = TrainState(init, opt, [0, 0, 6, 6])
    whole = train_copies(gspec, stream, "cpu", start=start, progress=False)
    part = train_resumable(gspec, stream, "cpu", tmp_path / "g", False, start=start, stop_after=8)
    assert part.steps == [8, 8, 14, 14]
    again = train_resumable(gspec, stream, "cpu", tmp_path / "g", False, start=start)
    assert again.steps == [20] * 4
    assert all(torch.equal(whole.state[n], again.state[n]) for n in whole.state)


def test_grouping_and_spawn_step_parsing():
    assert group_spawn_points([0, 10, 20, 900], 1000, 0.25) == [[0, 10, 20, 900]]  # 23 % idle
    groups = group_spawn_points([0, 100, 500, 800], 1000, 0.25)
    assert sorted(k for g in groups for k in g) == [0, 100, 500, 800] and len(groups) > 1
    assert spawn_steps([0.0, 0.1, 25, 0.1], 100) == [0, 10, 25]
    with pytest.raises(ValueError, match="outside"):
        spawn_steps([1.0], 100)
    with pytest.raises(ValueError, match="outside"):
        spawn_steps([150], 100)
