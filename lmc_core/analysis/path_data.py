"""What `linear_path` evaluates on: splits of batches, the inputs and labels of a batch, default losses.

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

import copy
import functools
from dataclasses import dataclass
from typing import Any, Callable, Iterable

import torch
import torch.nn.functional as F
from torch import nn

from ..config import check_int
from ..domains import MAX_BATCH

LABEL_KEYS = ("labels", "label", "y", "targets")
IGNORE_INDEX = -100  # label value that counts in neither loss nor error (PyTorch's and Hugging Face's convention)


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
    if isinstance(batch, dict) and batch:
        key = next((k for k in LABEL_KEYS if k in batch), None)
        return Batch((), {k: v for k, v in batch.items() if k != key}, None if key is None else batch[key], batch)
    raise TypeError(f"{where}: a batch must be a tensor x, a tuple (x, y, ...) of tensors or a dict of tensors; got "
                    f"{type(batch).__name__}. Pass (x, y) tensors, a DataLoader, or a list of such batches.")


def _is_tensor_dict(obj) -> bool:
    return isinstance(obj, dict) and bool(obj) and all(isinstance(v, torch.Tensor) for v in obj.values())


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
    a, m, c = logits.shape
    x, lanes = logits.float(), _float_lanes()
    if x.device.type != "cpu" or c >= lanes:
        return F.cross_entropy(x.reshape(-1, c), labels.repeat(a), reduction="none").view(a, m)
    padded = -(-m // lanes) * lanes
    xt = x.new_zeros(a, c, padded)
    xt[:, :, :m] = x.transpose(1, 2)
    y = labels.new_zeros(padded)
    y[:m] = labels
    return F.cross_entropy(xt, y.expand(a, padded), reduction="none")[:, :m]


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
    ce, wrong = cross_entropy_rows(logits, flat), logits.argmax(-1) != flat
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


def largest_output(box: list):
    """A forward hook that keeps in box[0] the largest byte size of a tensor a module returned."""
    def hook(_module, _inputs, out):
        if isinstance(out, torch.Tensor):
            box[0] = max(box[0], out.numel() * out.element_size())
    return hook


@torch.no_grad()
def bn_statistics(model: nn.Module, state: dict, bn_modules: list[str], train: list[Batch], device) -> dict:
    """BatchNorm running statistics {name: tensor} of the BatchNorm layers `bn_modules` of `model` with the
    parameters and buffers `state` (one alpha's; loaded non-strictly into a copy), from the training batches:
    those of one batch holding every training example, per channel the mean and the unbiased variance of the
    layer's input over all examples (and positions), whatever the sizes of the batches (each batch weighs by its
    examples: Chan et al.'s pairwise update in float64, so a short last batch is not over-weighted as by torch's
    per-batch average, momentum=None). The BatchNorm layers run in train mode (each batch normalised by its own
    statistics, as in training), every other module in eval mode."""
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
    for b in train:
        b = b.to(device)
        work(*b.args, **b.kwargs)
    out = {}
    for n, m, (count, mu, s2) in zip(bn_modules, bns, acc):
        p = f"{n}." if n else ""
        out[p + "running_mean"] = mu.to(m.running_mean.dtype)
        out[p + "running_var"] = (s2 / max(count - 1, 1)).to(m.running_var.dtype)
    return out


LossFn = Callable[[torch.Tensor, Any], torch.Tensor]
