"""Benchmark: Git Re-Basin weight matching on this machine (sweeps and seconds, median of runs).

Models:
- the 784-512-512-512-10 ReLU MLP of Git Re-Basin / study 5, two independent initialisations,
  either as initialised or after training both copies together (one K=2 ensemble) for a few
  hundred SGD steps on a synthetic teacher task (no MNIST offline; the weights are then no longer
  i.i.d., which is what makes matching take more sweeps);
- the 2-layer, d=200 PTB LM (vocab 10000, post-norm, sinusoidal positions: heads and MLP units
  are permuted, the residual stream is not) and the same LM with learned positions (the residual
  stream is permuted too), two independent initialisations.

    python bench/align.py                     # all rows, 5 runs each
    python bench/align.py --threads 1 --repeats 3 --train-steps 0
    python bench/align.py --vocab 2000 --repeats 1      # quick look
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
from collections.abc import Iterator
from datetime import date

import torch

from lmc_core import rng
from lmc_core.align import PermutationSpec, weight_matching
from lmc_core.families.lm import transformer_spec
from lmc_core.families.mlp import mlp_spec
from lmc_core.config import model_preset
from lmc_core.ensemble import State, copy_state
from lmc_core.models import TransformerLM
from lmc_core.models.mlp import MLPConfig, StackedMLP


def train_mlp_pair(cfg: MLPConfig, steps: int, batch: int = 128, lr: float = 0.05) -> StackedMLP:
    """Two copies (init seeds 0 and 1) trained in lockstep on a random-teacher classification task."""
    model = StackedMLP(cfg, 2).init_weights([0, 1])
    teacher = StackedMLP(cfg, 1).init_weights([12345])
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    for step in range(steps):
        g = rng.generator(7, step)
        x = torch.randn(1, batch, cfg.d_in, generator=g)
        with torch.no_grad():
            y = teacher(x).argmax(-1)  # [1, batch]
        opt.zero_grad(set_to_none=True)
        model.copy_losses(x, y).sum().backward()
        opt.step()
    return model


def time_matching(spec: PermutationSpec, a: State, b: State, repeats: int, threads: int) -> dict:
    """Median seconds over `repeats` runs, with the sweeps and objective of the (deterministic) result."""
    secs, info = [], None
    for _ in range(repeats):
        _, info = weight_matching(spec, a, b, threads=threads)
        secs.append(info.seconds)
    return {"sweeps": info.sweeps, "solves": info.solves, "seconds": statistics.median(secs),
            "spread": (min(secs), max(secs)), "before": info.objective[0], "after": info.objective[-1]}


def cases(args: argparse.Namespace) -> Iterator[tuple[str, str, PermutationSpec, State, State]]:
    """(model, pair, spec, a, b) rows to time."""
    mlp = MLPConfig(d_in=784, hidden=(512, 512, 512), n_classes=10)
    init = StackedMLP(mlp, 2).init_weights([0, 1]).state_dict()
    yield "MLP 784-512-512-512-10", "independent inits", mlp_spec(mlp), copy_state(init, 0), copy_state(init, 1)
    if args.train_steps:
        trained = train_mlp_pair(mlp, args.train_steps).state_dict()
        yield ("MLP 784-512-512-512-10", f"trained {args.train_steps} SGD steps (synthetic teacher)", mlp_spec(mlp),
               copy_state(trained, 0), copy_state(trained, 1))
    for positions in ("sinusoidal", "learned"):
        cfg = model_preset("ptb-transformer", vocab_size=args.vocab, positions=positions)
        st = TransformerLM(cfg, 2).init_weights([0, 1]).state_dict()
        what = "heads + MLP" if positions == "sinusoidal" else "heads + MLP + residual"
        yield (f"PTB LM d=200, 2 layers, vocab {args.vocab}, {positions} positions ({what})", "independent inits",
               transformer_spec(cfg), copy_state(st, 0), copy_state(st, 1))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=5, help="timed runs per row (the median is reported)")
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2],
                    help="torch CPU threads during matching, one row each (weight_matching's default is 1)")
    ap.add_argument("--train-steps", type=int, default=300, help="SGD steps for the trained MLP pair (0: skip)")
    ap.add_argument("--vocab", type=int, default=10000)
    args = ap.parse_args(argv)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"# weight matching benchmark, {date.today()}, CPU ({os.cpu_count()} cores, "
          f"load average {load:.1f} before the runs), torch {torch.__version__}, python {platform.python_version()}")
    print(f"# median of {args.repeats} runs; a sweep solves every permutation group once in a random order "
          "(unchanged ones are skipped)")
    print("| model | pair | groups | sweeps | assignments solved | threads | seconds (median) | min-max | "
          "objective before -> after |")
    print("|---|---|---|---|---|---|---|---|---|")
    for model, pair, spec, a, b in cases(args):
        for threads in args.threads:
            r = time_matching(spec, a, b, args.repeats, threads)
            print(f"| {model} | {pair} | {len(spec.groups)} | {r['sweeps']} | {r['solves']} | {threads} | "
                  f"{r['seconds']:.3f} | {r['spread'][0]:.3f}-{r['spread'][1]:.3f} | "
                  f"{r['before']:.1f} -> {r['after']:.1f} |")
            sys.stdout.flush()


if __name__ == "__main__":
    main()
