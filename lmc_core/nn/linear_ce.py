"""Fused output layer and cross-entropy for K stacked copies: the logits are never held in full.

A language model's last linear map and its cross-entropy, done the usual way, write the logits [K, N, V], their
float32 copy, the log-softmax and, in the backward, two more tensors of that size: for the PTB study's model (V =
10,000, 700 tokens, K = 8) some 220 MB per tensor, which on a CPU are page-faulted afresh and streamed through
memory several times a step. `linear_cross_entropy` forms the logits a piece at a time (on a CPU one that stays in
cache), takes the log-sum-exp in float32 and writes the gradient of the logits at once, (softmax - one-hot) / N, in
the compute dtype (that gradient is held until the backward: in bf16 half the size of float32 logits); the gradients of the features, the weight and the bias are then two batched products and a sum.
It is the fused linear cross-entropy of Liger Kernel (Hsu et al. 2024, arXiv:2410.10989) and Cut Cross-Entropy
(Wijmans et al. 2024, arXiv:2411.09009), written with torch operations for a leading copy axis.

The values equal `F.cross_entropy(torch.baddbmm(bias, h, w).float(), targets)` per copy up to rounding (the
float32 sums run over pieces); under `torch.autocast` the products run in its dtype (bf16), as autocast would run
them, and the log-sum-exp in float32. The gradient is computed in the forward pass: it supports one backward
(no double backward, e.g. the Fisher penalty, and no torch.func transforms).
"""
from __future__ import annotations

import torch

# a target that counts in neither loss nor error: PyTorch's and Hugging Face's convention (lmc_core.data.batches
# uses this one): it adds nothing to the loss, the mean still divides by N
IGNORE_INDEX = -100

# bytes of float32 logits in one piece: on a CPU large enough for efficient products and small enough to stay in
# cache (the output layer's products for a 10,000-word vocabulary took 1.7x as long in pieces of 52 rows as of 128;
# docs/benchmarks.md); on a GPU a piece is a dozen kernel launches, so pieces are few and large (not measured)
PIECE_BYTES = 8 << 20
PIECE_BYTES_GPU = 256 << 20


def _compute_dtype(x: torch.Tensor) -> torch.dtype:
    """Autocast's dtype for float32 inputs under autocast (as its matrix products); else the input's own."""
    dev = x.device.type
    if x.dtype == torch.float32 and torch.is_autocast_enabled(dev):
        return torch.get_autocast_dtype(dev)
    return x.dtype


