"""Permutation alignment (Git Re-Basin): specs of permutation symmetries, weight and activation matching.

A family declares its symmetries (`Family.perm_spec`) and the activations activation matching
compares (`Family.activations`); this package knows no model:

    fam = family_of(cfg)
    spec = fam.perm_spec(cfg)
    perms, info = weight_matching(spec, a, b)          # a, b: K=1 states
    b_aligned = apply_permutation(b, spec, perms)      # same function as b, A's unit order
    path = interpolate_states(a, b_aligned, alphas)
"""
from .activation_matching import Features, activation_matching, correlation
from .spec import (RESIDUAL, Axis, HeadGroup, HeadPermutation, PermutationSpec, Permutations, UnitGroup,
                   apply_permutation, compose_permutations, identity_permutation, invert_permutation,
                   random_permutation)
from .weight_matching import MatchInfo, weight_matching
from .methods import METHODS, RESTARTS, Method, match_weights, method

__all__ = [
    "RESIDUAL", "Axis", "Features", "HeadGroup", "HeadPermutation", "PermutationSpec", "Permutations", "UnitGroup",
    "apply_permutation", "compose_permutations", "identity_permutation", "invert_permutation",
    "random_permutation", "MatchInfo", "weight_matching", "activation_matching", "correlation",
    "METHODS", "RESTARTS", "Method", "match_weights", "method",
]
