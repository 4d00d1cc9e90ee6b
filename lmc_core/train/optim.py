"""Optimisers and schedules over stacked [K, ...] tensors: exactly K independent optimisers.

SGD and AdamW are element-wise, so one update over the stacked tensors equals K separate
optimisers; learning rates and step counters are [K] tensors (spawned copies may be at
different steps). Gradient clipping uses one norm per copy. Formulas follow torch.optim.
"""
from __future__ import annotations

import math

import torch

from ..config import TrainConfig


def lr_at(cfg: TrainConfig, steps: torch.Tensor, steps_per_epoch: int) -> torch.Tensor:
    """Learning rate [K] of each copy at its step count (updates done so far)."""
    t = steps.to(torch.float64)
    if cfg.schedule == "constant":  # with an optional linear warm-up (Nanda et al.'s grokking schedule)
        lr = torch.full_like(t, cfg.lr)
        if cfg.warmup_steps:
            lr = torch.where(t < cfg.warmup_steps, cfg.lr * (t + 1) / cfg.warmup_steps, lr)
    elif cfg.schedule == "step":
        period = cfg.step_size or steps_per_epoch
        lr = cfg.lr * cfg.gamma ** torch.floor(t / period)
    else:  # cosine with linear warmup (and, with hold_steps, a constant rate until the decay starts)
        w = cfg.warmup_steps
        end = cfg.decay_steps or cfg.steps
        start = cfg.min_lr if cfg.warmup_from_min else 0.0
        warm = start + (cfg.lr - start) * (t + 1) / max(w, 1)
        d0 = max(w, cfg.hold_steps)
        ratio = ((t - d0) / max(end - d0, 1)).clamp(0, 1)
        cos = cfg.min_lr + 0.5 * (1 + torch.cos(math.pi * ratio)) * (cfg.lr - cfg.min_lr)
        lr = torch.where(t < w, warm, cos)
    return lr.to(torch.float32)


def clip_per_copy(grads: list[torch.Tensor], max_norm: float) -> torch.Tensor:
    """Scale each copy's gradient to norm <= max_norm in place; returns the norms [K]."""
    k = grads[0].shape[0]
    sq = torch.zeros(k, device=grads[0].device, dtype=torch.float32)
    for g in grads:
        sq += torch.linalg.vector_norm(g.detach().reshape(k, -1), dim=1, dtype=torch.float32).square()
    norms = sq.sqrt()
    coef = (max_norm / (norms + 1e-6)).clamp(max=1.0)
    for g in grads:
        g.mul_(coef.view(k, *([1] * (g.dim() - 1))).to(g.dtype))
    return norms


def has_state(cfg: TrainConfig) -> bool:
    """True if the optimizer keeps buffers between steps (SGD with momentum, Adam, AdamW): resuming it exactly
    needs them."""
    return cfg.optimizer != "sgd" or cfg.momentum > 0


class StackedOptimizer:
    """SGD (momentum, coupled weight decay), Adam (L2 weight decay) or AdamW over named stacked parameters."""

    def __init__(self, cfg: TrainConfig, params: dict[str, torch.nn.Parameter]):
        self.cfg = cfg
        self.params = params
        self.state: dict[str, torch.Tensor] = {}

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Optimizer buffers as a flat name -> [K, ...] tensor dict."""
        return dict(self.state)

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Restore buffers saved by state_dict (moved to each parameter's device)."""
        dev = next(iter(self.params.values())).device
        self.state = {n: t.to(dev, copy=True) for n, t in state.items()}  # never alias the caller's tensors

    @torch.no_grad()
    def step(self, lr: torch.Tensor, steps_done: torch.Tensor, weight_decay: torch.Tensor | None = None,
             mask: torch.Tensor | None = None) -> None:
        """One update with per-copy lr [K]; steps_done [K] = updates before this one; weight_decay [K] per copy
        (default: the config's); mask [K] bool: copies to update (the others stay exactly as they are, even
        if their gradients are NaN — a frozen, diverged copy)."""
        c = self.cfg
        dev = next(iter(self.params.values())).device
        lr = lr.to(dev)  # one host-to-device copy per step, not one per parameter
        steps_done = steps_done.to(dev)
        wd = None if weight_decay is None else weight_decay.to(dev)
        decay = bool(c.weight_decay) if wd is None else bool((weight_decay != 0).any())  # host-side check
        if mask is not None:
            mask = mask.to(dev)
            before = {n: p.detach().clone() for n, p in self.params.items() if p.grad is not None}
        if c.optimizer in ("adam", "adamw"):
            t_all = steps_done.to(torch.float64) + 1
            bc1_all = 1 - c.betas[0] ** t_all
            bc2_all = (1 - c.betas[1] ** t_all).sqrt()
        for name, p in self.params.items():
            g = p.grad
            if g is None:
                continue
            shape = (p.shape[0],) + (1,) * (p.dim() - 1)
            lr_k = lr.to(p.dtype).view(shape)
            wd_k = c.weight_decay if wd is None else wd.to(p.dtype).view(shape)
            if c.optimizer == "sgd":
                if decay:
                    g = g.add(p * wd_k)
                if c.momentum:
                    key = "momentum." + name
                    buf = self.state.get(key)
                    if buf is None:
                        buf = g.clone()
                        self.state[key] = buf
                    else:
                        # a copy that has done no update yet starts its buffer at g (torch semantics)
                        fresh = (steps_done == 0).view(shape)
                        buf.mul_(c.momentum).add_(g)
                        buf.copy_(torch.where(fresh, g, buf))
                    g = buf
                p.addcmul_(g, lr_k, value=-1.0)
            else:
                b1, b2 = c.betas
                if "exp_avg." + name not in self.state:  # (setdefault would allocate the zeros on every step)
                    self.state["exp_avg." + name] = torch.zeros_like(p)
                    self.state["exp_avg_sq." + name] = torch.zeros_like(p)
                m, v = self.state["exp_avg." + name], self.state["exp_avg_sq." + name]
                if c.optimizer == "adamw":
                    if decay:
                        p.mul_(1 - lr_k * wd_k)
                elif decay:  # Adam: L2 weight decay added to the gradient (torch.optim.Adam)
                    g = g.add(p * wd_k)
                m.lerp_(g, 1 - b1)
                v.mul_(b2).addcmul_(g, g, value=1 - b2)
                bc1 = bc1_all.to(p.dtype).view(shape)
                bc2_sqrt = bc2_all.to(p.dtype).view(shape)
                denom = (v.sqrt() / bc2_sqrt).add_(c.eps)
                p.sub_((lr_k / bc1) * m / denom)
        if mask is not None:
            for name, old in before.items():
                p = self.params[name]
                p.copy_(torch.where(mask.view((p.shape[0],) + (1,) * (p.dim() - 1)), p, old))
