"""What `linear_path` evaluates on: splits of batches, the inputs and labels of a batch, default losses; the
BatchNorm statistics of training batches; the checks of the models and of the data they run on (check_pair,
check_batched, first_forward).

A split is one of
- a tuple of tensors `(x, y)` (or `(x,)`): one data set, cut into batches of `batch_size` along axis 0;
- a bare tensor `x`: inputs without labels, cut the same way;
- a dict of tensors (`{"input_ids": ..., "attention_mask": ..., "labels": ...}`): one data set, cut the same way;
- a `torch.utils.data.DataLoader` or any other iterable of batches (tuples, tensors or dicts): read once, so every
  alpha sees identical batches even when the loader shuffles.
Several splits are a dict `{name: split}` whose values are not all tensors.

In a batch, a tuple `(x, y, ...)` calls `model(x)` with labels `y`; a tensor calls `model(x)` without labels; a dict
calls `model(**batch)` without its label entry (`labels`, `label`, `y` or `targets`), which gives the labels.
"""
from __future__ import annotations

import contextlib
import copy
import functools
from dataclasses import dataclass
from collections.abc import Mapping
from typing import Any, Callable, Iterable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..config import ConfigError, check_choice, check_int
from ..data.batches import IGNORE_INDEX  # a label that counts in neither loss nor error
from ..data.hf_batches import next_token_labels
from ..domains import MAX_BATCH

LABEL_KEYS = ("labels", "label", "y", "targets")


@dataclass
class Batch:
    """Model inputs (positional and keyword) and labels (None when the batch has none) of one batch."""

    args: tuple
    kwargs: dict
    labels: torch.Tensor | None
    raw: Any  # the batch as given (what a custom loss function receives)

    def to(self, device) -> "Batch":
        """The batch on `device` (tensors only; the batch itself when every tensor is there already)."""
        if device is None or _is_on([self.args, self.kwargs, self.labels, self.raw], torch.device(device)):
            return self
        mv = lambda t: t.to(device) if isinstance(t, torch.Tensor) else t  # noqa: E731
        return Batch(tuple(mv(a) for a in self.args), {k: mv(v) for k, v in self.kwargs.items()},
                     None if self.labels is None else mv(self.labels), _move(self.raw, device))


def _is_on(obj, device: torch.device) -> bool:
    if isinstance(obj, torch.Tensor):
        return obj.device == device
    if isinstance(obj, (tuple, list)):
        return all(_is_on(o, device) for o in obj)
    if isinstance(obj, dict):
        return all(_is_on(o, device) for o in obj.values())
    return True


def _move(obj, device):
    if isinstance(obj, torch.Tensor):
        return obj.to(device)
    if isinstance(obj, (tuple, list)):
        return type(obj)(_move(o, device) for o in obj)
    if isinstance(obj, dict):
        return {k: _move(v, device) for k, v in obj.items()}
    return obj


def parse_batch(batch: Any, where: str = "data") -> Batch:
    """The inputs and labels of one batch (see the module docstring); TypeError naming `where` otherwise."""
    if isinstance(batch, torch.Tensor):
        return Batch((batch,), {}, None, batch)
    if isinstance(batch, (tuple, list)) and batch and isinstance(batch[0], torch.Tensor):
        labels = batch[1] if len(batch) > 1 and isinstance(batch[1], torch.Tensor) else None
        return Batch((batch[0],), {}, labels, batch)
    if isinstance(batch, Mapping) and batch:
        batch = dict(batch)  # a tokenizer's BatchEncoding too
        key = next((k for k in LABEL_KEYS if k in batch), None)
        return Batch((), {k: v for k, v in batch.items() if k != key}, None if key is None else batch[key], batch)
    raise TypeError(f"{where}: a batch must be a tensor x, a tuple (x, y, ...) of tensors or a dict of tensors; got "
                    f"{type(batch).__name__}. Pass (x, y) tensors, a DataLoader, or a list of such batches.")


