"""Spawning at step k (Frankle et al. 2020): copies that share a parent's training up to step k.

A parent run saves checkpoints at the spawn steps. A checkpoint holds the weights, the
optimizer buffers and the step count; the learning-rate schedule and the data position are
pure functions of the step count (and seeds), so a copy spawned at k continues exactly where
the parent was, with the parent's optimizer state and learning rate (the PTB study re-created
its optimizer at a constant rate by mistake), but with its own data and dropout seeds.

Copies of many spawn points are trained together as ensembles with per-copy step counters;
spawn points are grouped so that their remaining step counts are similar (little idle work).
Every spawn point's copies are stored under their own key, so adding spawn points trains only
the new ones; the parent is keyed without its checkpoint grid, so it is extended, not retrained.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import shutil
from dataclasses import replace
from pathlib import Path

import pandas as pd
import torch

from ..config import RunSpec, Seeds, config_hash, non_default, to_dict
from ..ensemble import State, stack_states
from .io import CorruptFileError, discard_result, load_tensors, quarantine, save_tensors, write_json
from .lock import run_lock
from .store import RunStore, read_history, write_history
from ..train.loop import checkpoint_path, load_checkpoint, log_tensors, train_copies


def parent_identity(spec: RunSpec) -> RunSpec:
    """The parent's spec without the fields that do not change its weights (checkpoint grid)."""
    return replace(spec, train=replace(spec.train, checkpoints=(), save_every=0))


def parent_dir(store: RunStore, spec: RunSpec) -> Path:
    """Folder of a parent run (checkpoints at spawn steps)."""
    return store.root / f"parent-{config_hash(parent_identity(spec))}"


