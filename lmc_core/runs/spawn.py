"""Spawning at step k (Frankle et al. 2020): copies that share a parent's training up to step k.

A parent run saves checkpoints at the spawn steps. A checkpoint holds the weights, the
optimizer buffers and the step count; the learning-rate schedule and the data position are
pure functions of the step count (and seeds), so a copy spawned at k continues exactly where
the parent was, with the parent's optimizer state and learning rate (the PTB study re-created
its optimizer at a constant rate by mistake), but with its own data and dropout seeds.

Copies of many spawn points are trained together as ensembles with per-copy step counters;
spawn points are grouped so that their remaining step counts are similar (little idle work).
Every spawn point's copies are stored under their own key (a result folder, layout.py), so adding
spawn points trains only the new ones; the parent is keyed without its checkpoint grid, so it is
extended, not retrained.
"""
from __future__ import annotations

import contextlib
import shutil
from dataclasses import replace
from pathlib import Path

import pandas as pd
import torch

from ..config import RunSpec, Seeds, check_int, to_dict
from ..ensemble import State, stack_states
from ..train import TrainState
from .checkpoints import train_once, train_resumable
from ..files import CorruptFileError, discard_result, quarantine, write_json
from .layout import checkpoint_path, ckpt_dir, is_done, load_checkpoint, parent_identity, read_result, write_result
from .store import RunStore, select_copies


def parent_dir(store: RunStore, spec: RunSpec) -> Path:
    """Folder of a parent run (checkpoints at spawn steps)."""
    return store.layout.parent(spec)


def parent_checkpoints(store: RunStore, spec: RunSpec, ks: list[int], tokens: torch.Tensor,
                       device: str | torch.device = "auto", progress: bool = True) -> dict[int, TrainState]:
    """The training state (weights, optimizer state, steps, loss log) of the single-copy parent at every spawn
    step in ks.

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
    out: dict[int, TrainState] = {}
    missing = sorted(set(ks))

    def load():
        missing[:] = _load_parent_checkpoints(d, missing, out)
        return None if missing else out

    def train():
        if not (d / "spec.json").exists():
            write_json(d / "spec.json", to_dict(parent_identity(spec)))
        every = spec.train.save_every or max(max(missing) // 10, 1)
        train_spec = replace(spec, train=replace(spec.train, checkpoints=tuple(missing), save_every=every))
        train_resumable(train_spec, tokens, device, ckpt_dir(d), progress, until=max(missing),
                        resume_at_most=min(missing))
        for k in missing:
            out[k] = load_checkpoint(checkpoint_path(ckpt_dir(d), k))
        return out

    return train_once(d, load, train, "parent run")


def parent_checkpoint(store: RunStore, spec: RunSpec, k: int, tokens: torch.Tensor | None = None,
                      device: str | torch.device = "auto", progress: bool = True) -> TrainState:
    """The stored parent checkpoint at spawn step k (weights, optimizer state, steps, the parent's loss log).

    With the parent's training tokens, a damaged or missing checkpoint is moved aside and made again, bit for
    bit (parent_checkpoints: the parent trained from its newest valid checkpoint before k). Without them,
    CorruptFileError after moving a damaged one aside (pass `tokens` to rebuild it)."""
    check_int("k", k, 0, spec.train.steps - 1)
    if tokens is not None:
        return parent_checkpoints(store, spec, [k], tokens, device, progress)[k]
    path = checkpoint_path(ckpt_dir(parent_dir(store, spec)), k)
    try:
        return load_checkpoint(path)
    except CorruptFileError as e:
        quarantine(path)
        raise CorruptFileError(f"{e}; moved aside. Give the parent's training tokens "
                               "(parent_checkpoint(store, spec, k, tokens)) to make it again") from None


def _load_parent_checkpoints(d: Path, ks, out: dict) -> list[int]:
    """Load the verified parent checkpoints of ks into `out`; returns the steps still missing
    (corrupt ones are moved aside)."""
    missing = []
    for k in sorted(set(ks)):
        path = checkpoint_path(ckpt_dir(d), k)
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
    d = store.layout.child(spec, k, seeds)
    if not is_done(d):
        return None
    try:
        return read_result(d).state
    except CorruptFileError as e:
        discard_result(d, e, "spawn store")
        return None


def child_history(store: RunStore, spec: RunSpec, k: int, seeds: tuple[Seeds, ...]) -> pd.DataFrame:
    """The training-loss log of the copies spawned at k (columns step, copy, loss, lr, ...)."""
    return read_result(store.layout.child(spec, k, seeds)).history


def spawn_children(store: RunStore, spec: RunSpec, ks: list[int], child_seeds: list[Seeds],
                   tokens: torch.Tensor, device: str | torch.device = "auto", progress: bool = True,
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
    for group in group_spawn_points(todo, spec.train.steps, max_idle):
        gdir = store.layout.group([store.layout.child(spec, k, seeds) for k in group])
        remaining = list(group)

        def load():  # another process may have trained some of them meanwhile: train only the rest
            for k in list(remaining):
                if (st := load_child(store, spec, k, seeds)) is not None:
                    out[k] = st
                    remaining.remove(k)
            return True if not remaining else None

        def train():
            _train_group(store, spec, remaining, seeds, parents, tokens, device, progress, gdir, out)
            shutil.rmtree(ckpt_dir(gdir), ignore_errors=True)  # resume points of a finished group
            return True

        train_once(gdir, load, train, "spawn group")
        with contextlib.suppress(OSError):
            gdir.rmdir()
    return out


def _train_group(store: RunStore, spec: RunSpec, group: list[int], seeds: tuple[Seeds, ...], parents: dict,
                 tokens: torch.Tensor, device, progress: bool, gdir: Path, out: dict) -> None:
    """Train the children of the spawn points in `group` as one ensemble and store each spawn point."""
    T = spec.train.steps
    n = len(seeds)
    start = TrainState(stack_states([stack_states([parents[k].state] * n) for k in group]),
                       stack_optimizer_states([parents[k] for k in group], n), [k for k in group for _ in range(n)])
    gspec = replace(spec, seeds=seeds * len(group),
                    train=replace(spec.train, checkpoints=(), save_every=spec.train.save_every or max(T // 10, 1)))
    res = train_resumable(gspec, tokens, device, ckpt_dir(gdir), progress, start=start)
    for i, k in enumerate(group):
        part = select_copies(res, list(range(i * n, (i + 1) * n)))
        d = store.layout.child(spec, k, seeds)
        write_result(d, part, {"parent": to_dict(parent_identity(spec)), "k": k, "seeds": to_dict(seeds)},
                     optimizer=False, extra={"spawn_step": k})
        out[k] = {name: t.clone() for name, t in part.state.items()}


def stack_optimizer_states(parents: list[TrainState], n: int) -> dict:
    """Optimizer buffers of several parents, each repeated n times; a buffer a parent does not
    have yet (at step 0) is zero, which is its value before the first update."""
    names = sorted({name for p in parents for name in p.opt_state})
    out = {}
    for name in names:
        param = name.split(".", 1)[1]
        parts = [p.opt_state[name] if name in p.opt_state else torch.zeros_like(p.state[param]) for p in parents]
        out[name] = torch.cat([t.expand(n, *t.shape[1:]) for t in parts]).clone()
    return out

