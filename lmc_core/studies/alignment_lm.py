"""Notebook 04, transformer part: independently initialised Shakespeare LMs aligned every way
(analysis.pair_alignment: permutations, the RMSNorm-form control, orthogonal residual maps fitted to weights or
activations, the learned map, the control A <-> pi(A)), next to Theus et al.'s GPT-2 row.

The LMs (pre-norm, LayerNorm, learned positions, tied embeddings) train with a cosine-decaying learning rate; the
test loss is logged during training and, for the first pair, runs of a fraction of the length (each with its own full
schedule) show where the endpoint loss flattens.
"""
from __future__ import annotations

import pandas as pd

from ..align.methods import ACTIVATION, CONTROL, UNALIGNED, WEIGHT
from ..analysis import barrier as B
from ..analysis.pair_alignment import RESIDUAL_METHODS, Learning, path_curves, permutation_ends, residual_ends
from ..config import ConfigError, DataConfig, RunSpec, Seeds, TrainConfig, model_preset
from ..data import load_corpus
from ..data.loader import windows
from ..ensemble import copy_state
from ..families import family_of
from ..progress import bar

PERMUTED = (UNALIGNED, ACTIVATION, WEIGHT, CONTROL)  # evaluated as one batch, in this order
KINDS = PERMUTED[:3] + RESIDUAL_METHODS + PERMUTED[3:]


def lm_spec(p, vocab: int, steps: int | None = None, pairs: int | None = None) -> RunSpec:
    """The LM pairs' run (2 copies per pair, seeds 1, 2, ...), `steps` long with its own cosine schedule."""
    model = model_preset(p.lm_model, vocab_size=vocab, **p.lm_overrides)
    if model.positions != "learned" or model.arch != "prenorm":
        raise ConfigError("the transformer part needs a pre-norm model with learned positions (lm_model='tinygpt')")
    steps = steps or p.lm_steps
    train = TrainConfig(steps=steps, batch_size=p.lm_batch, optimizer="adamw", lr=p.lm_lr, schedule="cosine",
                        weight_decay=p.lm_weight_decay,
                        warmup_steps=min(p.lm_warmup, steps // 2), clip_norm=1.0, betas=(0.9, 0.95),
                        eval_every=max(steps // p.lm_evals, 1), save_every=max(steps // 4, 1))
    seeds = tuple(Seeds(init=s, data=s, dropout=s) for s in range(1, 2 * (pairs or p.lm_pairs) + 1))
    return RunSpec(model=model, data=DataConfig(level=p.lm_level), train=train, seeds=seeds)


def lm_part(p, ctx, alphas) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, list[dict]]:
    """Train the pairs (and the shorter runs of the floor check), align every pair all ways, interpolate.
    Returns (per-pair table, curves, floor table, runs rows)."""
    corpus = load_corpus("shakespeare", level=p.lm_level, cache_dir=str(ctx.cache_dir))
    spec = lm_spec(p, len(corpus.vocab))
    run_ = ctx.store.get(spec, corpus.train, device=ctx.device, progress=p.progress,
                         monitor={"test": corpus.test[: p.lm_eval_tokens]})
    model, fam = spec.model, family_of(spec.model)
    test = fam.eval_examples(model, corpus.test, p.lm_eval_tokens)
    runs = [{"optimizer": "lm (adamw)", "copies": spec.k, "trained_now": run_.trained_now,
             "diverged": len(run_.diverged), "store": run_.path}]
    floor = floor_table(p, ctx, corpus, spec, run_, test, runs)
    x_match = windows(corpus.train, model.context, p.lm_match_tokens)[:, :-1]
    train_windows = windows(corpus.train, model.context)
    learn = Learning(p.lm_learn_steps, p.lm_learn_lr, p.lm_learn_batch, p.lm_heldout_batches, p.lm_learn_units)
    rows, curves = [], []
    pbar = bar(total=p.lm_pairs, disable=not p.progress, desc="align LM pairs")
    for pair in range(p.lm_pairs):
        a, b = copy_state(run_.state, 2 * pair), copy_state(run_.state, 2 * pair + 1)
        ends, info = permutation_ends(fam, model, a, b, x_match, pair, p.wm_restarts)
        folded_ends, folded, r_info = residual_ends(fam, model, a, b, info, x_match, train_windows, pair, learn)
        row = {"pair": pair, "wm_seconds": info["wm_seconds"], "wm_sweeps": info["wm_sweeps"], **r_info}
        for kinds, cfg, e in ((PERMUTED, model, ends), (RESIDUAL_METHODS, folded, folded_ends)):
            cd, _ = path_curves(fam, cfg, e, kinds, test, alphas, 32, ctx.device, pair=pair)
            curves.append(cd)
            for kind, g in cd.groupby("kind", sort=False):
                endpoint = 0.5 * float(g.loss.iloc[0] + g.loss.iloc[-1])
                row.update({f"{d}:{kind}": B.barrier(alphas, g.loss, d) for d in ("mean", "chord")})
                row.update({f"chord_pct:{kind}": 100 * row[f"chord:{kind}"] / endpoint, f"endpoints:{kind}": endpoint})
        un = curves[-2][curves[-2].kind == UNALIGNED].loss  # the endpoints A and B
        rows.append({**row, "loss_a": un.iloc[0], "loss_b": un.iloc[-1]})
        pbar.update(1)
    pbar.close()
    return pd.DataFrame(rows), pd.concat(curves, ignore_index=True), floor, runs


def floor_table(p, ctx, corpus, spec: RunSpec, run_, test, runs: list) -> pd.DataFrame:
    """Where the endpoint loss flattens: the final test loss of the first pair's models trained for each fraction
    of lm_steps in lm_floor_fractions (each run with its own full cosine schedule; the full length is the main run),
    and the test loss logged during the main run (per copy)."""
    fam = family_of(spec.model)
    rows = []
    for frac in sorted(set(p.lm_floor_fractions) | {1.0}):
        steps = max(int(round(frac * spec.train.steps)), 1)
        r = run_
        if steps != spec.train.steps:
            r = ctx.store.get(lm_spec(p, spec.model.vocab_size, steps=steps, pairs=1), corpus.train, device=ctx.device,
                              progress=p.progress)
            runs.append({"optimizer": f"lm floor check ({steps} steps)", "copies": r.spec.k,
                         "trained_now": r.trained_now, "diverged": len(r.diverged), "store": r.path})
        res = fam.evaluate(spec.model, {n: t[:2] for n, t in r.state.items()}, test, batch_size=32, device=ctx.device)
        rows += [{"source": "final", "steps": steps, "copy": c, "test_loss": float(res.loss[c])} for c in range(2)]
    h = run_.history.dropna(subset=["test_loss"]) if "test_loss" in run_.history else pd.DataFrame()
    rows += [{"source": "during training", "steps": int(s), "copy": int(c), "test_loss": float(v)}
             for s, c, v in zip(h.get("step", []), h.get("copy", []), h.get("test_loss", []))]
    return pd.DataFrame(rows)
