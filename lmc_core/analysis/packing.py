"""linear_path one alpha at a time, with fewer passes over the weights: the working copy's interpolated tensors
become views of one flat buffer, and each alpha is mixed into it with lerp_rows' operations on flat endpoints held
in float64, two torch calls a block (interpolate.lerp_rows' values, bit for bit: each entry is computed alone).

Measured on an Intel Xeon, 1 thread, the 0.55 M weights of bench/linear_path.py's width-512 MLPs at 25 alphas,
each mix followed by a forward pass (so the weights are not in cache): 29-35 ms of mixing a path this way against
47-59 ms tensor by tensor (interpolate.weight_writer: every tensor's blocks widened to float64 at every alpha, some
30 torch calls an alpha); loss-landscapes' float32 add_ (not exact: its last point differs from model B) takes
9-11 ms (bench/linear_path.py --mix). The float64 endpoints take 16 bytes a weight, so only models of at most
PACK_BYTES of them are packed; larger ones go tensor by tensor, as before. docs/benchmarks.md, "linear_path: one
pass a mix".
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch
from torch import nn

from .interpolate import Scratch, block_elements, store_rounded

PACK_BYTES = 64 << 20  # the float64 endpoints of a packed model (16 bytes a weight: 4 M weights) stay below this
ALIGN_BYTES = 64  # every view starts at a multiple of this (torch's CPU allocator's alignment: the same kernels)
PACKED_DTYPES = (torch.float32, torch.float64, torch.bfloat16, torch.float16)


def packable(tensors: list[torch.Tensor], slots: list[torch.Tensor], model: nn.Module | None = None) -> bool:
    """True if the endpoints `tensors` and the working copy's `slots` (the same names, in order) can be packed:
    one real floating dtype and one device for all, every slot contiguous (pack_slots keeps each one's shape and
    strides, those of size-1 dimensions included), 16 bytes a weight of them within PACK_BYTES, and no recurrent
    layer in `model` (the working copy: an RNN keeps its own weight layout, which cuDNN flattens)."""
    if not tensors or len({(t.dtype, t.device) for t in [*tensors, *slots]}) != 1:
        return False
    if model is not None and any(isinstance(m, nn.RNNBase) for m in model.modules()):
        return False
    return tensors[0].dtype in PACKED_DTYPES and all(s.is_contiguous() for s in slots) and \
        16 * sum(t.numel() for t in tensors) <= PACK_BYTES


def offsets(tensors: list[torch.Tensor]) -> tuple[list[int], int]:
    """The element offset of each tensor in the flat buffer (each a multiple of ALIGN_BYTES) and its length."""
    step = max(1, ALIGN_BYTES // tensors[0].element_size())
    offs, at = [], 0
    for t in tensors:
        offs.append(at)
        at += -(-t.numel() // step) * step
    return offs, at


def flat_copy(tensors: list[torch.Tensor], dtype: torch.dtype | None = None) -> torch.Tensor:
    """The tensors laid out as `offsets` says in one 1-D tensor (zeros between them), in `dtype` (default theirs)."""
    offs, total = offsets(tensors)
    flat = torch.zeros(total, dtype=dtype or tensors[0].dtype, device=tensors[0].device)
    for o, t in zip(offs, tensors):
        flat[o : o + t.numel()].copy_(t.reshape(-1))
    return flat


def pack_slots(slots: list[torch.Tensor]) -> torch.Tensor:
    """Repoint the working copy's tensors `slots` (parameters and buffers, contiguous: packable) to views of one
    flat buffer holding their values (`.data`, so a tied or shared tensor moves everywhere it is used); returns it.
    Each view keeps its tensor's strides (a contiguous tensor may have any stride on a size-1 dimension, e.g. a 1x1
    convolution's weight in channels_last, and a kernel may choose by them); a contiguous tensor's elements span
    exactly its numel, so the view stays within its slice."""
    flat = flat_copy(slots)
    for o, s in zip(offsets(slots)[0], slots):
        s.data = flat.as_strided(s.shape, s.stride(), o)
    return flat


def packed_writer(a: list[torch.Tensor], b: list[torch.Tensor], flat: torch.Tensor, alphas
                  ) -> Callable[[int], None]:
    """A function i -> None that writes lerp_rows' interpolation of the endpoints a, b (lists in the order of the
    slots packed into `flat` by pack_slots) at alphas[i] into `flat`, with lerp_rows' operations on flat float64
    copies of a and b (the endpoints copied at alpha 0 and 1; elsewhere torch.lerp in float64 and
    interpolate.store_rounded, block by block: exact at 0 and 1, within an ulp of the exact value; the values of
    interpolate_states, bit for bit), the blocks' views made once for every alpha (two torch calls a block)."""
    al = [float(x) for x in np.asarray(alphas, dtype=np.float64).reshape(-1)]
    fa, fb = flat_copy(a, torch.float64), flat_copy(b, torch.float64)
    n, sc, step = flat.numel(), Scratch(), block_elements(flat.device)
    r = sc.get("r", torch.float64, flat.device, min(n, step))
    blocks = [(fa[s : s + step], fb[s : s + step], flat[s : s + step], r[: min(step, n - s)])
              for s in range(0, n, step)]

    def write(i: int) -> None:
        w = al[i]
        if w == 0.0 or w == 1.0:
            flat.copy_(fa if w == 0.0 else fb)  # the endpoint itself
            return
        for xa, xb, dst, wide in blocks:
            store_rounded(dst, torch.lerp(xa, xb, w, out=wide), sc)
    return write
