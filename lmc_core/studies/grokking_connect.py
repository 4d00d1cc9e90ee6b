"""Notebook 06: are two grokked solutions linearly connected, and what do they share?

For every pair of seeds of the connectivity setting (all pairs among the seeds that grokked) and of the control
setting (weight decay 0: memorises, never groks), the test-loss and test-error barriers of A <-> T(B) at the end of
training for:

- "unaligned": T = identity;
- "permutation": weight matching of the residual stream, heads and MLP units (Git Re-Basin);
- "orthogonal residual map": an orthogonal map of the residual stream (Procrustes on the weights, alternated with
  weight matching of heads and MLP units; lmc_core.align.orthogonal);
- "invertible residual map": the model has no LayerNorm, so every invertible map M of the residual stream keeps
  its function; M = the least-squares map of B's residual activations onto A's (on the training inputs), then
  weight matching of heads and MLP units given it;
- "learned": from the closed-form map with the lower training loss at the midpoint, an invertible map (and, with
  learn_units, the MLP permutation) learnt to minimise that loss (lmc_core.align.learned);

and, unaligned and after permutation, at the checkpoints before and after grokking. Each seed's key frequencies
come from the discrete Fourier transform of its token embedding over the p residues (Nanda et al. 2023: a grokked
model computes with a few frequencies k, cos and sin of 2πka/p); the overlap of two seeds' sets is their Jaccard
index. Pairs among n seeds share seeds, so intervals resample seeds, not pairs (`seed_bootstrap`).
"""
from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import torch

from ..align import apply_permutation, weight_matching
from ..align.learned import learned_alignment
from ..align.orthogonal import residual_alignment, residual_features
from ..analysis import barrier as B
from ..analysis.interpolate import alpha_grid, interpolate_states
from ..ensemble import copy_state
from ..families import family_of

KINDS = ("unaligned", "permutation", "orthogonal residual map", "invertible residual map", "learned")


def key_frequencies(state, p: int, factor: float = 2.0) -> tuple[list[int], np.ndarray]:
    """Key frequencies of a K=1 state's token embedding and the energy share of every frequency k = 1..(p-1)/2.

    The embedding W [p, d] of the residues 0..p-1 is Fourier transformed over the residue axis; frequency k's energy
    is |F_k|^2 + |F_{p-k}|^2 summed over the d dimensions (the constant k = 0 left out). A key frequency carries at
    least `factor` times the share a uniform spread over the (p-1)/2 frequencies would give it."""
    w = state["tok_emb"][0, :p].double()  # [p, d]
    f = torch.fft.fft(w, dim=0)  # [p, d] complex
    power = (f.abs() ** 2).sum(1)  # [p]
    ks = np.arange(1, (p - 1) // 2 + 1)
    energy = np.array([float(power[k] + power[p - k]) for k in ks])
    share = energy / energy.sum()
    return [int(k) for k, s in zip(ks, share) if s >= factor / len(ks)], share


def jaccard(a: list[int], b: list[int]) -> float:
    """|A ∩ B| / |A ∪ B| (NaN for two empty sets)."""
    sa, sb = set(a), set(b)
    return len(sa & sb) / len(sa | sb) if sa | sb else float("nan")


def seed_bootstrap(pairs: pd.DataFrame, column: str, n_resamples: int = 2000, seed: int = 0,
                   confidence: float = 0.95) -> tuple[float, float, float]:
    """Mean of `column` over pairs (rows with seed_a, seed_b) and its bootstrap interval resampling SEEDS: each
    resample draws the seeds with replacement and averages the pairs among distinct drawn seeds (pairs sharing a
    seed are not independent). (mean, low, high); NaN bounds with fewer than 3 seeds."""
    v = pairs[column].to_numpy(dtype=float)
    est = float(v.mean()) if len(v) else float("nan")
    seeds = sorted(set(pairs.seed_a) | set(pairs.seed_b))
    if len(seeds) < 3 or not np.all(np.isfinite(v)):
        return est, float("nan"), float("nan")
    key = {(a, b): x for a, b, x in zip(pairs.seed_a, pairs.seed_b, v)}
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n_resamples):
        draw = rng.choice(seeds, len(seeds))
        vals = [key[(a, b)] for a, b in itertools.combinations(sorted(draw), 2) if a != b and (a, b) in key]
        if vals:
            out.append(np.mean(vals))
    lo, hi = np.quantile(out, [(1 - confidence) / 2, (1 + confidence) / 2])
    return est, float(lo), float(hi)


