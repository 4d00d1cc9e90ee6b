"""Benchmark: lmc_core's weight matching against a peer and a minimal reference, on one shared objective.

Methods, side by side on the same pairs (1 CPU thread, seconds = best of --repeats, repeats interleaved):
- lmc_core `weight_matching` (one sweep order) and `match_weights` (align.methods: RESTARTS sweep orders, the best
  kept), each from the identity start (lmc_core before the anchored start; `init=identity_permutation(spec)`) and
  from the default anchored start (align.weight_matching's docstring);
- a minimal scipy coordinate descent written below in the spirit of Ainsworth et al. 2023 (Git Re-Basin), Alg. 1:
  identity start, random layer order each sweep, stop after a sweep without gain;
- rebasin's PermutationCoordinateDescent (PyPI `rebasin`, by snimu), when it can be imported: one seed (its layer
  order comes from torch's global generator) and the best of RESTARTS seeds. Timed with its model tracing.

Every objective is computed by `objective` below on the permuted weights of B: sum over all parameters (weights and
biases) of <A, pi(B)>, in float64. Every permuted B is checked to compute the same function as B.

Pairs: Git Re-Basin's MNIST MLP 784-512-512-512-10, two independent initialisations, as initialised and after
--train-steps SGD steps of both copies on a fixed random teacher's labels (weights no longer i.i.d.); and the 2-layer
d=200 PTB LM with learned positions (heads + MLP + residual stream permuted) for lmc_core's rows only (rebasin
traces nn.Linear/nn.MultiheadAttention models, not lmc_core's stacked attention; the reference has no head groups).

    python bench/align_peer.py                        # without rebasin: prints how to install it
    python3 -m venv .peer-venv && .peer-venv/bin/pip install torch==2.13.0 rebasin
    PYTHONPATH=. .peer-venv/bin/python bench/align_peer.py      # with rebasin (lmc_core imported from the tree)
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import time
from collections.abc import Callable

os.environ.setdefault("OMP_NUM_THREADS", "1")
import numpy as np  # noqa: E402
import torch  # noqa: E402
from scipy.optimize import linear_sum_assignment  # noqa: E402

from lmc_core import rng  # noqa: E402
from lmc_core.align import (PermutationSpec, apply_permutation, identity_permutation, match_weights,  # noqa: E402
                            weight_matching)
from lmc_core.align.methods import RESTARTS  # noqa: E402
from lmc_core.config import model_preset  # noqa: E402
from lmc_core.ensemble import State, copy_state  # noqa: E402
from lmc_core.families.lm import transformer_spec  # noqa: E402
from lmc_core.families.mlp import mlp_spec  # noqa: E402
from lmc_core.models import TransformerLM  # noqa: E402
from lmc_core.models.mlp import MLPConfig, StackedMLP  # noqa: E402

MLP = MLPConfig(d_in=784, hidden=(512, 512, 512), n_classes=10)
INSTALL = ("rebasin not importable here; to compare with it: python3 -m venv .peer-venv && "
           ".peer-venv/bin/pip install torch==2.13.0 rebasin, then PYTHONPATH=. .peer-venv/bin/python "
           "bench/align_peer.py")


def objective(a: State, b_permuted: State) -> float:
    """The matching objective for every method: sum over all parameters of <A, pi(B)>, float64."""
    return sum(float((a[n].double() * b_permuted[n].double()).sum()) for n in a)


def train_mlp_pair(steps: int, batch: int = 128, lr: float = 0.05) -> State:
    """Two copies (init seeds 0 and 1) trained together on a fixed random teacher's labels (as bench/align.py)."""
    model = StackedMLP(MLP, 2).init_weights([0, 1])
    teacher = StackedMLP(MLP, 1).init_weights([12345])
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    for step in range(steps):
        x = torch.randn(1, batch, MLP.d_in, generator=rng.generator(7, step))
        with torch.no_grad():
            y = teacher(x).argmax(-1)
        opt.zero_grad(set_to_none=True)
        model.copy_losses(x, y).sum().backward()
        opt.step()
    return {n: t.detach() for n, t in model.state_dict().items()}


