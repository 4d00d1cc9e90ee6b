"""One optimizer step of K copies in lockstep, and the state the training loop and its callbacks share.

`Trainer` builds the stacked model and optimizer of a run (from the family's initialisation or a
given start: a checkpoint, a spawn point), draws each copy's batch at its own step, and `step()`
does one update of every copy that still trains: gradient accumulation over distinct micro-batches,
the Fisher penalty, per-copy clipping, per-copy learning rates and weight decays. Copies that have
diverged are frozen (their gradients are zeroed and the optimizer skips them). The per-step losses
wait in `pending` until the loop flushes them into the loss log (`log`).
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

import pandas as pd
import torch

from ..config import RunSpec, one_backward_only
from ..data.batches import Batches
from ..nn import DropoutSource
from ..nn.dropout import default_masks
from .fisher import fisher_penalty
from .optim import StackedOptimizer, clip_per_copy, lr_at

State = dict[str, torch.Tensor]
LOG_FIELDS = ("step", "copy", "loss", "lr", "penalty", "diverged")
# On CPU the logits are formed in pieces of at most this size (see TransformerLM.copy_losses).
LOGITS_BUDGET_MB = 16


class TrainingDiverged(RuntimeError):
    """A copy's loss became NaN or infinite; the message says what to change."""


@dataclass
class TrainState:
    """Where training starts: weights [K, ...] (frozen parameters may be absent: they are their initial values),
    optimizer buffers, each copy's step count, the loss log so far and training dynamics (a checkpoint's content)."""

    state: State
    opt_state: dict[str, torch.Tensor] = field(default_factory=dict)
    steps: list[int] | None = None
    log: list[dict] = field(default_factory=list)
    dynamics: dict[str, torch.Tensor] = field(default_factory=dict)


@dataclass
class TrainResult:
    """Final weights (CPU, [K, ...]), optimizer buffers, per-copy step counts and the loss log."""

    state: State
    opt_state: dict[str, torch.Tensor]
    steps: list[int]
    history: pd.DataFrame = field(default_factory=pd.DataFrame)
    diverged: dict[int, int] = field(default_factory=dict)  # copy -> step at which it diverged (frozen)
    dynamics: dict[str, torch.Tensor] = field(default_factory=dict)  # dyn.steps [E], dyn.prob [E, K, N]
    dropout_masks: str = ""  # the mask generator the run drew from: "generator", "hash" or "none" (no dropout)


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """'auto' -> cuda if available else cpu; otherwise checked."""
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={device!r} requested but no CUDA GPU is visible; use device='cpu' or 'auto'")
    return dev


def cpu_has_bf16() -> bool:
    """True if this CPU has native bf16 instructions (AVX512-BF16; AMX-BF16 CPUs have them too)."""
    try:
        return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    except AttributeError:  # a torch without these probes: assume not
        return False


def check_bf16(device: torch.device) -> None:
    """Raise ValueError unless bf16 autocast pays on `device`: any CUDA GPU, or a CPU with bf16 instructions."""
    if device.type == "cuda" or (device.type == "cpu" and cpu_has_bf16()):
        return
    raise ValueError(f"precision='bf16' on {device}: this CPU has no bf16 instructions (AVX512-BF16 or AMX), so bf16 "
                     "would be emulated and slower than fp32; use precision='fp32'")


def resolve_precision(choice: str, device: str | torch.device | None = "auto") -> str:
    """A study's precision setting as a TrainConfig.precision: 'auto' is 'bf16' where it runs natively (a GPU, or a
    CPU with bf16 instructions) and 'fp32' elsewhere; 'fp32' and 'bf16' pass through. The result enters the run's
    hash, so a bf16 run and an fp32 run of the same setting are different runs."""
    if choice != "auto":
        return choice
    dev = resolve_device(device)
    return "bf16" if dev.type == "cuda" or (dev.type == "cpu" and cpu_has_bf16()) else "fp32"


def history_frame(log: list[dict]) -> pd.DataFrame:
    """The loss log as a DataFrame: LOG_FIELDS first, then monitored metrics."""
    extra = sorted({f for r in log for f in r} - set(LOG_FIELDS))
    return pd.DataFrame(log, columns=list(LOG_FIELDS) + extra)


def compile_loss(fn):
    """`fn` (a loss over stacked copies, dropout masks from a hash-mode DropoutSource) through torch.compile, static
    shapes, compiled on first use; its backward recomputes the dropout masks from the copies' keys (a fused chain of
    integer ops) rather than storing them as bool tensors, whose stores inductor's CPU code does not vectorise: 1.6x
    the steps/s of the default on the char model."""
    compiled = torch.compile(fn, dynamic=False)

    def loss_of(*args, **kwargs):
        with torch._functorch.config.patch(ban_recompute_long_fusible_chains=False,
                                           ban_recompute_used_far_apart=False):
            return compiled(*args, **kwargs)
    return loss_of


