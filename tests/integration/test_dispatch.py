"""Grids of runs through submitit: packing, idempotence, per-job storage, the local executor."""
import pytest
import torch

from lmc_core.config import ConfigError, CopySettings, RunSpec, Seeds, TrainConfig
from lmc_core.data.vectors import VectorDataConfig
from lmc_core.runs.dispatch import Job, Recipe, dispatch, pack
from lmc_core.models.mlp import MLPConfig
from lmc_core.train import train_copies


def grid(lrs=(0.05, 0.1), seeds=(1, 2), steps=15):
    model = MLPConfig(d_in=40, hidden=(16,), n_classes=10)
    train = TrainConfig(steps=steps, batch_size=50, optimizer="sgd", lr=0.1, schedule="constant", clip_norm=None)
    return [RunSpec(model=model, data=VectorDataConfig(), train=train, seeds=(Seeds(s, s, s),),
                    per_copy=(CopySettings(lr=lr),)) for lr in lrs for s in seeds]


def recipe(tmp_path):
    return Recipe.of("lmc_core.data.vectors:train_examples", dataset="mnist1d", cache_dir=str(tmp_path / "cache"))


def test_compatible_jobs_pack_into_one_ensemble_and_each_is_stored_alone(tmp_path, monkeypatch):
    jobs = [Job(s, recipe(tmp_path)) for s in grid()]
    other = RunSpec(model=MLPConfig(d_in=40, hidden=(8,), n_classes=10), train=jobs[0].spec.train,
                    data=VectorDataConfig(), seeds=(Seeds(9, 9, 9),))
    packs = pack(jobs + [Job(other, recipe(tmp_path))])
    assert [len(p) for p in packs] == [4, 1]
    calls = []
    import lmc_core.runs.dispatch as dispatch_module
    real = dispatch_module.train_resumable

    def spy(spec, *a, **kw):
        calls.append(spec.k)
        return real(spec, *a, **kw)

    monkeypatch.setattr(dispatch_module, "train_resumable", spy)
    runs = dispatch(jobs, tmp_path / "runs", "inprocess", "cpu", progress=False)
    assert calls == [4] and all(r.trained_now for r in runs)
    data = recipe(tmp_path).make()
    for j, r in zip(jobs, runs):  # each job's copy equals training it alone
        alone = train_copies(j.spec, data, "cpu", progress=False)
        for n in alone.state:
            torch.testing.assert_close(r.state[n], alone.state[n], rtol=1e-5, atol=1e-6)
    again = dispatch(jobs, tmp_path / "runs", "inprocess", "cpu", progress=False)
    assert calls == [4] and not any(r.trained_now for r in again)  # idempotent: nothing trained
    more = [Job(s, recipe(tmp_path)) for s in grid(lrs=(0.05, 0.1, 0.2))]
    dispatch(more, tmp_path / "runs", "inprocess", "cpu", progress=False)
    assert calls == [4, 2]  # only the new learning rate's two jobs


def test_local_executor_runs_the_grid_in_other_processes_and_a_rerun_trains_nothing(tmp_path):
    jobs = [Job(s, recipe(tmp_path)) for s in grid(lrs=(0.05,), seeds=(1, 2), steps=5)]
    runs = dispatch(jobs, tmp_path / "runs", "local", "cpu", progress=False, folder=tmp_path / "submitit")
    assert all(r.trained_now for r in runs) and len(list((tmp_path / "submitit").glob("*_result.pkl"))) == 1
    again = dispatch(jobs, tmp_path / "runs", "local", "cpu", progress=False, folder=tmp_path / "submitit2")
    assert not any(r.trained_now for r in again) and not (tmp_path / "submitit2").exists()


def test_unknown_executor_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="slurm"):
        dispatch([], tmp_path, "kubernetes")
