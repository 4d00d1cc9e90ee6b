"""Benchmark: notebook 05's all-pairs barrier matrix, one pair at a time vs batched.

M fine-tunes of notebook 05's encoder (the quick profile's 2-layer d=32 BERT on 12-token passages of the phrase
task; independent random weights: the cost does not depend on what the weights are) and a 10-point alpha grid:
every pair's path is 10 models. Three ways, all giving the same barriers, measured one after the other in
this process: one model per alpha, one pair after another (the seed study's way; timed on a few pairs), one
pair's alphas as one batched model, and `--pairs-per-batch` pairs' paths as one K-copy model
(lmc_core.analysis.landscape.barrier_matrix). Pairs/s and the ratios to one model per alpha are printed, and
the command that measures the same on a GPU.

    python bench/barrier_matrix.py                                  # CPU: 32 models, the quick profile's passages
    python bench/barrier_matrix.py --models 100 --examples 2000 --device cuda --pairs-per-batch 1 16 64
"""
from __future__ import annotations

import argparse
import platform
import time
from datetime import date

import numpy as np
import torch

from lmc_core.analysis import barrier as B
from lmc_core.analysis.interpolate import alpha_grid, interpolate_states
from lmc_core.analysis.landscape import barrier_matrix
from lmc_core.ensemble import copy_state
from lmc_core.families import family_of
from lmc_core.data.strategies import plays_task
from lmc_core.runs.strategies import eval_config, finetune_spec
from lmc_core.studies import generalization as study
from lmc_core.train import resolve_device


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", type=int, default=32)
    ap.add_argument("--examples", type=int, default=None,
                    help="in-distribution passages per evaluation (default: the quick profile's)")
    ap.add_argument("--alphas", type=int, default=10)
    ap.add_argument("--pairs-per-batch", type=int, nargs="+", default=[1, 4, 16])
    ap.add_argument("--loop-pairs", type=int, default=4, help="pairs timed one model per alpha (rate is per pair)")
    ap.add_argument("--device", default="auto")
    a = ap.parse_args(argv)
    dev = resolve_device(a.device)
    p = study.PROFILES["quick"]
    spec = finetune_spec(p)
    cfg = spec.model
    fam = family_of(cfg)
    state = fam.init(cfg, list(range(a.models)))
    ex = fam.eval_examples(cfg, plays_task(eval_config(p))["id"], a.examples or p.eval_examples)
    alphas = alpha_grid(a.alphas)
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else f"CPU ({torch.get_num_threads()} threads)"
    n_pairs = a.models * (a.models - 1) // 2
    tokens = ex["input_ids"].numel()
    print(f"# barrier-matrix benchmark (notebook 05), {date.today()}, {name}, torch {torch.__version__}, "
          f"python {platform.python_version()}")
    print(f"# {a.models} models ({n_pairs} pairs) of the {cfg.n_layers}-layer d={cfg.d_model} encoder, {a.alphas} alphas, "
          f"{len(ex)} passages ({tokens} tokens) per evaluation")
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    barrier_matrix(cfg, {n: t[:3] for n, t in state.items()}, ex, alphas, device=dev, pairs_per_batch=2)  # warm-up
    pairs = [(i, j) for i in range(a.models) for j in range(i + 1, a.models)][: a.loop_pairs]
    t = time.perf_counter()
    loop_vals = []
    for i, j in pairs:  # one model per alpha, one pair after another
        losses = []
        for x in alphas:
            path = interpolate_states(copy_state(state, i), copy_state(state, j), [float(x)])
            losses.append(float(fam.evaluate(cfg, path, ex, batch_size=64, device=dev, keep=()).loss[0]))
        loop_vals.append(B.barrier(alphas, np.array(losses), "subchord"))
    sync()
    rl = len(pairs) / (time.perf_counter() - t)
    print("| how | pairs | pairs/s | vs one model per alpha |\n|---|---|---|---|")
    print(f"| one model per alpha, one pair at a time ({len(pairs)} pairs timed) | {n_pairs} | {rl:.2f} | 1.00x |")
    best = 0.0
    for ppb in a.pairs_per_batch:
        t = time.perf_counter()
        full = barrier_matrix(cfg, state, ex, alphas, device=dev, pairs_per_batch=ppb)
        sync()
        rb = n_pairs / (time.perf_counter() - t)
        best = max(best, rb)
        assert np.allclose(loop_vals, [full[i, j] for i, j in pairs], rtol=1e-4, atol=1e-6), "batched != one at a time"
        how = "one pair's alphas as one batched model" if ppb == 1 else f"{ppb} pairs' paths as one batched model"
        print(f"| {how} | {n_pairs} | {rb:.2f} | {rb / rl:.2f}x |")
    print(f"# the whole {n_pairs}-pair matrix at the best rate: {n_pairs / max(best, 1e-9):.0f} s")
    print("# on a GPU (paper profile: 100 models, 4,950 pairs):\n"
          "#   python bench/barrier_matrix.py --models 100 --examples 2000 --device cuda --pairs-per-batch 1 16 64")


if __name__ == "__main__":
    main()
