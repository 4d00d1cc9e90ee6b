"""Activation matching (Git Re-Basin): pair units of A and B whose activations correlate most.

For every permutation group, the Pearson correlations between A's and B's unit activations on the
same inputs (summed over every activation the group permutes) form one cost matrix; one linear
assignment per group gives the permutation (head groups jointly, see lap.assign_heads). The groups
are independent: B's activations do not depend on how B is permuted elsewhere.

What is collected (eval mode, no dropout):
- MLP (`StackedMLP`): the post-activation hidden layers ('hidden.{i}').
- Transformer (`TransformerLM`, through forward hooks on its submodules): MLP hidden units after the
  activation ('layers.{i}.ff'); per head the queries and keys ('#qk') and the values and the
  attention output that attn_out reads ('#vo'); the residual stream ('residual') at the embeddings
  (input of block 0), at every block output and after ln_f.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..models.mlp import StackedMLP
from ..models.transformer import TransformerLM
from .lap import assign, assign_heads, score
from .spec import RESIDUAL, HeadGroup, PermutationSpec, Permutations, mlp_spec, transformer_spec, unflatten

Features = dict[str, list[torch.Tensor]]  # flat permutation name -> activations [N, units]


def spec_for(model: torch.nn.Module) -> PermutationSpec:
    """The permutation spec of a StackedMLP or TransformerLM."""
    if isinstance(model, StackedMLP):
        return mlp_spec(model.cfg)
    if isinstance(model, TransformerLM):
        return transformer_spec(model.cfg)
    raise TypeError(f"no permutation spec for {type(model).__name__}; pass spec= explicitly")


def _transformer_features(model: TransformerLM, tokens: torch.Tensor) -> Features:
    cfg, d = model.cfg, model.cfg.d_model
    feats: Features = {}
    act = F.relu if cfg.activation == "relu" else (lambda z: F.gelu(z, approximate="tanh"))

    def add(name: str, x: torch.Tensor) -> None:
        feats.setdefault(name, []).append(x[0].detach())  # [N, units] of the only copy

    def qkv(p: str, out: torch.Tensor) -> None:  # [1, N, 3d] = [q | k | v]
        add(p + "heads#qk", out[..., :d])
        add(p + "heads#qk", out[..., d : 2 * d])
        add(p + "heads#vo", out[..., 2 * d :])

    hooks = [model.layers[0].register_forward_pre_hook(lambda m, args: add(RESIDUAL, args[0]))]
    for i, layer in enumerate(model.layers):
        p = f"layers.{i}."
        hooks += [
            layer.register_forward_hook(lambda m, args, out: add(RESIDUAL, out)),
            layer.ff1.register_forward_hook(lambda m, args, out, p=p: add(p + "ff", act(out))),
            layer.attn_in.register_forward_hook(lambda m, args, out, p=p: qkv(p, out)),
            layer.attn_out.register_forward_pre_hook(lambda m, args, p=p: add(p + "heads#vo", args[0])),
        ]
    if model.ln_f is not None:
        hooks.append(model.ln_f.register_forward_hook(lambda m, args, out: add(RESIDUAL, out)))
    try:
        model(tokens if tokens.dim() == 3 else tokens[None])
    finally:
        for h in hooks:
            h.remove()
    return feats


@torch.no_grad()
def activations(model: torch.nn.Module, inputs: torch.Tensor) -> Features:
    """Unit activations of a K=1 StackedMLP (inputs [N, d_in]) or TransformerLM (tokens [B, T])."""
    if getattr(model, "k", 1) != 1:
        raise ValueError(f"activations takes a single-copy (K=1) model, got K={model.k}")
    was_training = model.training
    model.eval()
    try:
        if isinstance(model, StackedMLP):
            x = inputs if inputs.dim() == 3 else inputs[None]
            return {f"hidden.{i}": [h[0]] for i, h in enumerate(model.hidden(x))}
        if isinstance(model, TransformerLM):
            return _transformer_features(model, inputs)
    finally:
        model.train(was_training)
    raise TypeError(f"cannot collect activations of {type(model).__name__}")


def correlation(xa: torch.Tensor, xb: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Pearson correlation [n, n] (float64) between the columns of xa [N, n] and xb [N, n].

    A constant unit (e.g. a dead ReLU) correlates 0 with everything.
    """
    xa, xb = xa.double(), xb.double()
    xa = xa - xa.mean(0)
    xb = xb - xb.mean(0)
    sa = xa.pow(2).mean(0).sqrt()
    sb = xb.pow(2).mean(0).sqrt()
    return (xa.T @ xb / xa.shape[0]) / (sa[:, None] * sb[None, :] + eps)


def activation_matching(model_a: torch.nn.Module, model_b: torch.nn.Module, inputs: torch.Tensor,
                        spec: PermutationSpec | None = None) -> tuple[Permutations, dict[str, float]]:
    """Permutations of B's units (apply them to B's state) from activation correlations on `inputs`.

    inputs: [N, d_in] for an MLP, tokens [B, T] for a transformer; both models K=1. Returns the
    permutations and, per group, the mean correlation of the matched units (1 for a perfect match;
    where a group sums several activations, the cost is their mean correlation).
    """
    spec = spec or spec_for(model_a)
    fa, fb = activations(model_a, inputs), activations(model_b, inputs)
    flat: dict[str, np.ndarray] = {}
    quality: dict[str, float] = {}
    for g in spec.groups:
        names = [g.name + "#qk", g.name + "#vo"] if isinstance(g, HeadGroup) else [g.name]
        costs = []
        for n in names:
            if n not in fa:
                raise ValueError(f"no activations for permutation {n!r}; is the spec for this model?")
            costs.append((sum(correlation(xa, xb) for xa, xb in zip(fa[n], fb[n])) / len(fa[n])).cpu().numpy())
        ps = [assign(costs[0])] if len(names) == 1 else list(assign_heads(costs[0], costs[1], g.n_heads))
        flat.update(zip(names, ps))
        quality[g.name] = sum(score(c, p) for c, p in zip(costs, ps)) / sum(len(p) for p in ps)
    return unflatten(spec, flat), quality