def align_all(fam, cfg, a, b, x_train: torch.Tensor, train: dict, p: dict, seed: int) -> dict:
    """{kind: T(B)} for one pair of K=1 states, plus diagnostics under "_info" and the residual form under "_form"."""
    pspec = fam.perm_spec(cfg)
    perms, _ = weight_matching(pspec, a, b, seed=seed)
    out = {"unaligned": b, "permutation": apply_permutation(b, pspec, perms)}
    rcfg, af, rspec = fam.residual_maps(cfg, a)
    _, bf, _ = fam.residual_maps(cfg, b)
    rperm = fam.perm_spec(rcfg)
    out["orthogonal residual map"], _ = residual_alignment(rperm, rspec, af, bf, seed=seed, group="orthogonal")
    collect = lambda s: fam.activations(rcfg, s, x_train)  # noqa: E731
    out["invertible residual map"], inv = residual_alignment(
        rperm, rspec, af, bf, features=(residual_features(collect, af), residual_features(collect, bf)), seed=seed)
    sv = torch.linalg.svdvals(inv.map)
    batch = {n: t[None] for n, t in train.items()}  # full batch, as the models trained
    loss = fam.state_loss_fn(rcfg)
    with torch.no_grad():  # learned alignment starts from the closed form with the lower training midpoint loss
        mids = {k: float(loss({n: 0.5 * (af[n] + out[k][n]) for n in af}, batch).mean())
                for k in ("orthogonal residual map", "invertible residual map")}
    start = min(mids, key=mids.get)
    b_l, info = learned_alignment(af, out[start], loss, itertools.repeat(batch), [batch],
                                  pspec=rperm if p["learn_units"] else None, rspec=rspec,
                                  steps=p["learn_steps"], lr=p["learn_lr"])
    out["learned"] = b_l
    out["_info"] = {"learned_start": start, "learned_kept_start": info.kept_start,
                    "learned_train_mid_start": info.heldout_start, "learned_train_mid_end": info.heldout_end,
                    "invertible_map_condition": float(sv.max() / sv.min())}
    out["_form"] = (rcfg, af)  # the residual form in which the last three kinds live (this family: the model itself)
    return out


