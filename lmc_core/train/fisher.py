"""The Fisher penalty of study 5 (Jastrzebski et al. 2021): lambda * ||grad of the mean batch loss||^2 per copy,
differentiable by double backward, with labels sampled from each copy's own prediction."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .. import rng

FISHER_SITE = 0xF15E  # random-number site of the sampled Fisher labels (distinct from dropout sites)


def sampled_labels(logits: torch.Tensor, seeds: list[int], steps: list[int]) -> torch.Tensor:
    """Labels drawn from each copy's own predictive distribution softmax(logits) [K, N, C] -> [K, N], by the
    Gumbel-max trick on counter-based uniforms: a pure function of (seed, step), independent of K."""
    keys = torch.tensor([rng.signed(rng.mix(s, t, FISHER_SITE)) for s, t in zip(seeds, steps)],
                        dtype=torch.int64, device=logits.device)
    u = rng.uniform_splitmix(keys, FISHER_SITE, tuple(logits.shape[1:])).clamp_(1e-7, 1 - 1e-7)
    gumbel = -torch.log(-torch.log(u))
    return (logits.detach().float() + gumbel).argmax(-1)


def fisher_penalty(family, model, batch: dict[str, torch.Tensor], drop, mode: str, seeds: list[int],
                   steps: list[int], sub: int = 0) -> torch.Tensor:
    """Per-copy ||grad of the mean batch cross-entropy||^2 [K], differentiable (double backward).

    `drop` should replay the dropout masks of the loss forward on this batch (DropoutSource.replay), so the
    penalty is the gradient norm of the same stochastic loss. With gradient accumulation the trainer calls this
    once per micro-batch: the penalty is the mean over micro-batches of ||grad of the micro-batch loss||^2.

    mode "sampled": labels drawn from the model's own prediction — an estimate of the trace of the
    Fisher information (Jastrzebski et al. 2021, the grokking notebook of study 5); "empirical": the
    true labels (the gradient-norm penalty of study 5's MNIST notebook). sub > 0: on the first `sub`
    examples of the batch only.
    """
    from torch.nn.attention import SDPBackend, sdpa_kernel

    if sub:
        batch = {n: t[:, :sub].contiguous() for n, t in batch.items()}
    with sdpa_kernel([SDPBackend.MATH]):  # the fused CPU kernels have no double backward
        logits, targets = family.outputs(model, batch, drop)
    k, n, c = logits.shape
    y = sampled_labels(logits, seeds, steps) if mode == "sampled" else targets.expand(k, n)
    ce = F.cross_entropy(logits.reshape(-1, c).float(), y.reshape(-1), reduction="none").view(k, n).mean(1)
    params = [p for p in model.parameters() if p.requires_grad]
    grads = torch.autograd.grad(ce.sum(), params, create_graph=True)  # copy k's slice depends on copy k alone
    return sum((g.reshape(k, -1).float() ** 2).sum(1) for g in grads)
