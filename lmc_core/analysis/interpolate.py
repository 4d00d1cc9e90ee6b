"""Linear paths between models, evaluated for every alpha as one batched model.

theta(alpha) = (1 - alpha) * theta_A + alpha * theta_B over parameters. Tied weights are one
parameter, so they are interpolated once; the sinusoidal position table is a constant
recomputed from the config (never copied from A); `keys` restricts interpolation to a subset
(e.g. adapters) with the rest held at A (or at `fixed`).
"""
from __future__ import annotations

import functools

import numpy as np
import pandas as pd
import torch
from torch import nn

from ..domains import MAX_BATCH
from ..align.check import NonFiniteWeightsError
from ..config import check_int
from .barrier import MAX_ALPHAS
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
    """The grid of linear_path's `alphas`: a number of points (an integer from 2 to MAX_ALPHAS) or a grid of
    finite numbers that increases strictly from exactly 0 to exactly 1 (at most MAX_ALPHAS points); ConfigError /
    ValueError naming `alphas` otherwise (a string, a bool, a float count, NaN)."""
    if isinstance(alphas, torch.Tensor):
        alphas = alphas.detach().cpu().numpy() if alphas.dim() else alphas.item()
    try:
        raw = np.asarray(alphas)
    except (TypeError, ValueError):  # ragged nested lists
        raw = np.asarray([object()])
    if raw.ndim == 0:  # a number of points: an integer (not a bool, a float or a string)
        return alpha_grid(alphas.item() if isinstance(alphas, np.generic) else alphas)
    if raw.dtype.kind not in "iuf":
        raise ValueError(f"alphas: a grid must hold numbers, got {raw.dtype} values {raw.ravel().tolist()[:4]}")
    a = raw.astype(np.float64)
    if a.ndim != 1 or a.size < 2 or a.size > MAX_ALPHAS or not np.all(np.isfinite(a)) or \
            not np.all(np.diff(a) > 0) or a[0] != 0.0 or a[-1] != 1.0:
        raise ValueError(f"alphas: give a number of points (an integer from 2 to {MAX_ALPHAS}) or a grid of 2 to "
                         f"{MAX_ALPHAS} finite numbers increasing strictly from exactly 0 to exactly 1; got "
                         f"{a.size} values {a.ravel().tolist()[:6]}")
    return a


def check_finite_weights(model: nn.Module, which: str, skip: set[str] = frozenset()) -> None:
    """NonFiniteWeightsError (a ValueError) naming `which` model and its first parameters or buffers with NaN or
    infinite values (`skip`: buffers that are replaced, e.g. BatchNorm statistics recomputed from train_data). A path
    to a diverged model has no barrier to read: every point between is not finite."""
    groups: dict[tuple, list] = {}  # (dtype, device) -> [(name, tensor)]: one max-norm call per group
    for n, t in [*model.named_parameters(), *model.named_buffers()]:
        if n not in skip and (t.is_floating_point() or t.is_complex()) and t.numel():
            groups.setdefault((t.dtype, t.device), []).append((n, t.detach()))
    bad = []
    for ts in groups.values():
        top = torch.stack(torch._foreach_norm([t for _, t in ts], float("inf")))  # noqa: SLF001 - NaN/inf propagate
        if not bool(torch.isfinite(top).all()):
            bad += [f"{n!r} ({int(torch.isnan(t).sum())} NaN, {int(torch.isinf(t).sum())} infinite of {t.numel()})"
                    for (n, t), m in zip(ts, top.tolist()) if not np.isfinite(m)]
    if bad:
        more = f" and {len(bad) - 4} more" if len(bad) > 4 else ""
        raise NonFiniteWeightsError(f"{which} has non-finite weights: {', '.join(bad[:4])}{more}. A linear path needs "
                                    "finite weights at both ends (every point between a finite and a NaN weight is "
                                    "NaN): use a checkpoint from before the model diverged.")


