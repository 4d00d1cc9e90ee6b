"""Weight matching (Git Re-Basin, Ainsworth et al. 2023): permute B's units to maximise <A, pi(B)>.

Coordinate descent over the spec's groups, in a random order each sweep (from a seeded generator). Each step
solves one linear assignment over the summed float64 contributions of every tensor the permutation touches, with
every other permutation applied; head groups are solved jointly (head pairing and within-head Q/K and V/O units,
see lap.assign_heads). Every step is an exact maximisation given the others, so the objective never decreases.

Start: `init` if given, else the anchored start, one pass that solves the groups one at a time on only the part
of their cost that is already known (tensors no other permutation touches, and those whose other permutations
are already solved), the group with the most known weight mass |A||B| first: for an MLP a pass from the input
layer to the output, for a transformer with a residual permutation the residual stream (anchored by the
embeddings) first. From the identity, the first steps pair units against still arbitrary neighbouring
permutations, and the ascent settles in a worse local optimum: 5-8 % lower objective on Git Re-Basin's MNIST
MLP, in 2.4-4x the sweeps (bench/align_peer.py, docs/benchmarks.md).

Fast paths: contributions of tensors no other permutation touches (token embeddings, the
unembedding, first-layer weights) are computed once; a step whose cost matrix cannot have changed
since it was last solved (none of the permutations it depends on moved) is skipped, which also makes
the final, confirming sweep nearly free.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch

from ..domains import MAX_SEED, MAX_STEPS, MAX_THREADS
from .. import rng
from .check import check_finite, check_int, check_real
from .lap import assign, assign_heads, score
from .spec import Axis, HeadGroup, PermutationSpec, Permutations, State, flatten, identity_permutation, unflatten

_ORDER_SITE = 0x3A7C  # generator site of the sweep order


@dataclass
class MatchInfo:
    """How a matching went: sweeps run, objective <A, pi(B)> before and after each sweep, time."""

    sweeps: int
    objective: list[float] = field(default_factory=list)  # [before, after sweep 1, ...]
    converged: bool = False
    seconds: float = 0.0
    solves: int = 0  # assignment steps actually solved (unchanged ones are skipped)
    restarts: int = 1  # runs tried (align.methods.match_weights keeps the best)
    start: str = "init"  # "anchored": sweep 1 was the anchored start pass; "init": began at the given permutations


def _single(state: State, which: str) -> dict[str, torch.Tensor]:
    for n, t in state.items():
        if t.shape[0] != 1:
            raise ValueError(f"weight_matching takes single-copy (K=1) states; {which}[{n!r}] has K={t.shape[0]} "
                             "(use ensemble.copy_state)")
    return {n: t[0].detach().to("cpu", torch.float64) for n, t in state.items()}


class _Term:
    """One place's contribution A_place . pi_others(B)_place^T [n, n], kept up to date incrementally.

    Only for a 2-D tensor whose other axis is permuted: when that permutation moves m of its
    indices, the term is corrected by a rank-m product instead of being recomputed.
    """

    def __init__(self, a: torch.Tensor, b: torch.Tensor, axis: int, offset: int, n: int):
        other = 1 - axis
        self.a = a.movedim(other, 0).narrow(1, offset, n)  # [m, n] view
        self.b = b.movedim(other, 0).narrow(1, offset, n).contiguous()  # [m, n]
        self.idx: torch.Tensor | None = None
        self.value: torch.Tensor | None = None

    def get(self, idx: torch.Tensor) -> torch.Tensor:
        if self.idx is not None:
            changed = (idx != self.idx).nonzero().view(-1)
            if len(changed) == 0:
                return self.value
            if 3 * len(changed) < len(idx):
                delta = self.b.index_select(0, idx[changed]) - self.b.index_select(0, self.idx[changed])
                self.value += self.a.index_select(0, changed).T @ delta
                self.idx = idx.clone()
                return self.value
        self.value = self.a.T @ self.b.index_select(0, idx)
        self.idx = idx.clone()
        return self.value


class _Matcher:
    """Mutable state of one matching: current flat permutations and the per-axis index tensors."""

    def __init__(self, spec: PermutationSpec, a: State, b: State, init: Permutations | None):
        spec.check(a)
        spec.check(b)
        if set(a) != set(b):
            raise ValueError(f"states differ in parameters: {sorted(set(a) ^ set(b))[:5]}")
        self.spec, self.a, self.b = spec, _single(a, "a"), _single(b, "b")
        for n in self.a:
            if self.a[n].shape != self.b[n].shape:
                raise ValueError(f"{n}: shapes differ {tuple(self.a[n].shape)} vs {tuple(self.b[n].shape)}")
        self.flat = {n: torch.from_numpy(p.copy()) for n, p in flatten(spec, init or identity_permutation(spec)).items()}
        self.sizes = {name: size for name, size, _ in spec.flat_groups()}
        self.owners: dict[tuple[str, int], set[str]] = {}  # (param, axis w/o K) -> flat names permuting it
        self.places: dict[str, list[tuple]] = {}  # flat name -> (param, axis w/o K, offset, repeat, block)
        self.index: dict[str, dict[int, torch.Tensor]] = {}  # param -> {axis w/o K: full index}
        self.pos: dict[tuple, torch.Tensor] = {}  # place -> [repeat, n] positions of its units on its axis
        for name, _, axes in spec.flat_groups():
            self.places[name] = [(ax.param, ax.axis - 1, ax.offset, ax.repeat, ax.block) for ax in axes]
            self.pos.update({pl: Axis(*pl).positions(self.sizes[name]) for pl in self.places[name]})
            for param, axis, *_ in self.places[name]:
                self.index.setdefault(param, {}).setdefault(axis, torch.arange(self.a[param].shape[axis]))
                self.owners.setdefault((param, axis), set()).add(name)
            self._write(name)
        # constant part of every cost matrix (places no other permutation touches), and the rest
        self.const, self.terms, self.mass = {}, {}, {}
        for name, pls in self.places.items():
            n = self.sizes[name]
            c = torch.zeros(n, n, dtype=torch.float64)
            for pl in pls:
                param, axis, off, repeat, _ = pl
                mat_a, mat_b = self._mat(self.a[param], pl), self._mat(self.b[param], pl)
                self.mass[pl] = float(mat_a.norm() * mat_b.norm())  # |A_place| |B_place|
                others = self._others(pl)
                if not others:
                    c += mat_a @ mat_b.T
                elif self.a[param].dim() == 2 and repeat == 1:
                    self.terms[pl] = _Term(self.a[param], self.b[param], axis, off, n)
            self.const[name] = c
        self.untouched = sum(float((self.a[n] * self.b[n]).sum()) for n in self.a if n not in self.index)
        self.scale = float(sum((t * t).sum() for t in self.a.values()).sqrt()
                           * sum((t * t).sum() for t in self.b.values()).sqrt())

    def _write(self, name: str) -> None:
        p = self.flat[name]
        for pl in self.places[name]:
            pos = self.pos[pl]
            self.index[pl[0]][pl[1]][pos] = pos[:, p]

    def _others(self, place: tuple) -> list[int]:
        return [ax for ax in self.index[place[0]] if ax != place[1]]

    def _mat(self, t: torch.Tensor, place: tuple) -> torch.Tensor:
        """[n, rest] rows of the place's units (a repeated unit's rows side by side)."""
        pos = self.pos[place]
        return t.movedim(place[1], 0)[pos].movedim(0, 1).reshape(pos.shape[1], -1)

    def deps(self, name: str) -> set[str]:
        """Flat permutations whose value enters the cost matrix of `name`."""
        out = set()
        for param, axis, *_ in self.places[name]:
            for other, pls in self.places.items():
                if any(p == param and ax != axis for p, ax, *_ in pls):
                    out.add(other)
        return out

    def known(self, place: tuple, solved: set[str] | None) -> bool:
        """Whether every other permuted axis of `place` is in `solved` (None: all are)."""
        return solved is None or all(self.owners[(place[0], ax)] <= solved for ax in self._others(place))

    def known_mass(self, name: str, solved: set[str]) -> float:
        """|A_place| |B_place| summed over the places of `name` whose cost is known given `solved`."""
        return sum(self.mass[pl] for pl in self.places[name] if self.known(pl, solved))

    def cost(self, name: str, solved: set[str] | None = None) -> np.ndarray:
        """[n, n] float64: cost[i, j] = gain of pairing unit i of A with unit j of B; with `solved`, only the
        places whose other permutations are all in it (and those with none) count."""
        c = self.const[name].clone()
        for pl in self.places[name]:
            others = self._others(pl)
            if not others or not self.known(pl, solved):
                continue
            if pl in self.terms:
                c += self.terms[pl].get(self.index[pl[0]][others[0]])
                continue
            t = self.b[pl[0]]
            for ax in others:
                t = t.index_select(ax, self.index[pl[0]][ax])
            c += self._mat(self.a[pl[0]], pl) @ self._mat(t, pl).T
        return c.numpy()

    def objective(self) -> float:
        """<A, pi(B)> over all parameters, float64."""
        total = self.untouched
        for param, axes in self.index.items():
            t = self.b[param]
            for ax, ix in axes.items():
                t = t.index_select(ax, ix)
            total += float(torch.dot(self.a[param].reshape(-1), t.reshape(-1)))
        return total

    def set(self, name: str, p: np.ndarray) -> None:
        self.flat[name] = torch.from_numpy(p)
        self._write(name)


def weight_matching(spec: PermutationSpec, a: State, b: State, max_sweeps: int = 100, tol: float = 1e-12,
                    seed: int = 0, init: Permutations | None = None, threads: int | None = 1
                    ) -> tuple[Permutations, MatchInfo]:
    """Permutations of B's units (apply them to b) maximising sum_params <A, pi(B)>, and how it went.

    a, b: K=1 states. Stops when a full sweep gains at most tol x |A| |B| (the objective's largest
    possible value, so rounding never counts as progress) or after max_sweeps. `init`: starting
    permutations; by default the anchored start (module docstring), which counts as sweep 1 and is kept only
    if it does not lower the objective of the identity (pass identity_permutation(spec) for the plain
    identity start of Ainsworth et al.'s Algorithm 1). `threads`: torch CPU threads while matching (restored
    afterwards; None leaves torch's setting): the work is many small products, for which extra
    threads gain little and, on a busy machine, stall at every operation (2 threads were 4-6x
    slower than 1 on a loaded 2-core CPU). Raises NonFiniteWeightsError naming the model and parameter when
    either state holds NaN or infinite values, and ArgumentError (a ValueError) unless max_sweeps is an integer >= 1
    (0 would return the identity unmatched), tol a finite number >= 0, seed an integer and threads None or an
    integer >= 1 — all before any matching.
    """
    max_sweeps = check_int("max_sweeps", max_sweeps, 1, MAX_STEPS)
    tol = check_real("tol", tol, 0.0)
    seed = check_int("seed", seed, 0, MAX_SEED)
    if threads is not None:
        threads = check_int("threads", threads, 1, MAX_THREADS)
    check_finite(a, "model A (a)")
    check_finite(b, "model B (b)")
    before = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        return _weight_matching(spec, a, b, max_sweeps, tol, seed, init)
    finally:
        torch.set_num_threads(before)


def _solve(m: _Matcher, g, names: list[str], solved: set[str] | None = None) -> tuple[list, list]:
    """Cost matrices of group g's flat permutations `names` and their jointly optimal assignment."""
    costs = [m.cost(f, solved) for f in names]
    ps = [assign(costs[0])] if len(names) == 1 else list(assign_heads(costs[0], costs[1], g.n_heads, g.qk_units))
    return costs, ps


def _anchored_start(m: _Matcher, spec: PermutationSpec, flat_of: dict[str, list[str]], dirty: dict[str, bool],
                    dependents: dict[str, list[str]]) -> int:
    """One pass over the groups, each solved on the known part of its cost, most known mass first (ties: spec
    order); a group with nothing known keeps its permutation. A group solved on its whole cost stays clean in
    `dirty` until a permutation it depends on moves. Returns the assignments solved."""
    solved: set[str] = set()
    left, solves = list(spec.groups), 0
    while left:
        masses = [sum(m.known_mass(f, solved) for f in flat_of[g.name]) for g in left]
        i = int(np.argmax(masses))
        g = left.pop(i)
        names = flat_of[g.name]
        if masses[i] > 0:
            dirty[g.name] = not all(m.known(pl, solved) for f in names for pl in m.places[f])
            for f, p in zip(names, _solve(m, g, names, solved)[1]):
                if not np.array_equal(p, m.flat[f].numpy()):
                    m.set(f, p)
                    for dep in dependents[f]:
                        dirty[dep] = True
            solves += 1
        solved.update(names)
    return solves


def _weight_matching(spec: PermutationSpec, a: State, b: State, max_sweeps: int, tol: float, seed: int,
                     init: Permutations | None) -> tuple[Permutations, MatchInfo]:
    t0 = time.perf_counter()
    m = _Matcher(spec, a, b, init)
    thr = tol * max(m.scale, 1e-300)
    flat_of = {g.name: ([g.name + "#qk", g.name + "#vo"] if isinstance(g, HeadGroup) else [g.name])
               for g in spec.groups}
    deps = {g.name: set().union(*(m.deps(f) for f in flat_of[g.name])) for g in spec.groups}
    dependents = {f: [g for g in deps if f in deps[g]] for f in m.flat}
    dirty = {g.name: True for g in spec.groups}
    gen = rng.generator(seed, _ORDER_SITE)
    info = MatchInfo(sweeps=0, objective=[m.objective()])
    if init is None and max_sweeps > 0:
        first = {f: p.clone() for f, p in m.flat.items()}
        info.solves, info.sweeps, info.start = _anchored_start(m, spec, flat_of, dirty, dependents), 1, "anchored"
        info.objective.append(m.objective())
        if info.objective[-1] < info.objective[0]:  # never start below the identity
            for f, p in first.items():
                m.set(f, p.numpy())
            info.objective[-1] = info.objective[0]
            dirty = {g.name: True for g in spec.groups}
    for _ in range(max_sweeps - info.sweeps):
        gained = 0.0
        for gi in torch.randperm(len(spec.groups), generator=gen).tolist():
            g = spec.groups[gi]
            if not dirty[g.name]:
                continue  # nothing it depends on moved since it was solved: same answer
            dirty[g.name] = False
            info.solves += 1
            names = flat_of[g.name]
            costs, new_ps = _solve(m, g, names)
            old = sum(score(c, m.flat[f].numpy()) for c, f in zip(costs, names))
            new = sum(score(c, p) for c, p in zip(costs, new_ps))
            if new - old > thr:
                gained += new - old
                for f, p in zip(names, new_ps):
                    if not np.array_equal(p, m.flat[f].numpy()):
                        m.set(f, p)
                        for dep in dependents[f]:
                            dirty[dep] = True
        info.sweeps += 1
        info.objective.append(m.objective())
        if gained <= thr:
            info.converged = True
            break
    info.seconds = time.perf_counter() - t0
    return unflatten(spec, {f: p.numpy().copy() for f, p in m.flat.items()}), info
