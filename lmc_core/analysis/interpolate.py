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

from ..ensemble import State, n_copies
from ..families import EvalResult, family_of


def alpha_grid(n: int) -> np.ndarray:
    """n equally spaced alphas from 0 to 1 inclusive (exact endpoints)."""
    if n < 2:
        raise ValueError(f"need at least 2 alpha points, got {n}")
    a = np.linspace(0.0, 1.0, n)
    a[0], a[-1] = 0.0, 1.0
    return a


def interpolate_states(a: State, b: State, alphas, keys: set[str] | None = None,
                       fixed: State | None = None) -> State:
    """Stack of interpolated states [n_alpha, ...] between K=1 states a and b."""
    if set(a) != set(b):
        raise ValueError(f"endpoints differ in parameters: {sorted(set(a) ^ set(b))[:5]}")
    if n_copies(a) != 1 or n_copies(b) != 1:
        raise ValueError("interpolate_states takes single-copy stacked states (copy axis first, K=1): for copy k of an "
                         "ensemble use ensemble.copy_state(state, k). For two ordinary models (state dicts without the "
                         "copy axis) use lmc_core.linear_path(model_a, model_b, data)")
    al = torch.as_tensor(np.asarray(alphas), dtype=torch.float64)
    out = {}
    for name, ta in a.items():
        tb = b[name]
        if ta.shape != tb.shape:
            raise ValueError(f"{name}: shapes differ {tuple(ta.shape)} vs {tuple(tb.shape)}")
        if keys is not None and name not in keys:
            base = (fixed or a)[name]
            out[name] = base.expand(len(al), *base.shape[1:]).clone()
            continue
        w = al.to(ta.dtype).view(-1, *([1] * (ta.dim() - 1)))
        out[name] = (1 - w) * ta + w * tb  # exact at alpha 0 and 1
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