def round_once(x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """A float64 tensor rounded to `dtype` with one correct rounding (to nearest, ties to even).

    torch converts float64 to bfloat16/float16 through float32, which rounds twice; rounding to float32 *to
    odd* first makes the second rounding exact (Boldo & Melquiond 2008, "Emulation of FMA and correctly
    rounded sums: proved algorithms using rounding to odd"), as float32 keeps at least 2 more bits.
    """
    if dtype in (torch.float64, torch.float32) or not x.is_floating_point():
        return x.to(dtype)
    y = x.float()
    inexact = y.double() != x
    even = (y.view(torch.int32) & 1) == 0
    toward = torch.where(x > y.double(), torch.full_like(y, float("inf")), torch.full_like(y, float("-inf")))
    y = torch.where(inexact & even, torch.nextafter(y, toward), y)
    return y.to(dtype)


MIX_BYTES = 256 << 10  # lerp_rows / weight_writer: the float64 temporaries of one block stay below this


def _wide(t: torch.Tensor) -> torch.Tensor:
    """t in float64 (complex128 for a complex tensor): the dtype every interpolation is computed in."""
    return t.to(torch.complex128 if t.is_complex() else torch.float64)


def _store(dst: torch.Tensor, x: torch.Tensor) -> None:
    """dst[...] = x (wide) rounded once to dst's dtype."""
    dst.copy_(x if dst.dtype in (torch.float64, torch.float32, x.dtype) or dst.is_complex()
              else round_once(x, dst.dtype))


def _lerp_into(dst: torch.Tensor, a64: torch.Tensor, b64: torch.Tensor, w: float, tmp: torch.Tensor) -> None:
    """dst = lerp_exact at one alpha w of a64, b64 (the endpoints' values in float64, dst's shape); tmp: a float64
    tensor of that shape for the intermediate."""
    if w == 0.0 or w == 1.0:
        dst.copy_(a64 if w == 0.0 else b64)  # the endpoint itself (exact in dst's dtype)
    else:
        _store(dst, torch.lerp(a64, b64, w, out=tmp))


def lerp_rows(ta: torch.Tensor, tb: torch.Tensor, alphas, out: torch.Tensor | None = None) -> torch.Tensor:
    """The one interpolation routine of every path: [len(alphas), *ta.shape], row i the correctly rounded
    (1 - alpha_i) ta + alpha_i tb (lerp_exact), in ta's dtype, or written into `out` (that shape; its dtype is the
    result's: ta and tb may be float64 copies of `out`'s dtype's values, with the same result).

    Alpha 0 and 1 are ta and tb themselves (copied: exact even where the other endpoint is not finite); every other
    row is torch.lerp in float64 (complex128 for complex tensors), rounded once (round_once). The work is done in
    blocks of elements and alphas whose float64 temporaries stay below MIX_BYTES, so no model is ever held in float64
    at once; each entry is computed alone, so the values do not depend on the blocks, bit for bit (the test suite
    compares the routes). Raises TypeError for integer tensors (never interpolated)."""
    if not (ta.is_floating_point() or ta.is_complex()):
        raise TypeError(f"lerp_rows interpolates floating-point tensors; got {ta.dtype} (integer tensors must be equal "
                        "in both models and are never interpolated)")
    al = tuple(alphas) if isinstance(alphas, (list, tuple)) else tuple(
        float(x) for x in np.asarray(alphas, dtype=np.float64).reshape(-1))
    k = len(al)
    res = torch.empty((k, *ta.shape), dtype=ta.dtype, device=ta.device) if out is None else out
    dst = res if res.is_contiguous() else torch.empty(res.shape, dtype=res.dtype, device=res.device)
    fo, fa, fb = dst.view(k, -1), ta.reshape(-1), tb.reshape(-1)
    n = fa.numel()
    chunk = min(n, max(1, MIX_BYTES // 16))  # elements per block (a and b in float64)
    ends, runs, weights = _blocks(al, max(1, MIX_BYTES // 8 // max(chunk, 1)), ta.device)
    for i in ends:
        fo[i].copy_(fa if al[i] == 0.0 else fb)
    for s in range(0, n if runs else 0, chunk):
        a64, b64 = _wide(fa[s : s + chunk]), _wide(fb[s : s + chunk])
        m = a64.numel()
        for i, j in runs:
            _store(fo[i:j, s : s + chunk], torch.lerp(a64, b64, al[i]).unsqueeze(0) if j == i + 1 else
                   torch.lerp(a64.expand(j - i, m), b64.expand(j - i, m), weights[i:j]))
    if dst is not res:
        res.copy_(dst)
    return res


@functools.lru_cache(maxsize=64)
def _blocks(al: tuple, rows: int, device: torch.device) -> tuple[list[int], list[tuple[int, int]], torch.Tensor]:
    """(rows that are an endpoint, the other rows as runs [i, j) of at most `rows` consecutive ones, every alpha as
    a float64 column [len(al), 1] on `device`) of lerp_rows' alphas."""
    ends = [i for i, x in enumerate(al) if x == 0.0 or x == 1.0]
    runs: list[list[int]] = []
    for i in (i for i, x in enumerate(al) if x != 0.0 and x != 1.0):
        if runs and runs[-1][1] == i and runs[-1][1] - runs[-1][0] < rows:
            runs[-1][1] = i + 1
        else:
            runs.append([i, i + 1])
    return ends, [(i, j) for i, j in runs], torch.tensor(al, dtype=torch.float64, device=device)[:, None]


def lerp_exact(ta: torch.Tensor, tb: torch.Tensor, alpha: float) -> torch.Tensor:
    """(1 - alpha) * ta + alpha * tb computed in float64 (alpha too) and rounded once to the tensors' dtype
    (lerp_rows, the routine every path uses).

    Exact at alpha 0 and 1 (the endpoints themselves), and ta itself wherever ta == tb (torch.lerp's two-sided
    form), so a model interpolated with itself is itself at every alpha, in any precision (bf16 and fp16
    included); every other entry is within half an ulp of the exact value (plus the float64 intermediate's 2^-29
    ulp).
    """
    return lerp_rows(ta, tb, [float(alpha)])[0]


def nbytes(tensors) -> int:
    """The bytes of some tensors' elements."""
    return sum(t.numel() * t.element_size() for t in tensors)


def stacked_mix(a: dict, b: dict, alphas) -> dict:
    """{name: lerp_rows(a[name], b[name], alphas)}: every tensor interpolated at every alpha [len(alphas), ...],
    the values of interpolate_states bit for bit (exact at 0 and 1)."""
    al = tuple(float(x) for x in np.asarray(alphas, dtype=np.float64).reshape(-1))
    kinds = {(t.dtype, t.device) for t in a.values()}
    if len(kinds) != 1 or nbytes(a.values()) > MIX_BYTES or any(t.is_complex() for t in a.values()):
        return {n: lerp_rows(t, b[n], al) for n, t in a.items()}
    # a small model: one flat vector (fewer calls); each alpha's tensor is a contiguous slice of its row
    rows = lerp_rows(*(torch.cat([d[n].reshape(-1) for n in a]) for d in (a, b)), al)
    parts = rows.split([t.numel() for t in a.values()], dim=1)
    return {n: p.view(len(al), *t.shape) if t.dim() else p.view(len(al)) for (n, t), p in zip(a.items(), parts)}


def weight_writer(a: dict, b: dict, out: dict, alphas, flat_bytes: int):
    """A function i -> None that writes the interpolation at alphas[i] (lerp_rows' values: those of stacked_mix and
    interpolate_states, bit for bit) into the tensors `out` {name: tensor} in place, for every name of `a`: through
    one flat vector where the tensors share a dtype and device and take at most `flat_bytes` (its endpoints held in
    float64: 4x flat_bytes), tensor by tensor otherwise, in blocks through float64 scratch tensors of MIX_BYTES."""
    al = [float(x) for x in np.asarray(alphas, dtype=np.float64).reshape(-1)]
    if not a:
        return lambda i: None
    kinds = {(t.dtype, t.device) for t in a.values()}
    if len(kinds) == 1 and nbytes(a.values()) <= flat_bytes and not any(t.is_complex() for t in a.values()):
        fa, fb = (_wide(torch.cat([d[n].reshape(-1) for n in a])) for d in (a, b))
        ((dtype, device),) = kinds
        flat, tmp = torch.empty(fa.shape, dtype=dtype, device=device), torch.empty_like(fa)
        views = [v.view(t.shape) for v, t in zip(flat.split([t.numel() for t in a.values()]), a.values())]
        dst = [out[n] for n in a]

        def whole(i):
            _lerp_into(flat, fa, fb, al[i], tmp)
            torch._foreach_copy_(dst, views)  # noqa: SLF001 - one call
        return whole
    chunk = MIX_BYTES // 24  # elements of a, b and the result in float64 (complex128: half as many)
    scratch = {}  # (device, wide dtype) -> three 1-D tensors of `chunk` elements

    def each(i):
        w = al[i]
        for n, t in a.items():
            d = out[n]
            if w == 0.0 or w == 1.0:
                d.copy_(t if w == 0.0 else b[n])
                continue
            if not d.is_contiguous():
                d.copy_(lerp_rows(t, b[n], [w])[0])
                continue
            wide = torch.complex128 if t.is_complex() else torch.float64
            if (t.device, wide) not in scratch:
                scratch[t.device, wide] = [torch.empty(chunk, dtype=wide, device=t.device) for _ in range(3)]
            sa, sb, so = scratch[t.device, wide]
            fa, fb, fd = t.reshape(-1), b[n].reshape(-1), d.view(-1)
            for s in range(0, fa.numel(), chunk):
                m = min(chunk, fa.numel() - s)
                _lerp_into(fd[s : s + m], sa[:m].copy_(fa[s : s + m]), sb[:m].copy_(fb[s : s + m]), w, so[:m])
    return each


def check_alpha_list(alphas) -> list[float]:
    """The alphas of interpolate_states as floats: ValueError naming `alphas` unless they are 1 to MAX_ALPHAS finite
    real numbers (not strings or bools)."""
    try:
        raw = np.asarray(alphas)
    except (TypeError, ValueError):
        raw = np.asarray([object()])
    if raw.dtype.kind not in "iuf":
        raise ValueError(f"alphas must be numbers, got {raw.dtype} values {raw.ravel().tolist()[:4]}")
    al = [float(x) for x in raw.astype(np.float64).reshape(-1)]
    if not all(np.isfinite(al)) or not 1 <= len(al) <= MAX_ALPHAS:
        raise ValueError(f"alphas must be 1 to {MAX_ALPHAS} finite numbers, got {len(al)}: {al[:8]}")
    return al


def _check_eval(max_tokens, batch_size, memory_mb=None) -> None:
    if max_tokens is not None:
        check_int("max_tokens", max_tokens, 1)
    check_int("batch_size", batch_size, 1, MAX_BATCH)
    if memory_mb is not None:
        check_int("memory_mb", memory_mb, 0)  # 0: one copy per group


def interpolate_states(a: State, b: State, alphas, keys: set[str] | None = None,
                       fixed: State | None = None) -> State:
    """Stack of interpolated states [n_alpha, ...] between K=1 states a and b (weights in their own dtype,
    each entry the correctly rounded (1 - alpha) a + alpha b: see lerp_exact).

    Non-floating tensors (integer buffers) are not interpolated: they must be equal in a and b.
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
    out = {}
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
        out[name] = lerp_rows(ta[0], tb[0], al)
    return out


def evaluate_state(cfg, state: State, data, max_tokens: int | None = None, batch_size: int = 32,
                   device: str | torch.device = "cpu", memory_mb: int = 512, progress: bool = False,
                   desc: str = "eval", keep: tuple[str, ...] = ()) -> EvalResult:
    """Evaluate every copy of a stacked state (any family) on the same examples of one split (eval mode).

    data: the family's split (a token stream for the LM: its first max_tokens tokens, or all). ConfigError unless
    max_tokens is None or an integer >= 1, batch_size an integer >= 1 and memory_mb an integer >= 0 (0: one copy
    per group).
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
    check_alpha_list(alphas)
    fam = family_of(cfg)
    path = interpolate_states(a, b, alphas, keys, fixed)
    rows, results = [], {}
    for split, data in splits.items():
        r = evaluate_state(cfg, path, data, max_tokens, batch_size, device, progress=progress,
                           desc=f"interpolate ({split})", keep=keep)
        results[split] = r
        for i, al in enumerate(np.asarray(alphas)):
            row = {"split": split, "alpha": float(al), "loss": float(r.loss[i])}
            if "ppl" in fam.metrics:
                row["ppl"] = float(r.ppl[i])
            row.update({"error": float(r.error[i]), "tokens": r.tokens})
            rows.append(row)
    return (pd.DataFrame(rows), results) if keep else pd.DataFrame(rows)
