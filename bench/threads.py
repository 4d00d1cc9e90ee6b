"""Benchmark: torch CPU threads, 1 vs all cores, on a quiet machine and beside a busy neighbour.

Studies train with `threads=1` by default. On a 2-core machine two intra-op threads wait on each other
whenever another process holds a core; this script shows it side by side, in one run, for the quick
profiles' models: training steps/s with 1 thread and with every core, first as the machine is, then
while a neighbour process (a 2-thread matrix-product loop, like another training) runs beside it.
Each cell is the median of `--repeats` interleaved timings.

    python bench/threads.py                 # all quick models, ~2 minutes on 2 cores
    python bench/threads.py --steps 40 --repeats 5
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import platform
import statistics
import time
from datetime import date

import torch

from lmc_core.config import RunSpec, Seeds, TrainConfig
from lmc_core.families import SeqClassConfig
from lmc_core.models.mlp import MLPConfig
from lmc_core.train import train_copies


def models() -> dict:
    """(spec, data) of each quick profile's model, at its quick K (synthetic data of the right shape)."""
    from lmc_core.studies import instability_init as s01
    from lmc_core.studies.lm_setup import copy_seeds, lm_spec

    g = torch.Generator().manual_seed(0)
    p01 = s01.STUDY.params({"profile": "quick"})
    # notebook 01's quick model and its copies (3 initialisations x 4 copies), on a 72-character vocabulary
    lm = lm_spec(p01, 72, p01.steps, copy_seeds(p01, p01.inits, p01.copies))
    stream = torch.randint(0, 72, (200_000,), generator=g)
    out = {f"01 character LM (K={lm.k}, d={lm.model.d_model})": (lm, stream)}
    mlp = MLPConfig(d_in=40, hidden=(128, 128, 128), n_classes=10)
    x, y = torch.randn(4000, 40, generator=g), torch.randint(0, 10, (4000,), generator=g)
    from lmc_core.data.batches import Examples

    out["04 MLP grid (K=30, 3x128)"] = (RunSpec(model=mlp, train=TrainConfig(steps=1, batch_size=128, lr=0.1),
                                                seeds=tuple(Seeds(s, s, s) for s in range(30))), Examples(x=x, y=y))
    grok = SeqClassConfig(vocab_size=32, d_model=32, n_heads=4, d_ff=128, n_out=31)
    a, b = torch.randint(0, 31, (400,), generator=g), torch.randint(0, 31, (400,), generator=g)
    toks = torch.stack([a, b, torch.full_like(a, 31)], 1)
    out["06 grokking transformer (K=40, d=32)"] = (
        RunSpec(model=grok, train=TrainConfig(steps=1, batch_size=400, optimizer="adamw", lr=1e-2, schedule="constant"),
                seeds=tuple(Seeds(s, s, s) for s in range(40))), Examples(tokens=toks, labels=(a + b) % 31))
    return out


def steps_per_s(spec, data, threads: int, steps: int) -> float:
    from dataclasses import replace

    torch.set_num_threads(threads)
    spec = replace(spec, train=replace(spec.train, steps=steps, hold_steps=0))  # a shorter run: no hold phase
    train_copies(replace(spec, train=replace(spec.train, steps=2)), data, "cpu", progress=False)  # warm up
    t = time.perf_counter()
    train_copies(spec, data, "cpu", progress=False, log_every=steps)
    return steps / (time.perf_counter() - t)


def neighbour(stop) -> None:
    """Another process's work: 2-thread matrix products until told to stop."""
    torch.set_num_threads(2)
    a = torch.randn(384, 384)
    while not stop.is_set():
        a = torch.tanh(a @ a * 1e-3)


def measure(steps: int, repeats: int) -> dict:
    cores = os.cpu_count() or 1
    res = {}
    for name, (spec, data) in models().items():
        for t in (1, cores):
            res[(name, t)] = []
        for _ in range(repeats):  # interleaved: drifts in the machine's load hit both counts alike
            for t in (1, cores):
                res[(name, t)].append(steps_per_s(spec, data, t, steps))
    return {k: statistics.median(v) for k, v in res.items()}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args(argv)
    cores = os.cpu_count() or 1
    print(f"# threads, {date.today()}, torch {torch.__version__}, {platform.processor() or platform.machine()}, "
          f"{cores} cores, load average at start {os.getloadavg()[0]:.2f}")
    quiet = measure(a.steps, a.repeats)
    stop = mp.get_context("spawn").Event()
    proc = mp.get_context("spawn").Process(target=neighbour, args=(stop,), daemon=True)
    proc.start()
    time.sleep(2)
    try:
        busy = measure(a.steps, a.repeats)
    finally:
        stop.set()
        proc.join(10)
    print(f"\n| model | as the machine is: 1 thread | {cores} threads | ratio | beside a busy neighbour: 1 thread | "
          f"{cores} threads | ratio |")
    print("|---|---|---|---|---|---|---|")
    for name in models():
        q1, qn, b1, bn = quiet[(name, 1)], quiet[(name, cores)], busy[(name, 1)], busy[(name, cores)]
        print(f"| {name} | {q1:.2f} | {qn:.2f} | {q1 / qn:.2f}x | {b1:.2f} | {bn:.2f} | {b1 / bn:.2f}x |")
    print("\nsteps/s, median of interleaved repeats; ratio = 1 thread / all cores (> 1: one thread is faster)")


if __name__ == "__main__":
    main()