def connectivity(p: dict, spec, state, copies: pd.DataFrame, grok: pd.DataFrame, data, device
                 ) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Barriers after every alignment for all pairs of grokked seeds of the connectivity setting and all pairs of the
    control setting, at the end of training; each seed's key frequencies. Returns (pairs, paths, frequencies)."""
    fam = family_of(spec.model)
    test = fam.eval_examples(spec.model, data["test"])
    alphas = alpha_grid(p["alphas"])
    freq_rows, keys = [], {}
    for r in copies.itertuples():
        st = copy_state(state, r.copy)
        k, share = key_frequencies(st, p["p"], p["key_factor"])
        keys[r.copy] = k
        freq_rows += [{"copy": r.copy, "weight_decay": r.weight_decay, "fisher": r.fisher, "seed": r.seed,
                       "frequency": i + 1, "share": float(s), "key": (i + 1) in k} for i, s in enumerate(share)]
    rows, paths = [], []
    x_train = data["train"]["tokens"]
    for role, (wd, lam) in (("grokked", p["connect_setting"]), ("control", p["control_setting"])):
        cell = grok[(grok.weight_decay == wd) & (grok.fisher == lam) & ~grok.diverged.astype(bool)]
        if role == "grokked":  # grokked and still grokked at the end, where the models are interpolated
            cell = cell[np.isfinite(cell.grok_step) & (cell.final_test_acc >= 0.95)]
        members = cell.sort_values("seed")[["copy", "seed"]].to_numpy()
        for (ca, sa), (cb, sb) in itertools.combinations(members, 2):
            a, b = copy_state(state, int(ca)), copy_state(state, int(cb))
            ends = align_all(fam, spec.model, a, b, x_train, data["train"].tensors, p, seed=int(sa))
            rcfg, af = ends.pop("_form")
            row = {"role": role, "weight_decay": wd, "fisher": lam, "seed_a": int(sa), "seed_b": int(sb),
                   "overlap": jaccard(keys[int(ca)], keys[int(cb)]), "keys_a": str(keys[int(ca)]),
                   "keys_b": str(keys[int(cb)]), **ends.pop("_info")}
            for kind in KINDS:
                left, cfg = (a, spec.model) if kind in ("unaligned", "permutation") else (af, rcfg)
                res = fam.evaluate(cfg, interpolate_states(left, ends[kind], alphas), test, batch_size=4096,
                                   device=device)
                endpoint = 0.5 * float(res.loss[0] + res.loss[-1])
                row.update({f"loss_barrier:{kind}": B.barrier(alphas, res.loss, p["definition"]),
                            f"chord_pct:{kind}": 100 * B.barrier(alphas, res.loss, "chord") / endpoint,
                            f"error_barrier_pp:{kind}": 100 * B.barrier(alphas, res.error, p["definition"]),
                            f"error_chord_pp:{kind}": 100 * B.barrier(alphas, res.error, "chord"),
                            f"endpoint_test_acc:{kind}": float(0.5 * (res.accuracy[0] + res.accuracy[-1]))})
                paths += [{"setting": f"{role}: wd {wd:g}, λ {lam:g}", "pair": f"{int(sa)}-{int(sb)}", "kind": kind,
                           "split": "test", "alpha": float(x), "loss": float(lo), "error": float(er)}
                          for x, lo, er in zip(alphas, res.loss, res.error)]
            rows.append(row)
    cols = ["setting", "pair", "kind", "split", "alpha", "loss", "error"]
    pair_cols = ["role", "weight_decay", "fisher", "seed_a", "seed_b", "overlap", "keys_a", "keys_b"]
    return pd.DataFrame(rows, columns=list(rows[0]) if rows else pair_cols), pd.DataFrame(paths, columns=cols), \
        pd.DataFrame(freq_rows)


def barriers_over_training(p: dict, spec, store, run_, grok: pd.DataFrame, data, device) -> pd.DataFrame:
    """Unaligned and permutation-aligned test barriers of every grokked pair of the connectivity setting at every
    kept checkpoint (before and after grokking)."""
    fam = family_of(spec.model)
    pspec = fam.perm_spec(spec.model)
    test = fam.eval_examples(spec.model, data["test"])
    alphas = alpha_grid(p["alphas"])
    wd, lam = p["connect_setting"]
    cell = grok[(grok.weight_decay == wd) & (grok.fisher == lam) & np.isfinite(grok.grok_step)
                & (grok.final_test_acc >= 0.95)].sort_values("seed")
    pairs = list(itertools.combinations(cell[["copy", "seed"]].to_numpy(), 2))[: p["trajectory_pairs"]]
    states = {s: store.checkpoint(spec, s) for s in spec.train.checkpoints}
    states[spec.train.steps] = run_.state
    init = fam.init(spec.model, [s.init for s in spec.seeds])
    rows = []
    for step, st in sorted(states.items()):
        st = {**{n: init[n] for n in init if n not in st}, **st}
        for (ca, sa), (cb, sb) in pairs:
            a, b = copy_state(st, int(ca)), copy_state(st, int(cb))
            perms, _ = weight_matching(pspec, a, b, seed=int(sa))
            for kind, bb in (("unaligned", b), ("permutation", apply_permutation(b, pspec, perms))):
                r = fam.evaluate(spec.model, interpolate_states(a, bb, alphas), test, batch_size=4096, device=device)
                rows.append({"step": step, "pair": f"{int(sa)}-{int(sb)}", "kind": kind,
                             "loss_barrier": B.barrier(alphas, r.loss, p["definition"]),
                             "error_barrier_pp": 100 * B.barrier(alphas, r.error, p["definition"]),
                             "endpoint_test_acc": float(0.5 * (r.accuracy[0] + r.accuracy[-1]))})
    return pd.DataFrame(rows, columns=["step", "pair", "kind", "loss_barrier", "error_barrier_pp", "endpoint_test_acc"])
