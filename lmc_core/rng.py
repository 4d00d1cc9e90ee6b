"""Counter-based random numbers: every draw is a pure function of (seed, step, site).

Each copy of an ensemble owns three seeds (init, data, dropout). Dropout masks are
computed on the device by hashing (key, site, element index) (SplitMix64, then lowbias32), so copy k of
a K-copy ensemble draws exactly the masks a lone K=1 run with the same seed draws,
nothing reads the global RNG, and a resumed run needs no generator state.
"""
from __future__ import annotations

import math
import struct

import torch

_MASK64 = (1 << 64) - 1


def signed(x: int) -> int:
    x &= _MASK64
    return x - (1 << 64) if x >= (1 << 63) else x


_GOLDEN = signed(0x9E3779B97F4A7C15)
_M1 = signed(0xBF58476D1CE4E5B9)
_M2 = signed(0x94D049BB133111EB)


def mix(*values: int) -> int:
    """Hash integers into one 63-bit seed (SplitMix64 chain, pure Python)."""
    h = 0x2545F4914F6CDD1D
    for v in values:
        h = (h + (int(v) & _MASK64) + 0x9E3779B97F4A7C15) & _MASK64
        z = h
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
        h = z ^ (z >> 31)
    return h & ((1 << 63) - 1)


def generator(*values: int) -> torch.Generator:
    """A CPU torch.Generator seeded from a hash of the given integers."""
    g = torch.Generator()
    g.manual_seed(mix(*values))
    return g


def _srl(x: torch.Tensor, n: int) -> torch.Tensor:
    # logical right shift of int64 (torch's >> is arithmetic)
    return (x >> n) & ((1 << (64 - n)) - 1)


def _splitmix(z: torch.Tensor) -> torch.Tensor:
    z = (z ^ _srl(z, 30)) * _M1
    z = (z ^ _srl(z, 27)) * _M2
    return z ^ _srl(z, 31)


def _signed32(x: int) -> int:
    x &= 0xFFFFFFFF
    return x - (1 << 32) if x >= (1 << 31) else x


_LB1, _LB2 = _signed32(0x7FEB352D), _signed32(0x846CA68B)
MAX_ELEMENTS = (1 << 31) - 1  # elements per copy and site that `uniform` can number (an int32 counter)


def _srl32(x: torch.Tensor, n: int) -> torch.Tensor:
    # logical right shift of int32
    return (x >> n) & ((1 << (32 - n)) - 1)


def _lowbias32(x: torch.Tensor) -> torch.Tensor:
    """Wellons' lowbias32 integer hash (hash-prospector, 2018) of int32 values; multiplications wrap mod 2**32."""
    x = (x ^ _srl32(x, 16)) * _LB1
    x = (x ^ _srl32(x, 15)) * _LB2
    return x ^ _srl32(x, 16)


_SALTS: dict[tuple, torch.Tensor] = {}


def _salts(sites: tuple[int, ...], device: torch.device) -> torch.Tensor:
    """[S] int64 on `device`: the sites' mix(site), kept per device for the next call outside torch.compile (no
    host-to-device copy per draw on a GPU; a traced call recomputes them, as constants)."""
    if torch.compiler.is_compiling():
        return torch.tensor([signed(mix(s)) for s in sites], dtype=torch.int64, device=device)
    key = (sites, str(device))
    if key not in _SALTS:
        _SALTS[key] = torch.tensor([signed(mix(s)) for s in sites], dtype=torch.int64, device=device)
    return _SALTS[key]


def site_keys(keys: torch.Tensor, sites: list[int]) -> torch.Tensor:
    """[K, S, 2] int32: copy k's key for each of S sites, SplitMix64 of (keys[k] + mix(site)), as its low and high
    32 bits (see `uniform`).

    keys: [K] int64. `uniform_at` and `keep_at` number a site's elements from one [K, 2] slice of this; hashed once
    and passed in, the 64-bit hash is not redone for every vector of elements in a compiled kernel.
    """
    salt = _salts(tuple(sites), keys.device)
    key = _splitmix(keys.view(-1, 1) + salt.view(1, -1))  # [K, S]
    lo = (key & 0xFFFFFFFF).to(torch.int32)  # the conversion wraps to int32
    return torch.stack((lo, _srl(key, 32).to(torch.int32)), dim=-1)


