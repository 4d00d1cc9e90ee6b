"""Notebook 04, transformer part: independently initialised Shakespeare LMs aligned by permutations, by an
orthogonal map of the residual stream, and by learned maps, next to Theus et al.'s GPT-2 row.

The LMs (pre-norm, LayerNorm, learned positions, tied embeddings) train with a cosine-decaying learning rate; the
test loss is logged during training and, for the first pair, runs of a quarter and half the length (each with its
own full schedule) show where the endpoint loss flattens. For every pair, the test-loss barrier of A <-> T(B) for:

- "unaligned": T = identity;
- "activation matching", "weight matching": permutations of the residual stream, heads and MLP units (Git Re-Basin);
- "weight matching, RMSNorm form": the same permutations with LayerNorm folded into a gain-free RMSNorm in both
  endpoints — the control that separates the effect of the rewriting (which changes the straight path, not the
  models) from the effect of the orthogonal map;
- "orthogonal (weights)", "orthogonal (activations)": an orthogonal map of the residual stream in closed form
  (Procrustes on the weights, alternated with weight matching of heads and MLP units; or Procrustes on residual
  activations, then weight matching), in the RMSNorm form (lmc_core.align.orthogonal);
- "learned": starting from the closed form whose midpoint loss on held-out training batches is lower, the residual
  map (parametrised orthogonal) learnt to minimise the training loss at the midpoint, and with lm_learn_units the
  MLP permutations too (Sinkhorn, straight-through) (lmc_core.align.learned);
- the control A <-> pi(A) (a random permutation of A, weight-matched back: 0).
"""
from __future__ import annotations

import time

import numpy as np
import pandas as pd
import torch

from ..align import RESIDUAL, activation_matching, apply_permutation, random_permutation, weight_matching
from ..align.learned import learned_alignment
from ..align.orthogonal import permutation_matrix, residual_alignment, residual_features
from ..analysis import barrier as B
from ..analysis.interpolate import interpolate_states
from ..config import ConfigError, DataConfig, RunSpec, Seeds, TrainConfig, model_preset
from ..data import load_corpus
from ..data.loader import windows
from ..ensemble import copy_state, stack_states
from ..families import family_of
from ..publish.progress import bar
from ..rng import generator
from ..runs.store import RunStore

KINDS = ("unaligned", "activation matching", "weight matching", "weight matching, RMSNorm form",
         "orthogonal (weights)", "orthogonal (activations)", "learned", "control A-pi(A)")
FOLDED = KINDS[3:7]  # paths between models in the RMSNorm form


