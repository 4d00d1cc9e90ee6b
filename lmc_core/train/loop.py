"""Train K copies in lockstep as one batched model; checkpoints, resume and divergence checks."""
from __future__ import annotations

import contextlib
import math
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import torch

from ..config import RunSpec
from ..data.batches import Batches
from ..ensemble import State
from ..runs.io import CorruptFileError, load_tensors, quarantine, save_tensors
from ..nn import DropoutSource
from .optim import StackedOptimizer, clip_per_copy, lr_at
from ..publish.progress import bar


class TrainingDiverged(RuntimeError):
    """A copy's loss became NaN or infinite; the message says what to change."""


@dataclass
class TrainResult:
    """Final weights (CPU, [K, ...]), optimizer buffers, per-copy step counts and the loss log."""

    state: State
    opt_state: dict[str, torch.Tensor]
    steps: list[int]
    history: pd.DataFrame = field(default_factory=pd.DataFrame)
    diverged: dict[int, int] = field(default_factory=dict)  # copy -> step at which it diverged (frozen)
    dynamics: dict[str, torch.Tensor] = field(default_factory=dict)  # dyn.steps [E], dyn.prob [E, K, N]


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

_CKPT = re.compile(r"^(step|resume)-(\d{7})\.safetensors$")


def checkpoint_path(ckpt_dir: Path, step: int, kind: str = "step") -> Path:
    """Where the full training state after `step` updates is kept.

    kind "step": a requested checkpoint (a spawn point, `TrainConfig.checkpoints`), never deleted;
    kind "resume": a rolling resume point (`save_every`), of which only the newest are kept.
    """
    return Path(ckpt_dir) / f"{kind}-{step:07d}.safetensors"


def list_checkpoints(ckpt_dir: Path) -> list[tuple[int, Path]]:
    """(step, path) of the checkpoint files present (not yet verified), oldest first; a requested
    checkpoint sorts after a resume point of the same step."""
    if not Path(ckpt_dir).is_dir():
        return []
    found = [(int(m.group(2)), m.group(1) == "step", p) for p in Path(ckpt_dir).iterdir()
             if (m := _CKPT.match(p.name))]
    return [(s, p) for s, _, p in sorted(found)]


def save_checkpoint(ckpt_dir: Path, model: torch.nn.Module, opt: StackedOptimizer, steps: torch.Tensor,
                    log: list[dict] | None = None, kind: str = "step", at: int | None = None,
                    skip: set[str] = frozenset(), optimizer: bool = True, extra: dict | None = None) -> Path:
    """Atomically save model (without the `skip` parameters), optimizer buffers (unless optimizer=False;
    a resume point always keeps them), step counters and the loss log so far, named after step `at`
    (default: the slowest copy's step; copies spawned later may be ahead, frozen ones behind)."""
    tensors = {"model." + n: t for n, t in model.state_dict().items() if n not in skip}
    if optimizer or kind == "resume":
        tensors.update({"opt." + n: t for n, t in opt.state_dict().items()})
    tensors.update(extra or {})
    tensors["steps"] = steps.cpu()
    tensors.update(log_tensors(log or []))
    path = checkpoint_path(ckpt_dir, int(steps.min()) if at is None else at, kind)
    save_tensors(path, tensors, {"k": model.k})
    return path


def prune_resume_points(ckpt_dir: Path, recent: int = 2) -> None:
    """Delete all but the `recent` newest resume points; requested checkpoints are never deleted."""
    resumes = [p for _, p in list_checkpoints(ckpt_dir) if p.name.startswith("resume-")]
    for p in resumes[: max(len(resumes) - recent, 0)]:
        p.unlink(missing_ok=True)
        p.with_name(p.name + ".sha256").unlink(missing_ok=True)


LOG_FIELDS = ("step", "copy", "loss", "lr", "penalty", "diverged")


def log_tensors(log: list[dict]) -> dict[str, torch.Tensor]:
    """The loss log as tensors (stored inside checkpoints and final weights); fields beyond LOG_FIELDS
    (monitored metrics) are NaN in the rows that lack them."""
    extra = sorted({f for r in log for f in r} - set(LOG_FIELDS))
    out = {f"log.{f}": torch.tensor([r.get(f, 0) for r in log], dtype=torch.int64 if f in ("step", "copy", "diverged")
                                    else torch.float64) for f in LOG_FIELDS}
    out.update({f"log.{f}": torch.tensor([r.get(f, float("nan")) for r in log], dtype=torch.float64) for f in extra})
    return out