class Trainer:
    """The model, optimizer, data order and per-copy settings of one run, and one update of all copies."""

    def __init__(self, spec: RunSpec, train_data, device="auto", start: TrainState | None = None):
        from ..families import family_of

        spec.validate()
        self.spec, self.family, self.cfg, self.tc = spec, family_of(spec.model), spec.model, spec.train
        self.device = dev = resolve_device(device)
        if self.tc.precision == "bf16":
            check_bf16(dev)
        self.examples = self.family.train_examples(spec, train_data)
        self.k = k = spec.k
        self.model = self.family.build(self.cfg, k)
        start = start or TrainState(state={})
        steps = start.steps if start.steps is not None else [0] * k
        if len(steps) != k:
            raise ValueError(f"the start state holds {len(steps)} copies, the run has {k}")
        self.steps = torch.as_tensor(steps, dtype=torch.int64)
        self.log: list[dict] = list(start.log)
        self.diverged = {int(r["copy"]): int(r["step"]) for r in self.log if r.get("diverged")}
        self.frozen = torch.zeros(k, dtype=torch.bool)
        for c in self.diverged:
            self.frozen[c] = True
        self.dynamics = {"steps": start.dynamics.get("dyn.steps", torch.zeros(0, dtype=torch.int64)).tolist(),
                         "prob": list(start.dynamics["dyn.prob"].unbind(0)) if "dyn.prob" in start.dynamics else []}
        self.model.load_state_dict(self.family.complete_state(self.cfg, [s.init for s in spec.seeds], start.state,
                                                              set(self.model.state_dict())))
        self.model.to(dev).train()
        self.params = {n: p for n, p in self.model.named_parameters() if p.requires_grad}
        self.opt = StackedOptimizer(self.tc, self.params)
        if start.opt_state:
            self.opt.load_state_dict(start.opt_state)
        self.batches = Batches(len(self.examples), self.tc.batch_size, [s.data for s in spec.seeds])
        self.dropout_seeds = [s.dropout for s in spec.seeds]
        self.lr_scale = torch.tensor([v / self.tc.lr for v in spec.copy_values("lr")], dtype=torch.float32)
        per_copy_wd = spec.per_copy and len(set(spec.copy_values("weight_decay"))) > 1
        self.wd = torch.tensor(spec.copy_values("weight_decay"), dtype=torch.float32) if per_copy_wd else None
        self.lam = torch.tensor(spec.copy_values("fisher"), dtype=torch.float32, device=dev)
        self.family.check_fused(self.tc.fused_cross_entropy)
        if bool((self.lam > 0).any()) and (why := one_backward_only(self.tc)):
            raise ValueError(f"{why} (a copy has a per-copy fisher > 0)")
        self.masks = "hash" if self.tc.dropout_masks == "hash" else None  # None: the device's default
        self.loss_of = self._compiled_loss() if self.tc.compile else self._loss
        self.pending: list[tuple] = []  # per step: (steps or None per copy, loss [K], lr [K], penalty [K])
        self.end = self.tc.steps  # the loop may stop earlier (`until`); the schedule still follows tc.steps
        self.stop = False  # a callback sets it to end training after this step
        self.batch_shape: dict[str, tuple] | None = None  # the last batch's shapes [K, B, ...]
        self.batch_ints: set[str] | None = None  # its integer (token id, label) tensors
        self.final_window: list[dict] = []  # the rows flushed after the loop (a run stopped early)

    def _loss(self, chunk: dict[str, torch.Tensor], drop: DropoutSource | None) -> torch.Tensor:
        """Each copy's mean loss [K] on its (micro-)batch `chunk`, with dropout masks from `drop`."""
        return self.family.loss(self.model, chunk, drop, LOGITS_BUDGET_MB if self.device.type == "cpu" else None,
                                self.tc.fused_cross_entropy)

    def _compiled_loss(self):
        """`_loss` through torch.compile (TrainConfig.compile): checked before any work, compiled on first use."""
        if self.family.dropout(self.cfg) > 0 and (self.masks or default_masks(self.device)) != "hash":
            raise ValueError("compile=True with dropout needs dropout_masks='hash' on a CPU (a torch.Generator per "
                             "copy cannot be traced); set TrainConfig(dropout_masks='hash')")
        return compile_loss(self._loss)

    def masks_used(self) -> str:
        """The mask generator this run draws from: 'generator', 'hash', or 'none' for a model without dropout."""
        if self.family.dropout(self.cfg) <= 0:
            return "none"
        return self.masks or default_masks(self.device)

    def front(self) -> int:
        """The training front: the slowest copy that still trains (frozen ones stay behind)."""
        live = self.steps[~self.frozen]
        return int(live.min()) if live.numel() else self.end

    def step(self) -> None:
        """One optimizer update of every copy that still trains (each at its own step)."""
        tc, k, dev = self.tc, self.k, self.device
        running = (self.steps < tc.steps) & ~self.frozen  # copies at the end (spawned later) or frozen stay put
        lr = lr_at(tc, self.steps, self.batches.steps_per_epoch) * self.lr_scale * running
        batch = {n: t.to(dev) for n, t in self.examples.take(self.batches.indices(self.steps.tolist())).items()}
        self.batch_shape = {n: tuple(t.shape) for n, t in batch.items()}  # a capped run's ledger reads these
        self.batch_ints = {n for n, t in batch.items() if not t.is_floating_point()}
        for p in self.params.values():
            p.grad = None
        total, penalty = torch.zeros(k, device=dev), torch.zeros(k, device=dev)
        fisher_now = bool((self.lam > 0).any()) and self.front() % tc.fisher_every == 0
        micro = tc.batch_size // tc.accum
        autocast = (torch.autocast(dev.type, dtype=torch.bfloat16) if tc.precision == "bf16"
                    else contextlib.nullcontext())
        for m in range(tc.accum):
            chunk = {n: t[:, m * micro : (m + 1) * micro] for n, t in batch.items()}
            sub_steps = (self.steps * tc.accum + m).tolist()
            # masks depend on (dropout seed, copy's step, micro-batch index) only
            drop = (DropoutSource(self.dropout_seeds, sub_steps, dev, self.masks, record=fisher_now)
                    if self.family.dropout(self.cfg) > 0 else None)
            with autocast:
                losses = self.loss_of(chunk, drop)
                objective = losses.sum() / tc.accum
                if fisher_now:
                    # the penalty's forward sees the loss forward's dropout masks, on every device
                    pen = fisher_penalty(self.family, self.model, chunk, drop and drop.replay(), tc.fisher_mode,
                                         self.dropout_seeds, sub_steps, tc.fisher_batch)
                    objective = objective + (self.lam * pen).sum() / tc.accum
                    penalty += pen.detach() / tc.accum
            objective.backward()
            total += losses.detach() / tc.accum
        grads = [p.grad for p in self.params.values() if p.grad is not None]
        if self.frozen.any():
            for g in grads:
                g[self.frozen.to(g.device)] = 0
        if tc.clip_norm is not None:
            clip_per_copy(grads, tc.clip_norm)
        self.opt.step(lr.to(dev), self.steps, self.wd, mask=running if self.frozen.any() else None)
        self.steps = self.steps + running.long()
        self.pending.append(([t if a else None for t, a in zip(self.steps.tolist(), running.tolist())], total, lr,
                             penalty))

    def flush(self) -> list[dict]:
        """Move the pending per-step losses into the loss log; returns the rows added (the logging window)."""
        if not self.pending:
            return []
        n0 = len(self.log)
        losses = torch.stack([p[1] for p in self.pending]).cpu().tolist()
        lrs = torch.stack([p[2] for p in self.pending]).cpu().tolist()
        pens = torch.stack([p[3] for p in self.pending]).cpu().tolist()
        for (st, *_), row, lr, pen in zip(self.pending, losses, lrs, pens):
            for c in range(self.k):
                if st[c] is not None:  # None: an idle copy that had already finished, or a frozen one
                    self.log.append({"step": st[c], "copy": c, "loss": row[c], "lr": lr[c], "penalty": pen[c],
                                     "diverged": 0})
        self.pending.clear()
        return self.log[n0:]

    def record_divergence(self, copy: int, step: int, freeze: bool = True) -> None:
        """Note that `copy` diverged at `step` (a log row); freeze it unless freeze=False."""
        self.diverged[copy] = step
        if freeze:
            self.frozen[copy] = True
        self.log.append({"step": step, "copy": copy, "loss": float("nan"), "lr": 0.0, "penalty": 0.0, "diverged": 1})

    def dynamics_tensors(self) -> dict[str, torch.Tensor]:
        """Training dynamics recorded so far: dyn.steps [E], dyn.prob [E, K, N] (empty without any)."""
        d = self.dynamics
        return ({"dyn.steps": torch.tensor(d["steps"], dtype=torch.int64), "dyn.prob": torch.stack(d["prob"])}
                if d["prob"] else {})

    def result(self) -> TrainResult:
        """Weights (CPU), optimizer buffers, steps (frozen copies count as finished), log and dynamics."""
        steps = self.steps
        if self.frozen.any() and self.front() >= self.end:  # frozen copies count as finished (divergence recorded)
            steps = torch.where(self.frozen, torch.full_like(steps, max(self.end, int(steps.max()))), steps)
        state = {n: t.detach().cpu().clone() for n, t in self.model.state_dict().items()}
        return TrainResult(state=state, opt_state={n: t.cpu() for n, t in self.opt.state_dict().items()},
                           steps=steps.tolist(), history=history_frame(self.log), diverged=dict(self.diverged),
                           dynamics=self.dynamics_tensors(), dropout_masks=self.masks_used())
