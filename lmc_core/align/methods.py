"""One vocabulary of alignment methods, and the restart policy of weight matching, for every study and for
`lmc_core.align_models`: the names a table, a figure legend or a summary uses for "how B was aligned to A".

Weight matching (Ainsworth et al. 2023, Git Re-Basin, Alg. 1) is coordinate ascent over the permutation groups: it
ends in a local optimum that depends on its start and on the order in which the groups are solved. `match_weights`
runs it RESTARTS times and keeps the permutations with the highest objective (one Adam pair of notebook 04 had ended
with a higher barrier than unaligned from a single order): the first half of the restarts from the anchored start
(align.weight_matching; the better start on almost every pair measured, 3 % higher objective on average), the rest
from the identity with their own sweep orders (the local optima differ; on 36 MLP pairs of bench/align_peer.py's
kind this mix was never below the best of 4 identity starts, and took 0.75x its time).
"""
from __future__ import annotations

from dataclasses import dataclass

from ..domains import MAX_SEED, MAX_UNITS
from .check import check_int
from .spec import PermutationSpec, Permutations, identity_permutation
from .weight_matching import MatchInfo, weight_matching

RESTARTS = 4  # runs of weight matching; the best objective is kept
ORDER_STRIDE = 7919  # seed of restart r: seed + ORDER_STRIDE * r (restart 0 is the plain call's order and start)


@dataclass(frozen=True)
class Method:
    """An alignment method: the symmetry group it searches and what it is fitted to."""

    name: str
    group: str  # the maps it applies to B
    fitted_to: str
    source: str


UNALIGNED = "unaligned"
WEIGHT = "weight matching"
ACTIVATION = "activation matching"
WEIGHT_RMS = "weight matching, RMSNorm form"
ORTHOGONAL_WEIGHTS = "orthogonal residual map (weights)"
ORTHOGONAL_ACTIVATIONS = "orthogonal residual map (activations)"
INVERTIBLE = "invertible residual map (activations)"
LEARNED = "learned"
CONTROL = "control A-pi(A)"

METHODS: dict[str, Method] = {m.name: m for m in (
    Method(UNALIGNED, "none", "-", "-"),
    Method(WEIGHT, "permutations of hidden units, heads and the residual stream", "weights",
           "Ainsworth et al. 2023 (Git Re-Basin), weight matching"),
    Method(ACTIVATION, "the same permutations", "activations on a sample",
           "Ainsworth et al. 2023 (Git Re-Basin), activation matching"),
    Method(WEIGHT_RMS, "the same permutations, LayerNorm folded into a gain-free RMSNorm in both models", "weights",
           "SliceGPT's folding (Ashkboos et al. 2024) + weight matching"),
    Method(ORTHOGONAL_WEIGHTS, "permutations + an orthogonal map of the residual stream", "weights",
           "Theus et al. 2025 (orthogonal Procrustes alternating with weight matching)"),
    Method(ORTHOGONAL_ACTIVATIONS, "permutations + an orthogonal map of the residual stream",
           "activations on a sample", "Theus et al. 2025 (Procrustes on residual activations)"),
    Method(INVERTIBLE, "permutations + an invertible map of the residual stream (no normalisation)",
           "activations on a sample (least squares)", "ours (the group of a transformer without LayerNorm)"),
    Method(LEARNED, "permutations (optional) + a residual map, learned", "the midpoint loss on training data",
           "Theus et al. 2025 (learned alignment)"),
    Method(CONTROL, "weight matching of a model against a random permutation of itself", "weights",
           "a check: the barrier must be 0"),
)}
ALIASES = {"weight": WEIGHT, "activation": ACTIVATION}  # align_models' method= keywords


def method(name: str) -> Method:
    """A method by name or align_models keyword; KeyError naming the known ones."""
    key = ALIASES.get(name, name)
    if key not in METHODS:
        raise KeyError(f"unknown alignment method {name!r}; choose one of {sorted(METHODS)} "
                       f"(align_models: {sorted(ALIASES)})")
    return METHODS[key]


def match_weights(spec: PermutationSpec, a, b, seed: int = 0, restarts: int = RESTARTS, **kw
                  ) -> tuple[Permutations, MatchInfo]:
    """Weight matching (align.weight_matching) `restarts` times, keeping the permutations with the highest objective:
    restarts r < ceil(restarts / 2) from the anchored start, the others from the identity, each with its own sweep
    order (an `init` in kw is the start of every restart); the MatchInfo of the kept run, with `restarts` recorded.
    ArgumentError (a ValueError) unless seed is an integer and restarts an integer >= 1."""
    seed = check_int("seed", seed, 0, MAX_SEED)
    restarts = check_int("restarts", restarts, 1, MAX_UNITS)
    init = kw.pop("init", None)

    def start(r: int) -> Permutations | None:
        return init if init is not None or r < (restarts + 1) // 2 else identity_permutation(spec)

    best = max((weight_matching(spec, a, b, seed=seed + ORDER_STRIDE * r, init=start(r), **kw)
                for r in range(restarts)), key=lambda pr: pr[1].objective[-1])
    best[1].restarts = restarts
    return best
