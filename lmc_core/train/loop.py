"""The training loop: K copies in lockstep, one update after another, with callbacks around the updates.

    result = train_copies(spec, train_data, "cpu")                         # from the family's initialisation
    result = train_copies(spec, data, start=TrainState(state, opt, steps))  # from a checkpoint or spawn point

Checkpoints and resuming are the run store's (`lmc_core.runs.checkpoints.train_resumable`, which
adds a Checkpointer and starts from the newest valid checkpoint); the loop itself knows no files.
"""
from __future__ import annotations

import math

import torch

from ..capped import LEDGER, Timer, cap_steps, training_flops
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
    Monitor, TensorBoard, StopAfter; runs.checkpoints.Checkpointer) run in their `order`. In a capped run
    (lmc_core.capped) at most the cap's updates are made, then the copies jump to the end (`capped_jump`).
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
    cap, before, timer = cap_steps(), t.steps.clone(), Timer()
    with timer:
        _updates(t, cbs, cap, log_every)
        if cap is not None and t.device.type == "cuda":
            torch.cuda.synchronize(t.device)  # the last update's kernels count too
    if cap is not None:
        capped_jump(t, cbs, before, timer.seconds)
    t.final_window = t.flush()
    for cb in cbs:
        cb.on_end(t)
    return t.result()


def _updates(t: Trainer, cbs: list[Callback], cap: int | None, log_every: int) -> None:
    """The updates (at most `cap` of them in a capped run), each followed by its flush and on_step calls."""
    made = 0
    while t.front() < t.end and not t.stop and (cap is None or made < cap):
        t.step()
        made += 1
        s = t.front()
        if len(t.pending) >= log_every or s >= t.end or any(cb.wants_flush(t, s) for cb in cbs):
            window = t.flush()
            for cb in cbs:
                cb.on_flush(t, window, s)
            if t.frozen.all():
                break
        for cb in cbs:
            cb.on_step(t, s)


def capped_jump(t: Trainer, cbs: list[Callback], before, seconds: float) -> None:
    """A capped run (lmc_core.capped) after its real updates: record them in the ledger, then move every live copy
    to the end of the run through each step a callback keeps (checkpoints, spawn steps: saved with the weights as
    they are), calling on_step there, and flush at the end (a monitor evaluates there)."""
    planned = int((t.end - before).clamp(min=0)[~t.frozen].sum())
    done = int((t.steps - before).clamp(min=0).sum())
    record_call(t, planned, done, seconds)
    window = t.flush()
    if window:
        for cb in cbs:
            cb.on_flush(t, window, t.front())
    if t.stop or t.front() >= t.end:
        return
    marks = sorted({s for cb in cbs for s in cb.kept_steps(t) if t.front() < s < t.end} | {t.end})
    for s in marks:
        t.steps = torch.where(~t.frozen & (t.steps < s), torch.full_like(t.steps, s), t.steps)
        for cb in cbs:
            cb.on_step(t, s)
    last = {r["copy"]: r for r in t.log if not r.get("diverged")}  # each copy's newest row: a monitor fills it
    for cb in cbs:
        cb.on_flush(t, list(last.values()), t.end)


def record_call(t: Trainer, planned: int, done: int, seconds: float) -> None:
    """One ledger entry (lmc_core.capped.LEDGER) for a capped training-loop call: the model, its size per copy,
    copies, copy-steps planned (the full run) and done, their seconds and the training FLOPs of one copy-step."""
    n = sum(p.numel() for p in t.model.parameters()) // t.k
    shape, ints = t.batch_shape or {}, t.batch_ints or set()  # token ids [K, B, T] count B*T; features [K, B, D] B
    tokens = [math.prod(s[1:]) for n, s in shape.items() if len(s) >= 3 and n in ints] or \
        [s[1] for s in shape.values() if len(s) >= 2]
    per_step = max(tokens) if tokens else t.tc.batch_size
    context = max((s[-1] for n, s in shape.items() if len(s) >= 3 and n in ints), default=0)
    cfg = t.cfg
    # a copy with a Fisher penalty adds a double backward (about two more backward passes) every fisher_every steps
    fisher = 1.0 + 2.0 * float((t.lam > 0).float().mean()) / t.tc.fisher_every
    LEDGER.append({"model": t.family.name, "params": int(n), "copies": t.k, "copy_steps": planned,
                   "copy_steps_done": done, "seconds": seconds, "tokens_per_copy_step": int(per_step),
                   "flops_per_copy_step": fisher * training_flops(n, per_step, getattr(cfg, "n_layers", 0), context,
                                                                  getattr(cfg, "d_model", 0))})
