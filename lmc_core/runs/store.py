"""Run store: trained copies cached on disk under a hash of their non-default config.

runs/<hash>/spec.json         the full RunSpec
runs/<hash>/ckpt/step-*.safetensors, resume-*.safetensors (+ .sha256)   checkpoints with the loss log
runs/<hash>/final.safetensors (+ .sha256)         final weights [K, ...], optimizer state, loss log
runs/<hash>/history.csv       the loss log as CSV (a convenience copy of what final.safetensors holds)
runs/<hash>/DONE.json         written last: the run is complete
runs/<hash>/LOCK              present while a process trains the run

Every file is written atomically and verified by checksum on read; a corrupt or partial
file is moved aside (numbered, never overwritten) and recomputed, never used. A file that
cannot be read (permissions) is an error naming it, never mistaken for corruption.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import torch

from ..config import RunSpec, config_hash, non_default, to_dict
from ..ensemble import State
from ..families import family_of, spec_from_dict
from .io import CorruptFileError, atomic_write, discard_result, load_tensors, quarantine, read_json, save_tensors, write_json
from .lock import run_lock
from ..train.loop import LOG_FIELDS, TrainResult, history_frame, log_rows, log_tensors, prune_resume_points, train_copies


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
            from ..config import ConfigError

            raise ConfigError(f"store_dir {root} is a file, not a folder; choose a folder for the run store")

    def path(self, spec: RunSpec) -> Path:
        """Directory of a run."""
        return self.root / config_hash(spec)

    def load(self, spec: RunSpec) -> StoredRun | None:
        """The completed run for `spec`, or None if absent, incomplete or corrupt (moved aside)."""
        d = self.path(spec)
        if not (d / "DONE.json").exists():
            return None
        try:
            stored = spec_from_dict(read_json(d / "spec.json"))
            if stored != spec:
                raise CorruptFileError(f"{d}: spec.json does not match the requested spec (hash collision?)")
            t, meta = load_tensors(d / "final.safetensors")
        except CorruptFileError as e:
            discard_result(d, e, "run store")
            return None
        state = {n[6:]: v for n, v in t.items() if n.startswith("model.")}
        fam = family_of(spec.model)
        missing = set(fam.frozen_keys(spec.model)) - set(state)
        if missing:  # frozen parameters are not stored: they are their initial values
            init = fam.init(spec.model, [s.init for s in spec.seeds])
            state = {n: (state[n] if n in state else init[n]) for n in init}
        opt = {n[4:]: v for n, v in t.items() if n.startswith("opt.")}
        hist = read_history(d / "history.csv", t)
        diverged = {int(c): int(s) for c, s in meta.get("diverged", {}).items()}
        dyn = {n: v for n, v in t.items() if n.startswith("dyn.")}
        return StoredRun(spec, state, opt, meta["steps"], hist, d, trained_now=False, diverged=diverged, dynamics=dyn)

    def get(self, spec: RunSpec, train_tokens=None, device: str = "auto",
            progress: bool = True, **train_kwargs) -> StoredRun:
        """Load the run if stored, else train it (resuming from its checkpoints) and store it.

        While a process trains a run it holds the run's lock; a second process asking for the same
        run waits and then loads what the first stored.
        """
        spec.validate()
        found = self.load(spec)
        if found is not None:
            return found
        if train_tokens is None:
            raise ValueError(f"run {config_hash(spec)} is not in the store at {self.root} and no training "
                             "data were given to train it")
        d = self.path(spec)
        with run_lock(d):
            found = self.load(spec)  # another process may have finished it while we waited
            if found is not None:
                return found
            write_json(d / "spec.json", to_dict(spec))
            write_json(d / "identity.json", non_default(spec))
            res = self.train(spec, train_tokens, device, progress, ckpt_dir=d / "ckpt", **train_kwargs)
            if min(res.steps) < spec.train.steps:  # stopped early on request (tests): not complete
                return StoredRun(spec, res.state, res.opt_state, res.steps, res.history, d, trained_now=True,
                                 diverged=res.diverged, dynamics=res.dynamics)
            run = self.put(spec, res)
            prune_resume_points(d / "ckpt", recent=0)  # requested checkpoints stay; resume points are done
            return run

    def train(self, spec: RunSpec, data, device: str = "auto", progress: bool = True, ckpt_dir: Path | None = None,
              **train_kwargs) -> TrainResult:
        """Train `spec` (resuming from ckpt_dir) without storing it."""
        return train_copies(spec, data, device, ckpt_dir=ckpt_dir, progress=progress, **train_kwargs)

    def put(self, spec: RunSpec, res: TrainResult, copies: list[int] | None = None) -> StoredRun:
        """Store a finished training result under `spec` (the copies `copies` of it, in order: a job of a packed
        ensemble); DONE.json is written last."""
        if copies is not None:
            res = _select(res, copies)
        d = self.path(spec)
        write_json(d / "spec.json", to_dict(spec))
        write_json(d / "identity.json", non_default(spec))
        skip = family_of(spec.model).frozen_keys(spec.model) if not spec.init_from else set()
        tensors = {"model." + n: t for n, t in res.state.items() if n not in skip}
        if spec.train.store_optimizer:
            tensors.update({"opt." + n: t for n, t in res.opt_state.items()})
        tensors.update(log_tensors(res.history.to_dict("records")))
        tensors.update(res.dynamics)
        save_tensors(d / "final.safetensors", tensors, {"steps": res.steps, "diverged": res.diverged})
        write_history(d / "history.csv", res.history)
        write_json(d / "DONE.json", {"hash": config_hash(spec), "steps": res.steps})
        return StoredRun(spec, res.state, res.opt_state, res.steps, res.history, d, trained_now=True,
                         diverged=res.diverged, dynamics=res.dynamics)


def _select(res: TrainResult, copies: list[int]) -> TrainResult:
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
                       diverged={where[c]: s for c, s in res.diverged.items() if c in where}, dynamics=dyn)


def history_of(run_dir: Path) -> pd.DataFrame:
    """The loss log of a stored run folder (history.csv, else the log inside final.safetensors)."""
    t, _ = load_tensors(Path(run_dir) / "final.safetensors")
    return read_history(Path(run_dir) / "history.csv", t)


def write_history(path: Path, hist: pd.DataFrame) -> None:
    """Write the loss log as CSV atomically."""
    atomic_write(path, lambda tmp: hist.to_csv(tmp, index=False))


def read_history(path: Path, tensors: dict[str, torch.Tensor] | None = None) -> pd.DataFrame:
    """The loss log of a run: history.csv if intact, else rebuilt from the log stored with the weights
    (a damaged CSV is moved aside, never fatal)."""
    stored = history_frame(log_rows(tensors or {}))
    if path.exists():
        try:
            hist = pd.read_csv(path)
            if list(hist.columns[: len(LOG_FIELDS)]) != list(LOG_FIELDS) or hist[["step", "copy"]].isna().any().any():
                raise ValueError(f"unexpected columns {list(hist.columns)} or empty cells")
            if tensors is not None and "log.step" in tensors and len(hist) != len(stored):
                raise ValueError(f"{len(hist)} rows, the stored log has {len(stored)}")
            return hist
        except (ValueError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as e:
            print(f"run store: {path} is damaged ({str(e)[:120]}); moved aside and rebuilt from the stored log")
            quarantine(path)
    if tensors is not None and "log.step" in tensors:
        write_history(path, stored)
    return stored
