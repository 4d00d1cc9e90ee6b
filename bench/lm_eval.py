"""Benchmark: evaluating a large-vocabulary LM's copies without holding their logits, side by side with the logits.

What an interpolation curve of notebooks 01 and 02's paper profile costs: G models of the PTB study's d=200, 2-layer
LM (10,000-word vocabulary; random weights, the cost does not depend on them) evaluated on `--tokens` tokens in
windows of 35 by `Family.evaluate_copies`, the way `interpolation_curve` evaluates its α points. Two routes, in one
process, taking turns (`--rounds`; the median is kept): the logits route (the whole [G, tokens, V] logits of a batch,
then cross_entropy and argmax: what every vocabulary below FUSED_EVAL_MIN_CLASSES takes) and the fused route
(`LMFamily.example_losses` -> `nn.linear_ce.token_losses`: a piece of rows at a time). The two are checked to give the
same per-token losses (to 1e-5) and the same top-1 in every token before a time is printed.

    python bench/lm_eval.py                          # G = 11 alpha points, 12,000 tokens, 1 thread
    python -m lmc_core bench lm_eval --models 21 --tokens 48000 --threads 1
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from datetime import date

import torch

from lmc_core.config import model_preset
from lmc_core.data.batches import Examples
from lmc_core.families import family_of
from lmc_core.families import lm as lm_family


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", type=int, default=11, help="copies evaluated together (alpha points of a path)")
    ap.add_argument("--tokens", type=int, default=12000, help="evaluation tokens")
    ap.add_argument("--vocab", type=int, default=10000)
    ap.add_argument("--d-model", type=int, default=200)
    ap.add_argument("--batch", type=int, default=32, help="windows per evaluation batch (the studies' eval_batch)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    cfg = model_preset("ptb-transformer", vocab_size=a.vocab, d_model=a.d_model, d_ff=a.d_model)
    fam = family_of(cfg)
    state = {n: p.detach() for n, p in fam.build(cfg, a.models).init_weights(list(range(a.models))).state_dict().items()}
    g = torch.Generator().manual_seed(0)
    examples = Examples(tokens=torch.randint(0, a.vocab, (a.tokens // cfg.context, cfg.context + 1), generator=g))
    threshold = lm_family.FUSED_EVAL_MIN_CLASSES

    def run(fused: bool):
        lm_family.FUSED_EVAL_MIN_CLASSES = threshold if fused else a.vocab + 1
        try:
            t = time.perf_counter()
            out = fam.evaluate_copies(cfg, state, examples, batch_size=a.batch, keep=("examples",))
            return time.perf_counter() - t, out
        finally:
            lm_family.FUSED_EVAL_MIN_CLASSES = threshold

    (_, ref), (_, got) = run(False), run(True)
    diff = abs(ref.per_example_loss - got.per_example_loss).max()
    if diff > 1e-5 or not (ref.per_example_correct == got.per_example_correct).all():
        raise SystemExit(f"the routes disagree: max |loss difference| {diff:.2e}, accuracy {ref.accuracy} vs "
                         f"{got.accuracy}")
    times = {False: [], True: []}
    for _ in range(a.rounds):
        for fused in (False, True):
            times[fused].append(run(fused)[0])
    print(f"# bench/lm_eval.py, {date.today()}: {platform.processor() or platform.machine()}, {a.threads} thread(s), "
          f"load average {os.getloadavg()[0]:.1f}, torch {torch.__version__}")
    print(f"# {a.models} copies of the d={a.d_model} LM, vocabulary {a.vocab}, {len(examples) * cfg.context} tokens, "
          f"batches of {a.batch} windows; median of {a.rounds} interleaved rounds; routes agree to {diff:.1e} in loss "
          "and in every token's top-1")
    print("| route | seconds | tokens x copies / s | vs logits |\n|---|---|---|---|")
    base = statistics.median(times[False])
    for fused, name in ((False, "logits, cross_entropy and argmax"), (True, "fused (nn.linear_ce.token_losses)")):
        s = statistics.median(times[fused])
        print(f"| {name} | {s:.2f} | {len(examples) * cfg.context * a.models / s:,.0f} | {base / s:.2f}x |")


if __name__ == "__main__":
    main()
