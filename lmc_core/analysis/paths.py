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
  "REPAIR"), as in training (path_data.bn_statistics: the first BatchNorm layer of a path gets the statistics of one
  batch holding every example; deeper layers see inputs normalised per batch, as in training, pooled by example
  count), or interpolated like parameters when asked (bn="interpolate"); a BatchNorm layer the forward pass never
  runs keeps model A's statistics (they cannot affect the outputs; said in the notes);
- other floating-point buffers are used as they are when equal in both models (an equal -inf mask included) and
  interpolated when not; only the parameters and the interpolated buffers must be finite;
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
from ..data.hf_batches import is_causal_lm, is_hf_batch
from .family_paths import LORA_PATHS, peft_pair
from . import path_data as D
from .interpolate import (MAX_MEMORY_MB, PathPlan, check_finite_weights, fixed_buffers, nbytes, path_alphas,
                          weight_writer)
from .packing import packable, packed_writer, pack_slots
from .path_data import check_batched, check_pair, eval_mode, family_config  # noqa: F401 - align_models' too
from .path_result import PathResult, path_result

class _Evaluator:
    """Loss and error of many alphas on one split, batched or one alpha at a time."""

    def __init__(self, model, loss_fn, error_fn, device, where: dict[str, str] | None = None):
        self.model, self.device = model, device
        self.where = where or {}  # split name -> the argument it came from ("data", "data['test']")
        self.checked: set[str] = set()  # splits the model has run on (a failure there is the data's: CannotRunError)
        self.loss_fn, self.error_fn = loss_fn, error_fn
        self.work: nn.Module | None = None  # a copy of the model for one alpha at a time
        self.slots: dict[str, torch.Tensor] = {}  # its parameters and buffers by name
        self.write = None  # i -> None: alpha i's weights into the working copy (packing or interpolate.weight_writer)
        self.packed: list | None = None  # the packed slots and their storage (packing.pack_slots), while they hold
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

    def first(self, split: str | None, j: int):
        """D.first_forward around the forward pass of batch j of `split`: its first on that split (j == 0, not run
        before) turns a failure into a CannotRunError naming the argument."""
        return D.first_forward(self.where.get(split, "data"), self.model,
                               split is not None and j == 0 and split not in self.checked)

    def vmapped(self, params: dict, buffers: dict, fixed: dict, b: D.Batch, split: str | None, j: int
                ) -> torch.Tensor:
        """The outputs [A, ...] of the A alphas of `params` on batch j of `split` as one vmapped call. A failure on
        the first batch of a split not run before is tried again without vmap at the first alpha: CannotRunError
        naming the split's argument if the model cannot run on it there either, vmap's failure as it is otherwise."""
        try:
            out = torch.func.vmap(lambda p, bf: self.call(p, {**fixed, **bf}, b))(params, buffers)
        except Exception:
            if j == 0 and split is not None and split not in self.checked:
                with self.first(split, 0):  # the data's fault, or vmap's?
                    self.call({k: t[0] for k, t in params.items()}, {**fixed, **{k: t[0] for k, t in buffers.items()}},
                              b)
            raise
        if split is not None:
            self.checked.add(split)
        return out

    def batched(self, params: dict, buffers: dict, fixed: dict, data: list[D.Batch], split: str | None = None
                ) -> list[tuple]:
        """All alphas of `params` ([A, ...] each) as one vmapped call per batch; the default loss and error are
        computed for every alpha at once, a custom loss_fn / error_fn alpha by alpha (vmapped: CannotRunError
        naming the split's argument if the model cannot run on its first batch)."""
        n = next(iter(params.values())).shape[0]
        loss_sum, err_sum = torch.zeros(n, dtype=torch.float64), torch.zeros(n, dtype=torch.float64)
        count, err_count = 0, 0
        for j, b in enumerate(data):
            b = b.to(self.device)
            out = self.vmapped(params, buffers, fixed, b, split, j)  # [A, ...]
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

    def outputs(self, data: list[D.Batch], probe: list | None = None, model: nn.Module | None = None,
                split: str | None = None) -> list:
        """The output tensor of `model` (default: the working copy as loaded) on every batch of `split`; `probe`: a
        list that receives the bytes of the largest activation of the first batch. CannotRunError naming the split's
        argument if the model cannot run on its first batch (the first time)."""
        model, outs = self.work if model is None else model, []
        for j, b in enumerate(data):
            b = b if self.device.type == "cpu" else b.to(self.device)  # _evaluate moved it
            with D.largest_output(model, probe) if probe is not None and j == 0 else contextlib.nullcontext(), \
                    self.first(split, j):
                out = model(*b.args, **b.kwargs)
            if split is not None:
                self.checked.add(split)
            outs.append(D.logits_of(out))
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
# batched="auto" on a CPU: one alpha at a time where an alpha's largest activation is larger than CPU_BATCH_BYTES
# (measured on an Intel Xeon, 1 thread, 51 alphas, since one alpha at a time mixes into a packed copy: batched was
# faster at 8-24 KiB, one at a time at 32 KiB, for MLPs of widths 16-64 on 128-512 examples; docs/benchmarks.md)
CPU_BATCH_BYTES = 24 << 10


