"""Dropout whose masks are a pure function of (dropout seed, copy's step, site): copy k's masks do not depend
on K, on the device's random state or on which other copies train beside it."""
from __future__ import annotations

import torch

from .. import rng


class DropoutSource:
    """Per-step dropout masks for K copies, each a pure function of (dropout seed, step, site).

    mode "generator": one CPU/CUDA torch.Generator per copy, seeded from (seed, step), drawn in
    forward order (fast on CPU). mode "hash": counter-based hash on the device (one kernel for
    all copies; fast on GPU). Either way copy k's masks do not depend on K.
    """

    def __init__(self, seeds: list[int], steps: list[int], device: torch.device, mode: str | None = None):
        self.seeds, self.steps, self.device = list(seeds), [int(s) for s in steps], torch.device(device)
        if len(self.seeds) != len(self.steps):
            raise ValueError("DropoutSource needs one step per seed")
        self.mode = mode or ("hash" if self.device.type == "cuda" else "generator")
        if self.mode == "generator":
            self.gens = []
            for s, t in zip(self.seeds, self.steps):
                g = torch.Generator(device=self.device)
                g.manual_seed(rng.mix(s, t))
                self.gens.append(g)
        elif self.mode == "hash":
            keys = [rng.signed(rng.mix(s, t)) for s, t in zip(self.seeds, self.steps)]
            self.keys = torch.tensor(keys, dtype=torch.int64, device=self.device)
        else:
            raise ValueError(f"dropout mode {mode!r}: choose 'generator' or 'hash'")

    def uniform(self, site: int, shape: tuple[int, ...]) -> torch.Tensor:
        """[K, *shape] uniform floats for one dropout site."""
        if self.mode == "hash":
            return rng.uniform(self.keys, site, shape)
        out = torch.empty((len(self.gens), *shape), device=self.device)
        for k, g in enumerate(self.gens):
            torch.rand(shape, generator=g, device=self.device, out=out[k])
        return out


def dropout(drop: DropoutSource | None, p: float):
    """A function (x [K, ...], site) -> x with inverted dropout of probability p from `drop`'s masks (identity
    without a source or with p = 0)."""
    def apply(x: torch.Tensor, site: int) -> torch.Tensor:
        if drop is None or p == 0:
            return x
        keep = drop.uniform(site, tuple(x.shape[1:])) >= p
        return x * keep / (1 - p)
    return apply