def shifted(b: Batch, where: str = "data") -> Batch:
    """A Hugging Face causal LM's batch with its labels aligned to the logits (data.hf_batches.next_token_labels);
    ValueError naming `where` for a batch without input_ids."""
    ids = b.kwargs.get("input_ids")
    if ids is None:
        raise ValueError(f"{where}: a Hugging Face causal LM's batches are dicts with input_ids (and optionally "
                         "attention_mask and labels), or pass loss_fn=callable(outputs, batch)")
    return Batch(b.args, b.kwargs, next_token_labels(ids, b.kwargs.get("attention_mask"), b.labels, where), b.raw)


def _is_tensor_dict(obj) -> bool:
    return isinstance(obj, Mapping) and bool(obj) and all(isinstance(v, torch.Tensor) for v in obj.values())


def is_split_dict(data: Any) -> bool:
    """True if `data` is {split name: split} rather than one split."""
    return isinstance(data, dict) and bool(data) and not _is_tensor_dict(data)


def _cut(data, batch_size: int) -> list:
    if isinstance(data, torch.Tensor):
        n = data.shape[0]
        return [data[i : i + batch_size] for i in range(0, n, batch_size)]
    if isinstance(data, tuple):
        n = data[0].shape[0]
        bad = [i for i, t in enumerate(data) if not isinstance(t, torch.Tensor) or t.shape[0] != n]
        if bad:
            raise ValueError(f"data: the tensors of a tuple (x, y, ...) must share their first axis; element {bad[0]} "
                             "does not")
        return [tuple(t[i : i + batch_size] for t in data) for i in range(0, n, batch_size)]
    n = next(iter(data.values())).shape[0]
    if any(v.shape[0] != n for v in data.values()):
        raise ValueError(f"data: the tensors of a dict must share their first axis; sizes "
                         f"{ {k: v.shape[0] for k, v in data.items()} }")
    return [{k: v[i : i + batch_size] for k, v in data.items()} for i in range(0, n, batch_size)]


def batches(data: Any, batch_size: int, where: str = "data", limit: int | None = None) -> list[Batch]:
    """One split as a list of parsed batches (read once; at most `limit` batches). ConfigError unless batch_size is
    an integer >= 1 and limit None or an integer >= 1."""
    check_int("batch_size", batch_size, 1, MAX_BATCH)
    if limit is not None:
        check_int("limit", limit, 1)
    if isinstance(data, tuple) and data and all(isinstance(t, torch.Tensor) for t in data):
        raw = _cut(data, batch_size)
    elif isinstance(data, torch.Tensor) or _is_tensor_dict(data):
        raw = _cut(data, batch_size)
    elif isinstance(data, Iterable) and not isinstance(data, (str, bytes, dict)):
        raw = []
        for b in data:
            raw.append(b)
            if limit is not None and len(raw) >= limit:
                break
    else:
        raise TypeError(f"{where}: give (x, y) tensors, a tensor x, a dict of tensors, a DataLoader or an iterable of "
                        f"batches; got {type(data).__name__}")
    if limit is not None:
        raw = raw[:limit]
    out = [parse_batch(b, where) for b in raw]
    if not out:
        raise ValueError(f"{where} holds no batch")
    return out


def logits_of(out: Any) -> torch.Tensor:
    """The output tensor of a model call: the tensor itself, a `.logits` / ['logits'] entry, or a tuple's first."""
    if isinstance(out, torch.Tensor):
        return out
    if hasattr(out, "logits"):
        return out.logits
    if isinstance(out, dict) and "logits" in out:
        return out["logits"]
    if isinstance(out, (tuple, list)) and out and isinstance(out[0], torch.Tensor):
        return out[0]
    raise TypeError(f"the model returned {type(out).__name__}; linear_path needs a tensor (or an output with "
                    ".logits, or a tuple whose first element is the logits)")


