"""Linear paths between two models of any architecture: the curve, every barrier definition and the verdict.

theta(alpha) = (1 - alpha) theta_A + alpha theta_B over parameters (Frankle et al. 2020, eq. 1). All alphas are
evaluated as one batched model (torch.func.functional_call under torch.func.vmap over parameters stacked along a
new alpha axis) where the model allows it, otherwise one alpha at a time (the way loss-landscapes evaluates), with
a note saying why. Every alpha sees identical batches (each split is read once), the models are evaluated in
eval mode (their own mode is restored afterwards) and nothing reads the global RNG.

Buffers are handled deliberately, and the result's `notes` say how:
- tied parameters are one parameter and interpolated once;
- BatchNorm running statistics are recomputed at every alpha from `train_data` (bn="recompute", the default when
  the model has BatchNorm: interpolated statistics are a known cause of false barriers, Jordan et al. 2023,
  "REPAIR"), or interpolated like parameters when asked (bn="interpolate"); never copied from A;
- other floating-point buffers are used as they are when equal in both models and interpolated when not;
- integer and boolean buffers (position ids, masks) must be equal in both models, or the call is refused naming
  them.

lmc_core's own models (K=1 models of a registered family, e.g. an imported Hugging Face checkpoint) go through
their family: all alphas as one K-copy ensemble (analysis.interpolate.interpolation_curve).
"""
from __future__ import annotations

import contextlib
import copy
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from . import path_data as D
from .interpolate import alpha_grid
from .path_result import PathResult, path_result

BN_TYPES = (nn.modules.batchnorm._BatchNorm,)  # noqa: SLF001 - the common base of BatchNorm1d/2d/3d


def _alphas(alphas) -> np.ndarray:
    a = alpha_grid(int(alphas)) if np.isscalar(alphas) else np.asarray(alphas, dtype=np.float64)
    if a.ndim != 1 or a.size < 2 or not np.all(np.diff(a) > 0) or a[0] != 0.0 or a[-1] != 1.0:
        raise ValueError("alphas: give a number of points (>= 2) or an increasing grid from exactly 0 to exactly 1")
    return a


@contextlib.contextmanager
def eval_mode(*models: nn.Module):
    """Every module in eval mode inside the block; each submodule's own mode restored afterwards."""
    modes = [[(m, m.training) for m in model.modules()] for model in models]
    try:
        for model in models:
            model.eval()
        yield
    finally:
        for ms in modes:
            for m, t in ms:
                m.training = t


def check_pair(model_a: nn.Module, model_b: nn.Module) -> None:
    """Raise TypeError/ValueError unless both are modules of one class with the same parameter names and shapes."""
    if not isinstance(model_a, nn.Module) or not isinstance(model_b, nn.Module):
        raise TypeError(f"linear_path takes two torch.nn.Module models; got {type(model_a).__name__} and "
                        f"{type(model_b).__name__}")
    if type(model_a) is not type(model_b):
        raise ValueError(f"model_a is a {type(model_a).__name__}, model_b a {type(model_b).__name__}: a linear path "
                         "needs two models of the same architecture")
    sa, sb = model_a.state_dict(), model_b.state_dict()
    if set(sa) != set(sb):
        raise ValueError(f"the models differ in their parameters/buffers: {sorted(set(sa) ^ set(sb))[:5]}")
    bad = [f"{n}: {tuple(sa[n].shape)} vs {tuple(sb[n].shape)}" for n in sa if sa[n].shape != sb[n].shape]
    if bad:
        raise ValueError(f"the models differ in shape: {bad[:3]}")


def family_config(model: nn.Module):
    """The config of an lmc_core family model with K = 1 (None for any other module)."""
    from ..families import FAMILIES

    cfg = getattr(model, "cfg", None)
    if cfg is None or not any(type(cfg) is f.config_type for f in FAMILIES):
        return None
    if getattr(model, "k", 1) != 1:
        raise ValueError(f"linear_path takes single models; this {type(model).__name__} holds K={model.k} copies "
                         "(use lmc_core.extract(model, k))")
    return cfg