def history_frame(log: list[dict]) -> pd.DataFrame:
    """The log as a DataFrame: LOG_FIELDS first, then monitored metrics."""
    extra = sorted({f for r in log for f in r} - set(LOG_FIELDS))
    return pd.DataFrame(log, columns=list(LOG_FIELDS) + extra)


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


def load_checkpoint(path: Path) -> tuple[State, dict[str, torch.Tensor], list[int]]:
    """(model state, optimizer state, per-copy steps) from a verified checkpoint."""
    state, opt, steps, *_ = load_checkpoint_full(path)
    return state, opt, steps


def load_checkpoint_full(path: Path) -> tuple[State, dict[str, torch.Tensor], list[int], list[dict], dict]:
    """(model state, optimizer state, per-copy steps, loss log, training dynamics) from a verified checkpoint
    (the model state lacks parameters saved as frozen; train_copies rebuilds them)."""
    t, _ = load_tensors(path)
    model = {n[6:]: v for n, v in t.items() if n.startswith("model.")}
    opt = {n[4:]: v for n, v in t.items() if n.startswith("opt.")}
    dyn = {n: v for n, v in t.items() if n.startswith("dyn.")}
    return model, opt, [int(s) for s in t["steps"].tolist()], log_rows(t), dyn


def latest_valid_checkpoint(ckpt_dir: Path, at_most: int | None = None) -> tuple[int, tuple] | None:
    """The newest checkpoint (at or before step `at_most`) that verifies, as (step, (state, opt, steps,
    log)); corrupt ones are moved aside (never used, never deleted)."""
    for step, path in reversed(list_checkpoints(ckpt_dir)):
        if at_most is not None and step > at_most:
            continue
        try:
            return step, load_checkpoint_full(path)
        except CorruptFileError as e:
            print(f"ignoring a corrupt checkpoint ({e})")
            quarantine(path)
    return None


def chance_loss(spec: RunSpec) -> float:
    """Cross-entropy of a uniform guess over the outputs, ln C (ln V for a language model)."""
    from ..families import family_of

    return family_of(spec.model).chance_loss(spec.model)


