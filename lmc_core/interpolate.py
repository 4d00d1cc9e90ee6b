"""Linear paths between models, evaluated for every alpha as one batched model.

theta(alpha) = (1 - alpha) * theta_A + alpha * theta_B over parameters. Tied weights are one
parameter, so they are interpolated once; the sinusoidal position table is a constant
recomputed from the config (never copied from A); `keys` restricts interpolation to a subset
(e.g. adapters) with the rest held at A (or at `fixed`).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from .config import ModelConfig
from .data.loader import windows
from .ensemble import State, n_copies
from .models import TransformerLM
from .progress import bar


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
        raise ValueError("interpolate_states takes single-copy (K=1) states; use ensemble.copy_state")
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


@dataclass
class EvalResult:
    """Per-copy mean loss, perplexity, next-token error and token count."""

    loss: np.ndarray
    accuracy: np.ndarray
    tokens: int

    @property
    def ppl(self) -> np.ndarray:
        """Perplexity exp(mean CE)."""
        return np.exp(self.loss)

    @property
    def error(self) -> np.ndarray:
        """Next-token top-1 error."""
        return 1.0 - self.accuracy


@torch.no_grad()
def evaluate_state(cfg: ModelConfig, state: State, stream: torch.Tensor, max_tokens: int | None = None,
                   batch_size: int = 32, device: str | torch.device = "cpu", memory_mb: int = 512,
                   progress: bool = False, desc: str = "eval") -> EvalResult:
    """Evaluate every copy of a stacked state on the same windows of `stream` (eval mode).

    Copies are processed in groups sized so the logits stay under `memory_mb`; every copy
    sees exactly the same tokens (the first max_tokens of the split, or all of it).
    """
    win = windows(stream, cfg.context, max_tokens)  # [N, T+1]
    k_all = n_copies(state)
    per_copy = batch_size * cfg.context * cfg.vocab_size * 4 * 3  # logits + softmax temporaries
    group = max(1, min(k_all, (memory_mb << 20) // max(per_copy, 1)))
    loss_sum = torch.zeros(k_all, dtype=torch.float64)
    correct = torch.zeros(k_all, dtype=torch.float64)
    starts = list(range(0, k_all, group))
    pbar = bar(total=len(starts) * ((win.shape[0] + batch_size - 1) // batch_size), disable=not progress,
               desc=desc)
    for g0 in starts:
        idx = list(range(g0, min(k_all, g0 + group)))
        model = TransformerLM(cfg, len(idx)).to(device)
        model.load_state_dict({n: t[idx[0] : idx[-1] + 1] for n, t in state.items()})
        model.eval()
        for b0 in range(0, win.shape[0], batch_size):
            chunk = win[b0 : b0 + batch_size].to(device)  # [B, T+1]
            logits = model(chunk[None, :, :-1])  # [G, B*T, V]
            tgt = chunk[:, 1:].reshape(1, -1).expand(len(idx), -1)
            ce = F.cross_entropy(logits.flatten(0, 1).float(), tgt.flatten(), reduction="none")
            loss_sum[idx] += ce.view(len(idx), -1).sum(1).double().cpu()
            correct[idx] += (logits.argmax(-1) == tgt).sum(1).double().cpu()
            pbar.update(1)
    pbar.close()
    n_tok = win.shape[0] * cfg.context
    return EvalResult(loss=(loss_sum / n_tok).numpy(), accuracy=(correct / n_tok).numpy(), tokens=n_tok)


def interpolation_curve(cfg: ModelConfig, a: State, b: State, splits: dict[str, torch.Tensor], alphas,
                        max_tokens: int | None = None, batch_size: int = 32,
                        device: str | torch.device = "cpu", keys: set[str] | None = None,
                        progress: bool = False) -> pd.DataFrame:
    """Loss, perplexity and error along the path a -> b on each split; one row per (split, alpha)."""
    path = interpolate_states(a, b, alphas, keys)
    rows = []
    for split, stream in splits.items():
        r = evaluate_state(cfg, path, stream, max_tokens, batch_size, device, progress=progress,
                           desc=f"interpolate ({split})")
        for i, al in enumerate(np.asarray(alphas)):
            rows.append({"split": split, "alpha": float(al), "loss": float(r.loss[i]), "ppl": float(r.ppl[i]),
                         "error": float(r.error[i]), "tokens": r.tokens})
    return pd.DataFrame(rows)