def mlp_weights(st: State) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """[out, in] weights and [out] biases of a K=1 MLP state, float64."""
    layers = len(MLP.hidden) + 1
    return ([st[f"layers.{i}.weight"][0].double().T.numpy() for i in range(layers)],
            [st[f"layers.{i}.bias"][0, 0].double().numpy() for i in range(layers)])


def reference(a: State, b: State, seed: int = 0, max_sweeps: int = 100) -> tuple[State, int]:
    """Minimal coordinate descent (Git Re-Basin, Alg. 1) for the MLP: identity start; each sweep visits the hidden
    layers in a random order and sets P_i to the assignment maximising <W_i^A, P_i W_i^B P_{i-1}^T> + <b_i^A, P_i
    b_i^B> + <W_{i+1}^A, P_{i+1} W_{i+1}^B P_i^T>; stops after a sweep without gain. Returns pi(B) and the sweeps."""
    (wa, ba), (wb, bb) = mlp_weights(a), mlp_weights(b)
    perms = [np.arange(h) for h in MLP.hidden]
    gen, sweeps = np.random.default_rng(seed), 0
    for sweeps in range(1, max_sweeps + 1):
        gained = False
        for i in gen.permutation(len(perms)):
            w_in = wb[i] if i == 0 else wb[i][:, perms[i - 1]]
            w_out = wb[i + 1] if i + 1 == len(perms) else wb[i + 1][perms[i + 1]]
            cost = wa[i] @ w_in.T + np.outer(ba[i], bb[i]) + wa[i + 1].T @ w_out
            _, cols = linear_sum_assignment(cost, maximize=True)
            rows = np.arange(len(cols))
            if cost[rows, cols].sum() > cost[rows, perms[i]].sum() + 1e-12:
                perms[i], gained = cols, True
        if not gained:
            break
    return apply_permutation(b, mlp_spec(MLP), {f"hidden.{i}": p for i, p in enumerate(perms)}), sweeps


def to_sequential(st: State) -> torch.nn.Sequential:
    """The K=1 MLP state as nn.Linear/ReLU layers (what rebasin traces)."""
    mods: list[torch.nn.Module] = []
    for i, (w, bias) in enumerate(zip(*mlp_weights(st))):
        lin = torch.nn.Linear(w.shape[1], w.shape[0])
        with torch.no_grad():
            lin.weight.copy_(torch.from_numpy(w))
            lin.bias.copy_(torch.from_numpy(bias))
        mods += [lin, torch.nn.ReLU()] if i < len(MLP.hidden) else [lin]
    return torch.nn.Sequential(*mods)


def from_sequential(seq: torch.nn.Sequential) -> State:
    lins = [m for m in seq if isinstance(m, torch.nn.Linear)]
    return {k: v for i, lin in enumerate(lins) for k, v in (
        (f"layers.{i}.weight", lin.weight.detach().T[None].float().clone()),
        (f"layers.{i}.bias", lin.bias.detach()[None, None].float().clone()))}


def run_rebasin(a: State, b: State, seed: int = 0) -> tuple[State, int]:
    from rebasin import PermutationCoordinateDescent
    model_a, model_b = to_sequential(a), to_sequential(b)
    torch.manual_seed(seed)  # rebasin draws its layer order from torch's global generator
    PermutationCoordinateDescent(model_a, model_b, torch.zeros(2, MLP.d_in)).rebasin()
    return from_sequential(model_b), 0


def rebasin_available() -> bool:
    return importlib.util.find_spec("rebasin") is not None


def mlp_forward(st: State, x: torch.Tensor) -> torch.Tensor:
    h = x.double()
    w, bias = mlp_weights(st)
    for i in range(len(w)):
        h = h @ torch.from_numpy(w[i]).T + torch.from_numpy(bias[i])
        h = torch.relu(h) if i < len(w) - 1 else h
    return h


Method = Callable[[], tuple[State, int]]


def ours(spec: PermutationSpec, a: State, b: State, restarts: int, identity: bool) -> Method:
    def run() -> tuple[State, int]:
        kw = {"init": identity_permutation(spec)} if identity else {}
        perms, info = (match_weights(spec, a, b, restarts=restarts, **kw) if restarts > 1
                       else weight_matching(spec, a, b, **kw))
        return apply_permutation(b, spec, perms), info.sweeps
    return run