@torch.no_grad()
def _alphas_per_call(ev: _Evaluator, data: dict, plan: PathPlan, n: int, memory_mb: int) -> int:
    """How many alphas one vmapped call evaluates: the stacked parameters and the largest activation (measured
    with forward hooks on one batch of the first split: CannotRunError naming it if the model cannot run on it)
    under memory_mb, and on a CPU the largest activation under CPU_CALL_BYTES."""
    model, device, largest = ev.model, ev.device, [0]
    split = next(iter(data))
    b = data[split][0].to(device)
    with D.largest_output(model, largest), eval_mode(model), ev.first(split, 0):
        torch.func.functional_call(model, {**plan.fixed, **plan.buf_a, **plan.a}, b.args, b.kwargs)  # model A
    ev.checked.add(split)
    return _per_call(plan, largest[0], n, memory_mb, device)


def _per_call(plan: PathPlan, largest: int, n: int, memory_mb: int, device) -> int:
    chunk = (memory_mb << 20) // (_param_bytes(plan) + 4 * largest + 1)
    if torch.device(device).type == "cpu":
        chunk = min(chunk, CPU_CALL_BYTES // max(largest, 1))
    chunk = int(max(1, min(n, chunk)))
    return -(-n // -(-n // chunk))  # as many calls, of equal sizes (equal allocations reuse each other's memory)


def _param_bytes(plan: PathPlan) -> int:
    return nbytes([*plan.a.values(), *plan.buf_a.values()])


def _one_at_a_time(ev: _Evaluator, plan: PathPlan, al: np.ndarray, todo: range, data_b: dict, train: list,
                   rows: dict, probe: list | None = None, held: list | None = None) -> None:
    """Rows of the alphas al[todo], one alpha at a time in a working copy of the model (interpolate.weight_writer:
    the values of plan.at); the outputs of up to SCRATCH_BYTES of alphas are held and summarised together
    (ev.summary), with `held` [(alpha index, {split: outputs})] of alphas evaluated already."""
    fixed = {n: t for n, t in plan.fixed.items() if n not in plan.buf_a}
    a, b = {**plan.a, **plan.buf_a}, {**plan.b, **plan.buf_b}
    if ev.work is None:
        ev.load({})
        slots = [ev.slots[n] for n in a]
        if packable(list(a.values()), slots, ev.work):
            ev.write = packed_writer(list(a.values()), list(b.values()), pack_slots(slots), al)
            ev.packed = [(t, t.data_ptr()) for t in slots]
        else:
            ev.write = weight_writer(a, b, ev.slots, al, SCRATCH_BYTES)
    held = held or []
    size = nbytes(o for _, outs in held for v in outs.values() for o in v)
    for i in todo:
        ev.load(fixed)  # as the model left them: a forward may change a buffer
        ev.write(i)
        if plan.bn == "recompute":
            mixed = {n: ev.slots[n] for n in plan.params}
            state = {**plan.fixed, **{n: ev.slots[n] for n in plan.buf_a}, **mixed}
            ev.load(D.bn_statistics(ev.model, state, plan.bn_modules, train, ev.device, plan.bn_unused))
        outs = {name: ev.outputs(bs, probe if (i, j) == (todo.start, 0) else None, split=name)
                for j, (name, bs) in enumerate(data_b.items())}
        if ev.packed and any(t.data_ptr() != ptr for t, ptr in ev.packed):  # the forward gave a weight new storage
            ev.write, ev.packed = weight_writer(a, b, ev.slots, al, SCRATCH_BYTES), None  # write into it from now on
        held.append((i, outs))
        size += nbytes(o for v in outs.values() for o in v)
        if size > SCRATCH_BYTES or i == todo.stop - 1:
            for name, bs in data_b.items():
                for (k, _), r in zip(held, ev.summary([o[name] for _, o in held], bs)):
                    rows[name][k] = r
            held, size = [], 0


def _batched(ev: _Evaluator, plan: PathPlan, al: np.ndarray, data_b: dict, train: list, chunk: int,
             batched: bool | str, rows: dict, notes: list[str]) -> str:
    """Rows of every alpha, `chunk` alphas per vmapped call; on a failure of vmap (batched="auto") the rest one
    alpha at a time, with a note. Returns the mode."""
    for c0 in range(0, len(al), chunk):
        idx = list(range(c0, min(len(al), c0 + chunk)))
        params, bufs = plan.at(al[idx])
        if plan.bn == "recompute":
            stats = [D.bn_statistics(ev.model, {**plan.fixed, **{n: t[i] for n, t in bufs.items()},
                                                **{n: t[i] for n, t in params.items()}}, plan.bn_modules, train,
                                     ev.device, plan.bn_unused) for i in range(len(idx))]
            bufs.update({n: torch.stack([s[n] for s in stats]) for n in stats[0]})  # layers that ran (all alphas)
        fixed = {n: t for n, t in plan.fixed.items() if n not in bufs}
        for name, bs in data_b.items():
            try:
                done = ev.batched(params, bufs, fixed, bs, name)
            except D.CannotRunError:
                raise  # the data's fault, not vmap's: no fallback
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


def _alpha0_is_a(plan: PathPlan, model: nn.Module, device: torch.device) -> bool:
    """True if the model at alpha 0 is model A as it is: its own tensors on `device`, no buffer recomputed or
    interpolated (the interpolation is exact at 0: interpolate.lerp_rows); checked for a small model only (for a
    large one the check costs more than the working copy it may save)."""
    return plan.bn != "recompute" and not plan.buf_a and _param_bytes(plan) <= SCRATCH_BYTES and all(
        t.device == device for t in [*model.parameters(), *model.buffers()])


def _evaluate(ev: _Evaluator, plan: PathPlan, al: np.ndarray, data_b: dict, train: list, batched: bool | str,
              memory_mb: int, notes: list[str]) -> tuple[dict, str]:
    """(loss, examples, error) of every alpha on every split ({split: [len(al)] rows}) and the mode it ran in.
    batched="auto" on a CPU evaluates the first alpha one at a time, measuring its largest activation, and goes
    on one alpha at a time (with a note) where that exceeds CPU_BATCH_BYTES, batched otherwise. The first forward
    pass on each split (and on train_data) raises CannotRunError naming it if the model cannot run on it."""
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
            held = [(0, {name: ev.outputs(bs, largest if j == 0 else None, ev.model, name)
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
        chunk = _alphas_per_call(ev, data_b, plan, len(al), memory_mb)
    return rows, _batched(ev, plan, al, data_b, train, chunk, batched, rows, notes)


@torch.no_grad()
def linear_path(model_a: nn.Module, model_b: nn.Module, data: Any, loss_fn: D.LossFn | None = None, alphas=11, *,
                error_fn=None, train_data: Any = None, bn: str = "recompute", batched: bool | str = "auto",
                batch_size: int = 256, memory_mb: int = 1024, definition: str = "mean", threshold: float = 2.0,
                device: str | torch.device | None = None, lora: str = "merged") -> PathResult:
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
    alphas: a number of points (default 11; an integer, also numpy's or a 0-d array) or a grid from exactly 0 to
      exactly 1.
    train_data: training batches for the BatchNorm statistics (needed when the model has BatchNorm and
      bn="recompute"; path_data.bn_statistics: every BatchNorm layer in train mode, as in training, each layer's
      statistics pooled over the batches by example count, so the first BatchNorm layer of a path gets those of one
      batch holding every example, while deeper layers see inputs normalised per batch and depend on batch_size;
      a batch of one example is joined to the one before; a layer that never runs keeps model A's statistics, said
      in the notes). batched: "auto" (one batched model, falling back to one alpha at a time with a note; on a
      CPU one alpha at a time, with a note, when an alpha's largest activation exceeds CPU_BATCH_BYTES, where that
      was measured faster: bench/linear_path.py), True (batched; fail instead of falling back) or False (one alpha
      at a time; exactly a bool or "auto", not 1 or 0). memory_mb (1 to MAX_MEMORY_MB, 16 TiB in MiB): the
      stacked parameters and activations of one batched call stay below this, more
      alphas are done in several calls; on a CPU a batched call also keeps its largest activation under
      CPU_CALL_BYTES (larger temporaries were measured slower: fresh pages at every call). One alpha at a time
      needs a working copy of model A and at most SCRATCH_BYTES besides; for a model of at most 4 M weights
      (packing.PACK_BYTES) also its two endpoints in float64, 16 bytes a weight (one mix an alpha: fewer passes).
    definition / threshold: the barrier definition of the verdict (lmc_core.analysis.barrier.DEFINITIONS) and the
      stability threshold (2: Frankle et al. 2020).

    Every point is evaluated with the weights of interpolate.lerp_rows (interpolate_states' values, bit for bit, in
    any precision: exact at 0 and 1, a model with itself flat). A curve with a value that is not finite (a loss_fn
    returning NaN, logits that overflow; the error of a NaN logit is NaN, not a 0/1) has NaN barriers and the
    verdict "not finite", never "no barrier".
    lora: for lmc_core models with LoRA, "merged" (the straight line between the adapted weights W + (alpha/r) A B,
      the path mode-connectivity studies of adapters report; family_paths.merge_lora) or "factors" (A and B
      interpolated each, a curved path in the adapted weights); the notes say which.

    Returns a PathResult: `curve` (split, alpha, loss, error, examples), `barriers` (split, metric, definition,
    barrier, instability, unit, convex), `verdicts` (the three built on first access), `notes` and `mode`. Raises,
    before any evaluation, TypeError/ValueError naming the argument for models of different architectures, unusable
    data, BatchNorm without train_data, unequal integer buffers, NonFiniteWeightsError (a ValueError naming the model
    and the parameter) for NaN or infinite parameters or buffers that differ between the models (a buffer equal in
    both, such as a -inf mask, is held fixed and may hold infinities), and ConfigError for alphas (a count from 2
    to barrier.MAX_ALPHAS or a grid from exactly 0 to exactly 1), batch_size (1 to MAX_BATCH), memory_mb (1 to
    MAX_MEMORY_MB), bn, batched, definition or threshold (a finite number > 0) out of their domains. At the first
    batch evaluated: path_data.CannotRunError (a ValueError) naming `data` (`data['name']`) or `train_data` when
    the model cannot run on it (a wrong width or dtype: the model's own error's first line is kept), ValueError
    naming `data` for labels that are not integer classes of the model's outputs. A failure on a later batch
    propagates as it is.
    """
    check_pair(model_a, model_b)
    al = path_alphas(alphas)
    check_int("batch_size", batch_size, 1, MAX_BATCH)
    check_int("memory_mb", memory_mb, 1, MAX_MEMORY_MB)
    check_choice("bn", bn, ("recompute", "interpolate"))
    batched = check_batched(batched)
    check_choice("lora", lora, LORA_PATHS)
    check_choice("definition", definition, B.DEFINITIONS)
    B.check_threshold(threshold)
    cfg = family_config(model_a)
    named = D.is_split_dict(data) or (cfg is not None and isinstance(data, dict) and not is_hf_batch(data))
    splits = data if named else {"eval": data}
    if cfg is not None:
        from .family_paths import family_curve

        held = fixed_buffers(model_a, model_b)  # equal buffers are not interpolated: only the rest must be finite
        check_finite_weights(model_a, "model_a", held)
        check_finite_weights(model_b, "model_b", held)
        curve, notes, mode = family_curve(cfg, model_a, model_b, splits, al, batch_size, device, lora)
        return path_result(curve, notes, mode, definition, threshold, required=("loss", "error"))
    model_a, model_b, notes = peft_pair(model_a, model_b, lora)
    low = sorted({str(t.dtype)[6:] for t in model_a.parameters() if t.dtype in (torch.bfloat16, torch.float16)})
    if low:
        notes.append(f"evaluated in {'/'.join(low)}, the models' own precision: every interpolated weight is rounded "
                     "once to it (from float64)")
    dev = torch.device(device) if device is not None else next(
        iter([*model_a.parameters(), *model_a.buffers()]), torch.empty(0)).device
    plan = PathPlan(model_a, model_b, bn, train_data, notes)
    # only parameters and interpolated buffers must be finite: plan.fixed (equal in both models, or BatchNorm
    # statistics recomputed at every alpha) is never interpolated
    check_finite_weights(model_a, "model_a", set(plan.fixed))
    check_finite_weights(model_b, "model_b", set(plan.fixed))
    plan.to(dev)
    train = D.batches(train_data, batch_size, "train_data") if plan.bn == "recompute" else []
    where = {name: f"data[{name!r}]" if named else "data" for name in splits}
    data_b = {name: D.batches(s, batch_size, where[name]) for name, s in splits.items()}
    if is_causal_lm(model_a) and loss_fn is None:  # the default loss: whatever error_fn is
        data_b = {name: [D.shifted(b, where[name]) for b in bs] for name, bs in data_b.items()}
        notes.append(f"a Hugging Face causal LM ({type(model_a).__name__}): each position's logits are scored "
                     "against the next token (its labels, default input_ids, shifted as in the model's own loss); "
                     "the last position, padding (attention_mask 0) and -100 labels count nowhere")
    ev = _Evaluator(model_a, loss_fn, error_fn, dev, where)
    with eval_mode(model_a, model_b):
        rows, mode = _evaluate(ev, plan, al, data_b, train, batched, memory_mb, notes)
    if plan.bn_unused:
        notes.append(f"BatchNorm layers the forward pass never ran on train_data keep model A's running statistics "
                     f"(they cannot affect the outputs): {sorted(plan.bn_unused)}")
    cols = [(s, float(a), *r) for s in splits for a, r in zip(al, rows[s])]  # split, alpha, loss, examples, error
    return path_result(lambda: pd.DataFrame({k: np.array([c[i] for c in cols], dtype=t) for k, i, t in (
        ("split", 0, object), ("alpha", 1, np.float64), ("loss", 2, np.float64), ("error", 4, np.float64),
        ("examples", 3, np.int64))}), notes, mode, definition, threshold,
        required=("loss", "error") if ev.has_error else ("loss",))


@torch.no_grad()
def path_outputs(model_a: nn.Module, model_b: nn.Module, batch: Any, alphas=3, batched: bool = True) -> torch.Tensor:
    """Outputs [len(alphas), ...] of the interpolated models on one batch (a tensor, a tuple (x, ...) or a dict of
    model inputs), in eval mode; parameters and differing floating-point buffers (BatchNorm statistics included)
    are interpolated (interpolate.lerp_rows: the weights of interpolate_states, bit for bit); buffers equal in both
    models are held fixed. batched: one vmap call (True), else one alpha at a time (False). Raises as linear_path for
    alphas, batched (exactly True or False) and non-finite parameters or interpolated buffers, and CannotRunError (a
    ValueError) naming `batch` if the model cannot run on it."""
    check_pair(model_a, model_b)
    al = path_alphas(alphas)
    batched = check_batched(batched, (True, False))
    plan = PathPlan(model_a, model_b, "interpolate", None, [])
    check_finite_weights(model_a, "model_a", set(plan.fixed))  # equal buffers are held fixed, never interpolated
    check_finite_weights(model_b, "model_b", set(plan.fixed))
    b = D.parse_batch(batch, "batch")
    ev = _Evaluator(model_a, None, None, None, {"batch": "batch"})
    params, bufs = plan.at(al)
    fixed = {n: t for n, t in plan.fixed.items() if n not in bufs}
    with eval_mode(model_a, model_b):
        if batched:
            return ev.vmapped(params, bufs, fixed, b, "batch", 0)
        outs = []
        for i in range(len(al)):
            with ev.first("batch", i):
                outs.append(ev.call({n: t[i] for n, t in params.items()},
                                    {**fixed, **{n: t[i] for n, t in bufs.items()}}, b))
        return torch.stack(outs)