class _Plan:
    """Which tensors are interpolated, which are fixed, and what the notes say about them."""

    def __init__(self, model_a: nn.Module, model_b: nn.Module, bn: str, train_data, notes: list[str]):
        self.params = [n for n, _ in model_a.named_parameters()]  # tied parameters appear once
        every = [n for n, _ in model_a.named_parameters(remove_duplicate=False)]
        tied = sorted(set(every) - set(self.params))
        if tied:
            notes.append(f"tied parameters interpolated once: {tied}")
        pa, pb = dict(model_a.named_parameters()), dict(model_b.named_parameters())
        self.a = {n: pa[n].detach() for n in self.params}
        self.b = {n: pb[n].detach() for n in self.params}
        ba, bb = dict(model_a.named_buffers()), dict(model_b.named_buffers())
        self.bn_modules = [n for n, m in model_a.named_modules() if isinstance(m, BN_TYPES) and m.track_running_stats]
        bn_stats = {f"{m}.{s}" if m else s for m in self.bn_modules for s in ("running_mean", "running_var")}
        bn_counts = {f"{m}.num_batches_tracked" if m else "num_batches_tracked" for m in self.bn_modules}
        self.fixed, self.buf_a, self.buf_b = {}, {}, {}
        unequal_int, interpolated = [], []
        for n, t in ba.items():
            u = bb[n]
            if n in bn_counts:
                self.fixed[n] = t.detach()
            elif n in bn_stats and bn == "recompute":
                self.fixed[n] = t.detach()  # replaced at every alpha
            elif t.is_floating_point() or t.is_complex():
                if torch.equal(t, u):
                    self.fixed[n] = t.detach()
                else:
                    self.buf_a[n], self.buf_b[n] = t.detach(), u.detach()
                    if n not in bn_stats:
                        interpolated.append(n)
            elif not torch.equal(t, u):
                unequal_int.append(n)
            else:
                self.fixed[n] = t.detach()
        if unequal_int:
            raise ValueError(f"integer/boolean buffers differ between the models: {unequal_int[:5]} (e.g. position "
                             "ids or masks); a path between them is not defined: make them equal in both models")
        if interpolated:
            notes.append(f"floating-point buffers that differ between the models were interpolated: {interpolated}")
        self.bn = bn if self.bn_modules else "none"
        if self.bn_modules:
            if bn not in ("recompute", "interpolate"):
                raise ValueError(f"bn={bn!r}; choose 'recompute' (running statistics from train_data at every alpha) "
                                 "or 'interpolate'")
            if bn == "recompute" and train_data is None:
                raise ValueError(f"the model has BatchNorm layers {self.bn_modules[:4]}: their running statistics must be"
                                 " recomputed at every alpha (interpolated statistics are a known cause of false "
                                 "barriers; REPAIR, Jordan et al. 2023). Pass train_data=<training batches>, or "
                                 "bn='interpolate' to interpolate them (reported in the notes)")
            notes.append("BatchNorm running statistics " + (
                "recomputed at every alpha on train_data (cumulative mean over its batches, eval mode elsewhere)"
                if bn == "recompute" else "interpolated like parameters (bn='interpolate'; not recomputed)"))

    def to(self, device) -> "_Plan":
        """Every tensor of the plan on `device` (evaluation on another device than the models')."""
        for d in (self.a, self.b, self.fixed, self.buf_a, self.buf_b):
            d.update({n: t.to(device) for n, t in d.items()})
        return self

    def at(self, alphas: np.ndarray) -> tuple[dict, dict]:
        """Stacked parameters and varying buffers [len(alphas), ...] at these alphas (exact at 0 and 1)."""
        def mix(a, b):
            w = torch.as_tensor(alphas, dtype=torch.float64).to(a.device, a.dtype).view(-1, *([1] * a.dim()))
            return (1 - w) * a + w * b
        return ({n: mix(self.a[n], self.b[n]) for n in self.params},
                {n: mix(self.buf_a[n], self.buf_b[n]) for n in self.buf_a})


