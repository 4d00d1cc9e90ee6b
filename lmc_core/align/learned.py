"""Learned alignment: maps of B's units chosen to minimise the loss at the midpoint of the path A <-> T(B).

In the spirit of Theus et al. (NeurIPS 2025) and Git Re-Basin's straight-through estimator (Ainsworth et al. 2023,
Sec. 3.3), starting from a closed-form alignment (weight matching, a Procrustes residual map):

- the residual-stream map is a free parameter of its group: orthogonal through
  `torch.nn.utils.parametrizations.orthogonal` (Lezcano-Casado 2019; exactly orthogonal at every step), or an
  unconstrained matrix for an invertible group (its inverse taken with `torch.linalg.inv`);
- the permutation of each group of hidden units (MLP units; attention heads keep their closed-form matching, and
  so does every group whose units are no plain permutation) is relaxed by Sinkhorn normalisation of a logit
  matrix (Mena et al. 2018), used straight-through: the forward pass applies the nearest permutation (a linear
  assignment on the Sinkhorn matrix), the backward pass the gradient of the soft matrix;
- the objective is the mean training loss of the midpoint model ½(A + T(B)) on a stream of batches (Adam).

The result is a hard alignment: the final permutations and the nearest orthogonal matrix (float64), so T(B)
computes B's function exactly. A held-out set of batches guards the result: if the learned maps do not lower
the midpoint loss there, the starting alignment is kept (and `LearnedInfo.kept_start` says so).

This module knows no model: the loss of a state comes as a function `loss_fn(state, batch) -> [K]` (a family's
`state_loss_fn`).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Iterable

import numpy as np
import torch
from torch.nn.utils.parametrizations import orthogonal

from ..domains import MAX_STEPS
from .check import check_int, check_real
from .lap import assign
from .orthogonal import ResidualSpec, along, apply_residual_map, nearest_orthogonal, permutation_matrix
from .spec import RESIDUAL, PermutationSpec, State, UnitGroup

LossFn = Callable[[State, dict], torch.Tensor]


def sinkhorn(logits: torch.Tensor, iters: int = 20) -> torch.Tensor:
    """Doubly stochastic matrix [n, n] from logits [n, n]: alternate row and column normalisation in log space.
    iters: an integer >= 1 (ArgumentError otherwise)."""
    iters = check_int("iters", iters, 1, MAX_STEPS)
    z = logits
    for _ in range(iters):
        z = z - torch.logsumexp(z, 1, keepdim=True)
        z = z - torch.logsumexp(z, 0, keepdim=True)
    return z.exp()


@dataclass
class LearnedInfo:
    """How learning went: midpoint loss per step (training batches), on the held-out batches at the start and at
    the end (hard maps), whether the start was kept, units moved per group, seconds."""

    losses: list[float] = field(default_factory=list)
    heldout_start: float = float("nan")
    heldout_end: float = float("nan")
    kept_start: bool = False
    moved: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    map: torch.Tensor | None = None  # the learned residual map (identity when none was learned)


class _Maps(torch.nn.Module):
    """The learnable maps: a residual map of the spec's group and one Sinkhorn logit matrix per unit group."""

    def __init__(self, rspec: ResidualSpec | None, groups: list[UnitGroup], init_scale: float):
        super().__init__()
        self.rspec, self.groups = rspec, groups
        if rspec is not None:
            d = rspec.size
            if rspec.group == "orthogonal":
                self.res = orthogonal(torch.nn.Linear(d, d, bias=False, dtype=torch.float64))
                self.res.weight = torch.eye(d, dtype=torch.float64)
            else:
                self.res_m = torch.nn.Parameter(torch.eye(d, dtype=torch.float64))
        self.logits = torch.nn.ParameterList(
            [torch.nn.Parameter(init_scale * torch.eye(g.size, dtype=torch.float64)) for g in groups])

    def residual(self) -> torch.Tensor | None:
        if self.rspec is None:
            return None
        return self.res.weight if self.rspec.group == "orthogonal" else self.res_m

    def perms(self, hard_only: bool) -> list[torch.Tensor]:
        out = []
        for lg in self.logits:
            soft = sinkhorn(lg)
            hard = permutation_matrix(assign(soft.detach().T.cpu().numpy()))  # hard[j, i] = 1 where soft[j, i] is high
            out.append(hard if hard_only else hard + soft - soft.detach())
        return out

    def apply(self, b: State, hard: bool) -> State:
        s = dict(b)
        m = self.residual()
        if m is not None:
            if hard:
                m = nearest_orthogonal(m) if self.rspec.group == "orthogonal" else m.detach()
            s = apply_residual_map(s, self.rspec, m)
        for g, p in zip(self.groups, self.perms(hard)):
            for ax in g.axes:
                s[ax.param] = along(s[ax.param], ax, p)
        return s


def _mean_loss(loss_fn: LossFn, a: State, tb: State, batches: list[dict]) -> float:
    with torch.no_grad():
        return float(np.mean([float(loss_fn(_midpoint(a, tb), bt).mean()) for bt in batches]))


def _midpoint(a: State, b: State) -> State:
    return {n: 0.5 * (a[n] + b[n]) if a[n].is_floating_point() else a[n] for n in a}


