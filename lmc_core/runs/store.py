"""Run store: trained copies cached on disk under a hash of their non-default config (layout.py names every
file). A corrupt or partial file is moved aside (numbered, never overwritten) and recomputed, never used; a
file that cannot be read (permissions) is an error naming it, never mistaken for corruption."""
from __future__ import annotations

import json
import os
import struct
import weakref
from dataclasses import dataclass, field, replace
from pathlib import Path

import pandas as pd
import torch

from ..config import ConfigError, RunSpec, check_int, config_hash, non_default, to_dict
from ..data.batches import Examples
from ..families import family_of, spec_from_dict
from ..train import TrainResult, TrainState, resolve_device
from ..train.memory import copies_at_once
from .checkpoints import train_once, train_resumable
from ..files import CorruptFileError, discard_result, quarantine, read_json, write_json
from .layout import (RESULT, StoreLayout, ckpt_dir, checkpoint_path, is_done, load_checkpoint, prune_resume_points,
                     read_history, read_result, write_result)
from .lock import run_lock

State = dict[str, torch.Tensor]


@dataclass(frozen=True)
class _Rebuild:
    """How a run of this store was trained in this process (RunStore.get's arguments): enough to train a damaged
    kept checkpoint again, bit for bit."""

    train_data: object
    device: object
    init_state: State | None
    monitor: dict | None
    dynamics: str | None


# ----------------------------------------------------------------------------- remembering without keeping alive
# RunStore remembers get()'s arguments of a run with kept checkpoints (to train a damaged one again in the same
# process) without holding them: every tensor through a weak reference, so that when the caller drops its data the
# store does too. The rules (_weak):
# - a tensor: a weak reference; a view (unfold, slice, ...) of another tensor made for the call: a weak reference
#   to the tensor it views plus its size, stride and offset (the view is made again from it);
# - dict, list, tuple (named tuples too) of at most _MAX_ITEMS items, and Examples: the same container made again
#   of their items' forms (dict keys held as they are: names);
# - small immutable values (None, bools, numbers, strings and bytes up to _SMALL_CHARS, devices, dtypes): as they
#   are;
# - any other object: a weak reference if it takes one; else (a large value that takes no weak reference, such as
#   a long string or a container of more than _MAX_ITEMS items) the run is not remembered at all.
# A remembered run whose data are gone (any weak reference dead) is as one never remembered: a damaged kept
# checkpoint is moved aside and the error says how to train it again.
_MAX_ITEMS = 1024
_SMALL_CHARS = 4096


class _NotWeak(Exception):
    """A value that can be neither held weakly nor cheaply (not remembered)."""


class _Gone(Exception):
    """A weakly held value that has been freed."""


def _weak(value, depth: int = 0):
    """A form of `value` that keeps no large object alive (rules above); _NotWeak if there is none."""
    if depth > 16:
        raise _NotWeak()
    if isinstance(value, torch.Tensor):
        base = value._base
        if base is not None and base.dtype == value.dtype and base.device == value.device:
            return ("view", weakref.ref(base), tuple(value.shape), value.stride(), value.storage_offset())
        return ("ref", weakref.ref(value))
    if value is None or isinstance(value, (bool, int, float, complex, torch.device, torch.dtype)):
        return ("value", value)
    if isinstance(value, (str, bytes)):
        if len(value) > _SMALL_CHARS:
            raise _NotWeak()
        return ("value", value)
    if type(value) in (dict, list, tuple) or (isinstance(value, tuple) and hasattr(type(value), "_make")):
        if len(value) > _MAX_ITEMS:
            raise _NotWeak()
        if isinstance(value, dict):
            return ("dict", [(_weak(k, depth + 1), _weak(v, depth + 1)) for k, v in value.items()])
        return ("seq", type(value), [_weak(v, depth + 1) for v in value])
    if isinstance(value, Examples):
        return ("examples", _weak(value.tensors, depth + 1))
    try:
        return ("ref", weakref.ref(value))
    except TypeError:
        raise _NotWeak() from None


