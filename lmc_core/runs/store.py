"""Run store: trained copies cached on disk under a hash of their non-default config (layout.py names every
file). A corrupt or partial file is moved aside (numbered, never overwritten) and recomputed, never used; a
file that cannot be read (permissions) is an error naming it, never mistaken for corruption."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import torch

from ..config import ConfigError, RunSpec, config_hash, non_default, to_dict
from ..families import family_of, spec_from_dict
from ..train import TrainResult, TrainState
from .checkpoints import train_once, train_resumable
from ..files import CorruptFileError, discard_result, read_json, write_json
from .layout import (StoreLayout, ckpt_dir, checkpoint_path, is_done, load_checkpoint, prune_resume_points,
                     read_history, read_result, write_result)

State = dict[str, torch.Tensor]


@dataclass
class StoredRun:
    """A completed run loaded from the store."""

    spec: RunSpec
    state: State
    opt_state: dict[str, torch.Tensor]
    steps: list[int]
    history: pd.DataFrame
    path: Path
    trained_now: bool
    diverged: dict[int, int] = field(default_factory=dict)  # copy -> step (frozen; its weights are no result)
    dynamics: dict[str, torch.Tensor] = field(default_factory=dict)  # training dynamics (dyn.steps, dyn.prob)


class RunStore:
    """Cache of trained runs keyed by config hash."""

    def __init__(self, root: str | os.PathLike = "runs"):
        self.root = Path(root)
        if self.root.exists() and not self.root.is_dir():
            raise ConfigError(f"store_dir {root} is a file, not a folder; choose a folder for the run store")
        self.layout = StoreLayout(self.root)

    def path(self, spec: RunSpec) -> Path:
        """Directory of a run."""
        return self.layout.run(spec)

    def load(self, spec: RunSpec) -> StoredRun | None:
        """The completed run for `spec`, or None if absent, incomplete or corrupt (moved aside)."""
        d = self.path(spec)
        if not is_done(d):
            return None
        try:
            if spec_from_dict(read_json(d / "spec.json")) != spec:
                raise CorruptFileError(f"{d}: spec.json does not match the requested spec (hash collision?)")
            r = read_result(d)
        except CorruptFileError as e:
            discard_result(d, e, "run store")
            return None
        state = family_of(spec.model).complete_state(spec.model, [s.init for s in spec.seeds], r.state)
        return StoredRun(spec, state, r.opt_state, r.steps, r.history, d, False, r.diverged, r.dynamics)

    def get(self, spec: RunSpec, train_data=None, device: str | torch.device = "auto", progress: bool = True, *,
            init_state: State | None = None, monitor: dict | None = None, dynamics: str | None = None,
            stop_after: int | None = None) -> StoredRun:
        """Load the run if stored, else train it (resuming from its checkpoints) and store it.

        init_state: weights [K, ...] every copy starts from (a fine-tune; spec.init_from names them);
        monitor/dynamics: splits evaluated during training (train.callbacks.Monitor); stop_after: stop
        after that many updates, as if killed (tests). While a process trains a run it holds the run's
        lock; a second process asking for the same run waits and then loads what the first stored.
        """
        spec.validate()
        d = self.path(spec)

        def train() -> StoredRun:
            if train_data is None:
                raise ValueError(f"run {config_hash(spec)} is not in the store at {self.root} and no training "
                                 "data were given to train it")
            write_json(d / "spec.json", to_dict(spec))  # a run being trained says what it is
            write_json(d / "identity.json", non_default(spec))
            start = TrainState(init_state) if init_state is not None else None
            res = train_resumable(spec, train_data, device, ckpt_dir(d), progress, start=start, monitor=monitor,
                                  dynamics=dynamics, stop_after=stop_after)
            if min(res.steps) < spec.train.steps:  # stopped early on request (tests): not complete
                return StoredRun(spec, res.state, res.opt_state, res.steps, res.history, d, True, res.diverged,
                                 res.dynamics)
            run = self.put(spec, res)
            prune_resume_points(ckpt_dir(d), recent=0)  # requested checkpoints stay; resume points are done
            return run

        return train_once(d, lambda: self.load(spec), train)

    def put(self, spec: RunSpec, res: TrainResult, copies: list[int] | None = None) -> StoredRun:
        """Store a finished training result under `spec` (the copies `copies` of it, in order: a job of a packed
        ensemble); DONE.json is written last."""
        if copies is not None:
            res = select_copies(res, copies)
        d = self.path(spec)
        skip = family_of(spec.model).frozen_keys(spec.model) if not spec.init_from else set()
        write_result(d, res, to_dict(spec), non_default(spec), skip, spec.train.store_optimizer)
        return StoredRun(spec, res.state, res.opt_state, res.steps, res.history, d, True, res.diverged, res.dynamics)

    def checkpoint(self, spec: RunSpec, step: int) -> State:
        """The weights of a stored run's kept checkpoint at `step` (spec.train.checkpoints), frozen parameters
        rebuilt from the initialisation."""
        ckpt = load_checkpoint(checkpoint_path(ckpt_dir(self.path(spec)), step))
        return family_of(spec.model).complete_state(spec.model, [s.init for s in spec.seeds], ckpt.state)


def select_copies(res: TrainResult, copies: list[int]) -> TrainResult:
    """The copies `copies` of a training result, renumbered 0.. in that order."""
    idx = torch.as_tensor(copies, dtype=torch.long)
    where = {c: i for i, c in enumerate(copies)}
    h = res.history[res.history["copy"].isin(copies)].copy()
    h["copy"] = h["copy"].map(where)
    dyn = dict(res.dynamics)
    if "dyn.prob" in dyn:
        dyn["dyn.prob"] = dyn["dyn.prob"][:, idx]
    return TrainResult(state={n: t.index_select(0, idx) for n, t in res.state.items()},
                       opt_state={n: t.index_select(0, idx) for n, t in res.opt_state.items()},
                       steps=[res.steps[c] for c in copies], history=h.reset_index(drop=True),
                       diverged={where[c]: s for c, s in res.diverged.items() if c in where}, dynamics=dyn,
                       dropout_masks=res.dropout_masks)


def history_of(run_dir: Path) -> pd.DataFrame:
    """The loss log of a stored result folder (history.csv, else the log stored with the weights)."""
    return read_result(run_dir).history


__all__ = ["RunStore", "StoredRun", "history_of", "read_history", "select_copies"]
