"""Train K copies in lockstep as one batched model; checkpoints, resume and divergence checks."""
from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import torch

from .config import RunSpec
from .data.loader import LMBatches
from .ensemble import State
from .io import CorruptFileError, load_tensors, quarantine, save_tensors
from .models import DropoutSource, TransformerLM
from .optim import StackedOptimizer, clip_per_copy, lr_at
from .progress import bar


class TrainingDiverged(RuntimeError):
    """A copy's loss became NaN or infinite; the message says what to change."""


@dataclass
class TrainResult:
    """Final weights (CPU, [K, ...]), optimizer buffers, per-copy step counts and the loss log."""

    state: State
    opt_state: dict[str, torch.Tensor]
    steps: list[int]
    history: pd.DataFrame = field(default_factory=pd.DataFrame)


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """'auto' -> cuda if available else cpu; otherwise checked."""
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={device!r} requested but no CUDA GPU is visible; use device='cpu' or 'auto'")
    return dev


# On CPU the logits are formed in pieces of at most this size (see TransformerLM.copy_losses).
LOGITS_BUDGET_MB = 16

_CKPT = re.compile(r"^step-(\d{7})\.safetensors$")


def checkpoint_path(ckpt_dir: Path, step: int) -> Path:
    """Where the full training state after `step` updates is kept."""
    return Path(ckpt_dir) / f"step-{step:07d}.safetensors"


def list_checkpoints(ckpt_dir: Path) -> list[int]:
    """Steps with a checkpoint file present (not yet verified)."""
    if not Path(ckpt_dir).is_dir():
        return []
    return sorted(int(m.group(1)) for p in Path(ckpt_dir).iterdir() if (m := _CKPT.match(p.name)))


def save_checkpoint(ckpt_dir: Path, model: TransformerLM, opt: StackedOptimizer, steps: torch.Tensor) -> Path:
    """Atomically save model, optimizer buffers and step counters."""
    tensors = {"model." + n: t for n, t in model.state_dict().items()}
    tensors.update({"opt." + n: t for n, t in opt.state_dict().items()})
    tensors["steps"] = steps.cpu()
    path = checkpoint_path(ckpt_dir, int(steps.min()))  # copies spawned later may be ahead
    save_tensors(path, tensors, {"k": model.k})
    return path


def prune_checkpoints(ckpt_dir: Path, keep: set[int], recent: int = 0) -> None:
    """Delete checkpoints whose step is not in `keep` and not among the `recent` newest."""
    steps = list_checkpoints(ckpt_dir)
    keep = keep | set(steps[len(steps) - recent :] if recent else ())
    for step in steps:
        if step not in keep:
            for p in (checkpoint_path(ckpt_dir, step),):
                p.unlink(missing_ok=True)
                p.with_name(p.name + ".sha256").unlink(missing_ok=True)


def load_checkpoint(path: Path) -> tuple[State, dict[str, torch.Tensor], list[int]]:
    """(model state, optimizer state, per-copy steps) from a verified checkpoint."""
    t, _ = load_tensors(path)
    model = {n[6:]: v for n, v in t.items() if n.startswith("model.")}
    opt = {n[4:]: v for n, v in t.items() if n.startswith("opt.")}
    return model, opt, [int(s) for s in t["steps"].tolist()]


def latest_valid_checkpoint(ckpt_dir: Path, at_most: int | None = None) -> tuple[int, tuple] | None:
    """The newest checkpoint (at or before step `at_most`) that verifies; corrupt ones are moved
    aside (never used)."""
    for step in reversed(list_checkpoints(ckpt_dir)):
        if at_most is not None and step > at_most:
            continue
        path = checkpoint_path(ckpt_dir, step)
        try:
            return step, load_checkpoint(path)
        except CorruptFileError as e:
            quarantine(path)
            print(f"ignoring corrupt checkpoint ({e}); moved aside")
    return None


