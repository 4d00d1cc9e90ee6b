"""Benchmark: the whole spawn sweep of notebook 02, one copy after another vs the ensemble trainer.

Both sides start from the same parent checkpoints (the parent is trained once, timed
separately) and train every child of every spawn point to T: the loop trains each child
alone (lmc_core's trainer at K=1 — bench/ensemble.py compares that with a plain PyTorch
model), the ensemble trains them as grouped K-copy ensembles exactly as notebook 02 does.
Both give the same weights (tests/integration/test_spawn.py); only the wall time differs.

    python bench/spawn_sweep.py --profile quick --set steps=600
    python bench/spawn_sweep.py --profile paper --device cuda --max-loop-copies 6
"""
from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from dataclasses import replace
from datetime import date

import torch

from lmc_core.runs.store import RunStore
from lmc_core.runs.spawn import parent_checkpoints, spawn_children
from lmc_core.studies import instability_spawn as study
from lmc_core.studies.base import folders
from lmc_core.studies.lm_setup import load_study_corpus
from lmc_core.train import resolve_device, train_copies


def sync(dev):
    if dev.type == "cuda":
        torch.cuda.synchronize()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profile", default="quick", choices=list(study.PROFILES))
    ap.add_argument("--device", default="auto")
    ap.add_argument("--set", nargs="*", default=[], metavar="NAME=JSON",
                    help="override study parameters, e.g. steps=600 'spawn=[0.0,0.1]'")
    ap.add_argument("--max-loop-copies", type=int, default=0,
                    help="time only this many children in the loop (spread over the spawn points) and "
                         "extrapolate by copy-steps; 0 = all")
    a = ap.parse_args(argv)
    overrides = {}
    for item in a.set:
        name, _, val = item.partition("=")
        try:
            overrides[name] = json.loads(val)
        except json.JSONDecodeError:
            overrides[name] = val
    dev = resolve_device(a.device)
    p = study.STUDY.params({"profile": a.profile, "progress": False, **overrides})
    _, _, cache = folders(p)
    corpus, T = load_study_corpus(p, cache)
    ks = study.spawn_steps(list(p.spawn), T)
    spec, kids = study.parent_specs(p, len(corpus.vocab), T)[0], study.child_seeds(p)
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else f"CPU ({torch.get_num_threads()} threads)"
    print(f"# spawn-sweep benchmark, {date.today()}, {name}, torch {torch.__version__}, "
          f"python {platform.python_version()}")
    print(f"# profile {a.profile} {overrides or ''}: T={T}, spawn steps {ks}, {len(kids)} children each, "
          f"{spec.model.d_model}-wide {spec.model.n_layers}-layer model, vocab {spec.model.vocab_size}")
    with tempfile.TemporaryDirectory() as tmp:
        store = RunStore(tmp)
        t = time.perf_counter()
        parents = parent_checkpoints(store, spec, ks, corpus.train, str(dev), progress=False)
        sync(dev)
        t_parent = time.perf_counter() - t

        t = time.perf_counter()
        spawn_children(store, spec, ks, kids, corpus.train, str(dev), progress=False)
        sync(dev)
        t_ens = time.perf_counter() - t

        jobs = [(k, s) for k in ks for s in kids]
        if a.max_loop_copies and a.max_loop_copies < len(jobs):
            idx = torch.linspace(0, len(jobs) - 1, a.max_loop_copies).round().long().unique().tolist()
            timed = [jobs[i] for i in idx]
        else:
            timed = jobs
        t = time.perf_counter()
        for k, s in timed:
            train_copies(replace(spec, seeds=(s,)), corpus.train, dev, start=parents[k], progress=False,
                         log_every=100)
        sync(dev)
        t_loop_measured = time.perf_counter() - t
    all_steps = sum(T - k for k, _ in jobs)
    timed_steps = sum(T - k for k, _ in timed)
    t_loop = t_loop_measured * all_steps / timed_steps
    note = "" if timed == jobs else f" (measured {len(timed)} of {len(jobs)} copies, extrapolated by copy-steps)"
    print("| part | wall time (s) | copy-steps/s |\n|---|---|---|")
    print(f"| parent to the last spawn point (once, shared) | {t_parent:.1f} | {max(ks) / max(t_parent, 1e-9):.1f} |")
    print(f"| children one after another{note} | {t_loop:.1f} | {all_steps / t_loop:.1f} |")
    print(f"| children as ensembles (notebook 02) | {t_ens:.1f} | {all_steps / t_ens:.1f} |")
    print(f"\nspeed-up of the ensembles over the loop: {t_loop / t_ens:.2f}x on the children; whole sweep incl. parent: "
          f"{(t_loop + t_parent) / (t_ens + t_parent):.2f}x ({len(jobs)} children, {all_steps} copy-steps)")


if __name__ == "__main__":
    main()
