"""Benchmark: alignment beyond permutations on this machine — weight matching vs an orthogonal residual map (closed
form, from the weights or from activations) vs learned alignment, side by side for each model in one run.

Models (pre-norm LayerNorm transformers, learned positions, tied embeddings; two independent initialisations, so
no training is timed; the LayerNorm is folded into RMSNorm form before the residual map, and the fold is timed too):
- the quick LM of notebook 04 (2 layers, d=64, 4 heads, d_ff 256, context 64, a character vocabulary of 72);
- a GPT-2-small-shaped model (12 layers, d=768, 12 heads, d_ff 3072, context 1024, GPT-2's vocabulary).

Columns: seconds of each method (median of --repeats runs; learned alignment: seconds per step, the difference of
runs of 1 + --learn-steps and 1 steps, and the projection to the quick profile's 100 steps plus the fixed part:
the held-out midpoint losses before and after and the final hard maps) and the ratio to weight matching.

    python bench/align_residual.py                       # both models
    python bench/align_residual.py --models quick --repeats 3
    python bench/align_residual.py --vocab 8000          # a smaller GPT-2-shaped vocabulary (less memory)
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from datetime import date

import torch

from lmc_core import rng
from lmc_core.align import weight_matching
from lmc_core.align.learned import learned_alignment
from lmc_core.align.orthogonal import residual_alignment, residual_features
from lmc_core.config import model_preset
from lmc_core.ensemble import copy_state
from lmc_core.families import family_of

QUICK_LEARN_STEPS = 100  # lm_learn_steps of notebook 04's quick profile


def models(args: argparse.Namespace):
    """(name, config, tokens per learned-alignment batch) of each model to time."""
    out = []
    if "quick" in args.models:
        out.append(("quick LM (2 layers, d=64, vocab 72)",
                    model_preset("tinygpt", vocab_size=72, context=64, n_layers=2, d_model=64, d_ff=256), 16))
    if "gpt2" in args.models:
        out.append((f"GPT-2-small shape (12 layers, d=768, vocab {args.vocab})",
                    model_preset("gpt2", vocab_size=args.vocab, context=1024), 1))
    return out


def timed(fn, repeats: int) -> tuple[float, object]:
    """Median seconds of `repeats` calls, and the last result."""
    secs, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        secs.append(time.perf_counter() - t0)
    return statistics.median(secs), out


def row(name, cfg, batch: int, args: argparse.Namespace) -> dict:
    fam = family_of(cfg)
    state = fam.init(cfg, [1, 2])
    a, b = copy_state(state, 0), copy_state(state, 1)
    del state
    pspec = fam.perm_spec(cfg)
    t_wm, _ = timed(lambda: weight_matching(pspec, a, b), args.repeats)
    t_fold, (rcfg, af, rspec) = timed(lambda: fam.residual_maps(cfg, a), args.repeats)
    _, bf, _ = fam.residual_maps(cfg, b)
    fspec = fam.perm_spec(rcfg)
    t_ow, _ = timed(lambda: residual_alignment(fspec, rspec, af, bf), args.repeats)
    g = rng.generator(0, 1)
    tokens = torch.randint(0, cfg.vocab_size, (max(args.act_tokens // cfg.context, 1), cfg.context), generator=g)

    def from_activations():
        collect = lambda s: fam.activations(rcfg, s, tokens)  # noqa: E731
        return residual_alignment(fspec, rspec, af, bf, features=(residual_features(collect, af),
                                                                   residual_features(collect, bf)))

    t_oa, _ = timed(from_activations, args.repeats)
    batch_tokens = torch.randint(0, cfg.vocab_size, (1, batch, cfg.context + 1), generator=g)
    loss = fam.state_loss_fn(rcfg)

    def learn(steps: int) -> float:
        t0 = time.perf_counter()
        learned_alignment(af, bf, loss, iter([{"tokens": batch_tokens}] * steps), [{"tokens": batch_tokens}],
                          rspec=rspec, steps=steps)
        return time.perf_counter() - t0

    # per step: the difference between 1 + n and 1 steps (the held-out checks and the final hard map cancel out),
    # after one untimed call (torch's first call of the parametrisation and the kernels costs seconds once)
    learn(1)
    fixed = learn(1)
    per_step = max(learn(1 + args.learn_steps) - fixed, 0.0) / args.learn_steps
    return {"model": name, "wm": t_wm, "fold": t_fold, "orth_w": t_ow, "orth_a": t_oa, "learn_step": per_step,
            "learn_fixed": fixed - per_step, "learn_tokens": batch * cfg.context}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=["quick", "gpt2"], choices=["quick", "gpt2"])
    ap.add_argument("--repeats", type=int, default=3, help="timed runs of each closed-form method (median reported)")
    ap.add_argument("--learn-steps", type=int, default=5, help="learned-alignment steps timed (per-step time reported)")
    ap.add_argument("--act-tokens", type=int, default=4096, help="tokens whose residual activations Procrustes uses")
    ap.add_argument("--vocab", type=int, default=50257, help="vocabulary of the GPT-2-shaped model")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"# alignment beyond permutations, {date.today()}, CPU ({os.cpu_count()} cores, {args.threads} torch "
          f"thread(s), load average {load:.1f} before the runs), torch {torch.__version__}, python "
          f"{platform.python_version()}")
    print(f"# two independent initialisations per model; median of {args.repeats} runs; learned alignment timed over "
          f"{args.learn_steps} steps (residual map only, batch as in the quick profile for the quick LM, one "
          "1024-token window for GPT-2); activations from "
          f"{args.act_tokens} tokens")
    print("| model | weight matching (s) | LayerNorm fold (s) | orthogonal, weights (s) | orthogonal, activations (s) | "
          f"learned (s/step) | learned, {QUICK_LEARN_STEPS} steps (s) | ratios to weight matching: orth. weights / "
          "orth. activations / learned |")
    print("|---|---|---|---|---|---|---|---|")
    for name, cfg, batch in models(args):
        r = row(name, cfg, batch, args)
        learn = r["learn_step"] * QUICK_LEARN_STEPS + r["learn_fixed"]
        print(f"| {r['model']} | {r['wm']:.2f} | {r['fold']:.3f} | {r['orth_w']:.2f} | {r['orth_a']:.2f} | "
              f"{r['learn_step']:.3f} | {learn:.1f} | {r['orth_w'] / r['wm']:.1f}× / {r['orth_a'] / r['wm']:.1f}× / "
              f"{learn / r['wm']:.1f}× |")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
