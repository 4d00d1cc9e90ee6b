"""Every path of the run store, and the formats of what lies there: checkpoints, the loss log, results.

    <root>/<hash>/                      a run (RunStore): its copies trained together
    <root>/parent-<hash>/               a spawn parent: checkpoints at the spawn steps (spawn.py)
    <root>/spawn-<key>/                 the copies spawned from a parent at one step (spawn.py)
    <root>/spawn-group-<key>/           spawn points trained as one ensemble (lock and resume points only)
    <root>/pack-<key>/                  grid jobs trained as one ensemble (lock and resume points only)
    <root>/matrices/<key>.safetensors   cached barrier matrices (analysis.landscape)
    <root>/submitit/                    submitit's job folders (dispatch.py)

A result folder (run, spawn point; a grid job is a run) holds the same files:

    spec.json                the spec (a spawn point: its parent's spec, k and seeds)
    identity.json            the fields that make its hash (runs)
    final.safetensors        model.* weights [K, ...] (frozen parameters left out), opt.* optimizer
                             buffers (unless store_optimizer=False), log.* the loss log, dyn.* training
                             dynamics; meta: steps, diverged
    history.csv              the loss log as CSV (a convenience copy of log.*)
    DONE.json                written last: the result is complete
    LOCK                     present while a process trains it (lock.py)
    ckpt/step-NNNNNNN.safetensors     a requested checkpoint (model.*, opt.*, steps, log.*, dyn.*), kept
    ckpt/resume-NNNNNNN.safetensors   a rolling resume point, deleted when the run is done
    tensorboard/             TensorBoard logs written from the loss log (publish.tb)

Every file is written atomically with a checksum beside it (io.py). Spawn points stored before
this layout (weights without the `model.` prefix) are read as they are.
"""
from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field, replace
from pathlib import Path

import pandas as pd
import torch

from ..config import RunSpec, Seeds, config_hash, non_default
from ..train.trainer import LOG_FIELDS, TrainResult, TrainState, history_frame
from ..files import (CorruptFileError, StoreAccessError, atomic_write, load_tensors, quarantine, read_json, save_tensors,
                     write_json)
from .. import machine as _machine

State = dict[str, torch.Tensor]
RESULT = "final.safetensors"
DONE = "DONE.json"
_CKPT = re.compile(r"^(step|resume)-(\d{7})\.safetensors$")


# --------------------------------------------------------------------------- paths
class StoreLayout:
    """The folders of one run store (see the module docstring)."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    def run(self, spec: RunSpec) -> Path:
        """Folder of a run."""
        return self.root / config_hash(spec)

    def parent(self, spec: RunSpec) -> Path:
        """Folder of a spawn parent (keyed without its checkpoint grid, so it is extended, not retrained)."""
        return self.root / f"parent-{config_hash(parent_identity(spec))}"

    def child(self, spec: RunSpec, k: int, seeds: tuple[Seeds, ...]) -> Path:
        """Folder of the copies spawned from `spec`'s parent at step k with these seeds."""
        return self.root / child_key(spec, k, seeds)

    def group(self, children: list[Path]) -> Path:
        """Folder (lock, resume points) of spawn points trained as one ensemble."""
        return self.root / f"spawn-group-{_digest('+'.join(p.name for p in children))}"

    def pack(self, runs: list[Path]) -> Path:
        """Folder (lock, resume points) of grid jobs trained as one ensemble."""
        return self.root / f"pack-{_digest('+'.join(p.name for p in runs))}"

    def matrix(self, key: str) -> Path:
        """A cached barrier matrix."""
        return self.root / "matrices" / f"{key}.safetensors"

    def submitit(self) -> Path:
        """submitit's job folders."""
        return self.root / "submitit"


def ckpt_dir(result_dir: Path) -> Path:
    """The checkpoints of a run, spawn parent, group or pack folder."""
    return Path(result_dir) / "ckpt"


def tensorboard_dir(result_dir: Path) -> Path:
    """The TensorBoard logs of a run."""
    return Path(result_dir) / "tensorboard"


def parent_identity(spec: RunSpec) -> RunSpec:
    """The parent's spec without the fields that do not change its weights (checkpoint grid)."""
    return replace(spec, train=replace(spec.train, checkpoints=(), save_every=0))