def train_copies(
    spec: RunSpec,
    train_data,
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
    monitor: dict | None = None,
    dynamics: str | None = None,
) -> TrainResult:
    """Train the K copies of `spec` (any model family) to spec.train.steps; resumes from ckpt_dir if it
    holds a checkpoint.

    train_data: the family's training data (a token stream for the LM, `Examples` otherwise).
    Without init_state, copy k is initialised from seeds[k].init. stop_after (for tests) stops
    after that many updates in this call, as if the process had been killed. `until` stops
    when every copy has reached that step (a parent trained only up to its last spawn point;
    the schedule still follows spec.train.steps); `resume_at_most` resumes from the newest
    checkpoint at or before that step instead of the newest overall. With
    tensorboard_dir, each copy's training loss and learning rate are also logged for TensorBoard.

    monitor: {split name: the family's evaluation data}; with spec.train.eval_every = n, every n steps
    (and at the end) each copy's loss and accuracy on every split are added to the log as
    `<split>_loss` and `<split>_acc` (training curves with test accuracy, e.g. for grokking).
    dynamics: a monitored split whose per-example probabilities of the true label are also kept at
    every monitor point (TrainResult.dynamics: steps [E], prob [E, K, N]; dataset cartography).

    Per-copy learning rates, weight decays and Fisher weights come from spec.per_copy. Checkpoints
    hold the loss log so far, so a resumed run's history is complete. A copy whose loss turns NaN,
    or whose mean loss over a logging window exceeds diverge_factor x ln C after warm-up, has
    diverged: with on_divergence="stop" training stops with TrainingDiverged (checkpoints written
    before are kept); with "freeze" that copy stops changing and is reported in TrainResult.diverged
    while the others finish.
    """
    from ..families import family_of
    from .fisher import fisher_penalty

    spec.validate()
    family = family_of(spec.model)
    cfg, tc = spec.model, spec.train
    dev = resolve_device(device)
    if tc.precision == "bf16" and dev.type != "cuda":
        raise ValueError("precision='bf16' needs a CUDA device; use precision='fp32' on CPU")
    examples = family.train_examples(spec, train_data)
    k = spec.k
    model = family.build(cfg, k)
    steps = torch.as_tensor(start_steps if start_steps is not None else [0] * k, dtype=torch.int64)
    log: list[dict] = []
    diverged: dict[int, int] = {}
    given = init_state
    dyn_steps: list[int] = []
    dyn_prob: list[torch.Tensor] = []  # per monitor point: gold-label probabilities [K, N] of the `dynamics` split
    skip = family.frozen_keys(cfg) if not spec.init_from else set()  # rebuilt from the initialisation
    resumed = latest_valid_checkpoint(ckpt_dir, resume_at_most) if ckpt_dir is not None else None
    if resumed is not None:
        _, (init_state, opt_state, st, log, dyn) = resumed
        dyn_steps = dyn.get("dyn.steps", torch.zeros(0, dtype=torch.int64)).tolist()
        dyn_prob = list(dyn.get("dyn.prob", torch.zeros(0)).unbind(0)) if "dyn.prob" in dyn else []
        steps = torch.as_tensor(st, dtype=torch.int64)
        if len(st) != k:
            raise CorruptFileError(f"{ckpt_dir}: checkpoint holds {len(st)} copies, the run has {k}")
        diverged = {int(r["copy"]): int(r["step"]) for r in log if r.get("diverged")}
    if init_state is not None:
        missing = set(model.state_dict()) - set(init_state)
        if missing:  # frozen parameters a checkpoint does not hold: their initial values
            base = given if given is not None else family.init(cfg, [s.init for s in spec.seeds])
            init_state = {**{n: base[n] for n in missing}, **init_state}
        model.load_state_dict(init_state)
    else:
        model.load_state_dict(family.init(cfg, [s.init for s in spec.seeds]))
    model.to(dev).train()
    params = {n: p for n, p in model.named_parameters() if p.requires_grad}
    opt = StackedOptimizer(tc, params)
    if opt_state:
        opt.load_state_dict(opt_state)
    batches = Batches(len(examples), tc.batch_size, [s.data for s in spec.seeds])
    dropout_seeds = [s.dropout for s in spec.seeds]
    p_drop = family.dropout(cfg)
    lr_scale = torch.tensor([v / tc.lr for v in spec.copy_values("lr")], dtype=torch.float32)
    per_copy_wd = spec.per_copy and len(set(spec.copy_values("weight_decay"))) > 1
    wd = torch.tensor(spec.copy_values("weight_decay"), dtype=torch.float32) if per_copy_wd else None
    lam = torch.tensor(spec.copy_values("fisher"), dtype=torch.float32, device=dev)
    use_fisher = bool((lam > 0).any())
    autocast = (torch.autocast("cuda", dtype=torch.bfloat16) if tc.precision == "bf16"
                else contextlib.nullcontext())
    keep = set(tc.checkpoints)
    end = tc.steps if until is None else min(until, tc.steps)
    watch = ({name: family.eval_examples(cfg, d) for name, d in monitor.items()}
             if monitor and tc.eval_every else {})
    frozen = torch.zeros(k, dtype=torch.bool)
    for c in diverged:
        frozen[c] = True

    def front() -> int:  # the training front: the slowest copy that still trains (frozen ones stay behind)
        live = steps[~frozen]
        return int(live.min()) if live.numel() else end

    def dyn_tensors() -> dict:
        return ({"dyn.steps": torch.tensor(dyn_steps, dtype=torch.int64), "dyn.prob": torch.stack(dyn_prob)}
                if dyn_prob else {})

    if ckpt_dir is not None and front() in keep and not checkpoint_path(ckpt_dir, front()).exists():
        save_checkpoint(ckpt_dir, model, opt, steps, log, at=front(), skip=skip, optimizer=tc.store_optimizer,
                        extra=dyn_tensors())
    limit = tc.diverge_factor * family.chance_loss(cfg)
    writer = None
    if tensorboard_dir is not None:
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(str(tensorboard_dir))
    pending: list[tuple] = []
    micro = tc.batch_size // tc.accum
    budget = LOGITS_BUDGET_MB if dev.type == "cpu" else None
    done_here = 0
    pbar = bar(total=end, initial=front(), disable=not progress, desc=f"train K={k}")
    while front() < end:
        running = (steps < tc.steps) & ~frozen  # copies at the end (spawned later) or frozen stay put
        lr = lr_at(tc, steps, batches.steps_per_epoch) * lr_scale * running
        batch = {n: t.to(dev) for n, t in examples.take(batches.indices(steps.tolist())).items()}  # [K, B, ...]
        for p in params.values():
            p.grad = None
        total = torch.zeros(k, device=dev)
        penalty = torch.zeros(k, device=dev)
        fisher_now = use_fisher and front() % tc.fisher_every == 0
        for m in range(tc.accum):
            chunk = {n: t[:, m * micro : (m + 1) * micro] for n, t in batch.items()}
            sub_steps = (steps * tc.accum + m).tolist()
            # masks depend on (dropout seed, copy's step, micro-batch index) only
            drop = DropoutSource(dropout_seeds, sub_steps, dev) if p_drop > 0 else None
            with autocast:
                losses = family.loss(model, chunk, drop, budget)  # [K]
                objective = losses.sum() / tc.accum
                if fisher_now:
                    pen = fisher_penalty(family, model, chunk, drop, tc.fisher_mode, dropout_seeds, sub_steps,
                                         tc.fisher_batch)
                    objective = objective + (lam * pen).sum() / tc.accum
                    penalty += pen.detach() / tc.accum
            objective.backward()
            total += losses.detach() / tc.accum
        grads = [p.grad for p in params.values() if p.grad is not None]
        if frozen.any():
            for g in grads:
                g[frozen.to(g.device)] = 0
        if tc.clip_norm is not None:
            clip_per_copy(grads, tc.clip_norm)
        opt.step(lr.to(dev), steps, wd, mask=running if frozen.any() else None)
        steps = steps + running.long()
        done_here += 1
        s = front()
        pending.append(([t if a else None for t, a in zip(steps.tolist(), running.tolist())], total, lr, penalty))
        if len(pending) >= log_every or s >= end or s in keep or _due(tc.save_every, s) or (
                watch and _due(tc.eval_every, s)):
            window = _flush(pending, log, k, writer)
            if watch and (_due(tc.eval_every, s) or s >= end) and s not in dyn_steps:
                probs = _monitor(family, cfg, model, watch, window, dev, dynamics)
                if probs is not None:
                    dyn_steps.append(s)
                    dyn_prob.append(probs)
            for c, step in _divergence(window, limit, tc, ckpt_dir).items():
                diverged[c] = step
                frozen[c] = True
                log.append({"step": step, "copy": c, "loss": float("nan"), "lr": 0.0, "penalty": 0.0, "diverged": 1})
                print(f"copy {c} diverged at step {step}: frozen, the other copies go on", file=sys.stderr)
            last = [r for r in log[-2 * k:] if not r.get("diverged")][-k:] or log[-1:]
            pbar.set_postfix(loss=f"{sum(r['loss'] for r in last) / max(len(last), 1):.3f}",
                             lr=f"{last[0]['lr']:.3g}", refresh=False)
            if frozen.all():
                break
        pbar.update(min(front(), end) - pbar.n)
        if ckpt_dir is not None and s in keep:
            save_checkpoint(ckpt_dir, model, opt, steps, log, at=s, skip=skip, optimizer=tc.store_optimizer,
                            extra=dyn_tensors())
        elif ckpt_dir is not None and _due(tc.save_every, s) and s < end:
            save_checkpoint(ckpt_dir, model, opt, steps, log, kind="resume", at=s, skip=skip, extra=dyn_tensors())
            prune_resume_points(ckpt_dir, recent=2)  # two resume points, in case one is corrupt
        if stop_after is not None and done_here >= stop_after:
            break
    pbar.close()
    for c, step in _divergence(_flush(pending, log, k, writer), limit, tc, ckpt_dir).items():
        diverged[c] = step
        log.append({"step": step, "copy": c, "loss": float("nan"), "lr": 0.0, "penalty": 0.0, "diverged": 1})
    if frozen.any() and front() >= end:  # frozen copies count as finished (their divergence is recorded)
        steps = torch.where(frozen, torch.full_like(steps, max(end, int(steps.max()))), steps)
    if writer is not None:
        writer.close()
    state = {n: t.detach().cpu().clone() for n, t in model.state_dict().items()}
    return TrainResult(state=state, opt_state={n: t.cpu() for n, t in opt.state_dict().items()},
                       steps=steps.tolist(), history=history_frame(log), diverged=diverged, dynamics=dyn_tensors())


