"""Benchmark: what notebook 01's evaluation must cost: bf16 against fp32, the barrier's evaluation noise, and the
evaluation sample that noise asks for.

Notebook 01's quick setting (lmc_core.studies.instability_init, profile "quick"): the post-norm character LM
(d=64, 2 layers, 2 heads, d_ff 64, context 35, dropout 0.2) trained with SGD lr 2.5, clipping 0.5, batch 16 and a
cosine decay over the last quarter, on the offline Shakespeare characters. `--pairs` pairs of copies are trained
with lmc_core.train.train_copies (pair i: two copies of initialisation i with different data order and dropout,
notebook 01's seeds; pair 0 is notebook 01's pair 0:0-1) and each pair's linear path (21 alphas) is evaluated on
the profile's sample (windows spread over every play, eval_tokens per split) by interpolation_curve, as the
notebook does. Three questions:

1. bf16: every barrier in fp32 and under torch.autocast("cpu", dtype=torch.bfloat16), their difference, and the
   seconds of one path (train + test splits) each way (interleaved, best of 3, on pair 0).
2. Evaluation noise: the standard error of each barrier over the evaluation sample, by a bootstrap (1000
   resamples) of the evaluation windows with replacement: the per-example losses and errors of every alpha are
   averaged per window, the windows resampled (the same draw for every alpha: the path is evaluated on one sample)
   and the barrier recomputed. "SE (tokens iid)" resamples single tokens instead; it ignores the correlation of
   the tokens of one window and is shown to say how much that matters.
3. Sizing: the tokens per split that give the barrier an SE of `--target` (default: a tenth of the study's
   threshold: 0.2 percentage points of error for Frankle et al.'s 2-point criterion, 0.2 % of the endpoints' mean
   loss for the relative-loss criterion), from SE ~ 1/sqrt(n) at the measured SE, and the fp32 seconds of one path
   at that size (the measured rate; the split's length caps the sample: "whole split" when the size exceeds it).

How to read the tables: the first has one row per pair, split and metric for the study's barrier definition
(`mean`), in the instability's unit (error: percentage points; loss: % of the endpoints' mean). bf16 is acceptable
where |bf16 - fp32| is below the SE: its shift is then within the noise the evaluation sample already has. The
second table repeats the comparison for every barrier definition (worst case over pairs and splits). The SE is the
noise of the evaluation sample only, for fixed models; the spread between pairs (training noise) is another, usually
larger, term.

    python bench/eval_precision.py                      # 2 pairs, T = 3000 (the quick profile): ~3 minutes
    python -m lmc_core bench eval_precision --pairs 1 --steps 1500 --target 0.1
"""
from __future__ import annotations

import argparse
import os
import platform
import time
from datetime import date
from pathlib import Path

import numpy as np
import torch

from lmc_core.analysis import barrier as B
from lmc_core.analysis.criteria import FRANKLE, RELATIVE_LOSS
from lmc_core.analysis.eval_noise import bootstrap_se, instabilities, per_unit
from lmc_core.analysis.interpolate import alpha_grid, interpolation_curve
from lmc_core.analysis.metrics import METRIC_SCALE, UNITS
from lmc_core.ensemble import copy_state
from lmc_core.studies.instability_init import PROFILES
from lmc_core.studies.lm_setup import copy_seeds, eval_splits, lm_spec, load_study_corpus
from lmc_core.train import train_copies
from lmc_core.train.trainer import cpu_has_bf16

METRICS = ("error", "loss")
THRESHOLD = {"error": FRANKLE.threshold, "loss": RELATIVE_LOSS.threshold}
SHORT_UNIT = {"absolute": "points", "relative": "%"}


def parse(argv=None) -> argparse.Namespace:
    p = PROFILES["quick"]
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=p.steps, help="training steps (default: the quick profile's)")
    ap.add_argument("--pairs", type=int, default=2, help="pairs, one per initialisation (default 2)")
    ap.add_argument("--eval-tokens", type=int, default=p.eval_tokens, help="tokens per split (default: profile's)")
    ap.add_argument("--resamples", type=int, default=1000, help="bootstrap resamples (default 1000)")
    ap.add_argument("--repeats", type=int, default=3, help="timed evaluations per precision (best is kept)")
    ap.add_argument("--target", type=float, default=None,
                    help="target SE of the barrier in its unit (default: a tenth of each metric's threshold)")
    ap.add_argument("--cache-dir", default="data/cache", help="where the corpus is cached (default data/cache)")
    return ap.parse_args(argv)


