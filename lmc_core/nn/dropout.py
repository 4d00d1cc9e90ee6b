"""Dropout whose masks are a pure function of (dropout seed, copy's step, site): copy k's masks do not depend
on K, on the device's random state or on which other copies train beside it."""
from __future__ import annotations

import abc

import torch

from .. import rng


def default_masks(device: torch.device | str) -> str:
    """The mask generator of TrainConfig(dropout_masks='device') on `device`: 'hash' on a GPU, 'generator' else."""
    return "hash" if torch.device(device).type == "cuda" else "generator"


TABLE_SITES = 64  # sites whose keys a hash-mode DropoutSource hashes up front (later ones are hashed when drawn)


class MaskSource(abc.ABC):
    """What dropout draws from: `uniform(site, shape)`, and `keep(site, shape, p)` = uniform >= p (a source with a
    cheaper exact route overrides it)."""

    @abc.abstractmethod
    def uniform(self, site: int, shape: tuple[int, ...]) -> torch.Tensor:
        """[K, *shape] uniform floats in [0, 1) for one dropout site."""

    def keep(self, site: int, shape: tuple[int, ...], p: float) -> torch.Tensor:
        """Bool [K, *shape]: which elements dropout of probability p keeps at `site`, `uniform(site, shape) >= p`."""
        return self.uniform(site, shape) >= p


class DropoutSource(MaskSource):
    """Per-step dropout masks for K copies, each a pure function of (dropout seed, step, site).

    mode "generator": one CPU/CUDA torch.Generator per copy, seeded from (seed, step), drawn in
    forward order (the faster one in eager mode on a CPU). mode "hash": the counter-based SplitMix64 hash of
    `lmc_core.rng.uniform` (one kernel for all copies on a GPU; on a CPU it fuses into a compiled step, where it
    costs a fifth of the generators, and it is the only mode torch.compile can trace). Either way copy k's masks do
    not depend on K. mode None: the device's default (`default_masks`).
    """

    def __init__(self, seeds: list[int], steps: list[int], device: torch.device, mode: str | None = None,
                 record: bool = False):
        self.seeds, self.steps, self.device = list(seeds), [int(s) for s in steps], torch.device(device)
        self.recorded: dict[int, torch.Tensor] | None = {} if record else None
        if len(self.seeds) != len(self.steps):
            raise ValueError("DropoutSource needs one step per seed")
        self.mode = mode or default_masks(self.device)
        if self.mode == "generator":
            self.gens = []
            for s, t in zip(self.seeds, self.steps):
                g = torch.Generator(device=self.device)
                g.manual_seed(rng.mix(s, t))
                self.gens.append(g)
        elif self.mode == "hash":
            keys = [rng.signed(rng.mix(s, t)) for s, t in zip(self.seeds, self.steps)]
            self.keys = torch.tensor(keys, dtype=torch.int64, device=self.device)
            # the sites' keys, hashed here once (eagerly): a compiled step reads them instead of redoing the 64-bit
            # hash for every vector of a mask
            self.site_table = rng.site_keys(self.keys, list(range(TABLE_SITES)))  # [K, TABLE_SITES, 2]
        else:
            raise ValueError(f"dropout mode {mode!r}: choose 'generator' or 'hash'")

    def site_key(self, site: int) -> torch.Tensor:
        """[K, 2] int32: the copies' keys of one site (mode "hash")."""
        return self.site_table[:, site] if 0 <= site < TABLE_SITES else rng.site_keys(self.keys, [site])[:, 0]

    def uniform(self, site: int, shape: tuple[int, ...]) -> torch.Tensor:
        """[K, *shape] uniform floats for one dropout site."""
        if self.mode == "hash":
            out = rng.uniform_at(self.site_key(site), shape)
        else:
            out = torch.empty((len(self.gens), *shape), device=self.device)
            for k, g in enumerate(self.gens):
                torch.rand(shape, generator=g, device=self.device, out=out[k])
        if self.recorded is not None:
            self.recorded[site] = out
        return out

    def keep(self, site: int, shape: tuple[int, ...], p: float) -> torch.Tensor:
        """Bool [K, *shape]: `uniform(site, shape) >= p` (mode "hash" decides it on the hash's integers, skipping the
        floats, unless the draws are recorded)."""
        if self.mode == "hash" and self.recorded is None:
            return rng.keep_at(self.site_key(site), shape, p)
        return super().keep(site, shape, p)

    def replay(self) -> "ReplayedDropout":
        """The masks this source drew (it must have been made with record=True), for a second forward pass over
        the same batch or its first examples: e.g. the Fisher penalty's, which must see the loss's masks."""
        if self.recorded is None:
            raise ValueError("replay() needs a DropoutSource made with record=True")
        return ReplayedDropout(self.recorded)