def lm_spec(p: dict, vocab: int, steps: int | None = None, pairs: int | None = None) -> RunSpec:
    """The LM pairs' run (2 copies per pair, seeds 1, 2, ...), `steps` long with its own cosine schedule."""
    model = model_preset(p["lm_model"], vocab_size=vocab, **p["lm_overrides"])
    if model.positions != "learned" or model.arch != "prenorm":
        raise ConfigError("the transformer part needs a pre-norm model with learned positions (lm_model='tinygpt')")
    steps = steps or p["lm_steps"]
    train = TrainConfig(steps=steps, batch_size=p["lm_batch"], optimizer="adamw", lr=p["lm_lr"], schedule="cosine",
                        warmup_steps=min(p["lm_warmup"], steps // 2), clip_norm=1.0, betas=(0.9, 0.95),
                        eval_every=max(steps // p["lm_evals"], 1), save_every=max(steps // 4, 1))
    seeds = tuple(Seeds(init=s, data=s, dropout=s) for s in range(1, 2 * (pairs or p["lm_pairs"]) + 1))
    return RunSpec(model=model, data=DataConfig(level=p["lm_level"]), train=train, seeds=seeds)


def lm_part(p: dict, store: RunStore, cache_dir, device, alphas):
    """Train the pairs (and the shorter runs of the floor check), align every pair all ways, interpolate.
    Returns (per-pair table, curves, floor table, runs rows)."""
    corpus = load_corpus("shakespeare", level=p["lm_level"], cache_dir=str(cache_dir))
    spec = lm_spec(p, len(corpus.vocab))
    monitor = {"test": corpus.test[: p["lm_eval_tokens"]]}
    run_ = store.get(spec, corpus.train, device=device, progress=p["progress"], monitor=monitor)
    model = spec.model
    fam = family_of(model)
    test = fam.eval_examples(model, corpus.test, p["lm_eval_tokens"])
    runs = [{"optimizer": "lm (adamw)", "copies": spec.k, "trained_now": run_.trained_now, "diverged": len(run_.diverged),
             "store": run_.path}]
    floor = floor_table(p, store, corpus, spec, run_, test, device, runs)
    x_match = windows(corpus.train, model.context, p["lm_match_tokens"])[:, :-1]
    train_windows = windows(corpus.train, model.context)
    rows, curves = [], []
    pbar = bar(total=p["lm_pairs"], disable=not p["progress"], desc="align LM pairs")
    for pair in range(p["lm_pairs"]):
        a, b = copy_state(run_.state, 2 * pair), copy_state(run_.state, 2 * pair + 1)
        ends, info = align_pair(p, fam, model, a, b, x_match, train_windows, pair)
        rows.append({"pair": pair, **info})
        for kinds, cfg in ((KINDS[:3] + KINDS[7:], model), (FOLDED, ends["folded_cfg"])):
            path = stack_states([interpolate_states(ends[k][0], ends[k][1], alphas) for k in kinds])
            r = fam.evaluate(cfg, path, test, batch_size=32, device=device)
            n = len(alphas)
            for j, kind in enumerate(kinds):
                loss, err = r.loss[j * n : (j + 1) * n], r.error[j * n : (j + 1) * n]
                curves += [{"pair": pair, "kind": kind, "split": "test", "alpha": float(al), "loss": float(lo),
                            "error": float(er)} for al, lo, er in zip(alphas, loss, err)]
                endpoint = 0.5 * float(loss[0] + loss[-1])
                rows[-1].update({f"{d}:{kind}": B.barrier(alphas, loss, d) for d in ("mean", "chord")})
                rows[-1][f"chord_pct:{kind}"] = 100 * B.barrier(alphas, loss, "chord") / endpoint
                rows[-1][f"endpoints:{kind}"] = endpoint
        ends_un = [c for c in curves if c["pair"] == pair and c["kind"] == "unaligned"]
        rows[-1].update(loss_a=ends_un[0]["loss"], loss_b=ends_un[-1]["loss"])
        pbar.update(1)
    pbar.close()
    return pd.DataFrame(rows), pd.DataFrame(curves), floor, runs


def align_pair(p: dict, fam, model, a, b, x_match, train_windows, pair: int) -> tuple[dict, dict]:
    """Every alignment of one pair: {kind: (A-side, B-side) endpoints} (the RMSNorm-form ones under their own
    config, ends["folded_cfg"]) and the pair's numbers (times, learned-alignment diagnostics)."""
    pspec = fam.perm_spec(model)
    info: dict = {}
    t0 = time.perf_counter()
    perms, wm = weight_matching(pspec, a, b, seed=pair)
    info.update(wm_seconds=time.perf_counter() - t0, wm_sweeps=wm.sweeps)
    b_wm = apply_permutation(b, pspec, perms)
    perms_am, _ = activation_matching(pspec, fam.activations(model, a, x_match), fam.activations(model, b, x_match))
    shuffled = apply_permutation(a, pspec, random_permutation(pspec, generator(pair, 0xC0)))
    a_back = apply_permutation(shuffled, pspec, weight_matching(pspec, a, shuffled, seed=pair)[0])
    cfg, af, rspec = fam.residual_maps(model, a)
    _, bf, _ = fam.residual_maps(model, b)
    _, b_wmf, _ = fam.residual_maps(model, b_wm)
    fspec = fam.perm_spec(cfg)
    t0 = time.perf_counter()
    b_ow, ow = residual_alignment(fspec, rspec, af, bf, seed=pair)
    info.update(orth_weights_seconds=time.perf_counter() - t0, orth_rounds=len(ow.objective) - 1)
    collect = lambda s: fam.activations(cfg, s, x_match)  # noqa: E731
    t0 = time.perf_counter()
    xa, xb = residual_features(collect, af), residual_features(collect, bf)
    b_oa, oa = residual_alignment(fspec, rspec, af, bf, features=(xa, xb), seed=pair)
    info["orth_activations_seconds"] = time.perf_counter() - t0
    # how much of A's residual stream B's explains after a permutation of its coordinates vs after a rotation
    # (1 - |X_B M - X_A|^2 / |X_A|^2 on the matching inputs): the measured reason the orthogonal map helps
    fit = lambda m: float(1 - (xb @ m - xa).pow(2).sum() / xa.pow(2).sum())  # noqa: E731
    info.update(residual_fit_wm=fit(permutation_matrix(np.asarray(perms[RESIDUAL]))),
                residual_fit_am=fit(permutation_matrix(np.asarray(perms_am[RESIDUAL]))),
                residual_fit_orthogonal=fit(oa.map))
    # learned: start from the closed form with the lower midpoint loss on held-out TRAINING windows
    g = generator(pair, 0x1EA)
    heldout = [{"tokens": train_windows[torch.randint(0, len(train_windows), (p["lm_learn_batch"],), generator=g)][None]}
               for _ in range(p["lm_heldout_batches"])]
    loss = fam.state_loss_fn(cfg)
    mids = {}
    with torch.no_grad():
        for name, cand in (("weights", b_ow), ("activations", b_oa)):
            mid = {n: 0.5 * (af[n] + cand[n]) for n in af}
            mids[name] = float(np.mean([float(loss(mid, h).mean()) for h in heldout]))
    start_name = min(mids, key=mids.get)
    start = b_ow if start_name == "weights" else b_oa

    def batches():
        while True:
            idx = torch.randint(0, len(train_windows), (p["lm_learn_batch"],), generator=g)
            yield {"tokens": train_windows[idx][None]}

    t0 = time.perf_counter()
    b_l, li = learned_alignment(af, start, loss, batches(), heldout, pspec=fspec if p["lm_learn_units"] else None, rspec=rspec,
                                steps=p["lm_learn_steps"], lr=p["lm_learn_lr"])
    info.update(learned_seconds=time.perf_counter() - t0, learned_start=start_name, learned_kept_start=li.kept_start,
                learned_heldout_start=li.heldout_start, learned_heldout_end=li.heldout_end,
                learned_units_moved=int(sum(li.moved.values())))
    ends = {"unaligned": (a, b), "activation matching": (a, apply_permutation(b, pspec, perms_am)),
            "weight matching": (a, b_wm), "control A-pi(A)": (a, a_back),
            "weight matching, RMSNorm form": (af, b_wmf), "orthogonal (weights)": (af, b_ow),
            "orthogonal (activations)": (af, b_oa), "learned": (af, b_l), "folded_cfg": cfg}
    return ends, info


def floor_table(p: dict, store: RunStore, corpus, spec: RunSpec, run_, test, device, runs: list) -> pd.DataFrame:
    """Where the endpoint loss flattens: the final test loss of the first pair's models trained for each fraction
    of lm_steps in lm_floor_fractions (each run with its own full cosine schedule; the full length is the main run),
    and the test loss logged during the main run (per copy)."""
    fam = family_of(spec.model)
    rows = []
    for frac in sorted(set(p["lm_floor_fractions"]) | {1.0}):
        steps = max(int(round(frac * spec.train.steps)), 1)
        if steps == spec.train.steps:
            state, r = run_.state, run_
        else:
            r = store.get(lm_spec(p, spec.model.vocab_size, steps=steps, pairs=1), corpus.train, device=device,
                          progress=p["progress"])
            runs.append({"optimizer": f"lm floor check ({steps} steps)", "copies": r.spec.k,
                         "trained_now": r.trained_now, "diverged": len(r.diverged), "store": r.path})
            state = r.state
        res = fam.evaluate(spec.model, {n: t[:2] for n, t in state.items()}, test, batch_size=32, device=device)
        rows += [{"source": "final", "steps": steps, "copy": c, "test_loss": float(res.loss[c])} for c in range(2)]
    h = run_.history.dropna(subset=["test_loss"]) if "test_loss" in run_.history else pd.DataFrame()
    rows += [{"source": "during training", "steps": int(s), "copy": int(c), "test_loss": float(v)}
             for s, c, v in zip(h.get("step", []), h.get("copy", []), h.get("test_loss", []))]
    return pd.DataFrame(rows)