def child_key(spec: RunSpec, k: int, seeds: tuple[Seeds, ...]) -> str:
    """Store key of the copies spawned from `spec`'s parent at step k with these seeds."""
    payload = json.dumps({"parent": config_hash(parent_identity(spec)), "k": k, "seeds": non_default(seeds)},
                         sort_keys=True)
    return "spawn-" + hashlib.sha256(payload.encode()).hexdigest()[:16]


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


# --------------------------------------------------------------------------- the loss log
def log_tensors(log: list[dict]) -> dict[str, torch.Tensor]:
    """The loss log as tensors (stored inside checkpoints and results); fields beyond LOG_FIELDS
    (monitored metrics) are NaN in the rows that lack them."""
    extra = sorted({f for r in log for f in r} - set(LOG_FIELDS))
    out = {f"log.{f}": torch.tensor([r.get(f, 0) for r in log], dtype=torch.int64 if f in ("step", "copy", "diverged")
                                    else torch.float64) for f in LOG_FIELDS}
    out.update({f"log.{f}": torch.tensor([r.get(f, float("nan")) for r in log], dtype=torch.float64) for f in extra})
    return out


def log_rows(tensors: dict[str, torch.Tensor]) -> list[dict]:
    """Inverse of log_tensors (empty if the tensors hold no log)."""
    if "log.step" not in tensors:
        return []
    n = tensors["log.step"].numel()
    extra = sorted(k[4:] for k in tensors if k.startswith("log.") and k[4:] not in LOG_FIELDS)
    fields = list(LOG_FIELDS) + extra
    cols = {f: tensors[f"log.{f}"].tolist() if f"log.{f}" in tensors else [0] * n for f in fields}
    rows = [dict(zip(fields, vals)) for vals in zip(*(cols[f] for f in fields))]
    for r in rows:  # a monitored metric is absent (NaN) in the steps where it was not measured
        for f in extra:
            if r[f] != r[f]:
                del r[f]
    return rows


def write_history(path: Path, hist: pd.DataFrame) -> None:
    """Write the loss log as CSV atomically."""
    atomic_write(path, lambda tmp: hist.to_csv(tmp, index=False))