@torch.no_grad()
def _bn_statistics(model: nn.Module, plan: _Plan, params: dict, buffers: dict, train: list[D.Batch], device) -> dict:
    """BatchNorm running statistics of the model with these (single-alpha) parameters, from the training batches:
    the cumulative mean over batches (momentum None), every other module in eval mode."""
    work = copy.deepcopy(model).to(device)
    work.load_state_dict({**plan.fixed, **buffers, **params}, strict=False)
    work.eval()
    bns = [work.get_submodule(n) for n in plan.bn_modules]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None
        m.train()
    for b in train:
        b = b.to(device)
        work(*b.args, **b.kwargs)
    out = {}
    for n, m in zip(plan.bn_modules, bns):
        p = f"{n}." if n else ""
        out[p + "running_mean"], out[p + "running_var"] = m.running_mean.clone(), m.running_var.clone()
    return out


def _reduce(vals: list[torch.Tensor]) -> tuple[float, int]:
    v = torch.cat([x.reshape(-1).double() for x in vals]) if vals else torch.zeros(0, dtype=torch.float64)
    return (float(v.mean()) if v.numel() else float("nan")), int(v.numel())


class _Evaluator:
    """Loss and error of many alphas on one split, batched or one alpha at a time."""

    def __init__(self, model, loss_fn, error_fn, device):
        self.model, self.device = model, device
        self.loss_fn, self.error_fn = loss_fn, error_fn
        self.work: nn.Module | None = None  # a copy of the model for one alpha at a time

    def call(self, params: dict, buffers: dict, b: D.Batch) -> torch.Tensor:
        return D.logits_of(torch.func.functional_call(self.model, {**buffers, **params}, b.args, b.kwargs))

    def metrics(self, out: torch.Tensor, b: D.Batch) -> tuple[torch.Tensor, torch.Tensor | None]:
        if self.loss_fn is None:
            loss = D.cross_entropy(out, b)
        else:
            loss = torch.as_tensor(self.loss_fn(out, b.raw))
            if loss.dim() == 0:
                raise ValueError("loss_fn must return a per-example loss (reduction='none'), not a scalar: the path "
                                 "averages over examples")
        if self.error_fn is None:
            err = D.top1_error(out, b)
        elif self.error_fn is False:
            err = None
        else:
            err = torch.as_tensor(self.error_fn(out, b.raw)).double()
        return loss, err

    def batched(self, params: dict, buffers: dict, fixed: dict, data: list[D.Batch]) -> list[tuple]:
        """All alphas of `params` ([A, ...] each) as one vmapped call per batch; the default loss and error are
        computed for every alpha at once, a custom loss_fn / error_fn alpha by alpha."""
        n = next(iter(params.values())).shape[0]
        loss_sum, err_sum = torch.zeros(n, dtype=torch.float64), torch.zeros(n, dtype=torch.float64)
        count, err_count = 0, 0
        for b in data:
            b = b.to(self.device)
            out = torch.func.vmap(lambda p, bf: self.call(p, {**fixed, **bf}, b))(params, buffers)  # [A, ...]
            if self.loss_fn is None and self.error_fn is None and b.labels is not None \
                    and out.shape[1:-1] == b.labels.shape and not b.labels.is_floating_point():
                c = out.shape[-1]
                y = b.labels.reshape(-1)
                keep = y != D.IGNORE_INDEX
                ce = F.cross_entropy(out.reshape(-1, c).float(), y.repeat(n), reduction="none").view(n, -1)
                wrong = (out.reshape(n, -1, c).argmax(-1) != y).double()
                loss_sum += ce[:, keep].double().sum(1).cpu()
                err_sum += wrong[:, keep].sum(1).cpu()
                count, err_count = count + int(keep.sum()), err_count + int(keep.sum())
                continue
            for i in range(n):
                lo, er = self.metrics(out[i], b)
                loss_sum[i] += float(lo.double().sum())
                if er is not None:
                    err_sum[i] += float(er.double().sum())
                count += lo.numel() if i == 0 else 0
                err_count += (er.numel() if er is not None else 0) if i == 0 else 0
        err = (err_sum / err_count).tolist() if err_count else [float("nan")] * n
        return [(float(x), count, e) for x, e in zip((loss_sum / max(count, 1)).tolist(), err)]

    def single(self, params: dict, buffers: dict, fixed: dict, data: list[D.Batch]) -> tuple:
        """One alpha: its weights copied into a working copy of the model, which is then called as it is."""
        if self.work is None:
            self.work = copy.deepcopy(self.model).to(self.device).eval()
        tensors = dict(self.work.named_parameters())
        tensors.update(self.work.named_buffers())
        for n, t in {**fixed, **buffers, **params}.items():
            tensors[n].copy_(t)
        losses, errs = [], []
        for b in data:
            b = b.to(self.device)
            lo, er = self.metrics(D.logits_of(self.work(*b.args, **b.kwargs)), b)
            losses.append(lo)
            if er is not None:
                errs.append(er)
        return (*_reduce(losses), _reduce(errs)[0])


