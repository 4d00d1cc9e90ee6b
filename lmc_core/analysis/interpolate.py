"""Linear paths between models, evaluated for every alpha as one batched model.

theta(alpha) = (1 - alpha) * theta_A + alpha * theta_B over parameters. Tied weights are one
parameter, so they are interpolated once; the sinusoidal position table is a constant
recomputed from the config (never copied from A); `keys` restricts interpolation to a subset
(e.g. adapters) with the rest held at A (or at `fixed`).

Every route (interpolate_states, linear_path batched or one alpha at a time) computes each weight with one routine,
lerp_rows: torch.lerp in float64, rounded once to the model's dtype (round-to-odd to float32 first for bf16/fp16):
exact at alpha 0 and 1, a model with itself flat, within an ulp of the exact value (not always the nearest: the
float64 intermediate turns some near-ties into ties).
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from torch import nn

from ..domains import MAX_BATCH
from ..align.check import NonFiniteWeightsError
from ..config import check_int
from .barrier import MAX_ALPHAS, alpha_values
from ..ensemble import State, n_copies
from ..families import EvalResult, family_of


def alpha_grid(n: int) -> np.ndarray:
    """n equally spaced alphas from 0 to 1 inclusive (exact endpoints); ConfigError unless n is an integer from 2
    to barrier.MAX_ALPHAS."""
    check_int("alphas", n, 2, MAX_ALPHAS)
    a = np.linspace(0.0, 1.0, n)
    a[0], a[-1] = 0.0, 1.0
    return a


def path_alphas(alphas) -> np.ndarray:
    """The grid of linear_path's `alphas`: a number of points (an integer from 2 to MAX_ALPHAS: a Python, numpy or
    torch integer, or a 0-d array of one) or a grid of finite numbers that increases strictly from exactly 0 to
    exactly 1 (at most MAX_ALPHAS points); ConfigError / ValueError naming `alphas` otherwise (a string, a bool, a
    float count, NaN)."""
    if isinstance(alphas, torch.Tensor):
        alphas = alphas.detach().cpu().numpy() if alphas.dim() else alphas.item()
    if np.ndim(alphas) == 0 and not isinstance(alphas, (list, tuple)):  # a number of points: an integer (not a
        # bool, a float or a string; a 0-d array's item)
        return alpha_grid(alphas.item() if isinstance(alphas, (np.generic, np.ndarray)) else alphas)
    a = alpha_values(alphas, 2)
    if not np.all(np.diff(a) > 0) or a[0] != 0.0 or a[-1] != 1.0:
        raise ValueError(f"alphas: give a number of points (an integer from 2 to {MAX_ALPHAS}) or a grid of 2 to "
                         f"{MAX_ALPHAS} finite numbers increasing strictly from 0 to 1 (its ends exactly 0 and "
                         f"exactly 1); got {a.size} values {a.ravel().tolist()[:6]}")
    return a


def check_finite_weights(model: nn.Module, which: str, skip: set[str] = frozenset()) -> None:
    """NonFiniteWeightsError (a ValueError) naming `which` model and its first parameters or buffers with NaN or
    infinite values. `skip`: buffers that are not interpolated, so cannot make the path non-finite (those held fixed
    because they are equal in both models, e.g. a -inf attention mask, and those replaced, e.g. BatchNorm
    statistics recomputed from train_data; see fixed_buffers). A path to a diverged model has no barrier to read:
    every point between is not finite."""
    groups: dict[tuple, list] = {}  # (dtype, device) -> [(name, tensor)]: one max-norm call per group
    for n, t in [*model.named_parameters(), *model.named_buffers()]:
        if n not in skip and (t.is_floating_point() or t.is_complex()) and t.numel():
            groups.setdefault((t.dtype, t.device), []).append((n, t.detach()))
    bad = []
    for ts in groups.values():
        # the 2-norm first (NaN and inf propagate; about 15x faster than the max-norm here), the max-norm where it is
        # not finite: a sum of squares may overflow for finite weights, the max-norm never does
        top = torch.stack(torch._foreach_norm([t for _, t in ts], 2.0))  # noqa: SLF001 - one call
        if not bool(torch.isfinite(top).all()):
            top = torch.stack(torch._foreach_norm([t for _, t in ts], float("inf")))  # noqa: SLF001
        if not bool(torch.isfinite(top).all()):
            bad += [f"{n!r} ({int(torch.isnan(t).sum())} NaN, {int(torch.isinf(t).sum())} infinite of {t.numel()})"
                    for (n, t), m in zip(ts, top.tolist()) if not np.isfinite(m)]
    if bad:
        more = f" and {len(bad) - 4} more" if len(bad) > 4 else ""
        raise NonFiniteWeightsError(f"{which} has non-finite weights: {', '.join(bad[:4])}{more}. A linear path needs "
                                    "finite weights at both ends (every point between a finite and a NaN weight is "
                                    "NaN): use a checkpoint from before the model diverged.")


def fixed_buffers(model_a: nn.Module, model_b: nn.Module) -> set[str]:
    """The names of the buffers of model_a that are equal (torch.equal) in model_b: held fixed on a path, never
    interpolated (check_finite_weights' `skip`). Buffers model_b lacks are not included."""
    bb = dict(model_b.named_buffers())
    return {n for n, t in model_a.named_buffers() if n in bb and t.shape == bb[n].shape and t.dtype == bb[n].dtype
            and t.device == bb[n].device and torch.equal(t, bb[n])}


def round_once(x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """A float64 tensor rounded to `dtype` once (to nearest, ties to even), not twice through float32.

    torch converts float64 to bfloat16/float16 through float32, which rounds twice; rounding to float32 *to
    odd* first makes the second rounding the only one (Boldo & Melquiond 2008, "Emulation of FMA and correctly
    rounded sums: proved algorithms using rounding to odd"), as float32 keeps at least 2 more bits. float64 and
    float32 are one conversion; `x` is not changed.
    """
    if dtype in (torch.float64, torch.float32) or not x.is_floating_point() or x.dtype != torch.float64:
        return x.to(dtype)
    out = torch.empty(x.shape, dtype=dtype, device=x.device)
    _round_into(out.view(-1), x.reshape(-1).clone(), Scratch())
    return out


# The interpolation works in blocks of elements through float64 scratch tensors allocated once per call (per path
# for weight_writer) and reused with out=: on a CPU blocks of MIX_BYTES per float64 tensor (64 Ki elements; 1 thread,
# 8 M float32 elements on an AMD EPYC: 64-256 Ki elements a block measured fastest, 9-10 ms per alpha against 3.7 ms
# for a float32 torch.lerp; 32 Ki elements took 14 ms, 2 Mi 18 ms; on an Intel Xeon, the 0.55 M weights of
# bench/linear_path.py's width-512 MLPs at 25 alphas: 23 / 25 / 34 / 35 ms a path for 32 / 64 / 128 / 256 Ki
# elements, the scratch of three blocks staying in its L2), on a GPU blocks of MIX_BYTES_GPU (a few kernel launches per
# tensor: GPT-2's largest, 38.6 M elements, is 5 blocks; the scratch of a bf16 model then takes 300 MiB of the GPU).
# No model is held in float64 at once.
MIX_BYTES = 1 << 19
MIX_BYTES_GPU = 64 << 20


def block_elements(device, wide: torch.dtype = torch.float64) -> int:
    """Elements of one interpolation block on `device`: MIX_BYTES of `wide` (float64, or complex128: half as
    many) on a CPU, MIX_BYTES_GPU on any other device."""
    size = MIX_BYTES if torch.device(device).type == "cpu" else MIX_BYTES_GPU
    return max(1, size // (16 if wide == torch.complex128 else 8))


class Scratch:
    """Scratch tensors of the interpolation blocks, by role, dtype and device: allocated on first use (grown when a
    larger block is asked) and reused, so a block never touches fresh memory (on a CPU, fresh pages cost a page
    fault each: docs/benchmarks.md)."""

    def __init__(self) -> None:
        self._bufs: dict = {}

    def get(self, role: str, dtype: torch.dtype, device: torch.device, n: int) -> torch.Tensor:
        """A 1-D tensor of n elements (its values are whatever the last user left)."""
        t = self._bufs.get((role, dtype, device))
        if t is None or t.numel() < n:
            t = self._bufs[role, dtype, device] = torch.empty(n, dtype=dtype, device=device)
        return t[:n]


def _round_into(dst: torch.Tensor, x: torch.Tensor, sc: Scratch) -> None:
    """dst[...] = x (float64, 1-D; clobbered: its magnitudes are left in it) rounded once to dst's dtype (bfloat16,
    float16): round_once's values, bit for bit, in 9 operations on reused scratch.

    Round to odd to float32: y = x rounded to nearest float32; where that is inexact, the odd one of the two float32
    neighbours of x is |y| one ulp down (where |y| > |x|) with its last bit set, i.e. (bits(y) - [|y| > |x|]) | 1
    in sign-magnitude (exact where y is inexact only: for y = inf it is the largest float, as nextafter gives). NaN
    stays NaN."""
    m = x.numel()
    dev = x.device
    y = sc.get("y", torch.float32, dev, m).copy_(x)
    back = sc.get("back", torch.float64, dev, m).copy_(y).abs_()
    ax = x.abs_()
    away = torch.gt(back, ax, out=sc.get("away", torch.bool, dev, m))
    inexact = torch.ne(back, ax, out=sc.get("inexact", torch.bool, dev, m))
    bits = y.view(torch.int32)
    bits.sub_(away.view(torch.uint8)).bitwise_or_(inexact)
    dst.copy_(y)


def store_rounded(dst: torch.Tensor, x: torch.Tensor, sc: Scratch) -> None:
    """dst[...] = x (wide, 1-D, clobbered) rounded once to dst's dtype."""
    if dst.is_complex() or dst.dtype in (torch.float64, torch.float32):
        dst.copy_(x)  # one rounding (none for float64)
    else:
        _round_into(dst, x, sc)


def _mix(fo: torch.Tensor, fa: torch.Tensor, fb: torch.Tensor, al, sc: Scratch) -> None:
    """fo[i] = lerp_rows' row of alpha al[i] for 1-D fa, fb of n elements into fo [len(al), n] (rows contiguous):
    the endpoints copied, every other row block by block (block_elements), each block of a and b widened once for
    every alpha."""
    inner = []
    for i, w in enumerate(al):
        if w == 0.0 or w == 1.0:
            fo[i].copy_(fa if w == 0.0 else fb)  # the endpoint itself (exact in any dtype)
        else:
            inner.append(i)
    n = fa.numel()
    if not inner or not n:
        return
    wide = torch.complex128 if fa.is_complex() else torch.float64
    dev = fa.device
    blk = min(n, block_elements(dev, wide))
    for s in range(0, n, blk):
        m = min(blk, n - s)
        a64 = fa[s : s + m] if fa.dtype == wide else sc.get("a", wide, dev, m).copy_(fa[s : s + m])
        b64 = fb[s : s + m] if fb.dtype == wide else sc.get("b", wide, dev, m).copy_(fb[s : s + m])
        for i in inner:
            if fo.dtype == wide:
                torch.lerp(a64, b64, al[i], out=fo[i, s : s + m])
            else:
                store_rounded(fo[i, s : s + m], torch.lerp(a64, b64, al[i], out=sc.get("r", wide, dev, m)), sc)


def _floats(alphas) -> tuple:
    return tuple(float(x) for x in alphas) if isinstance(alphas, (list, tuple)) else tuple(
        float(x) for x in np.asarray(alphas, dtype=np.float64).reshape(-1))


def lerp_rows(ta: torch.Tensor, tb: torch.Tensor, alphas, out: torch.Tensor | None = None,
              scratch: Scratch | None = None) -> torch.Tensor:
    """The one interpolation routine of every path: [len(alphas), *ta.shape], row i (1 - alpha_i) ta + alpha_i tb
    as torch.lerp in float64, rounded once to the model's dtype (round-to-odd to float32 first for bf16/fp16): exact
    at alpha 0 and 1, a model with itself flat, within an ulp of the exact value (the float64 intermediate turns
    some near-ties into ties: about 2 % of bf16/fp16 entries are an ulp from an exact rational reference). In ta's
    dtype, or written into `out` (that shape; its dtype is the result's: ta and tb may be float64 copies of `out`'s
    dtype's values, with the same result).

    Alpha 0 and 1 are ta and tb themselves (copied: exact even where the other endpoint is not finite); every other
    row is torch.lerp in float64 (complex128 for complex tensors), rounded once (round_once). The work is done in
    blocks of elements (block_elements: MIX_BYTES of float64 on a CPU, MIX_BYTES_GPU on a GPU) through reused
    scratch tensors (`scratch`: shared by several calls; a new one per call otherwise), so no model is ever held in
    float64 at once; each entry is computed alone, so the values do not depend on the blocks, bit for bit (the test
    suite compares the routes and the block sizes). Raises TypeError for integer tensors (never interpolated)."""
    if not (ta.is_floating_point() or ta.is_complex()):
        raise TypeError(f"lerp_rows interpolates floating-point tensors; got {ta.dtype} (integer tensors must be equal "
                        "in both models and are never interpolated)")
    al = _floats(alphas)
    k = len(al)
    res = torch.empty((k, *ta.shape), dtype=ta.dtype, device=ta.device) if out is None else out
    dst = res if res.is_contiguous() else torch.empty(res.shape, dtype=res.dtype, device=res.device)
    _mix(dst.view(k, -1), ta.reshape(-1), tb.reshape(-1), al, Scratch() if scratch is None else scratch)
    if dst is not res:
        res.copy_(dst)
    return res


def lerp_exact(ta: torch.Tensor, tb: torch.Tensor, alpha: float) -> torch.Tensor:
    """(1 - alpha) * ta + alpha * tb as torch.lerp in float64 (alpha too), rounded once to the tensors' dtype
    (round-to-odd to float32 first for bf16/fp16; lerp_rows, the routine every path uses).

    Exact at alpha 0 and 1 (the endpoints themselves), and ta itself wherever ta == tb is finite (torch.lerp's
    two-sided form), so a model interpolated with itself is itself at every alpha, in any precision (bf16 and fp16
    included); every other entry is within an ulp of the exact value.
    """
    return lerp_rows(ta, tb, [float(alpha)])[0]


def nbytes(tensors) -> int:
    """The bytes of some tensors' elements."""
    return sum(t.numel() * t.element_size() for t in tensors)


def stacked_mix(a: dict, b: dict, alphas) -> dict:
    """{name: lerp_rows(a[name], b[name], alphas)}: every tensor interpolated at every alpha [len(alphas), ...]
    (torch.lerp in float64, rounded once to the model's dtype; round-to-odd to float32 first for bf16/fp16), the
    values of interpolate_states bit for bit: exact at 0 and 1, a model with itself flat, within an ulp of the exact
    value. One scratch for every tensor; a model that fits one block (block_elements) goes as one flat vector."""
    al = _floats(alphas)
    sc = Scratch()
    kinds = {(t.dtype, t.device) for t in a.values()}
    if len(kinds) != 1 or any(t.is_complex() for t in a.values()) or \
            sum(t.numel() for t in a.values()) > block_elements(next(iter(kinds))[1]):
        return {n: lerp_rows(t, b[n], al, scratch=sc) for n, t in a.items()}
    # a small model: one flat vector (fewer calls); each alpha's tensor is a contiguous slice of its row
    rows = lerp_rows(*(torch.cat([d[n].reshape(-1) for n in a]) for d in (a, b)), al, scratch=sc)
    parts = rows.split([t.numel() for t in a.values()], dim=1)
    return {n: p.view(len(al), *t.shape) if t.dim() else p.view(len(al)) for (n, t), p in zip(a.items(), parts)}


def weight_writer(a: dict, b: dict, out: dict, alphas, flat_bytes: int):
    """A function i -> None that writes the interpolation at alphas[i] (lerp_rows' values: torch.lerp in float64,
    rounded once to the model's dtype, round-to-odd to float32 first for bf16/fp16: exact at alpha 0 and 1, a model
    with itself flat, within an ulp of the exact value; those of stacked_mix and interpolate_states, bit for bit)
    into the tensors `out` {name: tensor} in place, for every name of `a`: through one flat vector where the tensors
    share a dtype and device and take at most `flat_bytes` (its endpoints held in float64: 4x flat_bytes), tensor by
    tensor otherwise, in blocks (block_elements) through scratch tensors allocated once for the writer and reused at
    every alpha."""
    al = [float(x) for x in np.asarray(alphas, dtype=np.float64).reshape(-1)]
    if not a:
        return lambda i: None
    sc = Scratch()
    kinds = {(t.dtype, t.device) for t in a.values()}
    if len(kinds) == 1 and nbytes(a.values()) <= flat_bytes and not any(t.is_complex() for t in a.values()):
        fa, fb = (torch.cat([d[n].reshape(-1) for n in a]).to(torch.float64) for d in (a, b))
        ((dtype, device),) = kinds
        flat = torch.empty(fa.shape, dtype=dtype, device=device)
        views = [v.view(t.shape) for v, t in zip(flat.split([t.numel() for t in a.values()]), a.values())]
        dst = [out[n] for n in a]

        def whole(i):
            _mix(flat.view(1, -1), fa, fb, (al[i],), sc)
            torch._foreach_copy_(dst, views)  # noqa: SLF001 - one call
        return whole

    def each(i):
        w = al[i]
        for n, t in a.items():
            d = out[n]
            if w == 0.0 or w == 1.0:
                d.copy_(t if w == 0.0 else b[n])
            elif d.is_contiguous():
                _mix(d.view(1, -1), t.reshape(-1), b[n].reshape(-1), (w,), sc)
            else:
                d.copy_(lerp_rows(t, b[n], [w], scratch=sc)[0])
    return each


BN_TYPES = (nn.modules.batchnorm._BatchNorm,)  # noqa: SLF001 - the common base of BatchNorm1d/2d/3d


class PathPlan:
    """linear_path's plan for two nn.Modules: which tensors are interpolated (parameters, tied ones once, and the
    floating buffers that differ), which are held fixed (equal buffers, integer buffers, BatchNorm statistics that
    are recomputed), and what the notes say about them. ValueError for unequal integer buffers or BatchNorm without
    train_data (bn="recompute")."""

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
        self.bn_unused: set[str] = set()  # BatchNorm layers the forward pass never ran (path_data.bn_statistics)
        if self.bn_modules:
            if bn not in ("recompute", "interpolate"):
                raise ValueError(f"bn={bn!r}; choose 'recompute' (running statistics from train_data at every alpha) "
                                 "or 'interpolate'")
            if bn == "recompute" and train_data is None:
                raise ValueError(f"the model has BatchNorm layers {self.bn_modules[:4]}: their running statistics "
                                 "must be recomputed at every alpha (interpolated statistics are a known cause of "
                                 "false barriers; REPAIR, Jordan et al. 2023). Pass train_data=<training batches>, or "
                                 "bn='interpolate' to interpolate them (reported in the notes)")
            notes.append("BatchNorm running statistics " + (
                ("recomputed at every alpha on train_data as in training (the BatchNorm layers in train mode, eval "
                 "mode elsewhere), pooled over its batches by example count: " + (
                     "the statistics of one batch holding every example" if len(self.bn_modules) == 1 else
                     "the first BatchNorm layer of a path gets the statistics of one batch holding every example; "
                     "deeper layers see inputs normalised per batch by the layers before them (as in training), so "
                     "their statistics depend on batch_size") + "; a batch of one example is joined to the one before")
                if bn == "recompute" else "interpolated like parameters (bn='interpolate'; not recomputed)"))

    def to(self, device) -> "PathPlan":
        """Every tensor of the plan on `device` (evaluation on another device than the models')."""
        for d in (self.a, self.b, self.fixed, self.buf_a, self.buf_b):
            d.update({n: t.to(device) for n, t in d.items()})
        return self

    def at(self, alphas: np.ndarray) -> tuple[dict, dict]:
        """Stacked parameters and varying buffers [len(alphas), ...] at these alphas (exact at 0 and 1)."""
        mixed = stacked_mix({**self.a, **self.buf_a}, {**self.b, **self.buf_b}, alphas)
        return {n: mixed[n] for n in self.params}, {n: mixed[n] for n in self.buf_a}


def check_alpha_list(alphas) -> list[float]:
    """The alphas of interpolate_states as floats: ConfigError naming `alphas` unless they are 1 to MAX_ALPHAS
    finite real numbers (not strings or bools): barrier.alpha_values."""
    return alpha_values(alphas, flatten=True).tolist()


MAX_MEMORY_MB = 1 << 24  # memory_mb's upper bound: 16 TiB in MiB, beyond any device (a typo such as 10**30 is refused)


def _check_eval(max_tokens, batch_size, memory_mb=None) -> None:
    if max_tokens is not None:
        check_int("max_tokens", max_tokens, 1)
    check_int("batch_size", batch_size, 1, MAX_BATCH)
    if memory_mb is not None:
        check_int("memory_mb", memory_mb, 0, MAX_MEMORY_MB)  # 0: one copy per group


def interpolate_states(a: State, b: State, alphas, keys: set[str] | None = None,
                       fixed: State | None = None) -> State:
    """Stack of interpolated states [n_alpha, ...] between K=1 states a and b (weights in their own dtype,
    each entry (1 - alpha) a + alpha b as torch.lerp in float64, rounded once to the dtype (round-to-odd to float32
    first for bf16/fp16): exact at alpha 0 and 1, a model with itself flat, within an ulp of the exact value; see
    lerp_rows).

    Non-floating tensors (integer buffers) are not interpolated: they must be equal in a and b. A floating tensor
    equal in a and b that holds infinities (e.g. a -inf attention mask) is held fixed (lerp would make inf - inf a
    NaN); every other floating tensor is interpolated.
    Raises ValueError naming the tensor when names, shapes or integer buffers differ, and naming `alphas` unless they
    are 1 to MAX_ALPHAS finite numbers.
    """
    if set(a) != set(b):
        raise ValueError(f"endpoints differ in parameters: {sorted(set(a) ^ set(b))[:5]}")
    if n_copies(a) != 1 or n_copies(b) != 1:
        raise ValueError("interpolate_states takes single-copy (K=1) states [1, ...]: select one copy of a stacked "
                         "state with ensemble.copy_state(state, k), or add the copy axis to a plain state_dict with "
                         "t[None] for every tensor. For two ordinary models use lmc_core.linear_path(model_a, "
                         "model_b, data), which also handles their buffers")
    al = check_alpha_list(alphas)
    out, sc = {}, Scratch()
    for name, ta in a.items():
        tb = b[name]
        if ta.shape != tb.shape:
            raise ValueError(f"{name}: shapes differ {tuple(ta.shape)} vs {tuple(tb.shape)}")
        if keys is not None and name not in keys:
            base = (fixed or a)[name]
            out[name] = base.expand(len(al), *base.shape[1:]).clone()
            continue
        if not ta.is_floating_point():
            if not torch.equal(ta, tb):
                raise ValueError(f"{name} is an integer tensor that differs between the endpoints; it cannot be "
                                 "interpolated (make it equal in both models)")
            out[name] = ta.expand(len(al), *ta.shape[1:]).clone()
            continue
        if not ta.is_complex() and not bool(torch.isfinite(ta).all()) and torch.equal(ta, tb):
            out[name] = ta.expand(len(al), *ta.shape[1:]).clone()  # equal with infinities: fixed, not inf - inf
            continue
        out[name] = lerp_rows(ta[0], tb[0], al, scratch=sc)
    return out


def evaluate_state(cfg, state: State, data, max_tokens: int | None = None, batch_size: int = 32,
                   device: str | torch.device = "cpu", memory_mb: int = 512, progress: bool = False,
                   desc: str = "eval", keep: tuple[str, ...] = ()) -> EvalResult:
    """Evaluate every copy of a stacked state (any family) on the same examples of one split (eval mode).

    data: the family's split (a token stream for the LM: its first max_tokens tokens, or all). ConfigError unless
    max_tokens is None or an integer >= 1, batch_size an integer from 1 to MAX_BATCH and memory_mb an integer from 0
    (one copy per group) to MAX_MEMORY_MB (16 TiB in MiB).
    """
    _check_eval(max_tokens, batch_size, memory_mb)
    fam = family_of(cfg)
    examples = fam.eval_examples(cfg, data, max_tokens)
    return fam.evaluate(cfg, state, examples, batch_size, device, memory_mb, keep, progress, desc)


def interpolation_curve(cfg, a: State, b: State, splits: dict, alphas, max_tokens: int | None = None,
                        batch_size: int = 32, device: str | torch.device = "cpu", keys: set[str] | None = None,
                        progress: bool = False, fixed: State | None = None,
                        keep: tuple[str, ...] = ()) -> pd.DataFrame | tuple[pd.DataFrame, dict]:
    """The family's metrics (loss, error; perplexity for a language model) along the path a -> b on each
    split; one row per (split, alpha). keys/fixed: interpolate only `keys`, holding the rest at `fixed`
    (default a). With keep (e.g. ("examples",)), also returns {split: EvalResult} with per-example arrays.
    ConfigError / ValueError for max_tokens, batch_size or alphas out of their domains (before any evaluation)."""
    _check_eval(max_tokens, batch_size)
    al_all = np.asarray(check_alpha_list(alphas))
    fam = family_of(cfg)
    step = len(al_all) if keep else alphas_at_once(fam, cfg, a, len(al_all), batch_size)
    rows, results = [], {}
    for c0 in range(0, len(al_all), step):  # a large model's path in chunks of alphas (the same numbers)
        chunk = al_all[c0 : c0 + step]
        path = interpolate_states(a, b, chunk, keys, fixed)
        for split, data in splits.items():
            r = evaluate_state(cfg, path, data, max_tokens, batch_size, device, progress=progress,
                               desc=f"interpolate ({split})", keep=keep)
            results[split] = r
            for i, al in enumerate(chunk):
                row = {"split": split, "alpha": float(al), "loss": float(r.loss[i])}
                if "ppl" in fam.metrics:
                    row["ppl"] = float(r.ppl[i])
                row.update({"error": float(r.error[i]), "tokens": r.tokens})
                rows.append(row)
        del path
    rows.sort(key=lambda row: list(splits).index(row["split"]))  # split by split, alphas in order (stable)
    return (pd.DataFrame(rows), results) if keep else pd.DataFrame(rows)


PATH_STATE_MB = 2048  # the interpolated weights of one chunk of a path's alphas (interpolation_curve)


def alphas_at_once(fam, cfg, a: State, n_alpha: int, batch_size: int, memory_mb: int = 512) -> int:
    """How many of a path's alphas interpolation_curve interpolates and evaluates together: all of them unless their
    weights exceed PATH_STATE_MB (GPT-2 small: 0.5 GB per alpha, 15 GB for 30), then a multiple of the evaluation's
    group of copies (Family.evaluate, `memory_mb`), so that every group, and so every number, is the one the whole
    path would give."""
    per_alpha = sum(t[0].numel() * t.element_size() for t in a.values())
    if per_alpha * n_alpha <= PATH_STATE_MB << 20:
        return n_alpha
    group = max(1, min(n_alpha, (memory_mb << 20) // max(batch_size * fam.eval_bytes_per_example(cfg), 1)))
    return max(group, (PATH_STATE_MB << 20) // per_alpha // group * group)