def parent_checkpoints(store: RunStore, spec: RunSpec, ks: list[int], tokens: torch.Tensor,
                       device: str = "auto", progress: bool = True) -> dict[int, tuple[State, dict, list[int]]]:
    """(weights, optimizer state, steps) of the single-copy parent at every spawn step in ks.

    Missing checkpoints are made by training the parent from the newest valid checkpoint before
    them (or from initialisation) up to the largest missing step. Existing spawn checkpoints are
    kept (adding spawn points never deletes or retrains earlier ones); a corrupt one is moved
    aside and made again. The parent's folder is locked while it trains.
    """
    if spec.k != 1:
        raise ValueError(f"a parent is one copy; got {spec.k} seeds")
    bad = [k for k in ks if not 0 <= k < spec.train.steps]
    if bad:
        raise ValueError(f"spawn steps {bad} must lie in [0, T={spec.train.steps})")
    d = parent_dir(store, spec)
    out: dict[int, tuple] = {}
    missing = _load_parent_checkpoints(d, ks, out)
    if not missing:
        return out
    with run_lock(d, what="parent run"):
        missing = _load_parent_checkpoints(d, missing, out)  # another process may have made them
        if missing:
            if not (d / "spec.json").exists():
                write_json(d / "spec.json", to_dict(parent_identity(spec)))
            every = spec.train.save_every or max(max(missing) // 10, 1)
            train_spec = replace(spec, train=replace(spec.train, checkpoints=tuple(missing), save_every=every))
            train_copies(train_spec, tokens, device, ckpt_dir=d / "ckpt", progress=progress,
                         until=max(missing), resume_at_most=min(missing))
            for k in missing:
                out[k] = load_checkpoint(checkpoint_path(d / "ckpt", k))
    return out


def _load_parent_checkpoints(d: Path, ks, out: dict) -> list[int]:
    """Load the verified parent checkpoints of ks into `out`; returns the steps still missing
    (corrupt ones are moved aside)."""
    missing = []
    for k in sorted(set(ks)):
        path = checkpoint_path(d / "ckpt", k)
        if not path.exists():
            missing.append(k)
            continue
        try:
            out[k] = load_checkpoint(path)
        except CorruptFileError as e:
            print(f"spawn store: {e}; making it again")
            quarantine(path)
            missing.append(k)
    return missing


def child_key(spec: RunSpec, k: int, seeds: tuple[Seeds, ...]) -> str:
    """Store key of the copies spawned from `spec`'s parent at step k with these seeds."""
    payload = json.dumps({"parent": config_hash(parent_identity(spec)), "k": k,
                          "seeds": non_default(seeds)}, sort_keys=True)
    return "spawn-" + hashlib.sha256(payload.encode()).hexdigest()[:16]


def group_spawn_points(ks: list[int], total: int, max_idle: float = 0.25) -> list[list[int]]:
    """Group spawn steps so that within a group the idle fraction (copies that finished early
    and wait for the others) stays below max_idle."""
    groups: list[list[int]] = []
    for k in sorted(ks):
        if groups:
            g = groups[-1] + [k]
            remaining = [total - x for x in g]
            idle = 1 - sum(remaining) / (len(g) * max(remaining))
            if idle <= max_idle:
                groups[-1] = g
                continue
        groups.append([k])
    return groups


def load_child(store: RunStore, spec: RunSpec, k: int, seeds: tuple[Seeds, ...]) -> State | None:
    """The stored copies spawned at k, or None if absent or corrupt (a corrupt one is moved aside)."""
    d = store.root / child_key(spec, k, seeds)
    if not (d / "DONE.json").exists():
        return None
    try:
        t, _ = load_tensors(d / "final.safetensors")
    except CorruptFileError as e:
        discard_result(d, e, "spawn store")
        return None
    return {n: v for n, v in t.items() if not n.startswith("log.")}


def child_history(store: RunStore, spec: RunSpec, k: int, seeds: tuple[Seeds, ...]) -> pd.DataFrame:
    """The training-loss log of the copies spawned at k (columns step, copy, loss, lr)."""
    d = store.root / child_key(spec, k, seeds)
    t, _ = load_tensors(d / "final.safetensors")
    return read_history(d / "history.csv", t)


def spawn_children(store: RunStore, spec: RunSpec, ks: list[int], child_seeds: list[Seeds],
                   tokens: torch.Tensor, device: str = "auto", progress: bool = True,
                   max_idle: float = 0.25) -> dict[int, State]:
    """Weights [len(child_seeds), ...] of the copies spawned at each k and trained to T.

    Child c of every spawn point uses child_seeds[c] (its init field is ignored: the weights
    come from the parent). Spawn points already in the store are loaded, not retrained.
    """
    seeds = tuple(replace(s, init=spec.seeds[0].init) for s in child_seeds)
    if not seeds:
        raise ValueError("no child seeds: give at least one (two per pair)")
    out: dict[int, State] = {}
    for k in sorted(set(ks)):
        st = load_child(store, spec, k, seeds)
        if st is not None:
            out[k] = st
    todo = [k for k in sorted(set(ks)) if k not in out]
    if not todo:
        return out
    parents = parent_checkpoints(store, replace(spec, seeds=spec.seeds[:1]), todo, tokens, device, progress)
    T = spec.train.steps
    for group in group_spawn_points(todo, T, max_idle):
        while True:
            remaining = [k for k in group if k not in out]
            if not remaining:
                break
            gkey = hashlib.sha256(("+".join(child_key(spec, k, seeds) for k in remaining)).encode()).hexdigest()[:16]
            gdir = store.root / f"spawn-group-{gkey}"
            with run_lock(gdir, what="spawn group"):
                newly = {k: st for k in remaining if (st := load_child(store, spec, k, seeds)) is not None}
                if newly:  # another process trained some of them meanwhile: regroup the rest
                    out.update(newly)
                    continue
                _train_group(store, spec, remaining, seeds, parents, tokens, device, progress, gdir, out)
                shutil.rmtree(gdir / "ckpt", ignore_errors=True)  # resume points of a finished group
            with contextlib.suppress(OSError):
                gdir.rmdir()
            break
    return out


def _train_group(store: RunStore, spec: RunSpec, group: list[int], seeds: tuple[Seeds, ...], parents: dict,
                 tokens: torch.Tensor, device, progress: bool, gdir: Path, out: dict) -> None:
    """Train the children of the spawn points in `group` as one ensemble and store each spawn point."""
    T = spec.train.steps
    n = len(seeds)
    states = [stack_states([parents[k][0]] * n) for k in group]
    opts = _stack_optimizer_states([parents[k] for k in group], n)
    starts = [k for k in group for _ in range(n)]
    gspec = replace(spec, seeds=seeds * len(group),
                    train=replace(spec.train, checkpoints=(), save_every=spec.train.save_every or max(T // 10, 1)))
    res = train_copies(gspec, tokens, device, ckpt_dir=gdir / "ckpt", progress=progress,
                       init_state=stack_states(states), opt_state=opts, start_steps=starts)
    for i, k in enumerate(group):
        sl = {name: t[i * n : (i + 1) * n].clone() for name, t in res.state.items()}
        d = store.root / child_key(spec, k, seeds)
        h = res.history
        h = h[h["copy"] // n == i].assign(copy=lambda x: x["copy"] % n)
        save_tensors(d / "final.safetensors", {**sl, **log_tensors(h.to_dict("records"))}, {"k": k, "T": T})
        write_json(d / "spec.json", {"parent": to_dict(parent_identity(spec)), "k": k,
                                     "seeds": to_dict(seeds)})
        write_history(d / "history.csv", h.assign(spawn_step=k))
        write_json(d / "DONE.json", {"k": k, "T": T})
        out[k] = sl


def _stack_optimizer_states(parents: list[tuple[State, dict, list[int]]], n: int) -> dict:
    """Optimizer buffers of several parents, each repeated n times; a buffer a parent does not
    have yet (at step 0) is zero, which is its value before the first update."""
    names = sorted({name for _, opt, _ in parents for name in opt})
    out = {}
    for name in names:
        param = name.split(".", 1)[1]
        parts = [opt[name] if name in opt else torch.zeros_like(state[param]) for state, opt, _ in parents]
        out[name] = torch.cat([p.expand(n, *p.shape[1:]) for p in parts]).clone()
    return out
