"""Multilayer perceptron whose every weight carries a leading copy axis K (Git Re-Basin's MLP).

Layer i is a StackedLinear: `layers.{i}.weight [K, in, out]`, `layers.{i}.bias [K, 1, out]`.
The default is MNIST-1D sized (40 -> 512 -> 512 -> 512 -> 10); `MLPConfig(d_in=784)` is the
784-512-512-512-10 MNIST model of Git Re-Basin (Ainsworth et al. 2023) and study 5.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .. import rng
from ..config import ConfigError
from ..nn import StackedLinear

ACTIVATIONS = ("relu", "gelu", "tanh")
_INIT_SITE = 0x3A1F  # generator site of the MLP initialisation (distinct from the transformer's)


@dataclass(frozen=True)
class MLPConfig:
    """A fully connected classifier: d_in -> hidden[0] -> ... -> hidden[-1] -> n_classes."""

    d_in: int = 40
    hidden: tuple[int, ...] = (512, 512, 512)
    n_classes: int = 10
    activation: str = "relu"  # "relu" | "gelu" | "tanh"

    def validate(self) -> "MLPConfig":
        """Raise ConfigError, saying what to change, if a field is out of range."""
        for name in ("d_in", "n_classes"):
            v = getattr(self, name)
            if not isinstance(v, int) or v <= 0:
                raise ConfigError(f"MLPConfig.{name}={v!r} must be a positive integer")
        if not isinstance(self.hidden, tuple) or not self.hidden:
            raise ConfigError(f"MLPConfig.hidden={self.hidden!r} must be a non-empty tuple of widths, "
                              "e.g. (512, 512, 512)")
        for w in self.hidden:
            if not isinstance(w, int) or w <= 0:
                raise ConfigError(f"MLPConfig.hidden={self.hidden!r}: every width must be a positive integer")
        if self.activation not in ACTIVATIONS:
            raise ConfigError(f"MLPConfig.activation={self.activation!r} is not valid; choose one of "
                              f"{list(ACTIVATIONS)}")
        return self

    @property
    def widths(self) -> tuple[int, ...]:
        """All layer widths, input and output included."""
        return (self.d_in, *self.hidden, self.n_classes)


class StackedMLP(nn.Module):
    """K copies of an MLP held as one module; forward takes x [K or 1, N, d_in]."""

    def __init__(self, cfg: MLPConfig, k: int = 1):
        super().__init__()
        cfg.validate()
        self.cfg, self.k = cfg, k
        w = cfg.widths
        self.layers = nn.ModuleList(StackedLinear(k, w[i], w[i + 1]) for i in range(len(w) - 1))

    def _act(self, z: torch.Tensor) -> torch.Tensor:
        if self.cfg.activation == "relu":
            return F.relu(z)
        if self.cfg.activation == "gelu":
            return F.gelu(z)
        return torch.tanh(z)

    def _expand(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 3 or x.shape[0] not in (1, self.k) or x.shape[-1] != self.cfg.d_in:
            raise ValueError(f"expected inputs [K={self.k} or 1, N, d_in={self.cfg.d_in}], got {tuple(x.shape)}")
        return x.expand(self.k, -1, -1)

    def hidden(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Post-activation hidden activations, one [K, N, h] per hidden layer."""
        h = self._expand(x)
        out = []
        for layer in self.layers[:-1]:
            h = self._act(layer(h))
            out.append(h)
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits [K, N, n_classes] for inputs x [K or 1, N, d_in]."""
        h = self._expand(x)
        for layer in self.layers[:-1]:
            h = self._act(layer(h))
        return self.layers[-1](h)

    def copy_losses(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy of each copy [K] on inputs x [K or 1, N, d_in], labels y [K or 1, N]."""
        logits = self(x)  # [K, N, C]
        y = y.expand(self.k, -1)
        ce = F.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="none")
        return ce.view(self.k, -1).mean(1)

    @torch.no_grad()
    def init_weights(self, seeds: list[int]) -> "StackedMLP":
        """PyTorch nn.Linear defaults (U(+-1/sqrt(fan_in)) for weights and biases), copy k from seeds[k]."""
        if len(seeds) != self.k:
            raise ValueError(f"need {self.k} init seeds, got {len(seeds)}")
        for k, s in enumerate(seeds):
            g = rng.generator(s, _INIT_SITE)
            for layer in self.layers:
                fan_in, fan_out = layer.weight.shape[1:]
                bound = 1.0 / math.sqrt(fan_in)  # kaiming_uniform(a=sqrt 5) and the bias default
                layer.weight[k].copy_((torch.rand(fan_in, fan_out, generator=g) * 2 - 1) * bound)
                layer.bias[k].copy_((torch.rand(1, fan_out, generator=g) * 2 - 1) * bound)
        return self
