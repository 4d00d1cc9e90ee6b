"""Permutation specs: which hidden units of a model can be permuted without changing its function.

A spec is a tuple of groups. A `UnitGroup` is one permutation of `size` units acting on a list of
(parameter, axis, offset) places; a `HeadGroup` is the attention-head symmetry of one block: a
permutation of whole heads plus, inside every head, one unit permutation shared by Q and K and
another shared by V and the output projection (the Q/K one held at the identity where rotary positions forbid
it: `qk_units=False`). Axes are counted with the copy axis (axis 0 is K),
and one permutation is applied to every copy of a state. A place whose units repeat along its axis (grouped-query
attention: the query heads that share a key-value head, laid out [groups, repeat, block]) names `repeat` and
`block`: unit g * block + j sits at g * repeat * block + r * block + j for every r, and all repeats move alike.

Convention: a permutation p applied to a model puts the model's unit p[i] at position i (index
select). Matching B to A returns the p for which unit i of A is paired with unit p[i] of B, so
`apply_permutation(b, spec, p)` is B expressed in A's unit order.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Union

import numpy as np
import torch

State = dict[str, torch.Tensor]
RESIDUAL = "residual"  # name of the residual-stream permutation in transformer specs


@dataclass(frozen=True)
class Axis:
    """The units [offset, offset + size) of axis `axis` (copy axis counted) of parameter `param`; with repeat > 1,
    `size` units in blocks of `block` each repeated `repeat` times: [size // block, repeat, block] from `offset`."""

    param: str
    axis: int
    offset: int = 0
    repeat: int = 1
    block: int = 1

    def __post_init__(self):
        if not (isinstance(self.repeat, int) and self.repeat >= 1 and isinstance(self.block, int) and self.block >= 1):
            raise ValueError(f"Axis({self.param!r}): repeat={self.repeat!r} and block={self.block!r} must be integers "
                             ">= 1")

    def extent(self, size: int) -> int:
        """How many positions of the axis the place covers."""
        return size * self.repeat

    def positions(self, size: int) -> torch.Tensor:
        """[repeat, size] int64: where unit u sits in each repeat."""
        if self.repeat == 1:
            return (self.offset + torch.arange(size))[None]
        if size % self.block:
            raise ValueError(f"{self.param!r} axis {self.axis}: {size} units do not split into blocks of {self.block}")
        u = torch.arange(size)
        r = torch.arange(self.repeat)[:, None]
        return self.offset + (u // self.block) * self.repeat * self.block + r * self.block + u % self.block


@dataclass(frozen=True)
class UnitGroup:
    """One permutation of `size` units acting on every place in `axes`."""

    name: str
    size: int
    axes: tuple[Axis, ...]


@dataclass(frozen=True)
class HeadGroup:
    """Heads of one attention block: head permutation plus within-head Q/K and V/O permutations. qk_units=False
    keeps the Q/K units inside a head in place (rotary positions rotate fixed pairs of them: Su et al. 2021, RoFormer's R_Θ,m),
    so only whole heads and the V/O units move."""

    name: str
    n_heads: int
    head_dim: int
    qk: tuple[Axis, ...]  # places of the query and key units (n_heads * head_dim each, a repeated place repeat times)
    vo: tuple[Axis, ...]  # places of the value units and the output projection's input rows
    qk_units: bool = True

    @property
    def size(self) -> int:
        """Units per place (n_heads * head_dim)."""
        return self.n_heads * self.head_dim


@dataclass(frozen=True)
class HeadPermutation:
    """heads [H]: new head h is old head heads[h]; qk, vo [H, hd]: units inside new head h."""

    heads: np.ndarray
    qk: np.ndarray
    vo: np.ndarray

    def flat(self) -> tuple[np.ndarray, np.ndarray]:
        """The Q/K and V/O permutations as flat indices over H * hd units."""
        hd = self.qk.shape[1]
        base = (self.heads * hd)[:, None]
        return (base + self.qk).reshape(-1), (base + self.vo).reshape(-1)

    @staticmethod
    def from_flat(qk: np.ndarray, vo: np.ndarray, n_heads: int) -> "HeadPermutation":
        """Inverse of flat(); the flat indices must move whole heads (checked)."""
        hd = len(qk) // n_heads
        q, v = np.asarray(qk).reshape(n_heads, hd), np.asarray(vo).reshape(n_heads, hd)
        heads = q[:, 0] // hd
        if not (np.all(q // hd == heads[:, None]) and np.all(v // hd == heads[:, None])):
            raise ValueError("flat permutation does not move whole heads")
        return HeadPermutation(heads.astype(np.int64), (q % hd).astype(np.int64), (v % hd).astype(np.int64))

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, HeadPermutation) and np.array_equal(self.heads, other.heads)
                and np.array_equal(self.qk, other.qk) and np.array_equal(self.vo, other.vo))


Group = Union[UnitGroup, HeadGroup]
Permutations = dict[str, Union[np.ndarray, HeadPermutation]]


@dataclass(frozen=True)
class PermutationSpec:
    """The permutation symmetries of one architecture; `notes` says what is deliberately not permuted."""

    groups: tuple[Group, ...]
    notes: tuple[str, ...] = field(default=())

    @property
    def names(self) -> list[str]:
        """Group names, in spec order."""
        return [g.name for g in self.groups]

    def __getitem__(self, name: str) -> Group:
        for g in self.groups:
            if g.name == name:
                return g
        raise KeyError(f"no permutation {name!r} in this spec; it has {self.names}")

    def __contains__(self, name: object) -> bool:
        return any(g.name == name for g in self.groups)

    def flat_groups(self) -> list[tuple[str, int, tuple[Axis, ...]]]:
        """(flat name, size, places) of every plain permutation; a head group gives '<name>#qk', '<name>#vo'."""
        out = []
        for g in self.groups:
            if isinstance(g, HeadGroup):
                out += [(g.name + "#qk", g.size, g.qk), (g.name + "#vo", g.size, g.vo)]
            else:
                out.append((g.name, g.size, g.axes))
        return out

    def check(self, state: State) -> None:
        """Raise ValueError if a place of the spec does not exist in `state`."""
        for name, size, axes in self.flat_groups():
            for ax in axes:
                if ax.param not in state:
                    raise ValueError(f"permutation {name!r} acts on {ax.param!r}, which the state lacks (a family's spec "
                                     "names its stacked parameters; for an ordinary nn.Module use "
                                     "lmc_core.align_models(model_a, model_b, sample), or align.auto.auto_spec)")
                shape = state[ax.param].shape
                if not 1 <= ax.axis < len(shape) or ax.offset + ax.extent(size) > shape[ax.axis]:
                    raise ValueError(f"permutation {name!r} ({ax.extent(size)} positions at offset {ax.offset}) does "
                                     f"not fit axis {ax.axis} of {ax.param!r} with shape {tuple(shape)}")


def flatten(spec: PermutationSpec, perms: Permutations) -> dict[str, np.ndarray]:
    """Every permutation as flat int64 indices, keyed like spec.flat_groups()."""
    out = {}
    for g in spec.groups:
        p = perms[g.name]
        if isinstance(g, HeadGroup):
            if not isinstance(p, HeadPermutation):
                raise TypeError(f"{g.name!r} is a head group; give a HeadPermutation")
            out[g.name + "#qk"], out[g.name + "#vo"] = p.flat()
        else:
            out[g.name] = np.asarray(p, dtype=np.int64)
    for name, size, _ in spec.flat_groups():
        if out[name].shape != (size,) or not np.array_equal(np.sort(out[name]), np.arange(size)):
            raise ValueError(f"{name!r} is not a permutation of {size} units")
    return out


def unflatten(spec: PermutationSpec, flat: dict[str, np.ndarray]) -> Permutations:
    """Inverse of flatten()."""
    out: Permutations = {}
    for g in spec.groups:
        if isinstance(g, HeadGroup):
            out[g.name] = HeadPermutation.from_flat(flat[g.name + "#qk"], flat[g.name + "#vo"], g.n_heads)
        else:
            out[g.name] = np.asarray(flat[g.name], dtype=np.int64)
    return out


def axis_indices(spec: PermutationSpec, flat: dict[str, np.ndarray], shapes: dict[str, tuple[int, ...]]
                 ) -> dict[str, dict[int, torch.Tensor]]:
    """For each parameter, {axis: full index over that axis} (identity outside the permuted places)."""
    out: dict[str, dict[int, torch.Tensor]] = {}
    for name, size, axes in spec.flat_groups():
        for ax in axes:
            per = out.setdefault(ax.param, {})
            if ax.axis not in per:
                per[ax.axis] = torch.arange(shapes[ax.param][ax.axis])
            pos = ax.positions(size)
            per[ax.axis][pos] = pos[:, torch.from_numpy(flat[name])]
    return out


def apply_permutation(state: State, spec: PermutationSpec, perms: Permutations) -> State:
    """The state with every copy permuted by `perms` (a new dict; untouched tensors are cloned)."""
    spec.check(state)
    idx = axis_indices(spec, flatten(spec, perms), {n: tuple(t.shape) for n, t in state.items()})
    out = {}
    for name, t in state.items():
        for axis, ix in idx.get(name, {}).items():
            t = t.index_select(axis, ix.to(t.device))
        out[name] = t.clone() if name not in idx else t
    return out


def identity_permutation(spec: PermutationSpec) -> Permutations:
    """The permutations that change nothing."""
    return unflatten(spec, {n: np.arange(s) for n, s, _ in spec.flat_groups()})


def random_permutation(spec: PermutationSpec, generator: torch.Generator) -> Permutations:
    """Uniformly random permutations (heads and the units inside each head too) from `generator`."""
    out: Permutations = {}
    for g in spec.groups:
        if isinstance(g, HeadGroup):
            heads = torch.randperm(g.n_heads, generator=generator).numpy()
            qk = np.stack([torch.randperm(g.head_dim, generator=generator).numpy() if g.qk_units
                           else np.arange(g.head_dim) for _ in range(g.n_heads)])
            vo = np.stack([torch.randperm(g.head_dim, generator=generator).numpy() for _ in range(g.n_heads)])
            out[g.name] = HeadPermutation(heads, qk, vo)
        else:
            out[g.name] = torch.randperm(g.size, generator=generator).numpy()
    return out


def invert_permutation(spec: PermutationSpec, perms: Permutations) -> Permutations:
    """q with apply(apply(s, perms), q) == s."""
    return unflatten(spec, {n: np.argsort(p) for n, p in flatten(spec, perms).items()})


def compose_permutations(spec: PermutationSpec, first: Permutations, second: Permutations) -> Permutations:
    """r with apply(s, r) == apply(apply(s, first), second)."""
    f, s = flatten(spec, first), flatten(spec, second)
    return unflatten(spec, {n: f[n][s[n]] for n in f})