class ReplayedDropout(MaskSource):
    """The uniforms a DropoutSource drew, per site; a request for fewer leading rows (a sub-batch) gets the first
    rows of what was drawn, so every example keeps its mask."""

    def __init__(self, recorded: dict[int, torch.Tensor]):
        self.recorded = recorded

    def uniform(self, site: int, shape: tuple[int, ...]) -> torch.Tensor:
        """[K, *shape] uniforms of `site` (the leading rows of what the first pass drew)."""
        if site not in self.recorded:
            raise KeyError(f"dropout site {site} was not drawn in the first pass")
        t = self.recorded[site]
        if tuple(t.shape[2:]) != tuple(shape[1:]) or shape[0] > t.shape[1]:
            raise ValueError(f"dropout site {site}: shape {tuple(shape)} is not a leading part of the recorded "
                             f"{tuple(t.shape[1:])}")
        return t[:, : shape[0]].contiguous()


class TrimmedDropout(MaskSource):
    """Masks of a batch whose padding was trimmed from length `full` to `length`, drawn as if it had not been: at
    the full length, then cut. The masks of an example then do not depend on the other examples of the batch
    (nor, for K copies, on the other copies' batches, whose longest sequence sets the trim).

    A site of shape (B*length, ...) is drawn as (B, full, ...); one of shape (B, ..., length, length) (attention
    weights) as (B, ..., full, full); any other shape as it is.
    """

    def __init__(self, source, batch: int, length: int, full: int):
        self.source, self.b, self.t, self.full = source, batch, length, full

    def _drawn(self, draw, site: int, shape: tuple[int, ...]) -> torch.Tensor:
        """[K, *shape] of draw(site, shape) (the source's uniform or keep, element-wise in the draw's index), drawn
        at the full length and cut (see the class docstring)."""
        b, t, full = self.b, self.t, self.full
        if t == full:
            return draw(site, shape)
        if shape[0] == b * t:
            u = draw(site, (b, full, *shape[1:]))
            return u[:, :, :t].reshape(u.shape[0], b * t, *shape[1:])
        if len(shape) >= 3 and shape[0] == b and tuple(shape[-2:]) == (t, t):
            return draw(site, (*shape[:-2], full, full))[..., :t, :t].contiguous()
        return draw(site, shape)

    def uniform(self, site: int, shape: tuple[int, ...]) -> torch.Tensor:
        """[K, *shape] uniforms for one site (see the class docstring)."""
        return self._drawn(self.source.uniform, site, shape)

    def keep(self, site: int, shape: tuple[int, ...], p: float) -> torch.Tensor:
        """Bool [K, *shape]: `uniform(site, shape) >= p`, from the source's keep (the hash's integers where it has
        them)."""
        return self._drawn(lambda s, sh: self.source.keep(s, sh, p), site, shape)


def dropout(drop: DropoutSource | None, p: float):
    """A function (x [K, ...], site) -> x with inverted dropout of probability p from `drop`'s masks (identity
    without a source or with p = 0)."""
    def apply(x: torch.Tensor, site: int) -> torch.Tensor:
        if drop is None or p == 0:
            return x
        # a float mask (the same products as a bool one): a compiled step stores it vectorised for the backward
        keep = drop.keep(site, tuple(x.shape[1:]), p).to(x.dtype)
        return x * keep / (1 - p)
    return apply