def piece_shape(k: int, n: int, v: int, piece_bytes: int) -> tuple[int, int]:
    """(copies, rows) of one piece of K copies' [N, V] float32 logits under piece_bytes: whole copies, as many as fit,
    where one copy fits; else rows of one copy (at least one)."""
    per_copy = n * v * 4
    if per_copy <= piece_bytes:
        return max(1, min(k, piece_bytes // per_copy)), n
    return 1, max(1, piece_bytes // (v * 4))


def _logit_pieces(hc: torch.Tensor, wc: torch.Tensor, bc: torch.Tensor | None, piece_bytes: int, acc: torch.dtype):
    """Yield (c0, c1, r0, r1, logits [c1-c0, r1-r0, V] in `acc`) of hc [K, N, d] @ wc [K, d, V] + bc [K, V] for copies
    c0..c1 and rows r0..r1 (piece_shape), in two buffers reused for every piece (fresh multi-MB temporaries
    page-fault on a CPU): the product in the compute dtype, then its `acc` copy (the same buffer when they agree).
    A piece is overwritten by the next one."""
    k, n, _ = hc.shape
    v = wc.shape[-1]
    copies, rows = piece_shape(k, n, v, piece_bytes)
    z_buf = torch.empty(copies * rows * v, dtype=hc.dtype, device=hc.device)
    zf_buf = z_buf if hc.dtype == acc else torch.empty(z_buf.shape, dtype=acc, device=hc.device)
    for c0 in range(0, k, copies):
        c1 = min(k, c0 + copies)
        for r0 in range(0, n, rows):
            r1 = min(n, r0 + rows)
            shape = (c1 - c0, r1 - r0, v)
            size = shape[0] * shape[1] * v
            z, zf = z_buf[:size].view(shape), zf_buf[:size].view(shape)  # contiguous, also the last piece
            if bc is None:
                torch.bmm(hc[c0:c1, r0:r1], wc[c0:c1], out=z)
            else:
                torch.baddbmm(bc[c0:c1, None], hc[c0:c1, r0:r1], wc[c0:c1], out=z)
            if zf is not z:
                zf.copy_(z)
            yield c0, c1, r0, r1, zf


def _piece(zf: torch.Tensor, t: torch.Tensor, n: int, out: torch.Tensor | None
           ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """One piece, in place: float logits zf [C, rows, V] (overwritten), targets t [C, rows] of the copies' N; returns
    (each copy's summed loss [C], the column sums [C, V] of the gradient) and writes the gradient of the mean loss,
    (softmax - one-hot) / N (0 on ignored rows), into `out` [C, rows, V] (None: no gradient)."""
    ok = t != IGNORE_INDEX
    keep = ok.to(zf.dtype).unsqueeze(-1)  # [C, rows, 1]
    ts = torch.where(ok, t, 0).unsqueeze(-1)
    z_t = zf.gather(-1, ts)
    top = zf.amax(-1, keepdim=True)
    total = zf.sub_(top).exp_().sum(-1, keepdim=True)  # zf now holds exp(z - max)
    loss = ((top + total.log() - z_t) * keep).sum((1, 2))
    if out is None:
        return loss, None
    p = zf.mul_(keep / (total * n))  # softmax / N, 0 on ignored rows
    p.scatter_add_(-1, ts, -keep / n)
    out.copy_(p)
    return loss, p.sum(1)


class _LinearCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, h, weight, bias, targets, piece_bytes, need):
        k, n, _ = h.shape
        v = weight.shape[-1]
        cd = _compute_dtype(h)
        with torch.autocast(h.device.type, enabled=False):
            hc, wc = h.to(cd), weight.to(cd)
            bc = None if bias is None else bias.reshape(k, v).to(cd)
            need = need and any(ctx.needs_input_grad[:3])  # no [K, N, V] gradient under torch.no_grad()
            dev = h.device
            grad_z = torch.empty(k, n, v, dtype=cd, device=dev) if need else None
            acc = torch.float64 if cd == torch.float64 else torch.float32  # losses, bias gradient, softmax
            grad_b = torch.zeros(k, v, dtype=acc, device=dev) if need and bias is not None else None
            losses = torch.zeros(k, dtype=acc, device=dev)
            for c0, c1, r0, r1, zf in _logit_pieces(hc, wc, bc, piece_bytes, acc):
                loss, col = _piece(zf, targets[c0:c1, r0:r1], n, grad_z[c0:c1, r0:r1] if need else None)
                losses[c0:c1] += loss
                if grad_b is not None:
                    grad_b[c0:c1] += col
        ctx.save_for_backward(hc, wc, grad_z, grad_b)
        ctx.has_bias = bias is not None
        ctx.bias_shape = None if bias is None else bias.shape
        ctx.dtypes = (h.dtype, weight.dtype, None if bias is None else bias.dtype)
        return losses / n

    @staticmethod
    def backward(ctx, grad_losses):
        hc, wc, grad_z, grad_b = ctx.saved_tensors
        k = hc.shape[0]
        scale = grad_losses.reshape(k, 1, 1)
        # the usual case (a sum of the copies' losses) skips a scaling pass; not on a GPU, where the check would wait
        ones = grad_losses.device.type == "cpu" and bool((grad_losses == 1).all())
        gh = gw = gb = None
        dh, dw, db = ctx.dtypes
        with torch.autocast(hc.device.type, enabled=False):
            if ctx.needs_input_grad[0]:
                gh = torch.bmm(grad_z, wc.transpose(1, 2)).to(dh)
                gh = gh if ones else gh.mul_(scale)
            if ctx.needs_input_grad[1]:
                # a contiguous h^T: the product runs ~1.4x faster than from the transposed view (measured on AMX)
                gw = torch.bmm(hc.transpose(1, 2).contiguous(), grad_z).to(dw)
                gw = gw if ones else gw.mul_(scale)
            if ctx.has_bias and ctx.needs_input_grad[2]:
                # a new tensor: the saved grad_b must not become bias.grad (an in-place change of the gradient would
                # change what a second backward reads)
                gb = (grad_b.to(db, copy=True) if ones else (grad_b * scale.reshape(k, 1)).to(db)).reshape(ctx.bias_shape)
        return gh, gw, gb, None, None, None


@torch.compiler.disable  # a Python loop over pieces: a compiled step runs it eagerly (a graph break)
def linear_cross_entropy(h: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, targets: torch.Tensor,
                         piece_bytes: int | None = None) -> torch.Tensor:
    """Mean cross-entropy of each copy [K] of the logits h @ weight + bias, without holding them.

    h: features [K, N, d]; weight: [K, d, V] (a transposed view of a tied embedding [K, V, d] is fine); bias: [K, V]
    or [K, 1, V] or None; targets: class indices [K, N] (IGNORE_INDEX adds 0; the mean divides by N, as
    `reduction='none'` then `.mean()` would). piece_bytes: the float32 logits formed at once (piece_shape; None:
    PIECE_BYTES on a CPU, PIECE_BYTES_GPU on a GPU). Under autocast the products run in its dtype and the
    log-sum-exp in float32. Differentiable once in h, weight and bias (the gradient is formed in the forward pass and
    held as [K, N, V] in the compute dtype until the backward: the logits' size in bf16, not one piece's; under
    torch.no_grad() it is not formed). Raises ValueError on mismatched or empty shapes.
    """
    _check_shapes(h, weight, bias, targets, shared_targets=False)
    need = torch.is_grad_enabled() and any(x is not None and x.requires_grad for x in (h, weight, bias))
    return _LinearCrossEntropy.apply(h, weight, bias, targets, _piece_bytes(h, piece_bytes), need)


def _check_shapes(h: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, targets: torch.Tensor,
                  shared_targets: bool) -> None:
    """ValueError naming the argument whose shape does not fit h [K, N, d] (N, d > 0), weight [K, d, V] (V > 0),
    bias [K, V] or [K, 1, V], targets [K, N] (or [1, N] with shared_targets)."""
    if h.dim() != 3 or weight.dim() != 3 or weight.shape[:2] != (h.shape[0], h.shape[2]):
        raise ValueError(f"h must be [K, N, d] and weight [K, d, V]; got {tuple(h.shape)} and {tuple(weight.shape)}")
    k, n, _ = h.shape
    v = weight.shape[-1]
    if not (k and n and v):
        raise ValueError(f"h [K, N, d] = {tuple(h.shape)} and weight [K, d, V] = {tuple(weight.shape)} must not be "
                         "empty: give at least one copy, one token and one class")
    if targets.shape != (k, n) and not (shared_targets and targets.shape == (1, n)):
        want = f"[K, N] = {(k, n)}" + (f" or [1, N] = {(1, n)}" if shared_targets else "")
        raise ValueError(f"targets must be {want}; got {tuple(targets.shape)}")
    if bias is not None and tuple(bias.shape) not in ((k, v), (k, 1, v)):
        raise ValueError(f"bias must be [K, V] = {(k, v)} or [K, 1, V]; got {tuple(bias.shape)}")


def _piece_bytes(h: torch.Tensor, piece_bytes: int | None) -> int:
    if piece_bytes is None:
        return PIECE_BYTES_GPU if h.device.type == "cuda" else PIECE_BYTES
    return max(1, int(piece_bytes))


# vocabularies from this size on are evaluated by `token_losses` (Family.example_losses): below it the logits of a
# batch are small and torch's unfused cross-entropy is as fast (bench/ensemble.py +fused at 72 symbols: 1.01x)
FUSED_EVAL_MIN_CLASSES = 4096


@torch.no_grad()
def token_losses(h: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, targets: torch.Tensor,
                 piece_bytes: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token cross-entropy [K, N] (float32) and top-1 correctness [K, N] (bool) of the logits h @ weight + bias,
    formed a piece of rows at a time (evaluation: no gradient). Shapes as `linear_cross_entropy`; targets [K or 1,
    N]; an IGNORE_INDEX target gets loss 0 and counts as wrong; ValueError on shapes that do not fit. Top-1 is torch.argmax's (the first of tied maxima).
    The values equal F.cross_entropy's and argmax's on the full logits up to float32 rounding of the log-sum-exp."""
    _check_shapes(h, weight, bias, targets, shared_targets=True)
    k, n, _ = h.shape
    v = weight.shape[-1]
    targets = targets.expand(k, n)
    cd = _compute_dtype(h)
    ce = torch.empty(k, n, dtype=torch.float32, device=h.device)
    hit = torch.empty(k, n, dtype=torch.bool, device=h.device)
    with torch.autocast(h.device.type, enabled=False):
        hc, wc = h.to(cd), weight.to(cd)
        bc = None if bias is None else bias.reshape(k, v).to(cd)
        for c0, c1, r0, r1, zf in _logit_pieces(hc, wc, bc, _piece_bytes(h, piece_bytes), torch.float32):
            t = targets[c0:c1, r0:r1]
            ok = t != IGNORE_INDEX
            z_t = zf.gather(-1, torch.where(ok, t, 0).unsqueeze(-1)).squeeze(-1)
            top, arg = zf.max(-1, keepdim=True)  # the first of tied maxima, as torch.argmax
            hit[c0:c1, r0:r1] = (arg.squeeze(-1) == t) & ok
            lse = zf.sub_(top).exp_().sum(-1).log_().add_(top.squeeze(-1))  # in place: no fresh [C, rows, V]
            ce[c0:c1, r0:r1] = torch.where(ok, lse - z_t, 0)
    return ce, hit
