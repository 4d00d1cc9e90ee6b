"""A token stream as LM examples: non-overlapping windows of context+1 tokens (inputs and targets shifted by
one, as bptt chunks). `Batches` (batches.py) then visits every window once per epoch in an order drawn from
(data_seed, epoch), so a resumed or spawned copy needs only its step count to continue exactly."""
from __future__ import annotations

import torch


def windows(stream: torch.Tensor, context: int, max_tokens: int | None = None) -> torch.Tensor:
    """Non-overlapping windows [N, context+1] of a 1-D token stream (first max_tokens only)."""
    if max_tokens is not None:
        stream = stream[: max_tokens + 1]
    n = (stream.numel() - 1) // context
    if n < 1:
        raise ValueError(f"a stream of {stream.numel()} tokens is shorter than one window of {context + 1}")
    return stream[: n * context + 1].unfold(0, context + 1, context)


def spread_windows(stream: torch.Tensor, context: int, max_tokens: int, seed: int = 0) -> torch.Tensor:
    """About max_tokens tokens as windows [N, context+1] drawn without replacement from the whole stream
    (a seeded choice among its non-overlapping windows, kept in stream order): an evaluation sample of every
    part of a split (every play), identical for every model and every alpha."""
    from .. import rng

    every = windows(stream, context)
    n = min(len(every), max(1, max_tokens // context))
    pick = torch.randperm(len(every), generator=rng.generator(seed, 0xE7A1))[:n].sort().values
    return every[pick]