def check_labels(y: torch.Tensor, n_classes: int) -> torch.Tensor:
    """The labels' positions kept (not IGNORE_INDEX) as a bool mask, or None when every position is kept;
    ValueError naming `data` unless they are integer class indices in [0, n_classes) (or IGNORE_INDEX)."""
    if y.is_floating_point() or y.is_complex() or y.dtype == torch.bool:
        raise ValueError(f"data: the default loss needs integer class labels (torch.long); got {y.dtype} labels. "
                         "Convert them (y.long()) or pass loss_fn=callable(outputs, batch) for soft targets")
    flat = y.reshape(-1)
    keep = flat != IGNORE_INDEX
    kept = flat if bool(keep.all()) else flat[keep]
    if kept.numel():
        lo, hi = int(kept.min()), int(kept.max())
        if lo < 0 or hi >= n_classes:
            raise ValueError(f"data: the labels run from {lo} to {hi}, but the model has {n_classes} outputs "
                             f"(classes 0 to {n_classes - 1}; {IGNORE_INDEX} marks a position to ignore): give labels "
                             "that fit the model's outputs, or pass loss_fn")
    return None if kept is flat else keep


def cross_entropy(outputs: torch.Tensor, batch: Batch) -> torch.Tensor:
    """Per-example (per-position for sequences) cross-entropy of logits [..., C] with labels [...] (nats).

    Positions labelled IGNORE_INDEX are dropped. Raises ValueError without labels, with mismatched shapes, or with
    labels that are not integer class indices in [0, C) (check_labels)."""
    y = batch.labels
    if y is None:
        raise ValueError("the default loss (cross-entropy on logits) needs labels: give (x, y) batches, a dict with "
                         "'labels', or loss_fn=callable(outputs, batch) -> per-example loss")
    if outputs.shape[:-1] != y.shape:
        raise ValueError(f"the default loss needs logits [..., C] and labels [...] of the same leading shape; got "
                         f"logits {tuple(outputs.shape)} and labels {tuple(y.shape)}. For another output layout "
                         "(e.g. a causal LM, whose labels are shifted) pass loss_fn=callable(outputs, batch)")
    keep = check_labels(y, outputs.shape[-1])
    ce = F.cross_entropy(outputs.reshape(-1, outputs.shape[-1]).float(), y.reshape(-1), reduction="none")
    return ce if keep is None else ce[keep]


@functools.lru_cache(maxsize=1)
def _float_lanes() -> int:
    """float32 lanes of the CPU kernels torch runs here (16 for AVX-512, 8 for AVX2; 0: unknown)."""
    return {"AVX512": 16, "AVX2": 8}.get(torch.backends.cpu.get_cpu_capability(), 0)


