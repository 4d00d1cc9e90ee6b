"""Noise-controlled LM batches: copy k's batch at step s is a pure function of (data_seed_k, s).

The token stream is cut into non-overlapping windows of context+1 tokens (inputs and
targets shifted by one, as bptt chunks). Each epoch visits every window once in an order
drawn from a torch.Generator seeded by (data_seed, epoch), so a resumed or spawned copy
needs only its step count to continue exactly where it was.
"""
from __future__ import annotations

import torch

from .. import rng


def windows(stream: torch.Tensor, context: int, max_tokens: int | None = None) -> torch.Tensor:
    """Non-overlapping windows [N, context+1] of a 1-D token stream (first max_tokens only)."""
    if max_tokens is not None:
        stream = stream[: max_tokens + 1]
    n = (stream.numel() - 1) // context
    if n < 1:
        raise ValueError(f"a stream of {stream.numel()} tokens is shorter than one window of {context + 1}")
    return stream[: n * context + 1].unfold(0, context + 1, context)


class LMBatches:
    """Batches [K, B, T+1] for K copies with their own data seeds."""

    def __init__(self, stream: torch.Tensor, context: int, batch_size: int, data_seeds: list[int]):
        self.win = windows(stream, context)  # [N, T+1]
        self.batch_size = batch_size
        self.seeds = list(data_seeds)
        self.steps_per_epoch = self.win.shape[0] // batch_size
        if self.steps_per_epoch < 1:
            raise ValueError(f"batch_size={batch_size} exceeds the {self.win.shape[0]} training windows; "
                             "lower batch_size or use a larger corpus")
        self._perm: dict[tuple[int, int], torch.Tensor] = {}

    def order(self, seed: int, epoch: int) -> torch.Tensor:
        """Window order of one epoch for one data seed."""
        key = (seed, epoch)
        if key not in self._perm:
            if len(self._perm) > 4 * len(self.seeds) + 8:
                self._perm.clear()
            self._perm[key] = torch.randperm(self.win.shape[0], generator=rng.generator(seed, epoch, 0xDA7A))
        return self._perm[key]

    def indices(self, steps: list[int]) -> torch.Tensor:
        """Window indices [K, B] of each copy at its own step."""
        out = []
        for seed, s in zip(self.seeds, steps):
            e, i = divmod(int(s), self.steps_per_epoch)
            out.append(self.order(seed, e)[i * self.batch_size : (i + 1) * self.batch_size])
        return torch.stack(out)

    def batch(self, steps: list[int] | int) -> torch.Tensor:
        """Tokens [K, B, T+1] of each copy at step `steps` (an int: the same step for all)."""
        if isinstance(steps, int):
            steps = [steps] * len(self.seeds)
        return self.win[self.indices(steps)]
