"""Permutation alignment (Git Re-Basin): specs of permutation symmetries, weight and activation matching.

    spec = transformer_spec(cfg)                       # or mlp_spec(mlp_cfg)
    perms, info = weight_matching(spec, a, b)          # a, b: K=1 states
    b_aligned = apply_permutation(b, spec, perms)      # same function as b, A's unit order
    path = interpolate_states(a, b_aligned, alphas)
"""
from .activation_matching import activation_matching, activations, correlation, spec_for
from .spec import (RESIDUAL, Axis, HeadGroup, HeadPermutation, PermutationSpec, Permutations, UnitGroup,
                   apply_permutation, compose_permutations, identity_permutation, invert_permutation, mlp_spec,
                   random_permutation, transformer_spec)
from .weight_matching import MatchInfo, weight_matching

__all__ = [
    "RESIDUAL", "Axis", "HeadGroup", "HeadPermutation", "PermutationSpec", "Permutations", "UnitGroup",
    "apply_permutation", "compose_permutations", "identity_permutation", "invert_permutation", "mlp_spec",
    "random_permutation", "transformer_spec", "MatchInfo", "weight_matching", "activation_matching",
    "activations", "correlation", "spec_for",
]