def _strong(form):
    """The value a _weak form stands for; _Gone if anything it holds weakly has been freed."""
    kind = form[0]
    if kind == "value":
        return form[1]
    if kind in ("ref", "view"):
        obj = form[1]()
        if obj is None:
            raise _Gone()
        return obj if kind == "ref" else obj.as_strided(form[2], form[3], form[4])
    if kind == "dict":
        return {_strong(k): _strong(v) for k, v in form[1]}
    if kind == "seq":
        items = [_strong(v) for v in form[2]]
        return form[1]._make(items) if hasattr(form[1], "_make") else form[1](items)
    return Examples(**_strong(form[1]))  # "examples"


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
        for p in (self.root, *self.root.parents):  # the store, or the first of its parents that exists
            if p.exists():
                if not p.is_dir():
                    raise ConfigError(f"store_dir={str(root)!r}: {p} is a file, not a folder; choose a folder for "
                                      "the run store")
                break
        self.layout = StoreLayout(self.root)
        # config hash -> _weak form of a _Rebuild: how get() was asked to train a run with kept checkpoints
        self._rebuild: dict[str, tuple] = {}

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
        lock; a second process asking for the same run waits and then loads what the first stored. For a run with
        kept checkpoints the arguments are remembered, without keeping them alive (weak references, the rules
        above `_weak`), so that `checkpoint` can train a damaged one again while the caller still holds them.
        """
        spec.validate()
        d = self.path(spec)
        if train_data is not None and spec.train.checkpoints:
            self._remember(spec, _Rebuild(train_data, device, init_state, monitor, dynamics))

        def train() -> StoredRun:
            if train_data is None:
                raise ValueError(f"run {config_hash(spec)} is not in the store at {self.root} and no training "
                                 "data were given to train it")
            write_json(d / "spec.json", to_dict(spec))  # a run being trained says what it is
            write_json(d / "identity.json", non_default(spec))
            dev = resolve_device(device)
            at_once = copies_at_once(spec, dev, f"run {config_hash(spec)}")  # too big: ConfigError, before training
            packs = [list(range(a, min(a + at_once, spec.k))) for a in range(0, spec.k, at_once)]
            if len(packs) > 1:
                print(f"run {config_hash(spec)}: {spec.k} copies do not fit {dev.type} memory at once; training them "
                      f"in {len(packs)} packs of up to {at_once} (the same weights as all at once)", flush=True)
            res = merge_packs([train_resumable(pack_spec(spec, pk), train_data, dev,
                                               ckpt_dir(d) / (f"pack-{i}-{len(packs)}" if len(packs) > 1 else ""),
                                               progress, start=None if init_state is None else TrainState(
                                                   {n: t[pk] for n, t in init_state.items()}),
                                               monitor=monitor, dynamics=dynamics, stop_after=stop_after)
                               for i, pk in enumerate(packs)])
            if min(res.steps) < spec.train.steps:  # stopped early on request (tests): not complete
                return StoredRun(spec, res.state, res.opt_state, res.steps, res.history, d, True, res.diverged,
                                 res.dynamics)
            run = self.put(spec, res)
            for c in [ckpt_dir(d), *ckpt_dir(d).glob("pack-*")]:
                prune_resume_points(c, recent=0)  # requested checkpoints stay; resume points are done
            return run

        return train_once(d, lambda: self.load(spec), train)

    def _remember(self, spec: RunSpec, how: _Rebuild) -> None:
        """Remember how `spec` is trained, holding no data alive (the rules above _weak); forget it if that is
        not possible."""
        key = config_hash(spec)
        try:
            self._rebuild[key] = _weak(tuple(getattr(how, f) for f in _Rebuild.__dataclass_fields__))
        except _NotWeak:
            self._rebuild.pop(key, None)

    def _remembered(self, spec: RunSpec) -> _Rebuild | None:
        """How get() was asked to train `spec` in this process, if the data are still alive."""
        form = self._rebuild.get(config_hash(spec))
        if form is None:
            return None
        try:
            return _Rebuild(*_strong(form))
        except _Gone:
            del self._rebuild[config_hash(spec)]
            return None

    def put(self, spec: RunSpec, res: TrainResult, copies: list[int] | None = None) -> StoredRun:
        """Store a finished training result under `spec` (the copies `copies` of it, in order: a job of a packed
        ensemble); DONE.json is written last."""
        if copies is not None:
            res = select_copies(res, copies)
        d = self.path(spec)
        skip = family_of(spec.model).frozen_keys(spec.model) if not spec.init_from else set()
        write_result(d, res, to_dict(spec), non_default(spec), skip, spec.train.store_optimizer)
        state = res.state
        order = _stored_order(d / RESULT)
        if order is not None and set(order) == set(state):
            # nothing left out as frozen: a later load gives the file's order; so does a run trained now, so that
            # a retrained run (a damaged one) gives the same numbers as the loaded one down to summation order
            state = {n: state[n] for n in order}
        return StoredRun(spec, state, res.opt_state, res.steps, res.history, d, True, res.diverged, res.dynamics)

    def checkpoint(self, spec: RunSpec, step: int, train_data=None, device: str | torch.device | None = None,
                   progress: bool = False, *, init_state: State | None = None, monitor: dict | None = None,
                   dynamics: str | None = None) -> State:
        """The weights [K, ...] of a stored run's kept checkpoint at `step` (one of spec.train.checkpoints), frozen
        parameters rebuilt from the initialisation.

        A damaged or missing checkpoint is moved aside and trained again, bit for bit (every missing kept
        checkpoint at once, from the newest valid one before it that holds its optimizer state, else from the
        start), holding the run's lock: with the training data given here, or remembered from this store's
        `get` of the same spec in this process (with its device, init_state, monitor and dynamics; the arguments
        given here take precedence). The store remembers them without keeping them alive (weak references, see
        `_weak`): once the caller has dropped them they are forgotten. ConfigError (a ValueError) if `step` is
        not a kept checkpoint of spec; CorruptFileError (after moving the file aside, saying how to train it
        again) if it is damaged and no training data are known.
        """
        spec.validate()
        check_int("step", step, 0, spec.train.steps)
        if step not in spec.train.checkpoints:
            raise ConfigError(f"step={step!r} is not a kept checkpoint of run {config_hash(spec)}; its kept "
                             f"checkpoints (spec.train.checkpoints) are {list(spec.train.checkpoints)}")
        d = self.path(spec)
        path = checkpoint_path(ckpt_dir(d), step)
        try:
            ckpt = load_checkpoint(path)
        except CorruptFileError as e:
            known = self._remembered(spec)
            if train_data is None and known is None:
                quarantine(path)
                start = " (and init_state, the weights it started from)" if spec.init_from else ""
                raise CorruptFileError(f"{e}; moved aside. It is trained again when the run is asked for with its "
                                       f"training data{start}: RunStore.get(spec, train_data, ...) first, or "
                                       "RunStore.checkpoint(spec, step, train_data, ...). (A get() of this "
                                       "process remembers them only while the caller still holds them.)") from None
            print(f"run store: {e}; training the run's kept checkpoints again")
            ckpt = self._rebuild_checkpoints(spec, step, known, train_data, device, progress, init_state, monitor,
                                             dynamics)
        return family_of(spec.model).complete_state(spec.model, [s.init for s in spec.seeds], ckpt.state)

    def _rebuild_checkpoints(self, spec: RunSpec, step: int, known: _Rebuild | None, train_data, device, progress,
                             init_state, monitor, dynamics):
        """Train the run again up to its last damaged or missing kept checkpoint (holding the run's lock; damaged
        ones moved aside), writing only those; returns the checkpoint at `step`."""
        if known is not None:
            train_data = known.train_data if train_data is None else train_data
            device = known.device if device is None else device
            init_state = known.init_state if init_state is None else init_state
            monitor = known.monitor if monitor is None else monitor
            dynamics = known.dynamics if dynamics is None else dynamics
        d = ckpt_dir(self.path(spec))
        with run_lock(self.path(spec), what="run (its kept checkpoints)"):
            missing = []
            for s in sorted(set(spec.train.checkpoints)):
                p = checkpoint_path(d, s)
                try:
                    load_checkpoint(p)
                except CorruptFileError:
                    quarantine(p)
                    missing.append(s)
            if missing:
                redo = replace(spec, train=replace(spec.train, checkpoints=tuple(missing)))
                start = TrainState(init_state) if init_state is not None else None
                train_resumable(redo, train_data, "auto" if device is None else device, d, progress, start=start,
                                until=max(missing), resume_at_most=min(missing), monitor=monitor, dynamics=dynamics)
                prune_resume_points(d, recent=0)  # the resume points of this partial run
            return load_checkpoint(checkpoint_path(d, step))


def pack_spec(spec: RunSpec, copies: list[int]) -> RunSpec:
    """The run of copies `copies` of `spec` alone (a pack: copy k trains exactly as in the whole ensemble)."""
    if len(copies) == spec.k:
        return spec
    return replace(spec, seeds=tuple(spec.seeds[c] for c in copies),
                   per_copy=tuple(spec.per_copy[c] for c in copies) if spec.per_copy else spec.per_copy)


def merge_packs(results: list[TrainResult]) -> TrainResult:
    """The training results of consecutive packs of copies as one result (copies renumbered in order)."""
    if len(results) == 1:
        return results[0]
    offsets = [0]
    for r in results[:-1]:
        offsets.append(offsets[-1] + len(r.steps))
    hist = pd.concat([r.history.assign(copy=r.history["copy"] + o) for r, o in zip(results, offsets)],
                     ignore_index=True)
    dyn = dict(results[0].dynamics)
    if "dyn.prob" in dyn:
        dyn["dyn.prob"] = torch.cat([r.dynamics["dyn.prob"] for r in results], dim=1)
    return TrainResult(state={n: torch.cat([r.state[n] for r in results]) for n in results[0].state},
                       opt_state={n: torch.cat([r.opt_state[n] for r in results]) for n in results[0].opt_state},
                       steps=[s for r in results for s in r.steps], history=hist,
                       diverged={c + o: s for r, o in zip(results, offsets) for c, s in r.diverged.items()},
                       dynamics=dyn, dropout_masks=results[0].dropout_masks)


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


def _stored_order(path: Path) -> list[str] | None:
    """The weight names (without `model.`) of a stored result in the order loading it gives (the file's data
    order), read from the safetensors header alone; None if the header cannot be read."""
    try:
        with open(path, "rb") as f:
            (n,) = struct.unpack("<Q", f.read(8))
            header = json.loads(f.read(n))
    except (OSError, ValueError, struct.error):
        return None
    names = [k for k in header if k != "__metadata__"]
    names.sort(key=lambda k: header[k]["data_offsets"][0])
    prefixed = any(k.startswith("model.") for k in names)
    return [k[6:] for k in names if k.startswith("model.")] if prefixed else None


def history_of(run_dir: Path) -> pd.DataFrame:
    """The loss log of a stored result folder (history.csv, else the log stored with the weights)."""
    return read_result(run_dir).history


__all__ = ["RunStore", "StoredRun", "history_of", "read_history", "select_copies"]
