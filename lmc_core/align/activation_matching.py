"""Activation matching (Git Re-Basin): pair units of A and B whose activations correlate most.

For every permutation group, the Pearson correlations between A's and B's unit activations on the
same inputs (summed over every activation the group permutes) form one cost matrix; one linear
assignment per group gives the permutation (head groups jointly, see lap.assign_heads). The groups
are independent: B's activations do not depend on how B is permuted elsewhere.

The activations come from the model's family (`Family.activations`, which says what it collects):

    fam = family_of(cfg)
    perms, quality = activation_matching(fam.perm_spec(cfg), fam.activations(cfg, a, x), fam.activations(cfg, b, x))
"""
from __future__ import annotations

import numpy as np
import torch

from .check import check_finite, check_real
from .lap import assign, assign_heads, score
from .spec import HeadGroup, PermutationSpec, Permutations, unflatten

Features = dict[str, list[torch.Tensor]]  # flat permutation name -> activations [N, units], one entry per site


def correlation(xa: torch.Tensor, xb: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Pearson correlation [n, n] (float64) between the columns of xa [N, n] and xb [N, n].

    A constant unit (e.g. a dead ReLU) correlates 0 with everything. eps: finite, > 0 (added to the product of
    the standard deviations; ArgumentError otherwise). ValueError unless xa and xb are [N, n] with the same shape
    and N >= 1.
    """
    check_real("eps", eps, 0.0, lo_open=True)
    if xa.dim() != 2 or xa.shape != xb.shape or xa.shape[0] < 1:
        raise ValueError(f"correlation needs activations [N, n] of one shape with N >= 1 rows; got "
                         f"{tuple(xa.shape)} and {tuple(xb.shape)}")
    xa, xb = xa.double(), xb.double()
    xa = xa - xa.mean(0)
    xb = xb - xb.mean(0)
    sa = xa.pow(2).mean(0).sqrt()
    sb = xb.pow(2).mean(0).sqrt()
    return (xa.T @ xb / xa.shape[0]) / (sa[:, None] * sb[None, :] + eps)


def activation_matching(spec: PermutationSpec, features_a: Features, features_b: Features
                        ) -> tuple[Permutations, dict[str, float]]:
    """Permutations of B's units (apply them to B's state) from activation correlations.

    features_a / features_b: the two models' activations on the same inputs (`Family.activations`), keyed
    like spec.flat_groups(), each a list of [N, units] tensors (one per site the permutation acts on).
    Returns the permutations and, per group, the mean correlation of the matched units (1 for a perfect
    match; where a group sums several activations, the cost is their mean correlation). Raises
    NonFiniteWeightsError when an activation is NaN or infinite (non-finite weights), before any matching.
    """
    for which, feats in (("model A's activations (features_a)", features_a), ("model B's activations (features_b)",
                                                                            features_b)):
        check_finite({f"{n}[{i}]": t for n, ts in feats.items() for i, t in enumerate(ts)}, which,
                     "values (are the model's weights finite?)")
    flat: dict[str, np.ndarray] = {}
    quality: dict[str, float] = {}
    for g in spec.groups:
        names = [g.name + "#qk", g.name + "#vo"] if isinstance(g, HeadGroup) else [g.name]
        costs = []
        for n in names:
            if n not in features_a or n not in features_b:
                raise ValueError(f"no activations for permutation {n!r}; were the features collected by the family "
                                 "of this spec?")
            if len(features_a[n]) != len(features_b[n]):
                raise ValueError(f"{n!r}: {len(features_a[n])} activation sites for A, {len(features_b[n])} for B")
            pairs = list(zip(features_a[n], features_b[n]))
            if not pairs:
                raise ValueError(f"no activations for permutation {n!r} (an empty list of sites)")
            for i, (xa, xb) in enumerate(pairs):
                if xa.dim() != 2 or xa.shape != xb.shape or xa.shape[0] < 1:
                    raise ValueError(f"{n!r} site {i}: activations must be [N, units] of one shape with N >= 1 for A "
                                     f"and B; got {tuple(xa.shape)} and {tuple(xb.shape)} (were both collected on "
                                     "the same non-empty inputs?)")
            costs.append((sum(correlation(xa, xb) for xa, xb in pairs) / len(pairs)).cpu().numpy())
        ps = [assign(costs[0])] if len(names) == 1 else list(assign_heads(costs[0], costs[1], g.n_heads, g.qk_units))
        flat.update(zip(names, ps))
        quality[g.name] = sum(score(c, p) for c, p in zip(costs, ps)) / sum(len(p) for p in ps)
    return unflatten(spec, flat), quality
