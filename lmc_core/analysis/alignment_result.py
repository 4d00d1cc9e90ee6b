"""What align_models returns: the permuted model, the permutations, the spec, the check and the matching log."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from torch import nn

from ..align import Permutations
from ..align.auto import ModuleSpec
from ..align.check import SpecCheck


@dataclass
class Alignment:
    """The result of align_models.

    model: B with its units permuted into A's order (a new module of B's class; B is unchanged).
    perms: the permutation of every group (unit i of A is paired with unit perms[g][i] of B).
    spec: the ModuleSpec used. method: "weight" or "activation". log: weight matching's MatchInfo (sweeps,
    objective per sweep, seconds) or activation matching's mean correlation of the matched units per group.
    check: the spec check on A (max output change under a random permutation). max_diff_b: the largest change
    of B's outputs on the sample after the permutation (rounding only). notes: what stayed in place.
    """

    model: nn.Module
    perms: Permutations
    spec: ModuleSpec
    method: str
    log: Any
    check: SpecCheck
    max_diff_b: float
    notes: list = field(default_factory=list)

    def text(self) -> str:
        """What was done, in words."""
        g = len(self.spec.spec.groups)
        how = (f"weight matching: {self.log.sweeps} sweeps, objective {self.log.objective[0]:.4g} -> "
               f"{self.log.objective[-1]:.4g}" if self.method == "weight" else
               "activation matching: mean correlation of matched units " +
               ", ".join(f"{k} {v:.3f}" for k, v in self.log.items()))
        return (f"{g} permutation groups; spec check: {self.check.text()}; {how}; B's outputs after permuting moved "
                f"by {self.max_diff_b:.2e}." + "".join(f" Note: {n}" for n in self.notes))