def cross_entropy_rows(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy (nats, float32) of logits [A, M, C] with integer labels [M], for A models at once: [A, M]
    (0 where the label is IGNORE_INDEX). The values of F.cross_entropy on the rows [A*M, C]: with fewer classes
    than the CPU's float32 lanes, torch's CPU kernel is about 8x faster with the classes on axis 1 (measured 0.2
    vs 2.0 ms for [51, 256, 10]) and gives the same values where the rows fill whole vectors, so they are put
    there, the rows padded to a multiple of the lanes."""
    return cross_entropy_and_wrong(logits, labels, wrong=False)[0]


def cross_entropy_and_wrong(logits: torch.Tensor, labels: torch.Tensor, wrong: bool = True
                            ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """cross_entropy_rows(logits, labels) [A, M] and, with `wrong`, the top-1 errors `logits.argmax(-1) != labels`
    [A, M] (bool; None without) in every row without a NaN logit and with a label other than IGNORE_INDEX (the rows
    default_metrics keeps as values: it marks NaN rows NaN and drops ignored ones; here a NaN row is wrong, and an
    ignored one is compared with class 0). Where the classes go on axis 1 (cross_entropy_rows), an error is read
    there too: right where the label's logit is above the largest of the other classes' (gather, then amax with the
    label's entry set to -inf: with the cross-entropy, 225 against 405-428 us with argmax beside it for [7, 1000,
    10]); argmax's answer everywhere when the label's logit ties another class's in any row (its first maximal index
    decides)."""
    a, m, c = logits.shape
    x, lanes = logits.float(), _float_lanes()
    if x.device.type != "cpu" or c >= lanes:
        ce = F.cross_entropy(x.reshape(-1, c), labels.repeat(a), reduction="none").view(a, m)
        return ce, (logits.argmax(-1) != labels) if wrong else None
    padded = -(-m // lanes) * lanes
    xt = x.new_zeros(a, c, padded)
    xt[:, :, :m] = x.transpose(1, 2)
    y = labels.new_zeros(padded)
    y[:m] = labels
    ce = F.cross_entropy(xt, y.expand(a, padded), reduction="none")[:, :m]
    if not wrong:
        return ce, None
    mine = xt.gather(1, y.clamp(min=0).expand(a, 1, padded))  # the label's logit (IGNORE_INDEX: class 0's)
    other = xt.scatter_(1, y.clamp(min=0).expand(a, 1, padded), float("-inf")).amax(1, keepdim=True)  # the rest's max
    mine, other = mine[:, 0, :m], other[:, 0, :m]
    if bool((mine == other).any()):  # a tie with another class: argmax's first maximal index decides
        return ce, logits.argmax(-1) != labels
    return ce, ~(mine > other)  # wrong unless the label's logit is above every other (NaN: wrong)


def _nan_where_undefined(wrong: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """The 0/1 errors `wrong` [...] as float64, NaN where the logits [..., C] hold a NaN (their argmax is no
    prediction: such an error is not a value)."""
    bad = torch.isnan(logits).any(-1)
    wrong = wrong.double()
    return wrong.masked_fill_(bad, float("nan")) if bool(bad.any()) else wrong


def top1_error(outputs: torch.Tensor, batch: Batch) -> torch.Tensor | None:
    """Per-example top-1 error (1.0 wrong, 0.0 right; NaN where the logits hold a NaN) where labels fit the logits;
    None otherwise."""
    y = batch.labels
    if y is None or y.is_floating_point() or outputs.shape[:-1] != y.shape:
        return None
    wrong = _nan_where_undefined(outputs.argmax(-1) != y, outputs).reshape(-1)
    keep = y.reshape(-1) != IGNORE_INDEX
    return wrong if bool(keep.all()) else wrong[keep]


def default_metrics(outputs: torch.Tensor, batch: Batch, cache: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """The default loss (cross_entropy, float32) and top-1 error (top1_error: bool, or float64 with NaN where the
    logits hold a NaN) of the outputs [A, ..., C] of A models on one batch whose integer labels fit them: [A, kept
    positions] each, with the same values. `cache` keeps each batch's labels and kept positions between calls (keyed
    by id(batch)); the labels are checked once per batch (check_labels: ValueError naming `data`)."""
    if id(batch) not in cache:
        flat = batch.labels.reshape(-1)
        cache[id(batch)] = (flat, check_labels(flat, outputs.shape[-1]))
    flat, keep = cache[id(batch)]
    logits = outputs.reshape(outputs.shape[0], -1, outputs.shape[-1])
    ce, wrong = cross_entropy_and_wrong(logits, flat)
    if bool(torch.isnan(ce).any()):  # a NaN logit makes its row's cross-entropy NaN: its error is no value either
        wrong = _nan_where_undefined(wrong, logits)
    return (ce, wrong) if keep is None else (ce[:, keep], wrong[:, keep])


def mean_count(values: list[torch.Tensor]) -> tuple[float, int]:
    """The mean (float64; NaN when empty) and number of the values of a list of tensors."""
    if len(values) == 1:
        v = values[0].reshape(-1).double()
    else:
        v = torch.cat([x.reshape(-1).double() for x in values]) if values else torch.zeros(0, dtype=torch.float64)
    return (float(v.mean()) if v.numel() else float("nan")), int(v.numel())


@contextlib.contextmanager
def largest_output(model: nn.Module, box: list):
    """Within it, box[0] keeps the largest byte size of a tensor a module of `model` returned: one global forward
    hook (torch.nn.modules.module.register_module_forward_hook) that counts the model's own modules only, removed on
    leaving. A hook on every module instead left linear_path's later forward passes some 3-7 % slower on small
    models (bench/linear_path.py, an Intel Xeon, 1 thread; the cause was not found)."""
    mine = {id(m) for m in model.modules()}

    def hook(module, _inputs, out):
        if id(module) in mine and isinstance(out, torch.Tensor):
            box[0] = max(box[0], out.numel() * out.element_size())
    handle = torch.nn.modules.module.register_module_forward_hook(hook)
    try:
        yield box
    finally:
        handle.remove()


class CannotRunError(ValueError):
    """The model cannot run on a split of data (a wrong width, dtype or range): raised at the first forward pass on
    it, naming the argument (`data`, `train_data`) and keeping the first line of the model's own error."""