def _bits24(site_key: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    """[K, n] int32 in [0, 2**24): the top 24 bits of two lowbias32 rounds over (i xor lo) + hi."""
    k, n = site_key.shape[0], math.prod(shape)
    if n > MAX_ELEMENTS:
        raise ValueError(f"a dropout site of {n} elements per copy exceeds the counter's {MAX_ELEMENTS}; use a "
                         "smaller batch or fewer micro-batch elements (TrainConfig.accum)")
    idx = torch.arange(n, device=site_key.device, dtype=torch.int32).view(1, n)
    z = _lowbias32(_lowbias32(idx ^ site_key[:, :1]) + site_key[:, 1:])  # [K, n]
    return _srl32(z, 8)


def uniform_at(site_key: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    """Uniform [0, 1) float32 of shape [K, *shape] from one site's keys, `site_keys(keys, [site])[:, 0]` [K, 2]
    (see `uniform`)."""
    return (_bits24(site_key, shape).to(torch.float32) * (1.0 / (1 << 24))).view(site_key.shape[0], *shape)


@torch.compiler.assume_constant_result
def _threshold24(p: float) -> int:
    """ceil(float32(p) * 2**24): b / 2**24 >= float32(p) iff b >= this, for integers b (a constant when traced)."""
    return math.ceil(struct.unpack("f", struct.pack("f", p))[0] * (1 << 24))


def keep_at(site_key: torch.Tensor, shape: tuple[int, ...], p: float) -> torch.Tensor:
    """Bool [K, *shape]: exactly `uniform_at(site_key, shape) >= p` (p compared in float32, as torch compares a
    float32 tensor with a Python float), decided on the integers: u = b / 2**24 >= p iff b >= ceil(p * 2**24)."""
    return (_bits24(site_key, shape) >= _threshold24(p)).view(site_key.shape[0], *shape)


def uniform(keys: torch.Tensor, site: int, shape: tuple[int, ...]) -> torch.Tensor:
    """Uniform [0, 1) float32 of shape [K, *shape] (24-bit resolution); row k depends only on (keys[k], site).

    keys: [K] int64 on the target device. Each copy's key for the site is a SplitMix64 hash of (key, site); element
    i of its row is two rounds of lowbias32 over (i xor the key's low 32 bits) plus its high 32 bits. 32-bit
    arithmetic runs twice the lanes of 64-bit in a vector register: under torch.compile the masks fuse into the
    dropout's multiplication at about a sixth of SplitMix64-per-element's cost on a CPU, and compiled and eager
    modes give the same numbers. Raises ValueError if a row has more than MAX_ELEMENTS elements.
    """
    return uniform_at(site_keys(keys, [site])[:, 0], shape)


def uniform_splitmix(keys: torch.Tensor, site: int, shape: tuple[int, ...]) -> torch.Tensor:
    """Uniform [0, 1) float32 of shape [K, *shape]; row k depends only on (keys[k], site): SplitMix64 per element.

    The labels the Fisher penalty samples (train.fisher) come from this, as they did before the dropout masks moved
    to `uniform`'s 32-bit hash: stored runs with a sampled Fisher penalty keep their weights. Integer arithmetic
    wraps mod 2**64.
    """
    k, n = keys.shape[0], math.prod(shape)
    key = _splitmix(keys + signed(mix(site)))  # [K]
    idx = torch.arange(1, n + 1, device=keys.device, dtype=torch.int64)
    z = _splitmix(key.view(k, 1) + idx.view(1, n) * _GOLDEN)  # [K, n]
    u = _srl(z, 40).to(torch.float32) * (1.0 / (1 << 24))  # top 24 bits
    return u.view(k, *shape)