CPU_CALL_BYTES = 4 << 20  # on a CPU, the largest activation of one batched call stays below this (cache-sized)


@torch.no_grad()
def _alphas_per_call(model: nn.Module, data: dict, plan: _Plan, n: int, memory_mb: int, device) -> int:
    """How many alphas one vmapped call evaluates: the stacked parameters and the largest activation (measured
    with forward hooks on one batch) under memory_mb, and on a CPU the largest activation under CPU_CALL_BYTES."""
    largest = [0]

    def hook(_m, _inp, out):
        if isinstance(out, torch.Tensor):
            largest[0] = max(largest[0], out.numel() * out.element_size())

    b = next(iter(data.values()))[0].to(device)
    hooks = [m.register_forward_hook(hook) for m in model.modules()]
    try:
        with eval_mode(model):
            torch.func.functional_call(model, {**plan.fixed, **plan.buf_a, **plan.a}, b.args, b.kwargs)  # model A
    finally:
        for h in hooks:
            h.remove()
    params = sum(t.numel() * t.element_size() for t in plan.a.values())
    per_alpha = params + 4 * largest[0] + 1
    chunk = (memory_mb << 20) // per_alpha
    if torch.device(device).type == "cpu":
        chunk = min(chunk, CPU_CALL_BYTES // max(largest[0], 1))
    return int(max(1, min(n, chunk)))


@torch.no_grad()
def linear_path(model_a: nn.Module, model_b: nn.Module, data: Any, loss_fn: D.LossFn | None = None, alphas=11, *,
                error_fn=None, train_data: Any = None, bn: str = "recompute", batched: bool | str = "auto",
                batch_size: int = 256, memory_mb: int = 1024, definition: str = "mean", threshold: float = 2.0,
                device: str | torch.device | None = None) -> PathResult:
    """Loss (and top-1 error where labels exist) along the straight line between two models, per split, with the
    barriers under every definition and the verdict, as the notebooks report them.

    model_a, model_b: two `nn.Module`s of the same architecture (not changed; their train/eval mode is restored).
    data: one split or {name: split}; a split is `(x, y)` tensors, a tensor x, a dict of tensors, a DataLoader or
      an iterable of batches (lmc_core.analysis.path_data; a dict of tensors is one data set, so name splits of
      bare inputs as tuples: {"test": (x,)}). An lmc_core family model takes {name: split} or one split of its
      family's data (a 1-D token tensor for a language model, (x, y) for the MLP, Examples).
    loss_fn: callable(outputs, batch) -> per-example loss [N] (or [N, ...]), where `outputs` is the model's output
      tensor (its `.logits` for a Hugging Face model) and `batch` the batch as given; default cross-entropy on
      logits [..., C] with integer labels [...] (nats). error_fn: likewise for the per-example error (0/1);
      default top-1 error when the labels fit the logits; False: no error column.
    alphas: a number of points (default 11) or a grid from exactly 0 to exactly 1.
    train_data: training batches for the BatchNorm statistics (needed when the model has BatchNorm and
      bn="recompute"). batched: "auto" (one batched model, falling back to one alpha at a time with a note),
      True (fail instead of falling back) or False (one alpha at a time). memory_mb: the stacked parameters and
      activations of one batched call stay below this (more alphas are done in several calls); on a CPU a call
      also keeps its largest activation under CPU_CALL_BYTES, as a batched call that outgrows the cache was
      measured slower than one alpha at a time (bench/linear_path.py).
    definition / threshold: the barrier definition of the verdict (lmc_core.analysis.barrier.DEFINITIONS) and the
      stability threshold (2: Frankle et al. 2020).

    Returns a PathResult: `curve` (split, alpha, loss, error, examples), `barriers` (split, metric, definition,
    barrier, instability, unit, convex), `verdicts`, `notes` and `mode`. Raises TypeError/ValueError naming the
    argument for models of different architectures, unusable data, BatchNorm without train_data and unequal
    integer buffers.
    """
    check_pair(model_a, model_b)
    al = _alphas(alphas)
    cfg = family_config(model_a)
    splits = data if D.is_split_dict(data) or (cfg is not None and isinstance(data, dict)) else {"eval": data}
    if cfg is not None:
        from .family_paths import family_curve

        curve, notes, mode = family_curve(cfg, model_a, model_b, splits, al, batch_size, device)
        return path_result(curve, notes, mode, definition, threshold)
    dev = torch.device(device) if device is not None else next(
        iter([*model_a.parameters(), *model_a.buffers()]), torch.empty(0)).device
    notes: list[str] = []
    plan = _Plan(model_a, model_b, bn, train_data, notes).to(dev)
    train = D.batches(train_data, batch_size, "train_data") if plan.bn == "recompute" else []
    data_b = {name: D.batches(s, batch_size, f"data[{name!r}]") for name, s in splits.items()}
    ev = _Evaluator(model_a, loss_fn, error_fn, dev)
    chunk = _alphas_per_call(model_a, data_b, plan, len(al), memory_mb, dev) if batched else len(al)
    rows: dict[str, list] = {s: [None] * len(al) for s in splits}
    mode = "batched" if batched else "one alpha at a time"
    with eval_mode(model_a, model_b):
        for c0 in range(0, len(al), chunk):
            idx = list(range(c0, min(len(al), c0 + chunk)))
            params, bufs = plan.at(al[idx])
            if plan.bn == "recompute":
                stats = [_bn_statistics(model_a, plan, {n: t[i] for n, t in params.items()},
                                        {n: t[i] for n, t in bufs.items()}, train, dev) for i in range(len(idx))]
                bufs.update({n: torch.stack([s[n] for s in stats]) for n in stats[0]})
            fixed = {n: t for n, t in plan.fixed.items() if n not in bufs}
            for name, bs in data_b.items():
                done = None
                if mode == "batched":
                    try:
                        done = ev.batched(params, bufs, fixed, bs)
                    except Exception as exc:  # noqa: BLE001 - any failure of vmap: fall back, and say why
                        if batched is True:
                            raise
                        mode = "one alpha at a time"
                        notes.append(f"evaluated one alpha at a time: the model cannot run under torch.func.vmap "
                                     f"({type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''})")
                if done is None:
                    done = [ev.single({n: t[i] for n, t in params.items()}, {n: t[i] for n, t in bufs.items()},
                                      fixed, bs) for i in range(len(idx))]
                for i, r in zip(idx, done):
                    rows[name][i] = r
    if mode == "batched":
        notes.append(f"all {len(al)} alphas evaluated as one batched model (torch.func.vmap over stacked parameters"
                     f"{f', {chunk} alphas per call' if chunk < len(al) else ''})")
    records = [{"split": s, "alpha": float(a), "loss": r[0], "error": r[2], "examples": r[1]}
               for s in splits for a, r in zip(al, rows[s])]
    return path_result(pd.DataFrame(records), notes, mode, definition, threshold)


@torch.no_grad()
def path_outputs(model_a: nn.Module, model_b: nn.Module, batch: Any, alphas=3, batched: bool = True) -> torch.Tensor:
    """Outputs [len(alphas), ...] of the interpolated models on one batch (a tensor, a tuple (x, ...) or a dict of
    model inputs), in eval mode; parameters and differing floating-point buffers (BatchNorm statistics included)
    are interpolated. batched: one vmap call, else one alpha at a time."""
    check_pair(model_a, model_b)
    al = _alphas(alphas)
    plan = _Plan(model_a, model_b, "interpolate", None, [])
    b = D.parse_batch(batch, "batch")
    ev = _Evaluator(model_a, None, None, None)
    params, bufs = plan.at(al)
    fixed = {n: t for n, t in plan.fixed.items() if n not in bufs}
    with eval_mode(model_a, model_b):
        if batched:
            return torch.func.vmap(lambda p, bf: ev.call(p, {**fixed, **bf}, b))(params, bufs)
        return torch.stack([ev.call({n: t[i] for n, t in params.items()},
                                    {**fixed, **{n: t[i] for n, t in bufs.items()}}, b) for i in range(len(al))])