def _check_learning(batches, heldout, steps=200, lr=1e-2, perm_lr=0.1, init_scale=5.0, **_):
    """learned_alignment's arguments checked (ArgumentError / ValueError naming the argument); the numbers returned."""
    steps = check_int("steps", steps, 1, MAX_STEPS)
    lr = check_real("lr", lr, 0.0, lo_open=True)
    perm_lr = check_real("perm_lr", perm_lr, 0.0, lo_open=True)
    init_scale = check_real("init_scale", init_scale, 0.0, lo_open=True)
    if not isinstance(heldout, (list, tuple)) or not heldout:
        raise ValueError(f"heldout must be a non-empty list of batches (the result is judged on them); got "
                         f"{heldout!r:.80}")
    if hasattr(batches, "__len__") and len(batches) < steps:
        raise ValueError(f"batches holds {len(batches)} batches but steps={steps} consumes one per step: give at least "
                         f"{steps} batches (or an endless iterator), or lower steps")
    return steps, lr, perm_lr, init_scale


def learned_alignment(a: State, b: State, loss_fn: LossFn, batches: Iterable[dict], heldout: list[dict],
                      pspec: PermutationSpec | None = None, rspec: ResidualSpec | None = None, steps: int = 200,
                      lr: float = 1e-2, perm_lr: float = 0.1, init_scale: float = 5.0, progress: Callable[[int, float], None] | None = None
                      ) -> tuple[State, LearnedInfo]:
    """B (already aligned in closed form) further aligned to A by learned maps; K=1 states.

    loss_fn(state, batch) -> per-copy loss [K] (differentiable in the state); batches: at least `steps` training
    batches (an iterable, consumed one per step); heldout: batches to judge the result on. pspec: its unit groups
    other than the residual stream are learned as relaxed permutations (None: no permutations learned); rspec:
    the residual map of its group is learned (None: none). lr: Adam's step for the residual map, perm_lr for the
    Sinkhorn logits (which start at init_scale on the diagonal: the identity). Returns T(B) with hard maps, and what happened.
    Raises ArgumentError (a ValueError) unless steps is an integer >= 1 and lr, perm_lr, init_scale finite numbers
    > 0; ValueError if there is nothing to learn, `heldout` is empty, `batches` has a length below `steps` (all
    before any learning) or an iterator of batches runs out before `steps` (naming the step).
    """
    groups = [g for g in (pspec.groups if pspec is not None else ()) if isinstance(g, UnitGroup) and g.name != RESIDUAL]
    if rspec is None and not groups:
        raise ValueError("nothing to learn: give a residual spec or a permutation spec with unit groups")
    steps, lr, perm_lr, init_scale = _check_learning(batches, heldout, steps, lr, perm_lr, init_scale)
    t0 = time.perf_counter()
    maps = _Maps(rspec, groups, init_scale)
    groups_ = [{"params": [q for n, q in maps.named_parameters() if not n.startswith("logits")], "lr": lr},
               {"params": list(maps.logits.parameters()), "lr": perm_lr}]
    opt = torch.optim.Adam([g for g in groups_ if g["params"]])
    a = {n: t.detach() for n, t in a.items()}
    b = {n: t.detach() for n, t in b.items()}
    info = LearnedInfo(heldout_start=_mean_loss(loss_fn, a, b, heldout))
    it = iter(batches)
    for step in range(steps):
        try:
            batch = next(it)
        except StopIteration:
            raise ValueError(f"batches ran out after {step} of steps={steps} (one batch per step): give at least "
                             f"{steps} batches (or an endless iterator), or lower steps") from None
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(_midpoint(a, maps.apply(b, hard=False)), batch).mean()
        loss.backward()
        opt.step()
        info.losses.append(float(loss.detach()))
        if progress is not None:
            progress(step, info.losses[-1])
    with torch.no_grad():
        out = maps.apply(b, hard=True)
        m = maps.residual()
        info.map = (nearest_orthogonal(m) if rspec is not None and rspec.group == "orthogonal" else
                    m.detach().clone() if m is not None else None)
        info.moved = {g.name: int((p.argmax(0) != torch.arange(g.size)).sum()) for g, p in zip(groups, maps.perms(True))}
    info.heldout_end = _mean_loss(loss_fn, a, out, heldout)
    if not info.heldout_end < info.heldout_start:
        out, info.kept_start = {n: t.clone() for n, t in b.items()}, True
    info.seconds = time.perf_counter() - t0
    return out, info


def learned_from_best(a: State, candidates: dict[str, State], loss_fn: LossFn, batches: Iterable[dict],
                      heldout: list[dict], **kw) -> tuple[State, LearnedInfo, str]:
    """learned_alignment started from the closed-form alignment (a value of `candidates`: name -> T(B)) whose
    midpoint loss on `heldout` is lowest (the first on a tie); returns T(B), what happened and the start's name.
    kw: learned_alignment's own (pspec, rspec, steps, lr, ...), checked before any loss is computed; ValueError
    for no candidates."""
    if not candidates:
        raise ValueError("candidates is empty: give at least one closed-form alignment {name: T(B)} to start from")
    _check_learning(batches, heldout, **kw)
    mids = {name: _mean_loss(loss_fn, a, tb, heldout) for name, tb in candidates.items()}
    start = min(mids, key=mids.get)
    out, info = learned_alignment(a, candidates[start], loss_fn, batches, heldout, **kw)
    return out, info, start