def train_pairs(p, corpus, steps: int, pairs: int):
    """The RunSpec and trained state of `pairs` initialisations x 2 copies (notebook 01's seeds), and seconds."""
    spec = lm_spec(p, len(corpus.vocab), steps, copy_seeds(p, pairs, 2))
    t = time.perf_counter()
    run = train_copies(spec, corpus.train, "cpu", progress=False)
    return spec, run.state, time.perf_counter() - t


def path_eval(spec, a, b, ev, alphas, p, bf16: bool, keep=("examples",)):
    """interpolation_curve on every split, in fp32 or under CPU bf16 autocast."""
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        return interpolation_curve(spec.model, a, b, ev, alphas, None, p.eval_batch, "cpu", keep=keep)


def timed(spec, a, b, ev, alphas, p, repeats: int) -> dict[str, float]:
    """Best seconds of one path per precision, the two interleaved (order alternating) after a warm-up of each."""
    best = {"fp32": float("inf"), "bf16": float("inf")}
    for name in best:
        path_eval(spec, a, b, ev, alphas, p, name == "bf16", keep=())
    for r in range(repeats):
        for name in (("fp32", "bf16") if r % 2 == 0 else ("bf16", "fp32")):
            t = time.perf_counter()
            path_eval(spec, a, b, ev, alphas, p, name == "bf16", keep=())
            best[name] = min(best[name], time.perf_counter() - t)
    return best


def pair_rows(spec, state, i: int, ev, alphas, p, resamples: int) -> list[dict]:
    """Every (split, metric, definition) of pair i: fp32 and bf16 barriers, and the SEs over windows and tokens."""
    a, b = copy_state(state, 2 * i), copy_state(state, 2 * i + 1)
    f32, res32 = path_eval(spec, a, b, ev, alphas, p, False)
    b16, _ = path_eval(spec, a, b, ev, alphas, p, True)
    rows = []
    for split, r in res32.items():
        for metric in METRICS:
            v32 = f32[f32.split == split].sort_values("alpha")[metric].to_numpy()
            v16 = b16[b16.split == split].sort_values("alpha")[metric].to_numpy()
            x32, x16 = instabilities(alphas, v32, metric), instabilities(alphas, v16, metric)
            seed = 1000 * i + 10 * list(res32).index(split) + METRICS.index(metric)
            se_w = bootstrap_se(alphas, per_unit(r, metric, spec.model.context), metric, resamples, seed)
            se_t = bootstrap_se(alphas, per_unit(r, metric, None), metric, resamples, seed + 5)
            for d in B.DEFINITIONS:
                rows.append({"pair": f"{i}:0-1", "split": split, "metric": metric, "definition": d,
                             "fp32": x32[d], "bf16": x16[d], "se": se_w[d], "se_tokens": se_t[d],
                             "tokens": r.tokens})
    return rows


def md_table(header: list[str], rows: list[list[str]]) -> str:
    """A markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def main_table(rows: list[dict], t_path: float, target: float | None, split_tokens: dict, definition: str) -> str:
    """One row per pair, split and metric of the study's definition: bf16 vs fp32, SE and the size it asks."""
    out = []
    for r in rows:
        if r["definition"] != definition:
            continue
        unit = SHORT_UNIT[METRIC_SCALE[r["metric"]]]
        goal = target if target is not None else THRESHOLD[r["metric"]] / 10
        diff = r["bf16"] - r["fp32"]
        need = r["tokens"] * (r["se"] / goal) ** 2
        size = f"{need:,.0f}" + (" (whole split)" if need > split_tokens[r["split"]] else "")
        out.append([r["pair"], r["split"], f"{r['metric']} ({unit})", f"{r['fp32']:.3f}", f"{r['bf16']:.3f}",
                    f"{diff:+.3f}", f"{r['se']:.3f}", f"{r['se_tokens']:.3f}",
                    "yes" if abs(diff) < r["se"] else "**no**", f"{goal:g}", size,
                    f"{t_path * min(need, split_tokens[r['split']]) / r['tokens']:.1f}"])
    header = ["pair", "split", "barrier (unit)", "fp32", "bf16", "bf16 − fp32", "SE (windows)", "SE (tokens iid)",
              "abs(Δ) < SE", "target SE", "tokens for target", "s/path at that size"]
    return md_table(header, out)


