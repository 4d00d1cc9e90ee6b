"""Layers with a leading copy axis K: every weight is [K, ...], so K copies of a model run as one module
(a linear map is a [K, in, out] weight applied with baddbmm to activations [K, tokens, in])."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class StackedLinear(nn.Module):
    """K independent linear maps: weight [K, in, out], bias [K, 1, out]."""

    def __init__(self, k: int, d_in: int, d_out: int, bias: bool = True):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(k, d_in, d_out))
        self.bias = nn.Parameter(torch.zeros(k, 1, d_out)) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: [K, N, in] -> [K, N, out]
        if self.bias is None:
            return torch.bmm(x, self.weight)
        return torch.baddbmm(self.bias, x, self.weight)


class StackedLayerNorm(nn.Module):
    """K independent LayerNorms over the last axis."""

    def __init__(self, k: int, d: int, eps: float = 1e-5):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(k, 1, d))
        self.bias = nn.Parameter(torch.zeros(k, 1, d))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [K, N, d]
        return torch.addcmul(self.bias, F.layer_norm(x, x.shape[-1:], eps=self.eps), self.weight)


class StackedRMSNorm(nn.Module):
    """x / sqrt(mean(x^2) + eps) over the last axis, without a learned gain (no parameters, so the same for every
    copy). The form a pre-norm LayerNorm takes once its gain and bias are folded into the next linear map and every
    write into the residual stream is centred (SliceGPT, Ashkboos et al. 2024, Sec. 3): then an orthogonal map Q
    of the stream commutes with it, RMSNorm(xQ) = RMSNorm(x) Q."""

    def __init__(self, eps: float = 1e-5):
        super().__init__()
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [K, N, d]
        return F.rms_norm(x, x.shape[-1:], eps=self.eps)


def sinusoidal(length: int, d: int) -> torch.Tensor:
    """Sinusoidal position table [length, d] as in the PyTorch word-LM tutorial."""
    pos = torch.arange(length, dtype=torch.float32).unsqueeze(1)
    div = torch.exp(torch.arange(0, d, 2, dtype=torch.float32) * (-math.log(10000.0) / d))
    pe = torch.zeros(length, d)
    pe[:, 0::2] = torch.sin(pos * div)
    pe[:, 1::2] = torch.cos(pos * div[: d // 2])
    return pe
