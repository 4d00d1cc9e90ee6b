"""Benchmark: a whole learning-rate x Fisher-weight grid trained as ONE ensemble vs one copy after another.

Notebook 04 trains each optimizer's grid (every copy with its own learning rate and Fisher weight
lambda) as one K-copy ensemble. This script times that against training the same copies one after
another with the same trainer at K=1 (same code, same weights up to fp32 rounding), side by side in
one run, and prints copy-steps/s and the speed-up.

    python bench/grid.py                           # the quick profile's SGD grid, 100 steps
    python bench/grid.py --optimizer adam --steps 200 --device cuda --hidden 512 512 512
"""
from __future__ import annotations

import argparse
import platform
import time
from dataclasses import replace
from datetime import date

import torch

from lmc_core.data.vectors import VectorDataConfig, load_vectors
from lmc_core.studies import alignment as study
from lmc_core.studies import alignment_mlp as grid
from lmc_core.studies.base import folders
from lmc_core.train import resolve_device, train_copies


def sync(dev):
    if dev.type == "cuda":
        torch.cuda.synchronize()


def timed(spec, data, dev) -> float:
    sync(dev)
    t = time.perf_counter()
    train_copies(spec, data, dev, progress=False, log_every=50)
    sync(dev)
    return time.perf_counter() - t


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--optimizer", default="sgd", choices=list(study.OPTIMIZERS))
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--hidden", type=int, nargs="+", default=None, help="MLP widths (default: the quick profile's)")
    ap.add_argument("--profile", default="quick", choices=list(study.PROFILES))
    ap.add_argument("--loop-copies", type=int, default=4, help="copies actually trained one after another "
                    "(the loop's copy-steps/s does not depend on how many)")
    ap.add_argument("--device", default="auto")
    a = ap.parse_args(argv)
    dev = resolve_device(a.device)
    over = {"steps": a.steps, "progress": False}
    if a.hidden:
        over["hidden"] = a.hidden
    p = study.STUDY.params({"profile": a.profile, **over})
    _, _, cache = folders(p)
    data_cfg = VectorDataConfig(dataset=p.dataset)
    data = load_vectors(data_cfg, cache)["train"]
    spec, copies = grid.mlp_spec_of(p, data_cfg, a.optimizer)
    spec = replace(spec, train=replace(spec.train, save_every=0))
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else f"CPU ({torch.get_num_threads()} threads)"
    print(f"# grid benchmark, {date.today()}, {name}, torch {torch.__version__}, python {platform.python_version()}")
    print(f"# {a.optimizer}: MLP {spec.model.d_in}-{'-'.join(map(str, p.hidden))}-10, "
          f"{len(grid.lrs(p, a.optimizer))} learning rates x lambda {p.fisher} x {p.pairs} pair(s) x 2 = "
          f"{spec.k} copies, batch {p.batch_size}, {a.steps} steps, Fisher penalty "
          f"({p.fisher_mode}) where lambda > 0")
    warm = replace(spec, train=replace(spec.train, steps=2))
    timed(warm, data, dev)
    ens = timed(spec, data, dev)
    n = min(a.loop_copies, spec.k)
    step = max(spec.k // n, 1)
    loop = 0.0
    for i in list(range(0, spec.k, step))[:n]:
        one = replace(spec, seeds=spec.seeds[i : i + 1], per_copy=spec.per_copy[i : i + 1])
        timed(replace(one, train=replace(one.train, steps=2)), data, dev)
        loop += timed(one, data, dev)
    loop_rate = n * a.steps / loop
    ens_rate = spec.k * a.steps / ens
    print("| how | copies | copy-steps/s | vs loop |\n|---|---|---|---|")
    print(f"| one copy after another (lmc_core trainer at K=1; {n} timed) | {spec.k} | {loop_rate:.1f} | 1.00x |")
    print(f"| the whole grid as one ensemble | {spec.k} | {ens_rate:.1f} | {ens_rate / loop_rate:.2f}x |")


if __name__ == "__main__":
    main()