def definitions_table(rows: list[dict]) -> str:
    """Per definition and metric, over pairs and splits: the largest |bf16 - fp32|, the SE range, max |Δ|/SE."""
    out = []
    for d in B.DEFINITIONS:
        for metric in METRICS:
            sel = [r for r in rows if r["definition"] == d and r["metric"] == metric]
            diffs = np.array([abs(r["bf16"] - r["fp32"]) for r in sel])
            se = np.array([r["se"] for r in sel])
            out.append([d, f"{metric} ({SHORT_UNIT[METRIC_SCALE[metric]]})",
                        f"{np.mean([r['fp32'] for r in sel]):.3f}", f"{diffs.max():.3f}",
                        f"{se.min():.3f}–{se.max():.3f}", f"{np.max(diffs / se):.2f}"])
    return md_table(["definition", "barrier (unit)", "fp32 (mean of rows)", "max abs(bf16 − fp32)",
                     "SE (windows), range", "max abs(Δ)/SE"], out)


def settings(p, spec, a, steps: int, train_s: float, ev, times: dict) -> list[str]:
    """The comment lines above the tables."""
    m = spec.model
    tokens = {s: len(x) * m.context for s, x in ev.items()}
    return [f"# eval-precision benchmark (notebook 01, quick profile), {date.today()}, torch {torch.__version__}, "
            f"python {platform.python_version()}, CPU ({torch.get_num_threads()} thread, bf16 instructions: "
            f"{cpu_has_bf16()}), load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}",
            f"# model: {m.arch} char LM, vocab {m.vocab_size}, d={m.d_model}, {m.n_layers} layers, {m.n_heads} heads, "
            f"d_ff {m.d_ff}, context {m.context}, dropout {m.dropout}; {a.pairs} pair(s) (one per initialisation), "
            f"T = {steps} steps ({p.optimizer} lr {p.lr}, decay over the last {p.decay_frac:g}); trained in "
            f"{train_s:.0f} s",
            f"# evaluation: {p.alphas} alphas, tokens per split {tokens} (eval_tokens {a.eval_tokens}, seed "
            f"{p.eval_seed}), batch {p.eval_batch} windows; bootstrap: {a.resamples} resamples of the windows",
            f"# seconds per path (train + test splits, best of {a.repeats}, interleaved, pair 0): fp32 "
            f"{times['fp32']:.2f}, bf16 {times['bf16']:.2f} (bf16 / fp32 = {times['bf16'] / times['fp32']:.2f}x)"]


def main(argv=None):
    torch.set_num_threads(1)
    a = parse(argv)
    p = PROFILES["quick"].replace(eval_tokens=a.eval_tokens, steps=a.steps)
    corpus, steps = load_study_corpus(p, Path(a.cache_dir))
    spec, state, train_s = train_pairs(p, corpus, steps, a.pairs)
    ev = eval_splits(corpus, spec.model.context, p.eval_tokens, p.eval_seed)
    alphas = alpha_grid(p.alphas)
    times = timed(spec, copy_state(state, 0), copy_state(state, 1), ev, alphas, p, a.repeats)
    rows = [r for i in range(a.pairs) for r in pair_rows(spec, state, i, ev, alphas, p, a.resamples)]
    split_tokens = {s: corpus.split(s).numel() for s in ev}
    print("\n".join(settings(p, spec, a, steps, train_s, ev, times)))
    print(f"# units: error in {UNITS['absolute']}, loss in {UNITS['relative']}; barrier `{p.definition}`\n")
    print(main_table(rows, times["fp32"], a.target, split_tokens, p.definition))
    print("\n# every barrier definition, worst case over pairs and splits\n")
    print(definitions_table(rows))


if __name__ == "__main__":
    main()