_NOT_DATA = (MemoryError, getattr(torch, "OutOfMemoryError", MemoryError))  # the device's, not the data's fault


def cannot_run(where: str, model: nn.Module, exc: BaseException) -> CannotRunError:
    """The CannotRunError naming `where` for the failure `exc` of the first forward pass of `model` on it."""
    text = str(exc).strip().splitlines()
    first = f"{type(exc).__name__}: {text[0][:200]}" if text else type(exc).__name__
    return CannotRunError(f"{where}: {type(model).__name__} cannot run on it ({first}); give batches of the model's "
                          "own inputs (the shapes, dtype and value range its forward() takes)")


@contextlib.contextmanager
def first_forward(where: str, model: nn.Module, first: bool = True):
    """Around a forward pass: when `first` (the first pass on `where`'s data), any failure becomes a CannotRunError
    naming `where` (out of memory excepted); any other pass's failure propagates as it is."""
    if not first:
        yield
        return
    try:
        yield
    except _NOT_DATA:
        raise
    except Exception as exc:  # noqa: BLE001 - any failure of the first forward pass is data the model cannot take
        raise cannot_run(where, model, exc) from None


def examples_of(b: Batch) -> int | None:
    """The number of examples of a batch: the first axis of its first input tensor (None without one)."""
    t = next((v for v in (*b.args, *b.kwargs.values()) if isinstance(v, torch.Tensor) and v.dim()), None)
    return None if t is None else int(t.shape[0])


def _concat(b: Batch, c: Batch) -> Batch | None:
    """The batch of b's examples followed by c's (inputs and labels; None where they cannot be joined: other than
    tensors with one first axis, or different keys)."""
    if len(b.args) != len(c.args) or b.kwargs.keys() != c.kwargs.keys() or (b.labels is None) != (c.labels is None):
        return None
    pairs = [*zip(b.args, c.args), *((b.kwargs[k], c.kwargs[k]) for k in b.kwargs)]
    nb, nc = examples_of(b), examples_of(c)
    if not all(isinstance(u, torch.Tensor) and isinstance(v, torch.Tensor) and u.dim() and v.dim()
               and u.shape[1:] == v.shape[1:] and u.shape[0] == nb and v.shape[0] == nc for u, v in pairs):
        return None
    cat = lambda u, v: torch.cat([u, v.to(u.device)])  # noqa: E731
    k = len(b.args)
    joined = [cat(u, v) for u, v in pairs]
    labels = None if b.labels is None else cat(b.labels, c.labels) if b.labels.dim() and c.labels.dim() else None
    return Batch(tuple(joined[:k]), dict(zip(b.kwargs, joined[k:])), labels, None)


def no_single_batches(train: list[Batch]) -> list[Batch]:
    """The training batches with no batch of one example (BatchNorm in train mode cannot normalise one example per
    channel): a batch of one is joined to the batch before it (the first, to the one after it), so 257 examples in
    batches of 128 are 128 + 129. Batches that cannot be joined (inputs that are not tensors) are kept as they are."""
    out: list[Batch] = []
    for b in train:
        if out and (examples_of(out[-1]) == 1 or examples_of(b) == 1):
            joined = _concat(out[-1], b)
            if joined is not None:
                out[-1] = joined
                continue
        out.append(b)
    return out


