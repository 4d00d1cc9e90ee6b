"""Modular arithmetic (grokking; Power et al. 2022, Nanda et al. 2023): "a b =" -> (a op b) mod p, generated.

All p^2 pairs (a, b) are split once into train and test by a seeded permutation (train_frac of them
train). Inputs are three tokens [a, b, p] (p is the "=" token), the label is (a op b) mod p.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .. import rng
from ..config import ConfigError
from .batches import Examples

OPS = ("add", "sub", "mul")


@dataclass(frozen=True)
class ModularDataConfig:
    """(a op b) mod p for all a, b in [0, p); a seeded train/test split of the p^2 pairs."""

    p: int = 113
    train_frac: float = 0.3
    op: str = "add"
    seed: int = 0

    def validate(self) -> "ModularDataConfig":
        """Raise ConfigError if a field is out of range."""
        if not isinstance(self.p, int) or self.p < 3:
            raise ConfigError(f"p={self.p!r} must be an integer >= 3 (a prime such as 113 is usual)")
        if not 0 < self.train_frac < 1:
            raise ConfigError(f"train_frac={self.train_frac} must lie in (0, 1)")
        if self.op not in OPS:
            raise ConfigError(f"op={self.op!r}; choose one of {list(OPS)}")
        return self


def modular_data(cfg: ModularDataConfig) -> dict[str, Examples]:
    """{"train", "test"}: Examples(tokens [N, 3] int64, labels [N] int64)."""
    cfg.validate()
    p = cfg.p
    a, b = torch.meshgrid(torch.arange(p), torch.arange(p), indexing="ij")
    a, b = a.reshape(-1), b.reshape(-1)
    y = {"add": a + b, "sub": a - b, "mul": a * b}[cfg.op] % p
    tokens = torch.stack([a, b, torch.full_like(a, p)], 1)
    order = torch.randperm(p * p, generator=rng.generator(cfg.seed, p, 0x60C))
    n = int(round(cfg.train_frac * p * p))
    tr, te = order[:n], order[n:]
    return {"train": Examples(tokens=tokens[tr], labels=y[tr]), "test": Examples(tokens=tokens[te], labels=y[te])}
