"""Run store: trained copies cached on disk under a hash of their non-default config.

runs/<hash>/spec.json         the full RunSpec
runs/<hash>/ckpt/step-*.safetensors (+ .sha256)   resume / requested checkpoints
runs/<hash>/final.safetensors (+ .sha256)         final weights [K, ...]
runs/<hash>/history.csv       per-copy training loss
runs/<hash>/DONE.json         written last: the run is complete

Every file is written atomically and verified by checksum on read; a corrupt or partial
file is moved aside and retrained (resuming from the newest valid checkpoint), never used.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch

from .config import RunSpec, config_hash, non_default, spec_from_dict, to_dict
from .ensemble import State
from .io import CorruptFileError, load_tensors, quarantine, read_json, save_tensors, write_json
from .train import TrainResult, prune_checkpoints, train_copies


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


class RunStore:
    """Cache of trained runs keyed by config hash."""

    def __init__(self, root: str | os.PathLike = "runs"):
        self.root = Path(root)

    def path(self, spec: RunSpec) -> Path:
        """Directory of a run."""
        return self.root / config_hash(spec)

    def load(self, spec: RunSpec) -> StoredRun | None:
        """The completed run for `spec`, or None if absent, incomplete or corrupt."""
        d = self.path(spec)
        if not (d / "DONE.json").exists():
            return None
        try:
            stored = spec_from_dict(read_json(d / "spec.json"))
            if stored != spec:
                raise CorruptFileError(f"{d}: spec.json does not match the requested spec (hash collision?)")
            t, meta = load_tensors(d / "final.safetensors")
            hist = pd.read_csv(d / "history.csv") if (d / "history.csv").exists() else pd.DataFrame()
        except CorruptFileError as e:
            print(f"run store: {e}; retraining")
            quarantine(d / "final.safetensors")
            os.replace(d / "DONE.json", d / "DONE.json.corrupt")
            return None
        state = {n[6:]: v for n, v in t.items() if n.startswith("model.")}
        opt = {n[4:]: v for n, v in t.items() if n.startswith("opt.")}
        return StoredRun(spec, state, opt, meta["steps"], hist, d, trained_now=False)

    def get(self, spec: RunSpec, train_tokens: torch.Tensor | None = None, device: str = "auto",
            progress: bool = True, **train_kwargs) -> StoredRun:
        """Load the run if stored, else train it (resuming from its checkpoints) and store it."""
        spec.validate()
        found = self.load(spec)
        if found is not None:
            return found
        if train_tokens is None:
            raise ValueError(f"run {config_hash(spec)} is not in the store at {self.root} and no training "
                             "tokens were given to train it")
        d = self.path(spec)
        d.mkdir(parents=True, exist_ok=True)
        write_json(d / "spec.json", to_dict(spec))
        write_json(d / "identity.json", non_default(spec))
        res: TrainResult = train_copies(spec, train_tokens, device, ckpt_dir=d / "ckpt", progress=progress,
                                        **train_kwargs)
        _append_history(d / "history.csv", res.history)
        if min(res.steps) < spec.train.steps:  # stopped early on request (tests): not complete
            return StoredRun(spec, res.state, res.opt_state, res.steps, res.history, d, trained_now=True)
        tensors = {"model." + n: t for n, t in res.state.items()}
        tensors.update({"opt." + n: t for n, t in res.opt_state.items()})
        save_tensors(d / "final.safetensors", tensors, {"steps": res.steps})
        write_json(d / "DONE.json", {"hash": config_hash(spec), "steps": res.steps})
        prune_checkpoints(d / "ckpt", set(spec.train.checkpoints))  # resume points are no longer needed
        hist = pd.read_csv(d / "history.csv")
        return StoredRun(spec, res.state, res.opt_state, res.steps, hist, d, trained_now=True)


def _append_history(path: Path, hist: pd.DataFrame) -> None:
    """Merge this call's loss log with what earlier (interrupted) calls logged."""
    if path.exists():
        try:
            old = pd.read_csv(path)
            hist = pd.concat([old[old.step < hist.step.min()] if len(hist) else old, hist])
        except (ValueError, pd.errors.ParserError):
            pass
    tmp = path.with_name(path.name + ".tmp")
    hist.to_csv(tmp, index=False)
    os.replace(tmp, path)