@torch.no_grad()
def bn_statistics(model: nn.Module, state: dict, bn_modules: list[str], train: list[Batch], device,
                  unused: set[str] | None = None, where: str = "train_data") -> dict:
    """BatchNorm running statistics {name: tensor} of the BatchNorm layers `bn_modules` of `model` with the
    parameters and buffers `state` (one alpha's; loaded non-strictly into a copy), from the training batches, as in
    training: every BatchNorm layer runs in train mode (each batch normalised by its own statistics), every other
    module in eval mode, and each layer's statistics are the mean and the unbiased variance per channel of the
    inputs it received over all examples (and positions), pooled over the batches by their example counts (Chan et
    al.'s pairwise update in float64; a short last batch is not over-weighted as by torch's per-batch average,
    momentum=None). So:
    - a BatchNorm layer no other BatchNorm layer precedes (the first of a path through the model) gets exactly the
      statistics of one batch holding every training example, whatever the batch sizes;
    - a deeper layer receives inputs normalised per batch by the layers before it (as in training), so its
      statistics depend on the batching (batch_size) and differ from those of one batch of every example.
    Batches of one example are joined to a neighbour first (no_single_batches: train mode needs two values per
    channel). A layer the forward pass never runs gets no statistics: it is left out of the result (so keeps the
    ones it has; they cannot affect the outputs) and its name is added to `unused`. CannotRunError naming `where`
    if the model cannot run on the first batch."""
    work = copy.deepcopy(model).to(device)
    work.load_state_dict(state, strict=False)
    work.eval()
    bns = [work.get_submodule(n) for n in bn_modules]
    acc: list[list | None] = [None] * len(bns)  # per layer: [examples, mean, sum of squared deviations] (float64)

    def pooled(j: int):
        def hook(_module, inputs):
            x = inputs[0].detach()
            dims = [0, *range(2, x.dim())]
            n, xd = x.numel() // max(x.shape[1], 1), x.double()
            mean = xd.mean(dims)
            m2 = (xd - mean.view(1, -1, *[1] * (x.dim() - 2))).square_().sum(dims)
            if acc[j] is None:
                acc[j] = [n, mean, m2]
            else:
                count, mu, s2 = acc[j]
                total, delta = count + n, mean - mu
                acc[j] = [total, mu + delta * (n / total), s2 + m2 + delta.square() * (count * n / total)]
        return hook

    for j, m in enumerate(bns):
        m.train()
        m.register_forward_pre_hook(pooled(j))
    for k, b in enumerate(no_single_batches(train)):
        b = b.to(device)
        with first_forward(where, model, k == 0):
            work(*b.args, **b.kwargs)
    out = {}
    for n, m, a in zip(bn_modules, bns, acc):
        if a is None:  # never ran: its statistics cannot affect the outputs
            if unused is not None:
                unused.add(n)
            continue
        count, mu, s2 = a
        p = f"{n}." if n else ""
        out[p + "running_mean"] = mu.to(m.running_mean.dtype)
        out[p + "running_var"] = (s2 / max(count - 1, 1)).to(m.running_var.dtype)
    return out


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


def check_batched(batched, allowed: tuple = (True, False, "auto")):
    """ConfigError naming `batched` unless it is exactly one of `allowed` (a bool, not 1 or 0; or the string "auto")."""
    if not (isinstance(batched, (bool, np.bool_)) or (isinstance(batched, str) and batched in allowed)):
        raise ConfigError(f"batched={batched!r} is not valid; choose one of {list(allowed)} (a bool, not "
                          f"{type(batched).__name__})")
    return check_choice("batched", bool(batched) if isinstance(batched, np.bool_) else batched, allowed)


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


LossFn = Callable[[torch.Tensor, Any], torch.Tensor]
