"""Diagnostics of trained copies: activation sparsity and entropy, prediction disagreement, weight geometry.

Definitions (study 5, FlatMinimaInterpretability; its README calls sparsity the fraction of units
that are "non-zero", but its code — and this module — measure the fraction that are zero):

- sparsity of a hidden layer: the fraction of its post-ReLU activations that are exactly 0, over
  examples and units; the model's sparsity is the mean over hidden layers.
- activation entropy of a layer: for each example, the entropy (nats) of softmax over the layer's
  units of its activations, averaged over examples; the model's value sums the layers.
- disagreement: the fraction of examples on which two models' argmax predictions differ.
"""
from __future__ import annotations

import numpy as np
import torch


def sparsity(hidden: list[torch.Tensor]) -> np.ndarray:
    """Per-copy sparsity [K] (mean over layers of the fraction of zero activations) from hidden
    activations, one [K, N, h] per layer."""
    per_layer = torch.stack([(h == 0).float().mean(dim=(1, 2)) for h in hidden])  # [L, K]
    return per_layer.mean(0).numpy()


def activation_entropy(hidden: list[torch.Tensor]) -> np.ndarray:
    """Per-copy activation entropy [K]: per layer, the mean over examples of the entropy of softmax over
    units; summed over layers."""
    total = 0
    for h in hidden:
        logp = torch.log_softmax(h.double(), dim=-1)
        total = total + (-(logp.exp() * logp).sum(-1)).mean(-1)  # [K]
    return total.numpy()


def disagreement(pred_a: np.ndarray, pred_b: np.ndarray) -> float:
    """Fraction of examples on which two prediction vectors differ."""
    a, b = np.asarray(pred_a), np.asarray(pred_b)
    if a.shape != b.shape:
        raise ValueError(f"prediction shapes differ: {a.shape} vs {b.shape}")
    return float((a != b).mean())


def weight_distance(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], keys: set[str] | None = None) -> dict:
    """L2 distance, RMS distance and cosine similarity between the flattened parameters of two K=1 states
    (over `keys`, or all), and their norms."""
    names = sorted(keys if keys is not None else a)
    va = torch.cat([a[n].double().reshape(-1) for n in names])
    vb = torch.cat([b[n].double().reshape(-1) for n in names])
    d = float((va - vb).norm())
    return {"l2": d, "rms": d / np.sqrt(va.numel()), "cosine": float(va @ vb / (va.norm() * vb.norm())),
            "norm_a": float(va.norm()), "norm_b": float(vb.norm()), "params": int(va.numel())}
