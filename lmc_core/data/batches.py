"""Noise-controlled batches for any task: copy k's batch at step s is a pure function of (data seed k, s).

`Examples` holds a task's examples as tensors sharing their first axis (LM windows, vectors and
labels, token ids with masks); `Batches` draws, for each copy, the indices of its batch at its own
step from a permutation per (data seed, epoch), so a resumed or spawned copy needs only its step
count to continue exactly, and copy k's batches do not depend on the other copies.
"""
from __future__ import annotations

import torch

from .. import rng
from ..nn.linear_ce import IGNORE_INDEX  # a target that counts in neither loss nor error (re-exported here)


class Examples:
    """Named tensors [N, ...] of one split; `take(idx)` gathers a batch [K, B, ...] for every copy."""

    def __init__(self, **tensors: torch.Tensor):
        if not tensors:
            raise ValueError("Examples needs at least one tensor")
        sizes = {name: t.shape[0] for name, t in tensors.items()}
        if len(set(sizes.values())) != 1:
            raise ValueError(f"tensors of different lengths: {sizes}")
        self.tensors = tensors

    def __len__(self) -> int:
        return next(iter(self.tensors.values())).shape[0]

    def __getitem__(self, name: str) -> torch.Tensor:
        return self.tensors[name]

    def take(self, idx: torch.Tensor) -> dict[str, torch.Tensor]:
        """The examples at idx ([K, B] or [B]) from every tensor."""
        return {name: t[idx] for name, t in self.tensors.items()}

    def head(self, n: int | None) -> "Examples":
        """The first n examples (all when n is None)."""
        return self if n is None else Examples(**{k: v[:n] for k, v in self.tensors.items()})


class Batches:
    """Index batches [K, B] for K copies with their own data seeds over n examples (epochs without
    replacement)."""

    def __init__(self, n: int, batch_size: int, data_seeds: list[int]):
        self.n = int(n)
        self.batch_size = batch_size
        self.seeds = list(data_seeds)
        self.steps_per_epoch = self.n // batch_size
        if self.steps_per_epoch < 1:
            raise ValueError(f"batch_size={batch_size} exceeds the {self.n} training examples; "
                             "lower batch_size or use more data")
        self._perm: dict[tuple[int, int], torch.Tensor] = {}

    def order(self, seed: int, epoch: int) -> torch.Tensor:
        """Example order of one epoch for one data seed."""
        key = (seed, epoch)
        if key not in self._perm:
            if len(self._perm) > 4 * len(self.seeds) + 8:
                self._perm.clear()
            self._perm[key] = torch.randperm(self.n, generator=rng.generator(seed, epoch, 0xDA7A))
        return self._perm[key]

    def indices(self, steps: list[int]) -> torch.Tensor:
        """Example indices [K, B] of each copy at its own step."""
        out = []
        for seed, s in zip(self.seeds, steps):
            e, i = divmod(int(s), self.steps_per_epoch)
            out.append(self.order(seed, e)[i * self.batch_size : (i + 1) * self.batch_size])
        return torch.stack(out)