def train_copies(
    spec: RunSpec,
    train_tokens: torch.Tensor,
    device: str | torch.device = "auto",
    ckpt_dir: Path | None = None,
    init_state: State | None = None,
    opt_state: dict[str, torch.Tensor] | None = None,
    start_steps: list[int] | None = None,
    log_every: int = 10,
    progress: bool = True,
    stop_after: int | None = None,
    tensorboard_dir: str | Path | None = None,
    until: int | None = None,
    resume_at_most: int | None = None,
) -> TrainResult:
    """Train the K copies of `spec` to spec.train.steps; resumes from ckpt_dir if it holds a checkpoint.

    Without init_state, copy k is initialised from seeds[k].init. stop_after (for tests) stops
    after that many updates in this call, as if the process had been killed. `until` stops
    when every copy has reached that step (a parent trained only up to its last spawn point;
    the schedule still follows spec.train.steps); `resume_at_most` resumes from the newest
    checkpoint at or before that step instead of the newest overall. With
    tensorboard_dir, each copy's training loss and learning rate are also logged for TensorBoard.
    """
    spec.validate()
    cfg, tc = spec.model, spec.train
    dev = resolve_device(device)
    if tc.precision == "bf16" and dev.type != "cuda":
        raise ValueError("precision='bf16' needs a CUDA device; use precision='fp32' on CPU")
    k = spec.k
    model = TransformerLM(cfg, k)
    steps = torch.as_tensor(start_steps if start_steps is not None else [0] * k, dtype=torch.int64)
    resumed = latest_valid_checkpoint(ckpt_dir, resume_at_most) if ckpt_dir is not None else None
    if resumed is not None:
        _, (init_state, opt_state, st) = resumed
        steps = torch.as_tensor(st, dtype=torch.int64)
    if init_state is not None:
        model.load_state_dict(init_state)
    else:
        model.init_weights([s.init for s in spec.seeds])
    model.to(dev).train()
    params = dict(model.named_parameters())
    opt = StackedOptimizer(tc, params)
    if opt_state:
        opt.load_state_dict(opt_state)
    batches = LMBatches(train_tokens, cfg.context, tc.batch_size, [s.data for s in spec.seeds])
    dropout_seeds = [s.dropout for s in spec.seeds]
    autocast = (torch.autocast("cuda", dtype=torch.bfloat16) if tc.precision == "bf16"
                else contextlib.nullcontext())
    keep = set(tc.checkpoints)
    end = tc.steps if until is None else min(until, tc.steps)
    if ckpt_dir is not None and int(steps.min()) in keep and not checkpoint_path(ckpt_dir, int(steps.min())).exists():
        save_checkpoint(ckpt_dir, model, opt, steps)
    log: list[dict] = []
    writer = None
    if tensorboard_dir is not None:
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(str(tensorboard_dir))
    pending: list[tuple[int, torch.Tensor, torch.Tensor]] = []
    micro = tc.batch_size // tc.accum
    budget = LOGITS_BUDGET_MB if dev.type == "cpu" else None
    done_here = 0
    pbar = bar(total=end, initial=int(steps.min()), disable=not progress, desc=f"train K={k}")
    while int(steps.min()) < end:
        active = steps < tc.steps  # copies already at the end (spawned later) stay put, lr 0
        lr = lr_at(tc, steps, batches.steps_per_epoch) * active
        tokens = batches.batch(steps.tolist()).to(dev)  # [K, B, T+1]
        for p in params.values():
            p.grad = None
        total = torch.zeros(k, device=dev)
        for m in range(tc.accum):
            chunk = tokens[:, m * micro : (m + 1) * micro]
            # masks depend on (dropout seed, copy's step, micro-batch index) only
            drop = (DropoutSource(dropout_seeds, (steps * tc.accum + m).tolist(), dev)
                    if cfg.dropout > 0 else None)
            with autocast:
                h = model.features(chunk[..., :-1], drop)  # [K, micro*T, d]
                losses = model.copy_losses(h, chunk[..., 1:].reshape(k, -1), budget)  # [K]
            (losses.sum() / tc.accum).backward()
            total += losses.detach() / tc.accum
        grads = [p.grad for p in params.values() if p.grad is not None]
        if tc.clip_norm is not None:
            clip_per_copy(grads, tc.clip_norm)
        opt.step(lr.to(dev), steps)
        steps = steps + active.long()
        done_here += 1
        s = int(steps.min())
        pending.append(([t if a else None for t, a in zip(steps.tolist(), active.tolist())], total, lr))
        if len(pending) >= log_every or s >= end or s in keep or _due(tc.save_every, s):
            _flush(pending, log, k, writer)
            last = log[-k:] if len(log) >= k else log
            bad = [r for r in last if not torch.isfinite(torch.tensor(r["loss"]))]
            if bad:
                r = bad[0]
                raise TrainingDiverged(
                    f"copy {r['copy']} diverged (loss {r['loss']}) by step {r['step']} at lr {r['lr']:.3g}; "
                    f"lower lr (now {tc.lr}) or set clip_norm (now {tc.clip_norm}). Checkpoints saved "
                    f"before this step are kept{'' if ckpt_dir is None else ' in ' + str(ckpt_dir)}.")
            pbar.set_postfix(loss=f"{sum(r['loss'] for r in last) / len(last):.3f}", lr=f"{last[0]['lr']:.3g}",
                             refresh=False)
        pbar.update(int(steps.min()) - pbar.n)
        if ckpt_dir is not None and (s in keep or _due(tc.save_every, s)):
            save_checkpoint(ckpt_dir, model, opt, steps)
            prune_checkpoints(ckpt_dir, keep, recent=2)  # two resume points, in case one is corrupt
        if stop_after is not None and done_here >= stop_after:
            break
    pbar.close()
    _flush(pending, log, k, writer)
    if writer is not None:
        writer.close()
    state = {n: t.detach().cpu().clone() for n, t in model.state_dict().items()}
    return TrainResult(state=state, opt_state={n: t.cpu() for n, t in opt.state_dict().items()},
                       steps=steps.tolist(), history=pd.DataFrame(log))


def _due(every: int, s: int) -> bool:
    return every > 0 and s % every == 0


def _flush(pending: list, log: list, k: int, writer=None) -> None:
    if not pending:
        return
    losses = torch.stack([p[1] for p in pending]).cpu().tolist()
    lrs = torch.stack([p[2] for p in pending]).cpu().tolist()
    for (st, _, _), row, lr in zip(pending, losses, lrs):
        for c in range(k):
            s = st[c]
            if s is None:  # an idle copy that had already finished
                continue
            log.append({"step": s, "copy": c, "loss": row[c], "lr": lr[c]})
            if writer is not None:
                writer.add_scalar(f"train_loss/copy{c}", row[c], s)
                writer.add_scalar(f"lr/copy{c}", lr[c], s)
    pending.clear()
