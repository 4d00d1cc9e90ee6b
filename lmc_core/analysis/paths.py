"""Linear paths between two models of any architecture: the curve, every barrier definition and the verdict.

theta(alpha) = (1 - alpha) theta_A + alpha theta_B over parameters (Frankle et al. 2020, eq. 1). The alphas are
evaluated as one batched model (torch.func.functional_call under torch.func.vmap over parameters stacked along a
new alpha axis) where the model allows it and, on a CPU, where its activations are small (there batching pays; for
larger ones one alpha at a time was measured faster), otherwise one alpha at a time in a working copy of model A
(the way loss-landscapes evaluates), with a note saying why; the two agree to float rounding. Every alpha sees
identical batches (each split is read once), the models are evaluated in eval mode (their own mode is restored
afterwards) and nothing reads the global RNG.

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
from torch import nn

from ..config import check_choice, check_int
from ..domains import MAX_BATCH
from . import barrier as B
from . import path_data as D
from .interpolate import check_finite_weights, nbytes, path_alphas, stacked_mix, weight_writer
from .path_result import PathResult, path_result

BN_TYPES = (nn.modules.batchnorm._BatchNorm,)  # noqa: SLF001 - the common base of BatchNorm1d/2d/3d


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
                "recomputed at every alpha on train_data (those of all its examples as one batch, eval mode elsewhere)"
                if bn == "recompute" else "interpolated like parameters (bn='interpolate'; not recomputed)"))

    def to(self, device) -> "_Plan":
        """Every tensor of the plan on `device` (evaluation on another device than the models')."""
        for d in (self.a, self.b, self.fixed, self.buf_a, self.buf_b):
            d.update({n: t.to(device) for n, t in d.items()})
        return self

    def at(self, alphas: np.ndarray) -> tuple[dict, dict]:
        """Stacked parameters and varying buffers [len(alphas), ...] at these alphas (exact at 0 and 1)."""
        mixed = stacked_mix({**self.a, **self.buf_a}, {**self.b, **self.buf_b}, alphas)
        return {n: mixed[n] for n in self.params}, {n: mixed[n] for n in self.buf_a}


class _Evaluator:
    """Loss and error of many alphas on one split, batched or one alpha at a time."""

    def __init__(self, model, loss_fn, error_fn, device):
        self.model, self.device = model, device
        self.loss_fn, self.error_fn = loss_fn, error_fn
        self.work: nn.Module | None = None  # a copy of the model for one alpha at a time
        self.slots: dict[str, torch.Tensor] = {}  # its parameters and buffers by name
        self.write = None  # i -> None: alpha i's weights into the working copy (interpolate.weight_writer)
        self.labels: dict = {}  # D.default_metrics' cache of each batch's labels
        self.has_error = False  # an error was measured (default top-1 error where labels fit, or error_fn)

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
        self.has_error = self.has_error or err is not None
        return loss, err

    def default(self, out: torch.Tensor, b: D.Batch) -> tuple[torch.Tensor, torch.Tensor] | None:
        """D.default_metrics of outputs [A, ..., C] of A alphas; None where they do not apply (a custom loss_fn or
        error_fn, no integer labels that fit the outputs: metrics() decides)."""
        y = b.labels
        if self.loss_fn is not None or self.error_fn is not None or y is None or y.is_floating_point() \
                or out.shape[1:-1] != y.shape:
            return None
        self.has_error = True
        return D.default_metrics(out, b, self.labels)

    def batched(self, params: dict, buffers: dict, fixed: dict, data: list[D.Batch]) -> list[tuple]:
        """All alphas of `params` ([A, ...] each) as one vmapped call per batch; the default loss and error are
        computed for every alpha at once, a custom loss_fn / error_fn alpha by alpha."""
        n = next(iter(params.values())).shape[0]
        loss_sum, err_sum = torch.zeros(n, dtype=torch.float64), torch.zeros(n, dtype=torch.float64)
        count, err_count = 0, 0
        for b in data:
            b = b.to(self.device)
            out = torch.func.vmap(lambda p, bf: self.call(p, {**fixed, **bf}, b))(params, buffers)  # [A, ...]
            done = self.default(out, b)
            if done is not None:
                loss_sum += done[0].double().sum(1).cpu()
                err_sum += done[1].sum(1).double().cpu()
                count, err_count = count + done[0].shape[1], err_count + done[0].shape[1]
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

    def outputs(self, data: list[D.Batch], probe: list | None = None, model: nn.Module | None = None) -> list:
        """The output tensor of `model` (default: the working copy as loaded) on every batch; `probe`: a list that
        receives the bytes of the largest activation of the first batch."""
        model, outs = self.work if model is None else model, []
        for j, b in enumerate(data):
            b = b if self.device.type == "cpu" else b.to(self.device)  # _evaluate moved it
            hooks = [m.register_forward_hook(D.largest_output(probe)) for m in model.modules()] \
                if probe is not None and j == 0 else []
            try:
                outs.append(D.logits_of(model(*b.args, **b.kwargs)))
            finally:
                for h in hooks:
                    h.remove()
        return outs

    def summary(self, outs: list[list], data: list[D.Batch]) -> list[tuple]:
        """(loss, examples, error) of each alpha from its outputs on every batch (outputs()): the default loss and
        error of all alphas at once, a custom loss_fn / error_fn alpha by alpha; each the mean over the split."""
        done = [self.default(torch.stack([o[j] for o in outs]), b) for j, b in enumerate(data)]
        if all(d is not None for d in done):
            ce, wrong = (torch.cat([d[k] for d in done], 1) if len(done) > 1 else done[0][k] for k in (0, 1))
            if not ce.shape[1]:
                return [(float("nan"), 0, float("nan"))] * len(outs)
            err = (wrong.sum(1).double() / wrong.shape[1]).tolist()
            return [(lo, ce.shape[1], er) for lo, er in zip(ce.double().mean(1).tolist(), err)]
        rows = []
        for o in outs:
            lo_er = [self.metrics(out, b) for out, b in zip(o, data)]
            errs = [e for _, e in lo_er if e is not None]
            rows.append((*D.mean_count([lo for lo, _ in lo_er]), D.mean_count(errs)[0]))
        return rows

    def load(self, tensors: dict) -> None:
        """Copy {name: tensor} into the working copy of the model (made on first use)."""
        if self.work is None:
            self.work = copy.deepcopy(self.model).to(self.device).eval()
            self.slots = dict(self.work.named_parameters())
            self.slots.update(self.work.named_buffers())
        if tensors:
            torch._foreach_copy_([self.slots[n] for n in tensors], list(tensors.values()))  # noqa: SLF001 - one call


# On a CPU, tensors of more than a few hundred KiB are fresh pages at every call (page faults, measured at ~3 us each
# here: 3000 of them doubled a call); temporaries are kept below that (bench/linear_path.py, docs/benchmarks.md).
CPU_CALL_BYTES = 512 << 10  # on a CPU, the largest activation of one batched call stays below this
SCRATCH_BYTES = 256 << 10  # one alpha at a time: the mixed weights and the held outputs, at most this at once
CPU_BATCH_BYTES = 96 << 10  # batched="auto" on a CPU: one alpha at a time where an alpha's largest activation is larger


@torch.no_grad()
def _alphas_per_call(model: nn.Module, data: dict, plan: _Plan, n: int, memory_mb: int, device) -> int:
    """How many alphas one vmapped call evaluates: the stacked parameters and the largest activation (measured
    with forward hooks on one batch) under memory_mb, and on a CPU the largest activation under CPU_CALL_BYTES."""
    largest = [0]
    b = next(iter(data.values()))[0].to(device)
    hooks = [m.register_forward_hook(D.largest_output(largest)) for m in model.modules()]
    try:
        with eval_mode(model):
            torch.func.functional_call(model, {**plan.fixed, **plan.buf_a, **plan.a}, b.args, b.kwargs)  # model A
    finally:
        for h in hooks:
            h.remove()
    return _per_call(plan, largest[0], n, memory_mb, device)


def _per_call(plan: _Plan, largest: int, n: int, memory_mb: int, device) -> int:
    chunk = (memory_mb << 20) // (_param_bytes(plan) + 4 * largest + 1)
    if torch.device(device).type == "cpu":
        chunk = min(chunk, CPU_CALL_BYTES // max(largest, 1))
    chunk = int(max(1, min(n, chunk)))
    return -(-n // -(-n // chunk))  # as many calls, of equal sizes (equal allocations reuse each other's memory)


def _param_bytes(plan: _Plan) -> int:
    return nbytes([*plan.a.values(), *plan.buf_a.values()])


def _one_at_a_time(ev: _Evaluator, plan: _Plan, al: np.ndarray, todo: range, data_b: dict, train: list,
                   rows: dict, probe: list | None = None, held: list | None = None) -> None:
    """Rows of the alphas al[todo], one alpha at a time in a working copy of the model (interpolate.weight_writer:
    the values of plan.at); the outputs of up to SCRATCH_BYTES of alphas are held and summarised together
    (ev.summary), with `held` [(alpha index, {split: outputs})] of alphas evaluated already."""
    fixed = {n: t for n, t in plan.fixed.items() if n not in plan.buf_a}
    if ev.work is None:
        ev.load({})
        ev.write = weight_writer({**plan.a, **plan.buf_a}, {**plan.b, **plan.buf_b}, ev.slots, al, SCRATCH_BYTES)
    held = held or []
    size = nbytes(o for _, outs in held for v in outs.values() for o in v)
    for i in todo:
        ev.load(fixed)  # as the model left them: a forward may change a buffer
        ev.write(i)
        if plan.bn == "recompute":
            mixed = {n: ev.slots[n] for n in plan.params}
            state = {**plan.fixed, **{n: ev.slots[n] for n in plan.buf_a}, **mixed}
            ev.load(D.bn_statistics(ev.model, state, plan.bn_modules, train, ev.device))
        outs = {name: ev.outputs(bs, probe if (i, j) == (todo.start, 0) else None)
                for j, (name, bs) in enumerate(data_b.items())}
        held.append((i, outs))
        size += nbytes(o for v in outs.values() for o in v)
        if size > SCRATCH_BYTES or i == todo.stop - 1:
            for name, bs in data_b.items():
                for (k, _), r in zip(held, ev.summary([o[name] for _, o in held], bs)):
                    rows[name][k] = r
            held, size = [], 0


def _batched(ev: _Evaluator, plan: _Plan, al: np.ndarray, data_b: dict, train: list, chunk: int,
             batched: bool | str, rows: dict, notes: list[str]) -> str:
    """Rows of every alpha, `chunk` alphas per vmapped call; on a failure of vmap (batched="auto") the rest one
    alpha at a time, with a note. Returns the mode."""
    for c0 in range(0, len(al), chunk):
        idx = list(range(c0, min(len(al), c0 + chunk)))
        params, bufs = plan.at(al[idx])
        if plan.bn == "recompute":
            stats = [D.bn_statistics(ev.model, {**plan.fixed, **{n: t[i] for n, t in bufs.items()},
                                                **{n: t[i] for n, t in params.items()}}, plan.bn_modules, train,
                                     ev.device) for i in range(len(idx))]
            bufs.update({n: torch.stack([s[n] for s in stats]) for n in stats[0]})
        fixed = {n: t for n, t in plan.fixed.items() if n not in bufs}
        for name, bs in data_b.items():
            try:
                done = ev.batched(params, bufs, fixed, bs)
            except Exception as exc:  # noqa: BLE001 - any failure of vmap: fall back, and say why
                if batched is True:
                    raise
                notes.append(f"evaluated one alpha at a time: the model cannot run under torch.func.vmap "
                             f"({type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''})")
                _one_at_a_time(ev, plan, al, range(c0, len(al)), data_b, train, rows)
                return "one alpha at a time"
            for i, r in zip(idx, done):
                rows[name][i] = r
    notes.append(f"all {len(al)} alphas evaluated as one batched model (torch.func.vmap over stacked parameters"
                 f"{f', {chunk} alphas per call' if chunk < len(al) else ''})")
    return "batched"


def _alpha0_is_a(plan: _Plan, model: nn.Module, device: torch.device) -> bool:
    """True if the model at alpha 0 is model A as it is: its own tensors on `device`, no buffer recomputed or
    interpolated (the interpolation is exact at 0: interpolate.lerp_rows); checked for a small model only (for a
    large one the check costs more than the working copy it may save)."""
    return plan.bn != "recompute" and not plan.buf_a and _param_bytes(plan) <= SCRATCH_BYTES and all(
        t.device == device for t in [*model.parameters(), *model.buffers()])


def _evaluate(ev: _Evaluator, plan: _Plan, al: np.ndarray, data_b: dict, train: list, batched: bool | str,
              memory_mb: int, notes: list[str]) -> tuple[dict, str]:
    """(loss, examples, error) of every alpha on every split ({split: [len(al)] rows}) and the mode it ran in.
    batched="auto" on a CPU evaluates the first alpha one at a time, measuring its largest activation, and goes
    on one alpha at a time (with a note) where that exceeds CPU_BATCH_BYTES, batched otherwise."""
    rows: dict[str, list] = {s: [None] * len(al) for s in data_b}
    if ev.device.type == "cpu":  # on the CPU once (a GPU gets one batch at a time, as it is used)
        data_b = {s: [b.to(ev.device) for b in bs] for s, bs in data_b.items()}
    if not batched:
        _one_at_a_time(ev, plan, al, range(len(al)), data_b, train, rows)
        return rows, "one alpha at a time"
    if batched == "auto" and ev.device.type == "cpu":
        largest = [0]
        held = None
        if _alpha0_is_a(plan, ev.model, ev.device):  # evaluated as it is: no working copy for a batched path
            held = [(0, {name: ev.outputs(bs, largest if j == 0 else None, ev.model)
                         for j, (name, bs) in enumerate(data_b.items())})]
        else:
            _one_at_a_time(ev, plan, al, range(1), data_b, train, rows, largest)
        if largest[0] > CPU_BATCH_BYTES:
            notes.append(f"evaluated one alpha at a time: on a CPU that is faster than one batched model where an "
                         f"alpha's largest activation ({largest[0] / 1024:.0f} KiB) exceeds CPU_BATCH_BYTES "
                         f"({CPU_BATCH_BYTES >> 10} KiB)")
            _one_at_a_time(ev, plan, al, range(1, len(al)), data_b, train, rows, held=held)
            return rows, "one alpha at a time"
        chunk = _per_call(plan, largest[0], len(al), memory_mb, ev.device)
    else:
        chunk = _alphas_per_call(ev.model, data_b, plan, len(al), memory_mb, ev.device)
    return rows, _batched(ev, plan, al, data_b, train, chunk, batched, rows, notes)


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
      bn="recompute"). batched: "auto" (one batched model, falling back to one alpha at a time with a note; on a
      CPU one alpha at a time, with a note, when an alpha's largest activation exceeds CPU_BATCH_BYTES, where that
      was measured faster: bench/linear_path.py), True (batched; fail instead of falling back) or False (one alpha
      at a time). memory_mb: the stacked parameters and activations of one batched call stay below this, more
      alphas are done in several calls; on a CPU a batched call also keeps its largest activation under
      CPU_CALL_BYTES (larger temporaries were measured slower: fresh pages at every call). One alpha at a time
      needs a working copy of model A and at most SCRATCH_BYTES besides.
    definition / threshold: the barrier definition of the verdict (lmc_core.analysis.barrier.DEFINITIONS) and the
      stability threshold (2: Frankle et al. 2020).

    Every point is evaluated with the weights of interpolate.lerp_rows (interpolate_states' values, bit for bit, in
    any precision: exact at 0 and 1, a model with itself flat). A curve with a value that is not finite (a loss_fn
    returning NaN, logits that overflow; the error of a NaN logit is NaN, not a 0/1) has NaN barriers and the
    verdict "not finite", never "no barrier".

    Returns a PathResult: `curve` (split, alpha, loss, error, examples), `barriers` (split, metric, definition,
    barrier, instability, unit, convex), `verdicts` (the three built on first access), `notes` and `mode`. Raises,
    before any evaluation, TypeError/ValueError naming the argument for models of different architectures, unusable
    data, BatchNorm without train_data, unequal integer buffers, NonFiniteWeightsError (a ValueError naming the model
    and the parameter) for NaN or infinite weights, and ConfigError for alphas (a count from 2 to
    barrier.MAX_ALPHAS or a grid from exactly 0 to exactly 1), batch_size or memory_mb (integers >= 1), bn, batched,
    definition or threshold (a finite number > 0) out of their domains; ValueError naming `data` for labels that are
    not integer classes of the model's outputs (at the first batch evaluated).
    """
    check_pair(model_a, model_b)
    al = path_alphas(alphas)
    check_int("batch_size", batch_size, 1, MAX_BATCH)
    check_int("memory_mb", memory_mb, 1)
    check_choice("bn", bn, ("recompute", "interpolate"))
    check_choice("batched", batched, (True, False, "auto"))
    check_choice("definition", definition, B.DEFINITIONS)
    B.check_threshold(threshold)
    cfg = family_config(model_a)
    splits = data if D.is_split_dict(data) or (cfg is not None and isinstance(data, dict)) else {"eval": data}
    if cfg is not None:
        from .family_paths import family_curve

        check_finite_weights(model_a, "model_a")
        check_finite_weights(model_b, "model_b")
        curve, notes, mode = family_curve(cfg, model_a, model_b, splits, al, batch_size, device)
        return path_result(curve, notes, mode, definition, threshold, required=("loss", "error"))
    dev = torch.device(device) if device is not None else next(
        iter([*model_a.parameters(), *model_a.buffers()]), torch.empty(0)).device
    notes: list[str] = []
    plan = _Plan(model_a, model_b, bn, train_data, notes)
    recomputed = {n for n in plan.fixed if plan.bn == "recompute" and n.rsplit(".", 1)[-1] in (
        "running_mean", "running_var") and n.rpartition(".")[0] in plan.bn_modules}
    check_finite_weights(model_a, "model_a", recomputed)
    check_finite_weights(model_b, "model_b", recomputed)
    plan.to(dev)
    train = D.batches(train_data, batch_size, "train_data") if plan.bn == "recompute" else []
    data_b = {name: D.batches(s, batch_size, f"data[{name!r}]") for name, s in splits.items()}
    ev = _Evaluator(model_a, loss_fn, error_fn, dev)
    with eval_mode(model_a, model_b):
        rows, mode = _evaluate(ev, plan, al, data_b, train, batched, memory_mb, notes)
    cols = [(s, float(a), *r) for s in splits for a, r in zip(al, rows[s])]  # split, alpha, loss, examples, error
    return path_result(lambda: pd.DataFrame({k: np.array([c[i] for c in cols], dtype=t) for k, i, t in (
        ("split", 0, object), ("alpha", 1, np.float64), ("loss", 2, np.float64), ("error", 4, np.float64),
        ("examples", 3, np.int64))}), notes, mode, definition, threshold,
        required=("loss", "error") if ev.has_error else ("loss",))


@torch.no_grad()
def path_outputs(model_a: nn.Module, model_b: nn.Module, batch: Any, alphas=3, batched: bool = True) -> torch.Tensor:
    """Outputs [len(alphas), ...] of the interpolated models on one batch (a tensor, a tuple (x, ...) or a dict of
    model inputs), in eval mode; parameters and differing floating-point buffers (BatchNorm statistics included)
    are interpolated (interpolate.lerp_rows: the weights of interpolate_states, bit for bit). batched: one vmap
    call (True), else one alpha at a time (False). Raises as linear_path for alphas, batched and non-finite
    weights."""
    check_pair(model_a, model_b)
    al = path_alphas(alphas)
    check_choice("batched", batched, (True, False))
    check_finite_weights(model_a, "model_a")
    check_finite_weights(model_b, "model_b")
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
