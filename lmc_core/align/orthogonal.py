"""Residual-stream maps beyond permutations: orthogonal maps (and, without normalisation, invertible ones).

A transformer's residual stream x [tokens, d] is written by the embeddings and by every block's output
projections and read by every block's input projections and by the unembedding. Replacing x by x M for an
invertible M [d, d] keeps the function when every write W_w (residual axis = output) becomes W_w M and every
read W_r (residual axis = input) becomes M⁻¹ W_r — provided nothing between a write and a read acts on the
stream's coordinates one by one:

- without normalisation (Nanda et al.'s grokking transformer) every invertible M is a symmetry;
- a pre-norm model with RMSNorm *without a gain* keeps the function under every orthogonal M, since
  RMSNorm(xQ) = xQ / rms(xQ) = RMSNorm(x) Q (rms is a norm, so Q leaves it unchanged);
- LayerNorm with a gain commutes with neither (only with permutations): its gain and bias are folded into
  the next linear map and every write is centred first, which turns it into a gain-free RMSNorm on a
  mean-zero stream without changing the function (SliceGPT, Ashkboos et al. 2024, Sec. 3). The family does
  the folding (`Family.residual_maps`); this module only sees the places.

For an orthogonal Q, Q⁻¹ = Qᵀ, so a read transforms exactly like a write (new unit i = Σ_j old unit j · Q[j, i])
— the same rule as a permutation (a permutation matrix P[j, i] = 1 iff j = p[i] gives `index_select` by p),
which is why `apply_residual_map` with a permutation matrix equals `apply_permutation`.

Closed-form alignment of B to A (`residual_alignment`):
- from residual activations of both models on the same inputs: the orthogonal Q minimising
  ‖X_B Q − X_A‖_F (orthogonal Procrustes, Schönemann 1966), or for an invertible group the least-squares
  M = argmin ‖X_B M − X_A‖_F (`torch.linalg.lstsq`);
- from the weights: the orthogonal Q maximising Σ_places ⟨A, B·Q⟩ (the weight-matching objective with the
  residual permutation widened to all orthogonal maps; again a Procrustes problem over the stacked places),
  alternated with weight matching of the other permutations (heads, MLP units) until the objective stops rising.

Unused directions (`polar`): Procrustes fixes Q only on the directions the cross-covariance C = X_Bᵀ X_A uses.
After LayerNorm folding every write is centred, so the stream's mean direction 1/√d is never used by either model
(C's last singular value is rounding, ~1e-17 of the largest), and an SVD would map it to ±1/√d with a sign
chosen by rounding — the function is the same either way, but the reads' component along it, and so every
weight-space comparison after alignment (distances, cosines, interpolated weights), would not be. The convention:
singular values at most NULL_RTOL × the largest count as unused, and on those directions Q is the orthogonal map
between B's unused directions and A's that is closest to the identity (largest trace: U₀ polar(U₀ᵀV₀) V₀ᵀ, which
depends on the two subspaces only, not on the bases an SVD picks). For two folded models both are the mean
direction and Q maps it to itself (+1/√d to +1/√d). If B's unused directions are orthogonal to A's (U₀ᵀV₀ has
a singular value below NULL_RTOL), they are paired instead through the bases obtained by orthonormalising the
projections of the coordinate axes e_1, e_2, ... onto each subspace, again independent of the SVD.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch

from ..domains import MAX_SEED, MAX_STEPS, MAX_WIDTH
from .check import check_int, check_real
from .spec import RESIDUAL, Axis, PermutationSpec, Permutations, State, apply_permutation
from .methods import match_weights
from .weight_matching import weight_matching

GROUPS = ("orthogonal", "invertible")
NULL_RTOL = 1e-9  # singular values of a cross-covariance at most this x the largest: unused directions (see polar)


@dataclass(frozen=True)
class ResidualSpec:
    """Where the residual stream of a model enters its parameters, and which maps of it keep the function.

    size: the stream's width d; writes: places whose residual axis is an output (embeddings, output projections
    and their biases: x -> x M); reads: places whose residual axis is an input (input projections, the
    unembedding: W -> M⁻¹ W); group: "orthogonal" (MᵀM = I keeps the function) or "invertible" (every
    invertible M does). Axes count the copy axis (axis 0 is K), as in `PermutationSpec`.
    """

    size: int
    writes: tuple[Axis, ...]
    reads: tuple[Axis, ...]
    group: str = "orthogonal"
    notes: tuple[str, ...] = field(default=())

    def __post_init__(self):
        check_int("size", self.size, 1, MAX_WIDTH)
        if self.group not in GROUPS:
            raise ValueError(f"group={self.group!r}; choose one of {list(GROUPS)}")

    @property
    def places(self) -> tuple[Axis, ...]:
        """Every place the map acts on (writes, then reads)."""
        return self.writes + self.reads

    def check(self, state: State) -> None:
        """Raise ValueError if a place does not exist in `state` or is too short for the stream."""
        for ax in self.places:
            if ax.param not in state:
                raise ValueError(f"the residual map acts on {ax.param!r}, which the state lacks")
            shape = state[ax.param].shape
            if not 1 <= ax.axis < len(shape) or ax.offset + self.size > shape[ax.axis]:
                raise ValueError(f"the residual map ({self.size} units at offset {ax.offset}) does not fit axis "
                                 f"{ax.axis} of {ax.param!r} with shape {tuple(shape)}")


def along(t: torch.Tensor, ax: Axis, m: torch.Tensor) -> torch.Tensor:
    """t with the units [offset, offset + n) of axis ax.axis replaced by new_i = Σ_j old_j · m[j, i] (m [n, n];
    computed in float64, returned in t's dtype). Differentiable in t and m."""
    n = m.shape[0]
    if ax.repeat != 1:
        raise ValueError(f"{ax.param!r}: a residual map acts on contiguous units, not a repeated place")
    moved = t.movedim(ax.axis, -1)
    part = moved[..., ax.offset : ax.offset + n].double() @ m.double()
    out = torch.cat([moved[..., : ax.offset], part.to(t.dtype), moved[..., ax.offset + n :]], -1)
    return out.movedim(-1, ax.axis)


def apply_residual_map(state: State, spec: ResidualSpec, m: torch.Tensor, inverse: torch.Tensor | None = None
                       ) -> State:
    """The state with the residual stream mapped by m [d, d] (x -> x m), the same map for every copy.

    Writes become W m, reads m⁻¹ W (`inverse`: m⁻¹ if already known; for an orthogonal group mᵀ is used).
    Raises ValueError if m is not square of the stream's width, or not orthogonal (to 1e-6) for an orthogonal
    group. Untouched tensors are cloned. Differentiable in m (and `inverse`) when they require grad.
    """
    spec.check(state)
    d = spec.size
    if tuple(m.shape) != (d, d):
        raise ValueError(f"the residual map must be [{d}, {d}], got {tuple(m.shape)}")
    m = m.to(torch.float64)
    if spec.group == "orthogonal":
        err = float((m.detach().T @ m.detach() - torch.eye(d, dtype=torch.float64)).abs().max())
        if err > 1e-6:
            raise ValueError(f"this model's residual stream keeps its function only under orthogonal maps; the map "
                             f"is {err:.1e} from orthogonal (use nearest_orthogonal)")
        read = m
    else:
        read = (torch.linalg.inv(m) if inverse is None else inverse.to(torch.float64)).T
    out = {n: t for n, t in state.items()}
    for ax in spec.writes:
        out[ax.param] = along(out[ax.param], ax, m)
    for ax in spec.reads:
        out[ax.param] = along(out[ax.param], ax, read)
    touched = {ax.param for ax in spec.places}
    return {n: (t if n in touched else t.clone()) for n, t in out.items()}


def permutation_matrix(p: np.ndarray) -> torch.Tensor:
    """The matrix P [n, n] (float64) with x P = x[:, p] (P[j, i] = 1 iff j = p[i])."""
    n = len(p)
    m = torch.zeros(n, n, dtype=torch.float64)
    m[torch.as_tensor(p), torch.arange(n)] = 1.0
    return m


def nearest_orthogonal(m: torch.Tensor) -> torch.Tensor:
    """The orthogonal matrix closest to m in Frobenius norm (its polar factor U Vᵀ; float64)."""
    return polar(m.detach())


def random_orthogonal(d: int, generator: torch.Generator) -> torch.Tensor:
    """A Haar-random orthogonal [d, d] matrix (float64; QR of a Gaussian with the signs fixed, Mezzadri 2007).
    d: an integer >= 1 (ArgumentError otherwise)."""
    d = check_int("d", d, 1, MAX_WIDTH)
    q, r = torch.linalg.qr(torch.randn(d, d, generator=generator, dtype=torch.float64))
    return q * torch.sign(torch.diagonal(r))[None]


def random_invertible(d: int, generator: torch.Generator, condition: float = 4.0) -> torch.Tensor:
    """A random invertible [d, d] matrix with singular values log-spaced in [1/sqrt(c), sqrt(c)] (condition c).
    d: an integer >= 1; condition: a finite number >= 1 (ArgumentError otherwise)."""
    d = check_int("d", d, 1, MAX_WIDTH)
    condition = check_real("condition", condition, 1.0)
    u, v = random_orthogonal(d, generator), random_orthogonal(d, generator)
    s = torch.logspace(-0.5, 0.5, d, base=condition, dtype=torch.float64)
    return u @ torch.diag(s) @ v.T


def procrustes(source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Orthogonal Q [d, d] minimising ‖source Q − target‖_F (source, target [N, d]; Schönemann 1966), float64: the
    polar factor of sourceᵀ target, with the module's convention on directions the activations do not use (`polar`:
    the identity on the folded stream's mean direction). ValueError unless both are [N, d] of one shape, N >= 1."""
    if source.dim() != 2 or source.shape != target.shape or source.shape[0] < 1:
        raise ValueError(f"procrustes needs source and target activations [N, d] of one shape with N >= 1; got "
                         f"{tuple(source.shape)} and {tuple(target.shape)}")
    x, y = source.detach().double().cpu(), target.detach().double().cpu()
    return polar(x.T @ y)


def least_squares_map(source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """M [d, d] minimising ‖source M − target‖_F (source, target [N, d], N >= d; float64). Raises ValueError if
    the source activations do not span the stream (rank < d: the map would not be determined)."""
    x, y = source.detach().double().cpu(), target.detach().double().cpu()
    rank = int(torch.linalg.matrix_rank(x))
    if rank < x.shape[1]:
        raise ValueError(f"the source activations span {rank} of {x.shape[1]} directions: give more inputs")
    return torch.linalg.lstsq(x, y).solution


def _mat(t: torch.Tensor, ax: Axis, d: int) -> torch.Tensor:
    """Single-copy tensor as [rows, d] with the residual units as columns (float64)."""
    return t[0].movedim(ax.axis - 1, -1)[..., ax.offset : ax.offset + d].reshape(-1, d).double()


def weight_procrustes(spec: ResidualSpec, a: State, b: State, only: set[str] | None = None) -> torch.Tensor:
    """Orthogonal Q maximising Σ_places ⟨A, map_Q(B)⟩ over the residual places (K=1 states; float64).

    For an orthogonal map, reads and writes transform alike, so the objective is ⟨A_stack, B_stack Q⟩ of the
    places stacked row-wise: orthogonal Procrustes. only: restrict to these parameters (e.g. those no other
    symmetry touches)."""
    cross = torch.zeros(spec.size, spec.size, dtype=torch.float64)  # Σ B_placeᵀ A_place, one place at a time
    for ax in spec.places:
        if only is None or ax.param in only:
            cross += _mat(b[ax.param], ax, spec.size).T @ _mat(a[ax.param], ax, spec.size)
    return polar(cross)


def polar(cross: torch.Tensor) -> torch.Tensor:
    """The orthogonal Q maximising tr(Qᵀ C) for C [d, d]: U Vᵀ of C = U S Vᵀ (the solution of orthogonal Procrustes
    from its cross-covariance C = sourceᵀ target; float64). Where C is rank-deficient (singular values <= NULL_RTOL
    x the largest) the maximiser is not unique; Q is then fixed by the module's convention (its docstring): on the
    unused directions, the orthogonal map from B's (U₀) to A's (V₀) closest to the identity, so the result does
    not depend on the signs or bases the SVD picks."""
    c = cross.detach().double()
    u, s, vh = torch.linalg.svd(c)
    if s.numel() == 0 or not float(s[0]) > 0:
        return torch.eye(c.shape[0], dtype=torch.float64)  # nothing used: the identity (closest to itself)
    r = int((s > NULL_RTOL * s[0]).sum())
    if r == c.shape[0]:
        return u @ vh
    # the unused directions of B (U₀) and of A (V₀): subspaces the SVD fixes, in bases it does not
    return u[:, :r] @ vh[:r] + _null_map(u[:, r:], vh[r:].T)


def _canonical(basis: torch.Tensor) -> torch.Tensor:
    """The basis of span(basis) [d, k] from the projections of e_1, e_2, ... orthonormalised in order (depends on
    the subspace only)."""
    proj = basis @ basis.T
    out: list[torch.Tensor] = []
    for j in range(proj.shape[0]):
        v = proj[:, j].clone()
        for w in out:
            v -= (w @ v) * w
        if float(v.norm()) > 1e-6:
            out.append(v / v.norm())
        if len(out) == basis.shape[1]:
            break
    return torch.stack(out, 1)


def _null_map(u0: torch.Tensor, v0: torch.Tensor) -> torch.Tensor:
    """U₀ R V₀ᵀ with the orthogonal R maximising tr(U₀ R V₀ᵀ): the map from span(U₀) onto span(V₀) closest to the
    identity; when the two subspaces are (nearly) orthogonal somewhere, their canonical bases paired in order."""
    m = u0.T @ v0
    um, sm, vmh = torch.linalg.svd(m)
    if float(sm.min()) > NULL_RTOL ** 0.5:
        return u0 @ (um @ vmh) @ v0.T
    return _canonical(u0) @ _canonical(v0).T


@dataclass
class ResidualMatch:
    """What residual alignment found: the map (x -> x M), the other permutations, the objective, time."""

    map: torch.Tensor
    perms: Permutations
    method: str
    objective: list[float] = field(default_factory=list)  # <A, T(B)> after each round (weights method)
    seconds: float = 0.0


def without_residual(spec: PermutationSpec) -> PermutationSpec:
    """The permutation spec without its residual-stream group (a residual map replaces it)."""
    return PermutationSpec(tuple(g for g in spec.groups if g.name != RESIDUAL), spec.notes)


def _inner(a: State, b: State) -> float:
    return float(sum(torch.dot(a[n].double().reshape(-1), b[n].double().reshape(-1)) for n in a))


def residual_alignment(pspec: PermutationSpec, rspec: ResidualSpec, a: State, b: State,
                       features: tuple[torch.Tensor, torch.Tensor] | None = None, rounds: int = 8,
                       seed: int = 0, tol: float = 1e-10, group: str | None = None) -> tuple[State, ResidualMatch]:
    """B aligned to A by a residual map and permutations of the other units; K=1 states in the residual form.

    features: residual activations (X_A, X_B), each [N, d], of the two models on the same inputs: the map is
    Procrustes (orthogonal group) or least squares (invertible group) of X_B onto X_A — the stream's activations do
    not depend on how heads and units are permuted, so one solve suffices — and then the heads and MLP units are
    weight-matched given it. Without features (orthogonal group only): coordinate ascent of ⟨A, T(B)⟩, starting
    from the better of (a) weight matching with the residual permutation and (b) Procrustes on the places only
    the residual map touches (embeddings, biases, the unembedding), alternating Procrustes for the map with weight
    matching for the other permutations; every step maximises the objective given the rest, so it never falls.
    group: the maps searched — the spec's group by default, or "orthogonal" within an invertible group (an
    orthogonal map is invertible too; ValueError for "invertible" within an orthogonal group). rounds: an integer
    >= 0 (rounds of the alternation; 0 keeps the better start), seed: an integer, tol: a finite number >= 0
    (ArgumentError otherwise, before any work). Returns T(B) and what was found.
    """
    rounds = check_int("rounds", rounds, 0, MAX_STEPS)
    seed = check_int("seed", seed, 0, MAX_SEED)
    tol = check_real("tol", tol, 0.0)
    group = group or rspec.group
    if group not in GROUPS or (rspec.group == "orthogonal" and group != "orthogonal"):
        raise ValueError(f"group={group!r}: this residual stream keeps its function under {rspec.group} maps; search "
                         "those or orthogonal ones")
    t0 = time.perf_counter()
    rest = without_residual(pspec)
    d = rspec.size

    def mapped(m: torch.Tensor, perms: Permutations | None) -> State:
        s = apply_residual_map(b, rspec, m)
        return apply_permutation(s, rest, perms) if perms is not None and rest.groups else s

    def perms_given(m: torch.Tensor, init: Permutations | None) -> Permutations | None:
        if not rest.groups:
            return None
        mapped_b = apply_residual_map(b, rspec, m)
        if init is None:  # a fresh start: the restart policy of align.methods
            return match_weights(rest, a, mapped_b, seed=seed)[0]
        return weight_matching(rest, a, mapped_b, seed=seed, init=init)[0]

    if features is not None:
        xa, xb = features
        m = procrustes(xb, xa) if group == "orthogonal" else least_squares_map(xb, xa)
        perms = perms_given(m, None)
        out = mapped(m, perms)
        return out, ResidualMatch(m, perms or {}, "activations", [_inner(a, out)], time.perf_counter() - t0)
    if group != "orthogonal":
        raise ValueError("an invertible residual map is found from activations (features=(X_A, X_B)); the weight "
                         "objective <A, T(B)> is unbounded over invertible maps")
    starts = []
    if RESIDUAL in pspec:  # (a) weight matching with the residual permutation
        perms, _ = match_weights(pspec, a, b, seed=seed)
        m = permutation_matrix(np.asarray(perms[RESIDUAL]))
        starts.append((m, {g.name: perms[g.name] for g in rest.groups}))
    touched = {ax.param for g in rest.groups for _, _, axes in PermutationSpec((g,)).flat_groups() for ax in axes}
    only = {ax.param for ax in rspec.places} - touched
    if only:  # (b) the places only the residual map touches
        m = weight_procrustes(rspec, a, b, only)
        starts.append((m, perms_given(m, None)))
    if not starts:
        starts.append((torch.eye(d, dtype=torch.float64), perms_given(torch.eye(d, dtype=torch.float64), None)))
    best = None
    for m, perms in starts:
        history = [_inner(a, mapped(m, perms))]
        for _ in range(rounds):
            bp = apply_permutation(b, rest, perms) if perms is not None and rest.groups else b
            m = weight_procrustes(rspec, a, bp)
            perms = perms_given(m, perms)
            history.append(_inner(a, mapped(m, perms)))
            if history[-1] - history[-2] <= tol * max(abs(history[-2]), 1.0):
                break
        if best is None or history[-1] > best[2][-1]:
            best = (m, perms, history)
    m, perms, history = best
    return mapped(m, perms), ResidualMatch(m, perms or {}, "weights", history, time.perf_counter() - t0)


def residual_features(collect: Callable[[State], dict], state: State, key: str = RESIDUAL) -> torch.Tensor:
    """The residual-stream activations [N, d] of a state, all sites stacked, from a family's `activations`
    collector (a callable state -> features keyed like the permutation spec)."""
    return torch.cat([x.reshape(-1, x.shape[-1]) for x in collect(state)[key]]).double()
