"""A grid of runs as a list of run specs, dispatched through submitit (in-process, local processes or SLURM).

A `Job` is one RunSpec (one or more copies) plus picklable recipes for its training data and, for a
fine-tune, its initial weights. `dispatch` packs compatible jobs — the same model, data, training
settings and starting point; only seeds and per-copy settings differ — into one K-copy ensemble per
pack, trains each pack as one job of the chosen executor, and stores every job's copies under that
job's own spec. So each job is idempotent through the run store (and its lock): a job already stored
is never trained again, adding jobs to a grid trains only the new ones, and two processes never
train the same pack at once.

    jobs = [Job(spec_i, Recipe("lmc_core.data.vectors:train_examples", dataset="mnist1d")) ...]
    runs = dispatch(jobs, "runs", executor="slurm", slurm={"partition": "gpu", "timeout_min": 120, "gpus_per_node": 1})
"""
from __future__ import annotations

import hashlib
import importlib
import json
import os
import shutil
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from ..config import CopySettings, RunSpec, config_hash, to_dict
from ..ensemble import stack_states
from ..train import TrainState
from .checkpoints import train_once, train_resumable
from .layout import StoreLayout, checkpoint_path, ckpt_dir, load_checkpoint, save_checkpoint
from .store import RunStore, StoredRun

EXECUTORS = ("inprocess", "local", "slurm")


@dataclass(frozen=True)
class Recipe:
    """A picklable way to make something in the job's process: `module:function` called with kwargs."""

    function: str
    kwargs: tuple = ()

    @classmethod
    def of(cls, function: str, **kwargs: Any) -> "Recipe":
        """A recipe from keyword arguments (lists become tuples, so it stays hashable)."""
        return cls(function, tuple(sorted((k, _freeze(v)) for k, v in kwargs.items())))

    def make(self):
        """Call the function."""
        module, _, name = self.function.partition(":")
        return getattr(importlib.import_module(module), name)(**{k: _thaw(v) for k, v in self.kwargs})


def _freeze(v):
    if isinstance(v, dict):
        return ("__dict__", tuple(sorted((k, _freeze(x)) for k, x in v.items())))
    if isinstance(v, list):
        return tuple(_freeze(x) for x in v)
    return v


def _thaw(v):
    if isinstance(v, tuple) and len(v) == 2 and v[0] == "__dict__":
        return {k: _thaw(x) for k, x in v[1]}
    if isinstance(v, tuple):
        return [_thaw(x) for x in v]
    return v


@dataclass(frozen=True)
class Job:
    """One run spec, the recipe of its training data and (optionally) of its initial weights (a K=1 state that
    every copy starts from; then spec.init_from must name it)."""

    spec: RunSpec
    data: Recipe
    init: Recipe | None = None
    train_kwargs: tuple = field(default=())  # extra train_copies arguments as Recipes, e.g. (("monitor", recipe),)

    def pack_key(self) -> str:
        """Jobs with the same key train together as one ensemble. Jobs with a Fisher penalty pack apart from jobs
        without one: the penalty's double backward runs for the whole ensemble once any copy needs it (several
        times the cost of a plain step), so a grid's lambda = 0 jobs would otherwise pay for it too."""
        base = replace(self.spec, seeds=(), per_copy=())
        penalised = any(f > 0 for f in self.spec.copy_values("fisher"))
        return hashlib.sha256(json.dumps([to_dict(base), repr(self.data), repr(self.init), repr(self.train_kwargs),
                                          penalised], sort_keys=True, default=str).encode()).hexdigest()[:16]


def pack(jobs: list[Job], max_copies: int = 256) -> list[list[Job]]:
    """Group compatible jobs into packs of at most max_copies copies (order preserved)."""
    groups: dict[str, list[list[Job]]] = {}
    order: list[tuple[str, int]] = []
    for j in jobs:
        packs = groups.setdefault(j.pack_key(), [[]])
        if packs[-1] and sum(x.spec.k for x in packs[-1]) + j.spec.k > max_copies:
            packs.append([])
        if not packs[-1]:
            order.append((j.pack_key(), len(packs) - 1))
        packs[-1].append(j)
    return [groups[k][i] for k, i in order]


def packed_spec(jobs: list[Job]) -> RunSpec:
    """The ensemble of a pack: the jobs' copies one after another, each with its own settings."""
    seeds, per_copy = [], []
    for j in jobs:
        seeds += list(j.spec.seeds)
        per_copy += list(j.spec.per_copy or [CopySettings()] * j.spec.k)
    return replace(jobs[0].spec, seeds=tuple(seeds), per_copy=tuple(per_copy))


