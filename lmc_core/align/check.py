"""Checks before any matching: the weights are finite, and a permutation spec keeps the function.

A spec is a claim that permuting the listed places together leaves the model's outputs unchanged. `check_spec`
tests the claim on the model's own weights: a random permutation of every group is applied to the state and the
outputs on a sample batch must not move beyond rounding; when they do, every group is tried alone and the
failing ones are named with their parameters (SpecError). Knows no model: the caller gives `forward(state)`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch

from ..domains import MAX_SEED
from .. import rng
from ..domains import ConfigError, check_int, check_real  # noqa: F401 - check_int / check_real used by the package
from .spec import HeadGroup, PermutationSpec, State, apply_permutation, identity_permutation, random_permutation

CHECK_SITE = 0x5BEC  # generator site of the check's random permutations


class SpecError(ValueError):
    """A permutation spec changes the model's outputs (the message names the groups and their parameters)."""


# An argument of an alignment function of the wrong type or out of its domain: the ConfigError of lmc_core.domains
# (the message names the argument and its domain), under the name the alignment functions document.
ArgumentError = ConfigError


class NonFiniteWeightsError(ValueError):
    """A model holds NaN or infinite weights; the message names the model and the parameter."""


def check_finite(state: State, which: str = "the model", what: str = "weights") -> None:
    """Raise NonFiniteWeightsError naming `which` and the first tensors (parameters) with NaN or infinite values."""
    bad = []
    for name, t in state.items():
        if (t.is_floating_point() or t.is_complex()) and not bool(torch.isfinite(t).all()):
            n_nan, n_inf = int(torch.isnan(t).sum()), int(torch.isinf(t).sum())
            bad.append(f"{name!r} ({n_nan} NaN, {n_inf} infinite of {t.numel()})")
    if bad:
        raise NonFiniteWeightsError(f"{which} has non-finite {what}: {', '.join(bad[:4])}"
                                    f"{f' and {len(bad) - 4} more' if len(bad) > 4 else ''}. Matching needs finite "
                                    "weights: use a checkpoint from before the model diverged.")


@dataclass(frozen=True)
class SpecCheck:
    """How a spec check went: the largest output change under a random permutation, and the tolerance."""

    max_diff: float
    tolerance: float
    groups: int
    per_group: dict = field(default_factory=dict)  # filled only when the check failed

    @property
    def ok(self) -> bool:
        """True if the outputs stayed within the tolerance."""
        return self.max_diff <= self.tolerance

    def text(self) -> str:
        """One sentence."""
        return (f"a random permutation of all {self.groups} groups changed the outputs by at most {self.max_diff:.2e} "
                f"(tolerance {self.tolerance:.1e}): the spec {'keeps' if self.ok else 'does NOT keep'} the function")


def _places(g) -> list[str]:
    axes = (*g.qk, *g.vo) if isinstance(g, HeadGroup) else g.axes
    return sorted({ax.param for ax in axes})


def check_spec(spec: PermutationSpec, state: State, forward: Callable[[State], torch.Tensor], seed: int = 0,
               rtol: float = 1e-4, atol: float = 1e-5, raise_on_failure: bool = True) -> SpecCheck:
    """Apply a random permutation of every group to `state` (K=1) and compare forward(state) with forward(permuted).

    forward: the model's outputs (any tensor) on a fixed sample batch for a state, in eval mode. Passes when the
    largest absolute change is at most atol + rtol * max|outputs| (fp32 rounding of a reordered sum). Raises
    SpecError naming every group that changes the outputs on its own, and the parameters it acts on (with
    raise_on_failure=False, returns the SpecCheck instead). seed: any integer; rtol, atol: finite, >= 0 (ArgumentError
    otherwise). The weights must be finite (checked); ValueError when the outputs on the sample are empty or not
    finite (the check would compare nothing, or NaN).
    """
    seed = check_int("seed", seed, 0, MAX_SEED)
    rtol, atol = check_real("rtol", rtol, 0.0), check_real("atol", atol, 0.0)
    check_finite(state, "the model whose spec is checked")
    spec.check(state)
    with torch.no_grad():
        ref = forward(state).detach().double()
        if ref.numel() == 0:
            raise ValueError(f"the model's outputs on the sample are empty (shape {tuple(ref.shape)}): the spec is "
                             "checked on them; give a sample with at least one example")
        if not bool(torch.isfinite(ref).all()):
            raise ValueError("the model's outputs on the sample are not finite although its weights are: give a "
                             "finite sample of the model's usual scale (the spec check compares the outputs)")
        tol = atol + rtol * float(ref.abs().max()) if ref.numel() else atol
        perms = random_permutation(spec, rng.generator(seed, CHECK_SITE))
        diff = float((forward(apply_permutation(state, spec, perms)).double() - ref).abs().max())
        if diff <= tol:
            return SpecCheck(diff, tol, len(spec.groups))
        per = {}
        for g in spec.groups:
            one = {**identity_permutation(spec), g.name: perms[g.name]}
            per[g.name] = float((forward(apply_permutation(state, spec, one)).double() - ref).abs().max())
    result = SpecCheck(diff, tol, len(spec.groups), per)
    if raise_on_failure:
        failing = [g for g in spec.groups if per[g.name] > tol]
        what = "; ".join(f"{g.name!r} on {_places(g)} (max change {per[g.name]:.2e})" for g in failing) or (
            "no single group alone (they fail only together: a parameter shared by groups?)")
        raise SpecError(f"the permutation spec changes the model's outputs (max change {diff:.2e}, tolerance "
                        f"{tol:.1e}): {what}. Every place a group's units are written or read must be in the group "
                        "(the layer's output rows and bias, every normalisation and the next layer's input columns).")
    return result
