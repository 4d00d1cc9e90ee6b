"""The training loop: K copies in lockstep, one update after another, with callbacks around the updates.

    result = train_copies(spec, train_data, "cpu")                         # from the family's initialisation
    result = train_copies(spec, data, start=TrainState(state, opt, steps))  # from a checkpoint or spawn point

Checkpoints and resuming are the run store's (`lmc_core.runs.checkpoints.train_resumable`, which
adds a Checkpointer and starts from the newest valid checkpoint); the loop itself knows no files.
"""
from __future__ import annotations

from .callbacks import Callback, Divergence, ProgressBar
from .trainer import Trainer, TrainResult, TrainState


def train_copies(spec, train_data, device="auto", start: TrainState | None = None, callbacks: tuple[Callback, ...] = (),
                 until: int | None = None, progress: bool = True, log_every: int = 10) -> TrainResult:
    """Train the K copies of `spec` (any model family) to spec.train.steps, or until every copy reached `until`
    (a parent trained up to its last spawn point; the schedule still follows spec.train.steps).

    train_data: the family's training data (a token stream for the LM, `Examples` otherwise). Without
    `start`, copy k is initialised from seeds[k].init; with it, training continues from its weights, optimizer
    buffers, per-copy steps, loss log and dynamics. Per-copy learning rates, weight decays and Fisher weights
    come from spec.per_copy. The losses are logged every `log_every` steps (and whenever a callback needs the
    log complete); a Divergence check and a progress bar are added unless given. Callbacks (train.callbacks:
    Monitor, TensorBoard, StopAfter; runs.checkpoints.Checkpointer) run in their `order`.
    """
    t = Trainer(spec, train_data, device, start)
    t.end = spec.train.steps if until is None else min(until, spec.train.steps)
    cbs = list(callbacks)
    if not any(isinstance(c, Divergence) for c in cbs):
        cbs.append(Divergence())
    if not any(isinstance(c, ProgressBar) for c in cbs):
        cbs.append(ProgressBar(progress))
    cbs.sort(key=lambda c: c.order)
    for cb in cbs:
        cb.on_start(t)
    while t.front() < t.end and not t.stop:
        t.step()
        s = t.front()
        if len(t.pending) >= log_every or s >= t.end or any(cb.wants_flush(t, s) for cb in cbs):
            window = t.flush()
            for cb in cbs:
                cb.on_flush(t, window, s)
            if t.frozen.all():
                break
        for cb in cbs:
            cb.on_step(t, s)
    t.final_window = t.flush()
    for cb in cbs:
        cb.on_end(t)
    return t.result()