def best_of_seeds(fn: Callable[[State, State, int], tuple[State, int]], a: State, b: State, n: int) -> Method:
    def run() -> tuple[State, int]:
        return max((fn(a, b, s) for s in range(n)), key=lambda r: objective(a, r[0]))
    return run


def methods(spec: PermutationSpec, a: State, b: State, is_mlp: bool, peer: bool) -> dict[str, Method]:
    out = {"unaligned": lambda: (b, 0),
           "lmc_core weight_matching, identity start (before)": ours(spec, a, b, 1, True),
           f"lmc_core match_weights x{RESTARTS}, identity start (before)": ours(spec, a, b, RESTARTS, True),
           "lmc_core weight_matching (anchored start)": ours(spec, a, b, 1, False),
           f"lmc_core match_weights x{RESTARTS} (anchored start)": ours(spec, a, b, RESTARTS, False)}
    if is_mlp:
        out["scipy reference (Alg. 1, identity start)"] = lambda: reference(a, b)
    if is_mlp and peer:
        out["rebasin PermutationCoordinateDescent, seed 0"] = lambda: run_rebasin(a, b, 0)
        out[f"rebasin, best of {RESTARTS} seeds"] = best_of_seeds(run_rebasin, a, b, RESTARTS)
    return out


def measure(name: str, spec: PermutationSpec, a: State, b: State, is_mlp: bool, peer: bool, repeats: int) -> list:
    """Rows (pair, method, objective, gap to the best in %, sweeps, seconds best of `repeats`), repeats interleaved."""
    ms = methods(spec, a, b, is_mlp, peer)
    secs: dict[str, list[float]] = {m: [] for m in ms}
    result: dict[str, tuple[float, int]] = {}
    x = torch.randn(64, MLP.d_in, generator=rng.generator(99))
    for _ in range(repeats):
        for m, fn in ms.items():
            t0 = time.perf_counter()
            permuted, sweeps = fn()
            secs[m].append(time.perf_counter() - t0)
            if is_mlp and not torch.allclose(mlp_forward(permuted, x), mlp_forward(b, x), atol=1e-5):
                raise AssertionError(f"{m}: the permuted B computes another function")
            result[m] = (objective(a, permuted), sweeps)
    best = max(v[0] for v in result.values())
    return [(name, m, obj, 100 * (obj - best) / abs(best), sw, min(secs[m])) for m, (obj, sw) in result.items()]


def pairs(train_steps: int, lm: bool, vocab: int):
    spec = mlp_spec(MLP)
    init = StackedMLP(MLP, 2).init_weights([0, 1]).state_dict()
    yield "MLP 784-512-512-512-10, independent inits", spec, copy_state(init, 0), copy_state(init, 1), True
    if train_steps:
        tr = train_mlp_pair(train_steps)
        yield (f"MLP 784-512-512-512-10, {train_steps} SGD steps (random teacher)", spec, copy_state(tr, 0),
               copy_state(tr, 1), True)
    if lm:
        cfg = model_preset("ptb-transformer", vocab_size=vocab, positions="learned")
        st = TransformerLM(cfg, 2).init_weights([0, 1]).state_dict()
        yield (f"PTB LM d=200, 2 layers, vocab {vocab}, learned positions, independent inits", transformer_spec(cfg),
               copy_state(st, 0), copy_state(st, 1), False)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--train-steps", type=int, default=200)
    ap.add_argument("--no-lm", action="store_true", help="skip the transformer pair")
    ap.add_argument("--vocab", type=int, default=10000)
    args = ap.parse_args()
    torch.set_num_threads(1)
    peer = rebasin_available()
    if not peer:
        print(INSTALL, file=sys.stderr)
    print(f"torch {torch.__version__}, 1 thread, seconds = best of {args.repeats}"
          + ("" if peer else "; rebasin not installed"))
    print("\n| pair | method | objective | vs best | sweeps | seconds |\n|---|---|---|---|---|---|")
    for name, spec, a, b, is_mlp in pairs(args.train_steps, not args.no_lm, args.vocab):
        for row in measure(name, spec, a, b, is_mlp, peer, args.repeats):
            print(f"| {row[0]} | {row[1]} | {row[2]:.4f} | {row[3]:+.2f} % | {row[4] or '-'} | {row[5]:.3f} |",
                  flush=True)


if __name__ == "__main__":
    main()