def read_history(path: Path, tensors: dict[str, torch.Tensor] | None = None) -> pd.DataFrame:
    """The loss log of a result: history.csv if intact, else rebuilt from the log stored with the weights
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
        try:
            write_history(path, stored)
        except StoreAccessError:  # a read-only store: the log stored with the weights serves as it is
            pass
    return stored


# --------------------------------------------------------------------------- stored tensors
def unpack(tensors: dict[str, torch.Tensor]) -> tuple[State, dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """(model state, optimizer buffers, dynamics) of stored tensors. Weights are `model.*`; a spawn point stored
    before this layout has them without a prefix (every key that is not opt.*, log.*, dyn.* or steps)."""
    prefixed = any(n.startswith("model.") for n in tensors)
    model = {n[6:]: v for n, v in tensors.items() if n.startswith("model.")} if prefixed else {
        n: v for n, v in tensors.items() if not n.startswith(("opt.", "log.", "dyn.")) and n != "steps"}
    opt = {n[4:]: v for n, v in tensors.items() if n.startswith("opt.")}
    dyn = {n: v for n, v in tensors.items() if n.startswith("dyn.")}
    return model, opt, dyn


def pack_tensors(state: State, opt_state: dict | None = None, log: list[dict] | None = None,
                 dynamics: dict | None = None, steps: list[int] | None = None, skip: set[str] = frozenset()
                 ) -> dict[str, torch.Tensor]:
    """Tensors to store: model.* (without `skip`), opt.*, log.*, dyn.* and steps (those given)."""
    out = {"model." + n: t for n, t in state.items() if n not in skip}
    out.update({"opt." + n: t for n, t in (opt_state or {}).items()})
    out.update(dynamics or {})
    if steps is not None:
        out["steps"] = torch.as_tensor(steps, dtype=torch.int64).cpu()
    if log is not None:
        out.update(log_tensors(log))
    return out


# --------------------------------------------------------------------------- checkpoints
def checkpoint_path(directory: Path, step: int, kind: str = "step") -> Path:
    """Where the training state after `step` updates is kept in a ckpt folder.

    kind "step": a requested checkpoint (a spawn point, `TrainConfig.checkpoints`), never deleted;
    kind "resume": a rolling resume point (`save_every`), of which only the newest are kept.
    """
    return Path(directory) / f"{kind}-{step:07d}.safetensors"


def list_checkpoints(directory: Path) -> list[tuple[int, Path]]:
    """(step, path) of the checkpoint files present (not yet verified), oldest first; a requested
    checkpoint sorts after a resume point of the same step."""
    if not Path(directory).is_dir():
        return []
    found = [(int(m.group(2)), m.group(1) == "step", p) for p in Path(directory).iterdir()
             if (m := _CKPT.match(p.name))]
    return [(s, p) for s, _, p in sorted(found)]


def save_checkpoint(path: Path, start: TrainState, k: int, skip: set[str] = frozenset(), optimizer: bool = True) -> Path:
    """Atomically save a training state (weights without `skip`, optimizer buffers unless optimizer=False, steps,
    loss log, dynamics) at `path`."""
    tensors = pack_tensors(start.state, start.opt_state if optimizer else None, start.log, start.dynamics, start.steps,
                           skip)
    save_tensors(path, tensors, {"k": k})
    return path


def load_checkpoint(path: Path) -> TrainState:
    """A verified checkpoint as a TrainState (its state lacks parameters saved as frozen)."""
    t, _ = load_tensors(path)
    state, opt, dyn = unpack(t)
    return TrainState(state, opt, [int(s) for s in t["steps"].tolist()], log_rows(t), dyn)


def prune_resume_points(directory: Path, recent: int = 2) -> None:
    """Delete all but the `recent` newest resume points; requested checkpoints are never deleted."""
    resumes = [p for _, p in list_checkpoints(directory) if p.name.startswith("resume-")]
    for p in resumes[: max(len(resumes) - recent, 0)]:
        p.unlink(missing_ok=True)
        p.with_name(p.name + ".sha256").unlink(missing_ok=True)


# --------------------------------------------------------------------------- results
@dataclass
class StoredResult:
    """What a result folder holds: weights (frozen parameters absent), optimizer buffers, steps, loss log,
    diverged copies and training dynamics."""

    state: State
    opt_state: dict[str, torch.Tensor]
    steps: list[int]
    history: pd.DataFrame
    diverged: dict[int, int] = field(default_factory=dict)
    dynamics: dict[str, torch.Tensor] = field(default_factory=dict)


def write_result(directory: Path, res: TrainResult, spec_json: dict, identity: dict | None = None,
                 skip: set[str] = frozenset(), optimizer: bool = True, extra: dict | None = None) -> None:
    """Store a finished training result in `directory` (spec.json first, DONE.json last)."""
    d = Path(directory)
    write_json(d / "spec.json", spec_json)
    if identity is not None:
        write_json(d / "identity.json", identity)
    tensors = pack_tensors(res.state, res.opt_state if optimizer else None, res.history.to_dict("records"),
                           res.dynamics, skip=skip)
    save_tensors(d / RESULT, tensors, {"steps": res.steps, "diverged": res.diverged})
    write_history(d / "history.csv", res.history.assign(**(extra or {})))
    done = {"hash": d.name, "steps": res.steps, "machine": _machine.machine()}  # the machine that trained it
    _machine.note(done["machine"])
    if getattr(res, "dropout_masks", ""):  # which generator drew the dropout masks (runs stored since 2026-12)
        done["dropout_masks"] = res.dropout_masks
    write_json(d / DONE, done)


def is_done(directory: Path) -> bool:
    """True if the folder holds a complete result (not yet verified)."""
    return (Path(directory) / DONE).exists()


def read_result(directory: Path) -> StoredResult:
    """A verified result (CorruptFileError if its weights are damaged, StoreAccessError if unreadable)."""
    d = Path(directory)
    t, meta = load_tensors(d / RESULT)
    try:  # the machine that trained it ({} in runs stored before 2026-12-07): a record, never a reason to fail
        _machine.note(read_json(d / DONE).get("machine"))
    except (CorruptFileError, StoreAccessError, AttributeError):
        _machine.note({})
    state, opt, dyn = unpack(t)
    hist = read_history(d / "history.csv", t)
    steps = meta.get("steps")
    if steps is None:  # a spawn point stored before this layout: every copy ran to T
        steps = [int(meta["T"])] * next(iter(state.values())).shape[0]
    diverged = {int(c): int(s) for c, s in meta.get("diverged", {}).items()}
    return StoredResult(state, opt, list(steps), hist, diverged, dyn)
