"""Noise-controlled LM batches: copy k's batch at step s is a pure function of (data_seed_k, s).

The token stream is cut into non-overlapping windows of context+1 tokens (inputs and
targets shifted by one, as bptt chunks). Each epoch visits every window once in an order
drawn from a torch.Generator seeded by (data_seed, epoch), so a resumed or spawned copy
needs only its step count to continue exactly where it was.
"""
from __future__ import annotations

import torch

from .batches import Batches


def windows(stream: torch.Tensor, context: int, max_tokens: int | None = None) -> torch.Tensor:
    """Non-overlapping windows [N, context+1] of a 1-D token stream (first max_tokens only)."""
    if max_tokens is not None:
        stream = stream[: max_tokens + 1]
    n = (stream.numel() - 1) // context
    if n < 1:
        raise ValueError(f"a stream of {stream.numel()} tokens is shorter than one window of {context + 1}")
    return stream[: n * context + 1].unfold(0, context + 1, context)


class LMBatches(Batches):
    """Batches [K, B, T+1] of token windows for K copies with their own data seeds."""

    def __init__(self, stream: torch.Tensor, context: int, batch_size: int, data_seeds: list[int]):
        self.win = windows(stream, context)  # [N, T+1]
        try:
            super().__init__(self.win.shape[0], batch_size, data_seeds)
        except ValueError:
            raise ValueError(f"batch_size={batch_size} exceeds the {self.win.shape[0]} training windows; "
                             "lower batch_size or use a larger corpus") from None

    def batch(self, steps: list[int] | int) -> torch.Tensor:
        """Tokens [K, B, T+1] of each copy at step `steps` (an int: the same step for all)."""
        if isinstance(steps, int):
            steps = [steps] * len(self.seeds)
        return self.win[self.indices(steps)]
