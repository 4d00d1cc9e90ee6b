"""Training that survives being killed: checkpoints as a training callback, resuming from the newest valid
one, and the one "lock, check again, then train" door every stored result goes through."""
from __future__ import annotations

from pathlib import Path
from typing import Callable, TypeVar

from ..config import RunSpec
from ..train import Callback, Divergence, Monitor, StopAfter, TensorBoard, TrainResult, TrainState, train_copies
from ..train.optim import has_state
from ..train.trainer import Trainer
from ..files import CorruptFileError, quarantine
from .layout import checkpoint_path, list_checkpoints, load_checkpoint, prune_resume_points, save_checkpoint
from .lock import run_lock

T = TypeVar("T")


class Checkpointer(Callback):
    """Saves the full training state in `directory`: at every step of spec.train.checkpoints (kept; the
    starting step too when it is one of them) and every spec.train.save_every steps (rolling resume points, the
    two newest kept). Frozen parameters are left out (they are their initial values) unless the run starts
    from given weights (spec.init_from)."""

    order = 40

    def __init__(self, directory: str | Path):
        self.directory = Path(directory)

    def on_start(self, t: Trainer) -> None:
        tc = t.tc
        self.keep = set(tc.checkpoints)
        self.skip = t.family.frozen_keys(t.cfg) if not t.spec.init_from else set()
        s = t.front()
        if s in self.keep and not checkpoint_path(self.directory, s).exists():
            self.save(t, s, "step", tc.store_optimizer)

    def wants_flush(self, t: Trainer, step: int) -> bool:
        return step in self.keep or (t.tc.save_every > 0 and step % t.tc.save_every == 0)

    def kept_steps(self, t: Trainer) -> set[int]:
        return set(self.keep)

    def on_step(self, t: Trainer, step: int) -> None:
        if step in self.keep:
            self.save(t, step, "step", t.tc.store_optimizer)
        elif t.tc.save_every > 0 and step % t.tc.save_every == 0 and step < t.end:
            self.save(t, step, "resume", True)
            prune_resume_points(self.directory, recent=2)  # two resume points, in case one is corrupt

    def save(self, t: Trainer, step: int, kind: str, optimizer: bool) -> None:
        """Save the trainer's state after `step` updates of the front."""
        state = TrainState({n: p for n, p in t.model.state_dict().items()}, t.opt.state_dict(), t.steps.tolist(),
                           t.log, t.dynamics_tensors())
        save_checkpoint(checkpoint_path(self.directory, step, kind), state, t.k, self.skip, optimizer)


def latest_valid_checkpoint(directory: Path, at_most: int | None = None, needs_optimizer: bool = True
                            ) -> tuple[int, TrainState] | None:
    """The newest checkpoint (at or before step `at_most`) that verifies and can resume training exactly, as (step,
    TrainState); corrupt ones are moved aside (never used, never deleted). With `needs_optimizer` (an optimizer
    with buffers), a checkpoint saved without its optimizer state (store_optimizer=False, a grid job's slice) is
    no resume point after step 0: continuing from it would give other weights than the run it belongs to."""
    skipped = []
    for step, path in reversed(list_checkpoints(directory)):
        if at_most is not None and step > at_most:
            continue
        try:
            ckpt = load_checkpoint(path)
        except CorruptFileError as e:
            print(f"ignoring a corrupt checkpoint ({e})")
            quarantine(path)
            continue
        if needs_optimizer and not ckpt.opt_state and max(ckpt.steps) > 0:
            skipped.append(path.name)
            continue
        return step, ckpt
    if skipped:
        print(f"{directory}: {', '.join(skipped)} hold no optimizer state, so training resumes from an earlier point "
              "(or the start) to give the same weights bit for bit")
    return None


def train_resumable(spec: RunSpec, train_data, device="auto", ckpt_dir: str | Path | None = None, progress: bool = True,
                    *, start: TrainState | None = None, until: int | None = None, resume_at_most: int | None = None,
                    monitor: dict | None = None, dynamics: str | None = None, stop_after: int | None = None,
                    tensorboard_dir: str | Path | None = None, log_every: int = 10) -> TrainResult:
    """train_copies with checkpoints in `ckpt_dir`, resuming from its newest valid checkpoint (at or before
    `resume_at_most`) when it holds one, else from `start` (or the family's initialisation).

    monitor/dynamics: splits evaluated every spec.train.eval_every steps (train.callbacks.Monitor);
    stop_after: stop after that many updates in this call, as if killed (tests); tensorboard_dir: log
    each copy's loss and learning rate for TensorBoard.
    """
    callbacks: list[Callback] = [Divergence("" if ckpt_dir is None else str(ckpt_dir))]
    if ckpt_dir is not None:
        callbacks.append(Checkpointer(ckpt_dir))
        resumed = latest_valid_checkpoint(Path(ckpt_dir), resume_at_most, has_state(spec.train))
        if resumed is not None:
            ckpt = resumed[1]
            if len(ckpt.steps) != spec.k:
                raise CorruptFileError(f"{ckpt_dir}: checkpoint holds {len(ckpt.steps)} copies, the run has {spec.k}")
            if start is not None:  # parameters a checkpoint does not hold (frozen) come from the given start
                ckpt.state = {**{n: v for n, v in start.state.items() if n not in ckpt.state}, **ckpt.state}
            start = ckpt
    if monitor:
        callbacks.append(Monitor(monitor, dynamics))
    if stop_after is not None:
        callbacks.append(StopAfter(stop_after))
    if tensorboard_dir is not None:
        callbacks.append(TensorBoard(tensorboard_dir))
    return train_copies(spec, train_data, device, start, tuple(callbacks), until, progress, log_every)


def train_once(lock_dir: Path, load: Callable[[], T | None], train: Callable[[], T], what: str = "run") -> T:
    """The stored result if there is one; else, holding `lock_dir`'s lock, look again (another process may have
    finished it while we waited) and only then train. Every training door of the store goes through here."""
    found = load()
    if found is not None:
        return found
    with run_lock(lock_dir, what=what):
        found = load()
        if found is not None:
            return found
        return train()