def _monitor(family, cfg, model, watch: dict, window: list[dict], dev, dynamics: str | None = None):
    """Evaluate the live copies on the monitored splits and add the results to their log rows of this step;
    returns the gold-label probabilities [K, N] of the `dynamics` split (or None)."""
    last = {}
    for r in window:
        last[r["copy"]] = r  # each copy's newest row (copies that did not move have none)
    state = {n: t.detach() for n, t in model.state_dict().items()}
    model.eval()
    gold = None
    try:
        for name, ex in watch.items():
            keep = ("examples", "probs") if name == dynamics else ()
            res = family.evaluate(cfg, state, ex, batch_size=256, device=dev, keep=keep)
            for c, r in last.items():
                r[f"{name}_loss"] = float(res.loss[c])
                r[f"{name}_acc"] = float(res.accuracy[c])
        wnorm = torch.sqrt(sum((t.detach().reshape(t.shape[0], -1).double() ** 2).sum(1)
                               for n, t in model.named_parameters()))  # [K], for weight-norm curves
        for c, r in last.items():
            r["weight_norm"] = float(wnorm[c])
            if name == dynamics:
                p = torch.from_numpy(res.probs)  # [K, N, C]
                gold = p.gather(2, torch.from_numpy(res.labels).long().view(1, -1, 1).expand(p.shape[0], -1, 1))[..., 0]
    finally:
        model.train()
    return gold


