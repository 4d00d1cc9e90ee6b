"""Benchmark: the all-pairs barrier matrix evaluated as batched models vs one pair at a time.

M models (copies of notebook 05's character-level LM with independent random weights; the cost does
not depend on what the weights are) and a 10-point alpha grid: every pair's path is 10 models. Three
ways, all giving the same barriers: one model per alpha (the seed study's way; timed on a few pairs),
one pair's alphas as one batched model, and `--pairs-per-batch` pairs' paths as one K-copy model
(lmc_core.analysis.landscape.barrier_matrix). Pairs/s and the ratios to one model per alpha are printed.

    python bench/barrier_matrix.py                        # CPU: 16 models, 2048 tokens
    python bench/barrier_matrix.py --models 100 --tokens 16384 --device cuda --pairs-per-batch 1 16 64
"""
from __future__ import annotations

import argparse
import platform
import time
from datetime import date

import numpy as np
import torch

from lmc_core.config import model_preset
from lmc_core.data.loader import windows
from lmc_core.families import family_of
from lmc_core.data.batches import Examples
from lmc_core.analysis.interpolate import alpha_grid
from lmc_core.analysis import barrier as B
from lmc_core.ensemble import copy_state
from lmc_core.analysis.interpolate import interpolate_states
from lmc_core.analysis.landscape import barrier_matrix
from lmc_core.train import resolve_device


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", type=int, default=16)
    ap.add_argument("--tokens", type=int, default=2048)
    ap.add_argument("--alphas", type=int, default=10)
    ap.add_argument("--pairs-per-batch", type=int, nargs="+", default=[1, 4, 16])
    ap.add_argument("--loop-pairs", type=int, default=6, help="pairs timed one model per alpha (rate is per pair)")
    ap.add_argument("--device", default="auto")
    a = ap.parse_args(argv)
    dev = resolve_device(a.device)
    cfg = model_preset("tinygpt", vocab_size=72, context=64, n_layers=2)
    fam = family_of(cfg)
    state = fam.init(cfg, list(range(a.models)))
    stream = torch.randint(0, 72, (a.tokens + 1,), generator=torch.Generator().manual_seed(0))
    ex = Examples(tokens=windows(stream, cfg.context))
    alphas = alpha_grid(a.alphas)
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else f"CPU ({torch.get_num_threads()} threads)"
    print(f"# barrier-matrix benchmark, {date.today()}, {name}, torch {torch.__version__}, python {platform.python_version()}")
    print(f"# {a.models} models ({a.models * (a.models - 1) // 2} pairs) of a 2-layer d=64 LM, {a.alphas} alphas, "
          f"{a.tokens} tokens per evaluation")
    n_pairs = a.models * (a.models - 1) // 2
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    sub = {n: t[: min(a.models, 4)] for n, t in state.items()}
    barrier_matrix(cfg, sub, ex, alphas, device=dev, pairs_per_batch=2)  # warm-up
    pairs = [(i, j) for i in range(a.models) for j in range(i + 1, a.models)][: a.loop_pairs]
    t = time.perf_counter()
    loop_vals = []
    for i, j in pairs:  # one model per alpha
        losses = []
        for x in alphas:
            path = interpolate_states(copy_state(state, i), copy_state(state, j), [float(x)])
            losses.append(float(fam.evaluate(cfg, path, ex, batch_size=64, device=dev, keep=()).loss[0]))
        loop_vals.append(B.barrier(alphas, np.array(losses), "subchord"))
    sync()
    rl = len(pairs) / (time.perf_counter() - t)
    print("| how | pairs | pairs/s | vs one model per alpha |\n|---|---|---|---|")
    print(f"| one model per alpha ({len(pairs)} pairs timed) | {n_pairs} | {rl:.2f} | 1.00x |")
    for ppb in a.pairs_per_batch:
        t = time.perf_counter()
        full = barrier_matrix(cfg, state, ex, alphas, device=dev, pairs_per_batch=ppb)
        sync()
        rb = n_pairs / (time.perf_counter() - t)
        assert np.allclose(loop_vals, [full[i, j] for i, j in pairs], rtol=1e-4, atol=1e-6), "batched != one at a time"
        how = "one pair's alphas as one batched model" if ppb == 1 else f"{ppb} pairs' paths as one batched model"
        print(f"| {how} | {n_pairs} | {rb:.2f} | {rb / rl:.2f}x |")

if __name__ == "__main__":
    main()
