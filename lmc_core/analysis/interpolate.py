"""Linear paths between models, evaluated for every alpha as one batched model.

theta(alpha) = (1 - alpha) * theta_A + alpha * theta_B over parameters. Tied weights are one
parameter, so they are interpolated once; the sinusoidal position table is a constant
recomputed from the config (never copied from A); `keys` restricts interpolation to a subset
(e.g. adapters) with the rest held at A (or at `fixed`).
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from ..config import check_int
from ..ensemble import State, n_copies
from ..families import EvalResult, family_of


def alpha_grid(n: int) -> np.ndarray:
    """n equally spaced alphas from 0 to 1 inclusive (exact endpoints)."""
    check_int("alphas", n, 2)
    a = np.linspace(0.0, 1.0, n)
    a[0], a[-1] = 0.0, 1.0
    return a


def round_once(x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """A float64 tensor rounded to `dtype` with one correct rounding (to nearest, ties to even).

    torch converts float64 to bfloat16/float16 through float32, which rounds twice; rounding to float32 *to
    odd* first makes the second rounding exact (Boldo & Melquiond 2008, "Emulation of FMA and correctly
    rounded sums: proved algorithms using rounding to odd"), as float32 keeps at least 2 more bits.
    """
    if dtype in (torch.float64, torch.float32):
        return x.to(dtype)
    y = x.float()
    inexact = y.double() != x
    even = (y.view(torch.int32) & 1) == 0
    toward = torch.where(x > y.double(), torch.full_like(y, float("inf")), torch.full_like(y, float("-inf")))
    y = torch.where(inexact & even, torch.nextafter(y, toward), y)
    return y.to(dtype)


def lerp_exact(ta: torch.Tensor, tb: torch.Tensor, alpha: float) -> torch.Tensor:
    """(1 - alpha) * ta + alpha * tb computed in float64 (alpha too) and rounded once to the tensors' dtype.

    torch.lerp's two-sided form is exact at alpha 0 and 1 and returns ta itself when ta == tb, so a model
    interpolated with itself is itself at every alpha, in any precision (bf16 and fp16 included); every other
    entry is within half an ulp of the exact value (plus the float64 intermediate's 2^-29 ulp).
    """
    if ta.dtype == torch.float64:
        return torch.lerp(ta, tb, float(alpha))
    return round_once(torch.lerp(ta.double(), tb.double(), float(alpha)), ta.dtype)


def nbytes(tensors) -> int:
    """The bytes of some tensors' elements."""
    return sum(t.numel() * t.element_size() for t in tensors)


def stacked_mix(a: dict, b: dict, alphas) -> dict:
    """{name: (1 - w) * a + w * b stacked over the alphas [len(alphas), ...]}, w = alphas rounded to each tensor's
    dtype (exact at 0 and 1)."""
    weights: dict[tuple, tuple] = {}  # (device, dtype) -> (1 - w, w) [len(alphas)]
    for t in a.values():
        if (t.device, t.dtype) not in weights:
            w = torch.as_tensor(np.asarray(alphas, dtype=np.float64)).to(t.device, t.dtype)
            weights[t.device, t.dtype] = (1 - w, w)
    return {n: (u.view(-1, *([1] * t.dim())) * t).add_(w.view(-1, *([1] * t.dim())) * b[n])
            for n, t in a.items() for u, w in [weights[t.device, t.dtype]]}


def weight_writer(a: dict, b: dict, out: dict, alphas, flat_bytes: int):
    """A function i -> None that writes (1 - w) * a + w * b, w = alphas[i] rounded to each tensor's dtype (the
    products and the sum rounded one by one, as linear_path's stacked interpolation computes them), into the
    tensors `out` {name: tensor} in place, for every name of `a`: through one flat vector where the tensors share a
    dtype and device and take at most `flat_bytes`, tensor by tensor (through one scratch tensor) otherwise.
    The weights are multiplied as Python numbers holding the rounded values: the same products."""
    kinds = {(t.dtype, t.device): max(u.numel() for u in a.values() if (u.dtype, u.device) == (t.dtype, t.device))
             for t in a.values()}
    uw = {}  # (dtype, device) -> ([1 - w], [w]) over the alphas
    for dtype, device in kinds:
        w = torch.as_tensor(np.asarray(alphas, dtype=np.float64)).to(device, dtype)
        uw[dtype, device] = ((1 - w).tolist(), w.tolist())
    if not a:
        return lambda i: None
    if len(kinds) > 1 or nbytes(a.values()) > flat_bytes:
        scratch = {k: torch.empty(m, dtype=k[0], device=k[1]) for k, m in kinds.items()}

        def each(i):
            for n, t in a.items():
                (u, w), tmp = uw[t.dtype, t.device], scratch[t.dtype, t.device][: t.numel()].view(t.shape)
                torch.mul(t, u[i], out=out[n]).add_(torch.mul(b[n], w[i], out=tmp))
        return each
    fa, fb = (torch.cat([d[n].reshape(-1) for n in a]) for d in (a, b))
    flat, tmp = torch.empty_like(fa), torch.empty_like(fa)
    views = [v.view(t.shape) for v, t in zip(flat.split([t.numel() for t in a.values()]), a.values())]
    dst, ((u, w),) = [out[n] for n in a], uw.values()

    def whole(i):
        torch.mul(fa, u[i], out=flat).add_(torch.mul(fb, w[i], out=tmp))
        torch._foreach_copy_(dst, views)  # noqa: SLF001 - one call
    return whole


def interpolate_states(a: State, b: State, alphas, keys: set[str] | None = None,
                       fixed: State | None = None) -> State:
    """Stack of interpolated states [n_alpha, ...] between K=1 states a and b (weights in their own dtype,
    each entry the correctly rounded (1 - alpha) a + alpha b: see lerp_exact).

    Non-floating tensors (integer buffers) are not interpolated: they must be equal in a and b.
    Raises ValueError naming the tensor when names, shapes or integer buffers differ.
    """
    if set(a) != set(b):
        raise ValueError(f"endpoints differ in parameters: {sorted(set(a) ^ set(b))[:5]}")
    if n_copies(a) != 1 or n_copies(b) != 1:
        raise ValueError("interpolate_states takes single-copy (K=1) states [1, ...]: select one copy of a stacked "
                         "state with ensemble.copy_state(state, k), or add the copy axis to a plain state_dict with "
                         "t[None] for every tensor. For two ordinary models use lmc_core.linear_path(model_a, "
                         "model_b, data), which also handles their buffers")
    al = [float(x) for x in np.asarray(alphas, dtype=np.float64).reshape(-1)]
    if not all(np.isfinite(al)):
        raise ValueError(f"alphas must be finite numbers, got {al[:8]}")
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
        t = torch.empty((len(al), *ta.shape[1:]), dtype=ta.dtype, device=ta.device)
        for i, x in enumerate(al):
            t[i] = lerp_exact(ta[0], tb[0], x)
        out[name] = t
    return out


def evaluate_state(cfg, state: State, data, max_tokens: int | None = None, batch_size: int = 32,
                   device: str | torch.device = "cpu", memory_mb: int = 512, progress: bool = False,
                   desc: str = "eval", keep: tuple[str, ...] = ()) -> EvalResult:
    """Evaluate every copy of a stacked state (any family) on the same examples of one split (eval mode).

    data: the family's split (a token stream for the LM: its first max_tokens tokens, or all).
    """
    fam = family_of(cfg)
    examples = fam.eval_examples(cfg, data, max_tokens)
    return fam.evaluate(cfg, state, examples, batch_size, device, memory_mb, keep, progress, desc)


def interpolation_curve(cfg, a: State, b: State, splits: dict, alphas, max_tokens: int | None = None,
                        batch_size: int = 32, device: str | torch.device = "cpu", keys: set[str] | None = None,
                        progress: bool = False, fixed: State | None = None,
                        keep: tuple[str, ...] = ()) -> pd.DataFrame | tuple[pd.DataFrame, dict]:
    """The family's metrics (loss, error; perplexity for a language model) along the path a -> b on each
    split; one row per (split, alpha). keys/fixed: interpolate only `keys`, holding the rest at `fixed`
    (default a). With keep (e.g. ("examples",)), also returns {split: EvalResult} with per-example arrays."""
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