def run_pack(jobs: list[Job], store_root: str, device: str | torch.device = "auto", progress: bool = False) -> list[str]:
    """Train the jobs of one pack that are not stored yet, as one ensemble, and store each job on its own.
    Idempotent: returns the store folders of all the jobs."""
    store = RunStore(store_root)
    todo = [j for j in jobs if store.load(j.spec) is None]
    if todo:
        pack_dir = store.layout.pack([store.path(j.spec) for j in todo])

        def load():  # another process may have stored some meanwhile
            todo[:] = [j for j in todo if store.load(j.spec) is None]
            return True if not todo else None

        def train():
            spec = packed_spec(todo)
            kw = {name: r.make() for name, r in todo[0].train_kwargs}
            start = None
            if todo[0].init is not None:
                start = TrainState(stack_states([todo[0].init.make()] * spec.k))
            res = train_resumable(spec, todo[0].data.make(), device, ckpt_dir(pack_dir), progress, start=start, **kw)
            c0 = 0
            for j in todo:
                copies = list(range(c0, c0 + j.spec.k))
                for step in spec.train.checkpoints:  # each job keeps its slice of the requested checkpoints
                    _slice_checkpoint(ckpt_dir(pack_dir), step, copies, ckpt_dir(store.path(j.spec)))
                store.put(j.spec, res, copies)
                c0 += j.spec.k
            return True

        train_once(pack_dir, load, train, "pack of runs")
        shutil.rmtree(ckpt_dir(pack_dir), ignore_errors=True)
    return [str(store.path(j.spec)) for j in jobs]


def _slice_checkpoint(src_dir: Path, step: int, copies: list[int], dest_dir: Path) -> None:
    """Copy the weights (no optimizer state) of `copies` from a pack's checkpoint at `step` into a job's folder."""
    ckpt = load_checkpoint(checkpoint_path(src_dir, step))
    idx = torch.as_tensor(copies, dtype=torch.long)
    part = TrainState({n: v.index_select(0, idx) for n, v in ckpt.state.items()}, {},
                      [ckpt.steps[c] for c in copies])
    save_checkpoint(checkpoint_path(dest_dir, step), part, len(copies), optimizer=False)


def check_executor(executor: str, slurm=None) -> dict:
    """Check where a grid can run, before anything trains; returns the SLURM options as a dict.

    executor: "inprocess" | "local" | "slurm" ("slurm" needs SLURM's `sbatch` on this machine). slurm: a dict
    of submitit options, or the same as a YAML/JSON string (papermill's `-p slurm '{"partition": "gpu"}'`).
    Raises ConfigError naming the parameter and what to change.
    """
    import shutil

    from ..config import ConfigError

    if executor not in EXECUTORS:
        raise ConfigError(f"executor={executor!r}; choose one of {list(EXECUTORS)}")
    if isinstance(slurm, str):
        import yaml

        try:
            slurm = yaml.safe_load(slurm) if slurm.strip() else {}
        except yaml.YAMLError as e:
            raise ConfigError(f"slurm={slurm!r} is not a YAML/JSON mapping ({str(e).splitlines()[0]}); write it like "
                              """-p slurm '{"partition": "gpu", "timeout_min": 240}'""") from None
    slurm = {} if slurm is None else slurm
    if not isinstance(slurm, dict):
        raise ConfigError(f"slurm={slurm!r} must be a mapping of submitit options, e.g. "
                          """{"partition": "gpu", "timeout_min": 240, "gpus_per_node": 1}""")
    if executor == "slurm" and shutil.which("sbatch") is None:
        raise ConfigError("executor='slurm' needs a SLURM cluster, but SLURM's sbatch is not on this machine's PATH; "
                          "run on the cluster's login node, or use executor='local' (processes here) or 'inprocess'")
    return slurm


def dispatch(jobs: list[Job], store_root: str | os.PathLike, executor: str = "inprocess", device: str | torch.device = "auto",
             progress: bool = True, max_copies: int = 256, slurm: dict | None = None,
             folder: str | os.PathLike | None = None) -> list[StoredRun]:
    """Train every job that is not stored yet (packed into ensembles), with the chosen executor, and return all
    jobs' stored runs in order.

    executor "inprocess": in this process (notebooks, tests); "local": submitit local processes; "slurm":
    submitit on a SLURM cluster, with `slurm` options such as partition, timeout_min, gpus_per_node,
    cpus_per_task, mem_gb (passed to update_parameters, `slurm_` prefixed where SLURM-specific).
    """
    slurm = check_executor(executor, slurm)
    for j in jobs:  # every job's settings are checked before the first one trains
        j.spec.validate()
    store = RunStore(store_root)
    missing = {config_hash(j.spec) for j in jobs if store.load(j.spec) is None}
    packs = [p for p in pack(jobs, max_copies) if any(config_hash(j.spec) in missing for j in p)]
    root = str(Path(store_root).resolve())
    if packs and executor == "inprocess":
        for p in packs:
            run_pack(p, root, device, progress)
    elif packs:
        import submitit

        folder = Path(folder or StoreLayout(root).submitit())
        if executor == "local":
            ex = submitit.LocalExecutor(folder=str(folder))
            ex.update_parameters(timeout_min=int(slurm.get("timeout_min", 24 * 60)))
        else:
            ex = submitit.AutoExecutor(folder=str(folder), cluster="slurm")
            opts = dict(slurm)
            generic = {k: opts.pop(k) for k in ("timeout_min", "gpus_per_node", "cpus_per_task", "mem_gb", "nodes",
                                                "tasks_per_node", "name") if k in opts}
            ex.update_parameters(**generic, **{k if k.startswith("slurm_") else f"slurm_{k}": v for k, v in opts.items()})
        submitted = [ex.submit(run_pack, p, root, device, False) for p in packs]
        for job in submitted:
            job.result()  # raises with the job's own traceback if it failed
    out = []
    for j in jobs:
        r = store.load(j.spec)
        if r is None:
            raise RuntimeError(f"job {config_hash(j.spec)} finished but its run is not in the store at {root}")
        r.trained_now = config_hash(j.spec) in missing
        out.append(r)
    return out