def _divergence(window: list[dict], limit: float, tc, ckpt_dir) -> dict[int, int]:
    """Copies that diverged in this logging window: a loss that is not finite, or a mean loss (after
    warm-up) above `limit`. Raises TrainingDiverged with on_divergence="stop"; returns {copy: step}."""
    out: dict[int, int] = {}
    if not window:
        return out
    by_copy: dict[int, list[dict]] = {}
    for r in window:
        by_copy.setdefault(r["copy"], []).append(r)
    for c, rows in sorted(by_copy.items()):
        losses = [r["loss"] for r in rows]
        bad = next((r for r in rows if not math.isfinite(r["loss"])), None)
        late = [r["loss"] for r in rows if r["step"] > tc.warmup_steps]
        if bad is None and late and sum(late) / len(late) > limit:
            bad = rows[-1]
        if bad is None:
            continue
        if tc.on_divergence == "freeze":
            out[c] = int(bad["step"])
            continue
        kept = "" if ckpt_dir is None else f" in {ckpt_dir}"
        clip = "set clip_norm (now None)" if tc.clip_norm is None else f"lower clip_norm (now {tc.clip_norm})"
        raise TrainingDiverged(
            f"copy {c} diverged by step {bad['step']}: loss {bad['loss']:.4g} nats/token (mean "
            f"{sum(losses) / len(losses):.4g} over the last {len(losses)} steps; the limit is "
            f"{tc.diverge_factor:g} x ln V = {limit:.3g}) at lr {bad['lr']:.3g}. Lower lr (now {tc.lr}) or {clip}; "
            f"nothing was stored as a result, and checkpoints saved before this step are kept{kept}.")
    return out


def _due(every: int, s: int) -> bool:
    return every > 0 and s % every == 0


def _flush(pending: list, log: list, k: int, writer=None) -> list[dict]:
    """Move the pending per-step losses into `log`; returns the rows added."""
    if not pending:
        return []
    n0 = len(log)
    losses = torch.stack([p[1] for p in pending]).cpu().tolist()
    lrs = torch.stack([p[2] for p in pending]).cpu().tolist()
    pens = torch.stack([p[3] for p in pending]).cpu().tolist()
    for (st, *_), row, lr, pen in zip(pending, losses, lrs, pens):
        for c in range(k):
            s = st[c]
            if s is None:  # an idle copy that had already finished, or a frozen one
                continue
            log.append({"step": s, "copy": c, "loss": row[c], "lr": lr[c], "penalty": pen[c], "diverged": 0})
            if writer is not None:
                writer.add_scalar(f"train_loss/copy{c}", row[c], s)
                writer.add_scalar(f"lr/copy{c}", lr[c], s)
    pending.clear()
    return log[n0:]
