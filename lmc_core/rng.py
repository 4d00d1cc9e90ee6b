"""Counter-based random numbers: every draw is a pure function of (seed, step, site).

Each copy of an ensemble owns three seeds (init, data, dropout). Dropout masks are
computed on the device by hashing (key, element index) with SplitMix64, so copy k of
a K-copy ensemble draws exactly the masks a lone K=1 run with the same seed draws,
nothing reads the global RNG, and a resumed run needs no generator state.
"""
from __future__ import annotations

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


# _GOLDEN in 21-bit pieces (see _counter_offsets)
_GOLDEN_PIECES = tuple(((0x9E3779B97F4A7C15 >> (21 * j)) & ((1 << 21) - 1), 21 * j) for j in range(4))


def _counter_offsets(n: int, device) -> torch.Tensor:
    """i * golden (mod 2**64) for i = 1..n, int64 [n].

    Eager mode multiplies at once. Under torch.compile the product is summed from golden's 21-bit pieces, shifted:
    the same values, but inductor's CPU code builds an arange times a constant with a 32-bit step (torch 2.13
    truncates the 64-bit golden ratio there and the masks come out wrong, or sympy overflows on the index), and
    pieces below 2**21 keep every step exact."""
    idx = torch.arange(1, n + 1, device=device, dtype=torch.int64)
    if not torch.compiler.is_compiling():
        return idx * _GOLDEN
    out = idx * _GOLDEN_PIECES[0][0]
    for piece, shift in _GOLDEN_PIECES[1:]:
        out = out + ((idx * piece) << shift)
    return out


def uniform(keys: torch.Tensor, site: int, shape: tuple[int, ...]) -> torch.Tensor:
    """Uniform [0, 1) float32 of shape [K, *shape]; row k depends only on (keys[k], site).

    keys: [K] int64 on the target device. Integer arithmetic wraps mod 2**64.
    """
    k = keys.shape[0]
    n = 1
    for s in shape:
        n *= s
    key = _splitmix(keys + signed(mix(site)))  # [K]
    z = _splitmix(key.view(k, 1) + _counter_offsets(n, keys.device).view(1, n))  # [K, n]
    u = _srl(z, 40).to(torch.float32) * (1.0 / (1 << 24))  # top 24 bits
    return u.view(k, *shape)
